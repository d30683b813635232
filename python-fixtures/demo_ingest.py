"""The ingestion demo: start a private Redis, PostgreSQL + pgvector and the Storage / embeddings stand-ins,
upload a few PDFs as the platform's API would, enqueue them with Python RQ, run rq-worker on both queues
and print each document's final status with page, chunk and embedding counts.

    python python-fixtures/demo_ingest.py [--pdf-dir DIR] [--keep]

--pdf-dir uploads the PDFs of a folder (at most 8) instead of the generated ones; --keep leaves the
services running (until Ctrl-C) so that the printed rq-dashboard command can be tried.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "ingest-tests"))

from conftest import World, rq_worker_bin, start_services  # noqa: E402
from pdfs import raw_pdf, report, text_stream  # noqa: E402


def inputs(pdf_dir: str | None) -> list[tuple[str, bytes]]:
    if pdf_dir:
        return [(p.name, p.read_bytes()) for p in sorted(Path(pdf_dir).glob("*.pdf"))[:8]]
    return [
        ("quarterly-report.pdf", report(1, 3)),
        ("handbook.pdf", report(2, 10)),
        ("memo.pdf", report(3, 1, words_per_page=120)),
        ("nul-bytes.pdf", raw_pdf([text_stream(b"Invoice\x00 total due: 1,250.00 EUR, payable in 30 days.")])),
        ("too-long.pdf", report(4, 12, words_per_page=40)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdf-dir")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    print(f"worker: {rq_worker_bin()}")
    gen = start_services(Path(tempfile.mkdtemp(prefix="rqw-ingest-demo-")))
    services = next(gen)
    world = World(services, "rq-worker")
    try:
        docs = []
        for name, data in inputs(args.pdf_dir):
            doc, path = world.upload(name, data)
            job = world.enqueue_extract(doc, path)
            docs.append((name, doc))
            print(f"enqueued {name:<28} document {doc}  job {job.id}")
        t0 = time.perf_counter()
        world.work("ingest_extract")
        world.work("ingest_index")
        elapsed = time.perf_counter() - t0
        print(f"\nrq-worker --burst ingest_extract, then ingest_index: {elapsed:.2f} s\n")
        print(f"{'document':<28} {'status':<8} {'pages':>5} {'chunks':>6} {'embeddings':>10}  error")
        for name, doc in docs:
            d = world.document(doc)
            print(f"{name:<28} {d['status']:<8} {world.count('document_pages', doc):>5} "
                  f"{world.count('chunks', doc):>6} {world.count('chunk_embeddings', doc):>10}  "
                  f"{d['error_message'] or ''}")
        used, reserved = world.usage()
        print(f"\ntoken budget today: {used} used, {reserved} reserved")
        print(f"dashboard: rq-dashboard --redis-url {world.redis_url}   (rq-dashboard 0.8.x for rq 1.16)")
        print(f"database:  psql {world.db_url}")
        if args.keep:
            print("services kept running; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        world.close()
        for _ in gen:
            pass


if __name__ == "__main__":
    main()
