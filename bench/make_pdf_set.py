"""Sets of real PDFs for the demo and the ingestion benchmark (no generated documents).

    python bench/make_pdf_set.py demo OUT
        A few real PDFs without the network: manuals Debian ships under /usr/share/doc (cut to their first
        10 pages, and the next pages as a second document, since the platform allows 10 pages), plus one
        whole manual over the limit to show the failure path. When /usr/share/doc has none of them, the
        PDFs of pypdf's source distribution (pip download from PyPI) are used instead.

    python bench/make_pdf_set.py corpus SRC OUT [--docs 240] [--seed 4]
        The benchmark set from the corpus of ../shared/corpus/pdf-corpus.sh (SRC): every file of at
        most 10 pages as it is, then documents cut from the longer files (2 to 10 pages each, sizes drawn
        from a seeded generator, taken round-robin across the files so every source contributes), until
        --docs documents. Deterministic for a given corpus and seed.

OUT gets the PDFs and manifest.tsv (file, pages, bytes, source, first_page, last_page, expect).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import random
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pypdf import PdfReader, PdfWriter

MAX_PAGES = 10
MAX_BYTES = 20 * 1024 * 1024

# (path under /usr/share/doc, name in the demo, page ranges; None = the whole file)
DEMO_SOURCES = [
    ("zlib1g-dev/crc-doc.1.0.pdf.gz", "crc-error-detection-guide", [(1, 10)]),
    ("fontconfig/fontconfig-user.pdf.gz", "fontconfig-user", [(1, 10), (11, 15)]),
    ("shared-mime-info/shared-mime-info-spec.pdf", "shared-mime-info-spec", [(1, 10), (11, 17)]),
    ("bzip2/manual.pdf.gz", "bzip2-manual", [(1, 10)]),
    ("libtasn1-doc/libtasn1.pdf", "libtasn1-manual", None),
]


class Deadline:
    """Raise TimeoutError when the block runs longer than `seconds` (pypdf loops forever on some of the
    corpus's deliberately broken files, e.g. a circular page tree)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def _fire(self, *_):
        raise TimeoutError(f"pypdf took more than {self.seconds} s")

    def __enter__(self):
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def read_pdf_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def page_count(data: bytes) -> int | None:
    try:
        with Deadline(10):
            return _page_count(data)
    except Exception:  # noqa: BLE001 - unreadable files are the worker's business, not the set's
        return None


def _page_count(data: bytes) -> int:
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        reader.decrypt("")
    return len(reader.pages)


def cut(reader: PdfReader, first: int, last: int) -> bytes:
    """Pages first..last (1-based, inclusive) as a new PDF; the pages keep their own content and fonts."""
    writer = PdfWriter()
    for i in range(first - 1, last):
        writer.add_page(reader.pages[i])
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


class Manifest:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: list[tuple] = []
        self.hashes: set[str] = set()

    def add(self, name: str, data: bytes, pages: int, source: str, first: int, last: int, expect: str = "ready") -> None:
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.hashes:  # the platform refuses a second upload of the same bytes in a workspace
            print(f"make_pdf_set: skipping {name}: same bytes as an earlier file", file=sys.stderr)
            return
        self.hashes.add(digest)
        (self.out / name).write_bytes(data)
        self.rows.append((name, pages, len(data), source, first, last, expect))

    def write(self) -> None:
        with open(self.out / "manifest.tsv", "w") as f:
            f.write("file\tpages\tbytes\tsource\tfirst_page\tlast_page\texpect\n")
            for row in self.rows:
                f.write("\t".join(str(v) for v in row) + "\n")


def read_manifest(out: Path) -> list[dict]:
    lines = (out / "manifest.tsv").read_text().splitlines()
    keys = lines[0].split("\t")
    rows = [dict(zip(keys, line.split("\t"))) for line in lines[1:] if line]
    for r in rows:
        r["pages"] = int(r["pages"])
        r["bytes"] = int(r["bytes"])
    return rows


def demo_from_usr_share_doc(m: Manifest, doc_root: Path) -> None:
    for rel, stem, ranges in DEMO_SOURCES:
        path = doc_root / rel
        if not path.exists():
            continue
        try:
            data = read_pdf_bytes(path)
            reader = PdfReader(io.BytesIO(data))
            total = len(reader.pages)
        except Exception as e:  # noqa: BLE001
            print(f"make_pdf_set: skipping {path}: {e}", file=sys.stderr)
            continue
        source = f"/usr/share/doc/{rel}"
        if ranges is None:
            m.add(f"{stem}.pdf", data, total, source, 1, total,
                  "failed" if total > MAX_PAGES else "ready")
            continue
        for first, last in ranges:
            last = min(last, total)
            if first > last:
                continue
            m.add(f"{stem}-p{first}-{last}.pdf", cut(reader, first, last), last - first + 1, source, first, last)


def demo_from_pypi(m: Manifest, cache: Path) -> None:
    """Fallback: the sample PDFs in pypdf's sdist (one small download from PyPI, cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    sdists = sorted(cache.glob("pypdf-*.tar.gz"))
    if not sdists:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "pypdf==7.1.1", "-d", str(cache)], check=True)
        sdists = sorted(cache.glob("pypdf-*.tar.gz"))
    wanted = ["git.pdf", "pdflatex-outline.pdf", "two-different-pages.pdf", "toy.pdf", "superscript-pdftex.pdf",
              "GeoBase_NHNC1_Data_Model_UML_EN.pdf"]
    with tarfile.open(sdists[-1]) as tar:
        members = {Path(t.name).name: t for t in tar.getmembers() if "/resources/" in t.name and t.name.endswith(".pdf")}
        for name in wanted:
            if name not in members:
                continue
            data = tar.extractfile(members[name]).read()
            pages = page_count(data)
            if pages is None:
                continue
            m.add(f"pypdf-{name}", data, pages, f"pypi:pypdf-7.1.1/resources/{name}", 1, pages,
                  "failed" if pages > MAX_PAGES else "ready")


def make_demo(out: Path, cache: Path) -> None:
    m = Manifest(out)
    demo_from_usr_share_doc(m, Path("/usr/share/doc"))
    if not any(r[6] == "ready" for r in m.rows):
        print("make_pdf_set: no manuals under /usr/share/doc; using pypdf's sample PDFs from PyPI", file=sys.stderr)
        m.rows.clear()
        demo_from_pypi(m, cache)
    if not m.rows:
        sys.exit("make_pdf_set: found no PDFs for the demo")
    m.write()


def make_corpus(src: Path, out: Path, docs: int, seed: int) -> None:
    m = Manifest(out)
    rng = random.Random(seed)
    long_files: list[tuple[str, PdfReader, int]] = []
    for path in sorted(src.glob("*.pdf")):
        data = path.read_bytes()
        try:
            with Deadline(20):
                reader = PdfReader(io.BytesIO(data))
                encrypted = reader.is_encrypted
                if encrypted:
                    reader.decrypt("")
                n = len(reader.pages)
        except Exception as e:  # noqa: BLE001 - pypdf cannot read it: we cannot count or cut it either
            print(f"make_pdf_set: skipping {path.name}: {type(e).__name__}: {e}"[:160], file=sys.stderr)
            continue
        if n <= MAX_PAGES:
            if len(data) <= MAX_BYTES:
                m.add(path.name, data, n, path.name, 1, n)
        elif not encrypted:
            long_files.append((path.stem, reader, n))
    cursors = {stem: 1 for stem, _, _ in long_files}
    progress = True
    while len(m.rows) < docs and progress:
        progress = False
        for stem, reader, n in long_files:
            if len(m.rows) >= docs:
                break
            first = cursors[stem]
            if first > n:
                continue
            size = rng.randint(2, MAX_PAGES)
            last = min(n, first + size - 1)
            cursors[stem] = last + 1
            try:
                with Deadline(30):
                    data = cut(reader, first, last)
            except Exception as e:  # noqa: BLE001
                print(f"make_pdf_set: cannot cut {stem} {first}-{last}: {e}", file=sys.stderr)
                cursors[stem] = n + 1
                continue
            progress = True
            if len(data) <= MAX_BYTES:
                m.add(f"{stem}-p{first}-{last}.pdf", data, last - first + 1, f"{stem}.pdf", first, last)
    m.rows = m.rows[:docs]
    m.write()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo")
    d.add_argument("out")
    d.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "rqw-pypdf-sdist"))
    c = sub.add_parser("corpus")
    c.add_argument("src")
    c.add_argument("out")
    c.add_argument("--docs", type=int, default=240)
    c.add_argument("--seed", type=int, default=4)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.pdf"):
        old.unlink()
    if a.cmd == "demo":
        make_demo(out, Path(a.cache))
    else:
        make_corpus(Path(a.src), out, a.docs, a.seed)
    rows = read_manifest(out)
    print(f"{len(rows)} PDFs, {sum(r['pages'] for r in rows)} pages in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
