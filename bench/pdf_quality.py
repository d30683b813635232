#!/usr/bin/env python3
"""PDF text-extraction quality report: ours (`rq-worker pdf-text`), lopdf's own extract_text,
pypdf and pdftotext (the reference) over a corpus, one process per file and tool.

Prints per file and overall: word-level F1 against pdftotext (per file, and per page averaged
over all pages where pdftotext finds words), character similarity (difflib ratio per page on
whitespace-normalised text), failures, panics, timeouts, pages/s and peak RSS per tool.

Usage:
  bash ../shared/corpus/pdf-corpus.sh /tmp/corpus          # once (see that script)
  cargo build --release --example lopdf_extract_pdf && cargo build --release
  python3 bench/pdf_quality.py /tmp/corpus [--ours target/release/rq-worker]
      [--lopdf target/release/examples/lopdf_extract_pdf] [--tools ours,lopdf,pypdf]
      [--only SUBSTR] [--timeout 300] [--out /tmp/pdfq] [--markdown]
Needs pdftotext (Debian poppler-utils), GNU time (/usr/bin/time, Debian `time`) for peak RSS and,
for the pypdf column, `pip install pypdf`. Word tokens are whitespace-separated, after dropping
bidi embedding marks (pdftotext wraps right-to-left runs in them), and every CJK character (Han, kana,
CJK punctuation and vertical forms; not Hangul, which Korean separates with spaces) is a token of its
own. Chinese and Japanese are written without spaces, so a whitespace token there is a whole line: it
measures where two tools break lines (pdftotext reads vertical text across the columns), not which
text they found. Search indexes for these scripts tokenise per character (unigrams), and Unicode's
word-boundary rules (UAX #29) also break between ideographs. The whitespace-only figure stays in the
summary as its own column.
"""
import argparse
import collections
import difflib
import json
import os
import re
import signal
import subprocess
import sys
import time
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(cmd, out_path, timeout):
    """Run cmd with stdout to out_path; return (rc, seconds, peak_rss_mb, stderr, timed_out)."""
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(out_path + ".err", "wb") as err:
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", out_path + ".rss"] + cmd,
                             stdout=out, stderr=err, start_new_session=True)
        timed_out = False
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(p.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(p.pid, 0)
                timed_out = True
                break
            time.sleep(0.005)
    secs = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)  # GNU time passes the child's status on
    with open(out_path + ".err", "rb") as f:
        stderr = f.read().decode("utf-8", "replace")
    try:
        with open(out_path + ".rss") as f:
            rss = int(f.read().split()[-1]) / 1024.0
    except (OSError, ValueError, IndexError):
        rss = ru.ru_maxrss / 1024.0
    return rc, secs, rss, stderr, timed_out


# pdftotext wraps right-to-left runs in embedding marks (U+202A..U+202E); they are invisible
# formatting, not text, so both sides drop them before comparing.
BIDI = dict.fromkeys([0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069])


# Scripts written without spaces between words: each character is one token (see the docstring).
CJK = re.compile("([\u2e80-\u2fff\u3000-\u312f\u3190-\u31ff\u3200-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                 "\ufe10-\ufe1f\ufe30-\ufe4f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff9f"
                 "\U00020000-\U0003ffff])")


def ws_words(text):
    return text.translate(BIDI).split()


def words(text):
    out = []
    for w in ws_words(text):
        if CJK.search(w):
            out.extend(x for x in CJK.split(w) if x)
        else:
            out.append(w)
    return out


def f1(ref, got, tokens=words):
    a = collections.Counter(tokens(ref))
    b = collections.Counter(tokens(got))
    na, nb = sum(a.values()), sum(b.values())
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    common = sum((a & b).values())
    return 2.0 * common / (na + nb)


def char_sim(ref, got):
    a = " ".join(words(ref))[:20000]
    b = " ".join(words(got))[:20000]
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=True).ratio()


def pages_of(text):
    p = text.split("\f")
    if p and p[-1].strip() == "":
        p = p[:-1]
    return p


def pypdf_one(path):
    import pypdf  # noqa: PLC0415

    r = pypdf.PdfReader(path)
    if r.is_encrypted:
        r.decrypt("")
    out = []
    for page in r.pages:
        try:
            out.append(page.extract_text() or "")
        except Exception as e:  # noqa: BLE001
            print(f"page error: {e}", file=sys.stderr)
            out.append("")
    sys.stdout.write("\f".join(out) + "\f")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--ours", default=os.path.join(ROOT, "target/release/rq-worker"))
    ap.add_argument("--ours-args", default="pdf-text", help="arguments before FILE ('' for an example binary)")
    ap.add_argument("--lopdf", default=os.path.join(ROOT, "target/release/examples/lopdf_extract_pdf"))
    ap.add_argument("--tools", default="ours,lopdf,pypdf")
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", default="/tmp/pdfq")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--pypdf-one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.pypdf_one:
        pypdf_one(a.pypdf_one)
        return
    tools = [t for t in a.tools.split(",") if t]
    os.makedirs(a.out, exist_ok=True)
    files = sorted(f for f in os.listdir(a.corpus) if f.endswith(".pdf") and a.only in f)
    cmds = {
        "pdftotext": lambda p: ["pdftotext", "-enc", "UTF-8", p, "-"],
        "ours": lambda p: [a.ours] + a.ours_args.split() + [p],
        "lopdf": lambda p: [a.lopdf, p],
        "pypdf": lambda p: [sys.executable, os.path.abspath(__file__), "x", "--pypdf-one", p],
    }
    stats = {t: dict(files=0, f1=[], f1_ws=[], f1_nfkc=[], page_f1=[], csim=[], fail=0, panic=0, timeout=0, empty=0,
                     secs=0.0, pages=0, rss=[]) for t in ["pdftotext"] + tools}
    rows = []
    for name in files:
        path = os.path.join(a.corpus, name)
        res = {}
        for t in ["pdftotext"] + tools:
            outp = os.path.join(a.out, f"{name}.{t}.txt")
            rc, secs, rss, err, to = run_child(cmds[t](path), outp, a.timeout)
            with open(outp, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            res[t] = dict(rc=rc, secs=secs, rss=rss, err=err, timeout=to, text=text)
        ref = res["pdftotext"]["text"]
        ref_pages = pages_of(ref)
        npages = max(len(ref_pages), 1)
        row = dict(file=name, pages=len(ref_pages), ref_words=len(words(ref)))
        for t in ["pdftotext"] + tools:
            r = res[t]
            s = stats[t]
            s["files"] += 1
            s["secs"] += r["secs"]
            s["pages"] += npages
            s["rss"].append((r["rss"], name))
            panic = "panicked" in r["err"] or r["rc"] == 101
            failed = r["rc"] != 0 or r["timeout"]
            if r["timeout"]:
                s["timeout"] += 1
            elif panic:
                s["panic"] += 1
            elif failed:
                s["fail"] += 1
            if t == "pdftotext":
                continue
            got = r["text"] if not failed else ""
            got_pages = pages_of(got)
            if row["ref_words"] > 0:
                fv = f1(ref, got)
                s["f1"].append(fv)
                row[t] = round(fv, 3)
                fw = f1(ref, got, ws_words)
                s["f1_ws"].append(fw)
                row[t + "_ws"] = round(fw, 3)
                # Extra, not the headline: both sides NFKC-normalised (pdftotext keeps ligatures
                # and Arabic presentation forms as the fonts map them; ours folds them for search).
                fn = f1(unicodedata.normalize("NFKC", ref), unicodedata.normalize("NFKC", got))
                s["f1_nfkc"].append(fn)
                row[t + "_nfkc"] = round(fn, 3)
                if not words(got):
                    s["empty"] += 1
                cs = []
                for i, rp in enumerate(ref_pages):
                    gp = got_pages[i] if i < len(got_pages) else ""
                    if words(rp):
                        s["page_f1"].append(f1(rp, gp))
                        cs.append(char_sim(rp, gp))
                if cs:
                    row[t + "_csim"] = round(sum(cs) / len(cs), 3)
                    s["csim"].extend(cs)
            row[t + "_status"] = "timeout" if r["timeout"] else "panic" if panic else "fail" if failed else "ok"
            row[t + "_secs"] = round(r["secs"], 3)
            row[t + "_rss"] = round(r["rss"], 1)
        row["pdftotext_secs"] = round(res["pdftotext"]["secs"], 3)
        row["pdftotext_rss"] = round(res["pdftotext"]["rss"], 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def mean(v):
        return sum(v) / len(v) if v else float("nan")

    print()
    hdr = ["file", "pages"] + [f"{t} F1" for t in tools]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        cells = [r["file"], str(r["pages"])]
        for t in tools:
            v = r.get(t)
            st = r.get(t + "_status", "")
            cells.append(("%.3f" % v if v is not None else "-") + ("" if st == "ok" else f" ({st})"))
        print("| " + " | ".join(cells) + " |")
    print()
    print("| tool | word F1 per file | word F1 per page | char similarity | files without text* | failures | panics | timeouts | pages/s | peak RSS (file) | word F1 per file, whitespace tokens‡ | word F1 per file, NFKC both sides† |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in ["pdftotext"] + tools:
        s = stats[t]
        peak = max(s["rss"]) if s["rss"] else (0, "")
        pps = s["pages"] / s["secs"] if s["secs"] else 0
        if t == "pdftotext":
            print(f"| pdftotext (reference) | 1 | 1 | 1 | 0 | {s['fail']} | {s['panic']} | {s['timeout']} | {pps:.0f} | {peak[0]:.0f} MB ({peak[1]}) | 1 | 1 |")
            continue
        print(f"| {t} | {mean(s['f1']):.3f} | {mean(s['page_f1']):.3f} | {mean(s['csim']):.3f} | {s['empty']} | {s['fail']} | {s['panic']} | {s['timeout']} | {pps:.0f} | {peak[0]:.0f} MB ({peak[1]}) | {mean(s['f1_ws']):.3f} | {mean(s['f1_nfkc']):.3f} |")
    print("\n*files where pdftotext finds words and the tool finds none; pages/s = pdftotext's page count / wall time, one process per file (load included).")
    print("‡the same per-file F1 with whitespace-separated tokens only, CJK text included (a Chinese or Japanese line is then one token).")
    print("†extra column, not the headline: word F1 per file with both texts NFKC-normalised (pdftotext keeps ligatures and Arabic presentation forms as fonts map them; ours folds them by default for search).")
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(dict(rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
