#!/usr/bin/env python3
"""Generate src/pdf/generated/cid2uni/<Ordering>.cid2uni: CID -> Unicode for the Adobe character
collections (GB1, Japan1, CNS1, Korea1), used for CID fonts that come without a ToUnicode CMap.

Source: Adobe's Adobe-<Ordering>-UCS2 CMaps (Copyright 1990-2020 Adobe, BSD-3-Clause), as shipped
in Debian's poppler-data package (share/poppler/cMap/Adobe-*/Adobe-*-UCS2), with poppler's own
share/poppler/cidToUnicode tables taking precedence where both map a CID (vertical forms; see
below). The input is pinned: Debian's poppler-data 0.4.12-1 (the .deb's SHA-256 is checked), which
scripts/gen/poppler-data.sh downloads with `apt-get download` and unpacks into a cache, printing
the share/poppler directory to pass here. No Python package is needed (standard library only).
Output format: 3 bytes (big-endian Unicode scalar, 0 = none) per CID from 0.

Usage: python3 scripts/gen/pdf_cid2uni.py POPPLER_SHARE_DIR [OUT_DIR]
       e.g. python3 scripts/gen/pdf_cid2uni.py "$(scripts/gen/poppler-data.sh)"
       OUT_DIR defaults to src/pdf/generated/cid2uni.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
share = sys.argv[1]
src = os.path.join(share, "cMap")
ctu_dir = os.path.join(share, "cidToUnicode")
for d in (src, ctu_dir):
    if not os.path.isdir(d):
        sys.exit(f"pdf_cid2uni: {d} is not a directory (pass poppler-data's share/poppler directory)")
out_dir = sys.argv[2] if len(sys.argv) == 3 else os.path.join(ROOT, "src/pdf/generated/cid2uni")
os.makedirs(out_dir, exist_ok=True)
hexre = re.compile(r"<([0-9a-fA-F]+)>")


def scalar(h):
    b = bytes.fromhex(h)
    s = b.decode("utf-16-be", "replace")
    return ord(s[0]) if s else 0


for ordering in ["GB1", "Japan1", "CNS1", "Korea1"]:
    path = os.path.join(src, f"Adobe-{ordering}", f"Adobe-{ordering}-UCS2")
    text = open(path, encoding="latin-1").read()
    m = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", text, re.S):
        for line in block.strip().splitlines():
            h = hexre.findall(line)
            if len(h) == 2:
                m[int(h[0], 16)] = scalar(h[1])
    for block in re.findall(r"beginbfrange(.*?)endbfrange", text, re.S):
        for line in block.strip().splitlines():
            h = hexre.findall(line)
            if len(h) == 3 and "[" not in line:
                lo, hi, dst = int(h[0], 16), int(h[1], 16), scalar(h[2])
                for i in range(hi - lo + 1):
                    m[lo + i] = dst + i
    # poppler (the reference) reads its cidToUnicode tables (poppler-data, from Adobe's
    # cid2code.txt), which differ for a few hundred CIDs, mostly vertical variants that map to
    # the vertical presentation forms (U+FE10..U+FE4F) there. Where both map a CID, take
    # poppler's value unless it is a private-use code (GB 18030's old vertical-form codes).
    ctu = os.path.join(ctu_dir, f"Adobe-{ordering}")
    for cid, line in enumerate(open(ctu, encoding="ascii").read().split("\n")):
        line = line.strip()
        u = int(line, 16) if line else 0
        if u and cid in m and m[cid] != u and not 0xE000 <= u <= 0xF8FF:
            m[cid] = u
    n = max(m) + 1
    data = bytearray(3 * n)
    for cid, u in m.items():
        if u == 0xFFFD:
            continue
        data[3 * cid:3 * cid + 3] = u.to_bytes(3, "big")
    with open(os.path.join(out_dir, f"{ordering}.cid2uni"), "wb") as f:
        f.write(bytes(data))
    print(ordering, n, "CIDs", len(m), "mapped", file=sys.stderr)
