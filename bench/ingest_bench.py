"""Ingestion benchmark (issue 4): the same PDFs through the Python reference of the platform's worker under
`rq worker` (5 extract + 3 index processes, as deployed) and through rq-worker (--concurrency 5, then 3),
with the same stand-ins (zero latency) and the same PostgreSQL + pgvector. Prints documents/s, pages/s,
embedding requests, peak RSS (summed over the worker processes and their forked children) and ratios.

    python bench/ingest_bench.py [--docs 60] [--pdf-dir DIR] [--only rq-worker|reference]

Needs the ingest-tests environment (python-fixtures/requirements-ingest.txt + rq==1.16.2) and a built
rq-worker (RQ_WORKER_BIN, default target/release/rq-worker, else target/debug/rq-worker).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "ingest-tests"))

from conftest import FIXTURES, World, rq_worker_bin, start_services  # noqa: E402
from pdfs import report  # noqa: E402


def corpus(args) -> list[tuple[str, bytes, int]]:
    if args.pdf_dir:
        from pypdf import PdfReader

        out = []
        for path in sorted(Path(args.pdf_dir).glob("*.pdf")):
            data = path.read_bytes()
            try:
                n = len(PdfReader(io.BytesIO(data)).pages)
            except Exception:  # noqa: BLE001
                continue
            if 1 <= n <= 10 and len(data) <= 20 * 1024 * 1024:
                out.append((path.name, data, n))
        return out[: args.docs] if args.docs else out
    rng = random.Random(4)
    docs = []
    for i in range(args.docs):
        pages = rng.choice([1, 2, 3, 4, 5, 6, 8, 10])
        docs.append((f"doc-{i}.pdf", report(1000 + i, pages, words_per_page=380), pages))
    return docs


class RssSampler(threading.Thread):
    """Peak of the summed RSS of some processes and all their descendants."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for pid in self.pids:
                try:
                    p = psutil.Process(pid)
                    procs = [p, *p.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for q in procs:
                    try:
                        total += q.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            self.peak = max(self.peak, total)
            time.sleep(0.02)


def phase(world: World, kind: str, queue: str, processes: int) -> int:
    env = world.env(kind)
    if kind == "reference":
        env["PYTHONPATH"] = str(FIXTURES / "reference_worker")
        rq = str(Path(sys.executable).parent / "rq")
        cmds = [[rq, "worker", "--burst", "--url", world.redis_url, queue] for _ in range(processes)]
    else:
        cmds = [[rq_worker_bin(), "--burst", "--url", world.redis_url, "-c", str(processes), queue]]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds]
    sampler = RssSampler([p.pid for p in procs])
    sampler.start()
    for p in procs:
        p.wait()
    sampler.stop.set()
    sampler.join()
    return sampler.peak


def run(services: dict, kind: str, docs) -> dict:
    world = World(services, kind)
    world.env_overrides["DAILY_TOKEN_LIMIT"] = "1000000000"
    try:
        for name, data, _ in docs:
            doc, path = world.upload(name, data)
            world.enqueue_extract(doc, path)
        before = world.embeddings.stats().get("requests", 0)
        t0 = time.perf_counter()
        rss1 = phase(world, kind, "ingest_extract", 5)
        t1 = time.perf_counter()
        rss2 = phase(world, kind, "ingest_index", 3)
        elapsed = time.perf_counter() - t0
        requests = world.embeddings.stats().get("requests", 0) - before
        statuses = dict(world.conn.execute(
            "SELECT status, count(*) FROM documents WHERE workspace_id = %s GROUP BY status",
            (world.workspace_id,)).fetchall())
        pages = world.conn.execute("SELECT count(*) FROM document_pages").fetchone()[0]
        chunks = world.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return {"kind": kind, "seconds": elapsed, "extract_s": t1 - t0, "index_s": elapsed - (t1 - t0), "docs": len(docs), "pages": pages, "chunks": chunks,
                "requests": requests, "rss_mb": max(rss1, rss2) / 1e6, "statuses": statuses}
    finally:
        world.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=60)
    ap.add_argument("--pdf-dir")
    ap.add_argument("--only", choices=["rq-worker", "reference"])
    args = ap.parse_args()
    if not os.environ.get("RQ_WORKER_BIN"):
        release = REPO / "target" / "release" / "rq-worker"
        if release.exists():
            os.environ["RQ_WORKER_BIN"] = str(release)
    docs = corpus(args)
    print(f"{len(docs)} PDFs, {sum(d[2] for d in docs)} pages; worker binary {rq_worker_bin()}")
    gen = start_services(Path(tempfile.mkdtemp(prefix="rqw-ingest-bench-")))
    services = next(gen)
    try:
        results = []
        for kind in (["reference", "rq-worker"] if not args.only else [args.only]):
            r = run(services, kind, docs)
            results.append(r)
            print(f"{kind:>10}: {r['docs'] / r['seconds']:7.2f} documents/s  {r['pages'] / r['seconds']:8.1f} pages/s  "
                  f"{r['chunks']} chunks  {r['requests']} embedding requests  peak RSS {r['rss_mb']:.0f} MB  "
                  f"({r['seconds']:.1f} s: extract {r['extract_s']:.1f}, index {r['index_s']:.1f})  "
                  f"statuses {r['statuses']}")
        if len(results) == 2:
            ref, ours = results
            print(f"     ratio: {ref['seconds'] / ours['seconds']:.1f}x documents/s, "
                  f"{ref['requests'] / max(1, ours['requests']):.1f}x fewer requests, "
                  f"{ref['rss_mb'] / max(1e-9, ours['rss_mb']):.1f}x less memory")
    finally:
        for _ in gen:
            pass


if __name__ == "__main__":
    main()
