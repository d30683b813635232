"""Real PDFs for the end-to-end tests, written with fpdf2 (text in a standard font, several pages)."""

from __future__ import annotations

import random

from fpdf import FPDF

VOCAB = ("ledger invoice quarterly revenue growth policy vector search index budget workspace document retrieval "
         "platform tenant report summary analysis market pipeline storage compliance audit forecast").split()


def words(seed: int, count: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(count))


def make_pdf(pages: list[str]) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_font("Helvetica", size=8)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 3.5, text)
    return bytes(pdf.output())


def report(seed: int, pages: int, words_per_page: int = 450) -> bytes:
    return make_pdf([f"Page {i + 1}. " + words(seed * 100 + i, words_per_page) for i in range(pages)])


def raw_pdf(page_streams: list[bytes]) -> bytes:
    """A hand-written PDF (one Helvetica font, no encoding), for text that fpdf2 would not emit (NUL bytes)."""
    objects: list[bytes] = []
    n = len(page_streams)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} /MediaBox [0 0 595 842] "
                   f"/Resources << /Font << /F1 3 0 R >> >> >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, stream in enumerate(page_streams):
        objects.append(f"<< /Type /Page /Parent 2 0 R /Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def text_stream(text: bytes) -> bytes:
    escaped = text.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"BT /F1 10 Tf 40 800 Td (" + escaped + b") Tj ET"
