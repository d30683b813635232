"""Ingestion benchmark (issue 4; a benchmark, not a test: it asserts nothing about time).

The same real PDFs go through
  (a) the Python reference of the platform's jobs (python-fixtures/reference_worker: pypdf, one embedding
      request per chunk) under Python RQ 1.16's forking `rq worker`, deployed as the platform does:
      5 processes on ingest_extract + 3 on ingest_index;
  (b) rq-worker, one process per queue: `rq-worker ingest_extract -c 5`, `rq-worker ingest_index -c 12`
      (threads are cheap, and more index jobs in flight fill shared embedding requests better);
with the same Storage and embeddings stand-ins (no injected latency), the same PostgreSQL 18 + pgvector
database (dropped and recreated with python-fixtures/schema.sql before each run) and a private Redis
(flushed before each run). Per run: the workers are started and registered, then every document is
uploaded-and-enqueued as the platform's API does, and the clock runs until every document is in a final
status and both queues and started registries are empty. Printed per worker: documents/s, pages/s (input
pages), chunks, embedding requests (counted by the stand-in), peak RSS summed over the worker processes
and their forked work horses (sampled from /proc every 50 ms), final statuses; then the ratios.

    python bench/ingest_bench.py [--docs 240] [--corpus DIR] [--only rq-worker|reference] [--shared]

--shared adds a third run: one rq-worker process on both queues (`ingest_index ingest_extract -c 12`).

The PDF set comes from the corpus of ../shared/corpus/pdf-corpus.sh (downloaded into --corpus when
that folder holds no PDFs yet): files of at most 10 pages as they are, longer ones cut into 2-10-page
documents with pypdf (bench/make_pdf_set.py), cached under target/bench-pdfs/. Python side: the demo venv
(scripts/python-envs.sh demo); worker: RQ_WORKER_BIN, else target/release/rq-worker.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import json
from pathlib import Path

import psycopg
from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "python-fixtures"
sys.path.insert(0, str(REPO / "bench"))
from make_pdf_set import read_manifest  # noqa: E402

# shared/ sits beside the repository (../shared from its root).
CORPUS_SCRIPT = str(REPO.parent / "shared" / "corpus" / "pdf-corpus.sh")
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
# A JWT-shaped test key, as real service-role keys are (supabase-py's create_client, used by the reference
# worker, rejects anything else); HS256 over a made-up secret, payload {"iss": "rq-worker-ingest-bench", ...}.
STORAGE_KEY = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJycS13b3JrZXItaW5nZXN0LWJlbmNoIiwicm9sZSI6InNlcnZpY2Vf"
               "cm9sZSIsImlhdCI6MTc2NzIyNTYwMCwiZXhwIjoyMDgyNzU4NDAwfQ.yGlxguzrZ3n1nx99BDVGlq-HLmUllRZx_INldmVEJJk")
OPENAI_KEY = "sk-bench"
BUCKET = "documents"
TERMINAL = ("ready", "indexed", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the PDF set ---------------------------------------------------------------------------------------
def pdf_set(args) -> Path:
    out = REPO / "target" / "bench-pdfs" / f"docs{args.docs}-seed{args.seed}"
    if (out / "manifest.tsv").exists():
        return out
    corpus = Path(args.corpus)
    if not list(corpus.glob("*.pdf")):
        print(f"fetching the PDF corpus into {corpus} with {args.corpus_script} (~300 MB of .deb/.tar.gz)")
        subprocess.run(["bash", args.corpus_script, str(corpus)], check=True)
    subprocess.run([sys.executable, str(REPO / "bench" / "make_pdf_set.py"), "corpus", str(corpus), str(out),
                    "--docs", str(args.docs), "--seed", str(args.seed)], check=True)
    return out


# -- services -----------------------------------------------------------------------------------------
class Services:
    """Private redis-server, PostgreSQL 18 + pgvector (scripts/pg.sh), Storage and embeddings stand-ins."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[subprocess.Popen] = []
        port = free_port()
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(base)], stdout=subprocess.DEVNULL))
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis = Redis.from_url(self.redis_url)
        for _ in range(100):
            try:
                self.redis.ping()
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        self.pg_dir = base / "pg"
        out = subprocess.run(["bash", str(REPO / "scripts" / "pg.sh"), "start", str(self.pg_dir), "--watch",
                              str(os.getpid())], capture_output=True, text=True,
                             env={**os.environ, "PYTHON": sys.executable}, check=True).stdout
        pg = dict(line.split("=", 1) for line in out.split() if "=" in line)
        self.postmaster = int((self.pg_dir / "data" / "postmaster.pid").read_text().split()[0])
        self.pg_admin = f"postgresql://postgres@127.0.0.1:{pg['PGPORT']}"
        self.db_url = f"{self.pg_admin}/enterprise_rag"
        self.storage_root = base / "storage"
        self.storage_root.mkdir()
        self.storage_url = self._stand_in("storage_server.py", "--root", str(self.storage_root), "--key", STORAGE_KEY)
        self.embeddings_url = self._stand_in("embeddings_server.py", "--key", OPENAI_KEY)
        self.component_pids = {"redis": [self.procs[0].pid], "postgres": [self.postmaster],
                               "storage stand-in": [self.procs[1].pid], "embeddings stand-in": [self.procs[2].pid]}

    def _stand_in(self, script: str, *args: str) -> str:
        p = subprocess.Popen([sys.executable, str(FIXTURES / "stand_ins" / script), *args,
                              "--parent-pid", str(os.getpid())], stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()
        if not line.startswith("PORT="):
            raise RuntimeError(f"{script} did not start: {line!r}")
        return f"http://127.0.0.1:{line.strip().split('=', 1)[1]}"

    def embeddings_stats(self, reset: bool = False) -> dict:
        req = urllib.request.Request(self.embeddings_url + ("/__reset" if reset else "/__stats"),
                                     data=b"{}" if reset else None, method="POST" if reset else "GET")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    drop_vector_index = False

    def reset_database(self) -> psycopg.Connection:
        with psycopg.connect(self.pg_admin + "/postgres", autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS enterprise_rag WITH (FORCE)")
            c.execute("CREATE DATABASE enterprise_rag")
        conn = psycopg.connect(self.db_url, autocommit=True)
        conn.execute((FIXTURES / "schema.sql").read_text())
        if self.drop_vector_index:
            conn.execute("DROP INDEX idx_chunk_embeddings_vector")
        return conn

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["bash", str(REPO / "scripts" / "pg.sh"), "stop", str(self.pg_dir)], check=False,
                       env={**os.environ, "PYTHON": sys.executable}, capture_output=True)


def tiktoken_cache() -> str:
    """TIKTOKEN_CACHE_DIR with cl100k_base for the reference worker, from the tiktoken-rs crate (no download),
    so both workers chunk with the same tokenizer."""
    cache = Path(tempfile.gettempdir()) / "rqw-tiktoken-cache"
    target = cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not target.exists():
        cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
        found = sorted(glob.glob(f"{cargo_home}/registry/src/*/tiktoken-rs-*/assets/cl100k_base.tiktoken"))
        if not found:
            sys.exit("cl100k_base.tiktoken not found in the cargo registry: run `cargo fetch` first")
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[-1], target)
    return str(cache)


# -- peak RSS from /proc ------------------------------------------------------------------------------
PAGE = os.sysconf("SC_PAGE_SIZE")


def process_tree_rss(roots: list[int]) -> int:
    """Summed RSS of the roots and all their descendants (forked work horses included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    return total


TICK = os.sysconf("SC_CLK_TCK")


def process_tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system) of the roots and their live descendants, plus what their reaped children
    used (cutime/cstime): forked work horses and closed PostgreSQL backends included."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        f = stats[pid]
        total += sum(int(v) for v in f[11:15])  # utime stime cutime cstime
        todo.extend(children.get(pid, []))
    return total / TICK


class RssSampler(threading.Thread):
    def __init__(self, roots: list[int], period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.roots, self.period = roots, period
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, process_tree_rss(self.roots))
            time.sleep(self.period)


# -- one run ------------------------------------------------------------------------------------------
def index_phases(log: Path) -> dict | None:
    """Summed per-document index phases from rq-worker's debug lines (thread-milliseconds)."""
    import re

    pat = re.compile(r"read\+chunk (\d+) ms, embed (\d+) ms, write (\d+) ms")
    sums, n = [0, 0, 0], 0
    for line in log.read_text(errors="replace").splitlines():
        m = pat.search(line)
        if m:
            n += 1
            for i in range(3):
                sums[i] += int(m.group(i + 1))
    return {"documents": n, "read+chunk": sums[0] / 1000, "embed": sums[1] / 1000, "write": sums[2] / 1000} if n else None


# rq-worker's concurrency per run (flags --extract-concurrency, --index-concurrency, --shared-concurrency).
CONCURRENCY = {"extract": 5, "index": 12, "shared": 12}


def worker_commands(kind: str, redis_url: str, bin_path: str) -> list[list[str]]:
    if kind == "reference":
        rq = str(Path(sys.executable).parent / "rq")
        return ([[rq, "worker", "--url", redis_url, "ingest_extract"]] * 5
                + [[rq, "worker", "--url", redis_url, "ingest_index"]] * 3)
    if kind == "rq-worker-shared":
        return [[bin_path, "--url", redis_url, "ingest_index", "ingest_extract",
                 "--concurrency", str(CONCURRENCY["shared"])]]
    return [[bin_path, "--url", redis_url, "ingest_extract", "--concurrency", str(CONCURRENCY["extract"])],
            [bin_path, "--url", redis_url, "ingest_index", "--concurrency", str(CONCURRENCY["index"])]]


def run(kind: str, svc: Services, pdf_dir: Path, docs: list[dict], bin_path: str, log_dir: Path,
        timeout: float) -> dict:
    load = os.getloadavg()[0]
    conn = svc.reset_database()
    svc.redis.flushdb()
    svc.embeddings_stats(reset=True)
    workspace_id = str(uuid.uuid4())
    conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'ingest bench')", (workspace_id,))
    rows = []
    for d in docs:
        data = (pdf_dir / d["file"]).read_bytes()
        document_id = str(uuid.uuid4())
        storage_path = f"{workspace_id}/{document_id}/{d['file']}"
        target = svc.storage_root / BUCKET / storage_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        rows.append((document_id, workspace_id, d["file"], len(data), hashlib.sha256(data).hexdigest(), storage_path))
    conn.cursor().executemany(
        "INSERT INTO documents (id, workspace_id, filename, file_size_bytes, file_hash_sha256, storage_path, status) "
        "VALUES (%s, %s, %s, %s, %s, %s, 'uploaded')", rows)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQ_", "SUPABASE_", "OPENAI_"))}
    env.update({
        "DATABASE_URL": svc.db_url, "REDIS_URL": svc.redis_url,
        "SUPABASE_URL": svc.storage_url, "SUPABASE_SERVICE_ROLE_KEY": STORAGE_KEY,
        "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": svc.embeddings_url + "/v1",
        "DAILY_TOKEN_LIMIT": "1000000000", "TIKTOKEN_CACHE_DIR": tiktoken_cache(),
    })
    if kind == "reference":
        env["PYTHONPATH"] = str(FIXTURES / "reference_worker")
    else:
        env["RUST_LOG"] = "info,rq_worker::jobs::ingest::index=debug"  # per-document phase times
    cmds = worker_commands(kind, svc.redis_url, bin_path)
    procs = []
    for i, cmd in enumerate(cmds):
        log = open(log_dir / f"{kind}-{i}.log", "w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    sampler = RssSampler([p.pid for p in procs])
    sampler.start()
    try:
        # wait for the 8 RQ workers (8 processes, or 2 processes x 5 + 3 threads) to register
        end = time.time() + 60
        while svc.redis.scard("rq:workers") < 8:
            if time.time() > end or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{kind} workers did not start; see {log_dir}")
            time.sleep(0.05)
        queue = Queue("ingest_extract", connection=svc.redis)
        components = {"workers": [p.pid for p in procs], **svc.component_pids}
        cpu0 = {k: process_tree_cpu(v) for k, v in components.items()}
        t0 = time.perf_counter()
        for document_id, workspace_id, _, _, _, storage_path in rows:
            queue.enqueue("jobs.ingest_extract.ingest_extract", workspace_id=workspace_id,
                          document_id=document_id, bucket=BUCKET, storage_path=storage_path)
        queues = [queue, Queue("ingest_index", connection=svc.redis)]
        ids = [r[0] for r in rows]
        last_print = 0.0
        while True:
            statuses = dict(conn.execute(
                "SELECT status, count(*) FROM documents WHERE id = ANY(%s::uuid[]) GROUP BY status", (ids,)).fetchall())
            final = sum(n for s, n in statuses.items() if s in TERMINAL)
            if (final == len(ids) and not any(q.count for q in queues)
                    and not any(StartedJobRegistry(queue=q).count for q in queues)):
                elapsed = time.perf_counter() - t0
                cpu = {k: process_tree_cpu(v) - cpu0[k] for k, v in components.items()}
                break
            now = time.perf_counter()
            if now - t0 > timeout:
                raise RuntimeError(f"{kind}: not done after {timeout:.0f} s: {statuses}")
            if now - last_print > 30:
                print(f"  {kind}: {now - t0:5.0f} s, {final}/{len(ids)} documents final", flush=True)
                last_print = now
            time.sleep(0.05)
    finally:
        sampler.done.set()
        sampler.join()
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    stats = svc.embeddings_stats()
    pages_stored, chunks, embeddings = conn.execute(
        "SELECT (SELECT count(*) FROM document_pages), (SELECT count(*) FROM chunks), "
        "(SELECT count(*) FROM chunk_embeddings)").fetchone()
    failures = conn.execute("SELECT filename, error_message FROM documents WHERE status = 'failed' "
                            "ORDER BY filename").fetchall()
    per_doc_bound = sum(math.ceil(n / 32) for (n,) in conn.execute(
        "SELECT count(*) FROM chunks GROUP BY document_id").fetchall())
    conn.close()
    return {"kind": kind, "seconds": elapsed, "docs": len(docs), "pages": sum(d["pages"] for d in docs),
            "pages_stored": pages_stored, "chunks": chunks, "embeddings": embeddings,
            "requests": stats.get("requests", 0), "inputs": stats.get("inputs", 0), "per_doc_bound": per_doc_bound,
            "rss_mb": sampler.peak / 2**20, "statuses": dict(sorted(statuses.items())), "failures": failures, "load": load,
            "cpu": cpu, "phases": index_phases(log_dir / f"{kind}-{len(procs) - 1}.log") if kind != "reference" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=240, help="documents in the set (default 240)")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--corpus", default=str(REPO / "target" / "pdf-corpus"),
                    help="folder of the pdf-corpus.sh PDFs (fetched there when empty)")
    ap.add_argument("--corpus-script", default=CORPUS_SCRIPT)
    ap.add_argument("--only", choices=["rq-worker", "reference"])
    ap.add_argument("--shared", action="store_true",
                    help="also run one rq-worker process on both queues (ingest_index first), --shared-concurrency")
    ap.add_argument("--drop-vector-index", action="store_true",
                    help="diagnostic, not the platform's schema: no HNSW index on chunk_embeddings.embedding")
    ap.add_argument("--extract-concurrency", type=int, default=CONCURRENCY["extract"],
                    help="rq-worker ingest_extract --concurrency (default %(default)s)")
    ap.add_argument("--index-concurrency", type=int, default=CONCURRENCY["index"],
                    help="rq-worker ingest_index --concurrency (default %(default)s)")
    ap.add_argument("--shared-concurrency", type=int, default=CONCURRENCY["shared"],
                    help="--concurrency of the --shared run (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=3600, help="give up a run after this many seconds")
    args = ap.parse_args()
    CONCURRENCY.update(extract=args.extract_concurrency, index=args.index_concurrency, shared=args.shared_concurrency)

    bin_path = os.environ.get("RQ_WORKER_BIN") or str(REPO / "target" / "release" / "rq-worker")
    if not os.path.exists(bin_path):
        sys.exit(f"{bin_path} not found: cargo build --release (or set RQ_WORKER_BIN)")
    pdf_dir = pdf_set(args)
    docs, seen = [], set()
    for d in read_manifest(pdf_dir):  # sets made before duplicates were dropped may hold the same bytes twice
        digest = hashlib.sha256((pdf_dir / d["file"]).read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            docs.append(d)
    sources = len({d["source"] for d in docs})
    print(f"{len(docs)} real PDFs from {sources} corpus files, {sum(d['pages'] for d in docs)} pages "
          f"({pdf_dir}); worker {bin_path}")
    log_dir = REPO / "target" / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="rqw-ingest-bench-"))
    os.chmod(base, 0o755)  # PostgreSQL runs as a non-root user when we are root
    svc = Services(base)
    svc.drop_vector_index = args.drop_vector_index
    if args.drop_vector_index:
        print("diagnostic run: chunk_embeddings has no HNSW index (not the platform's schema)")
    results = []
    try:
        kinds = [args.only] if args.only else ["reference", "rq-worker"]
        if args.shared:
            kinds.append("rq-worker-shared")
        for kind in kinds:
            print(f"running {kind} ...", flush=True)
            results.append(run(kind, svc, pdf_dir, docs, bin_path, log_dir, args.timeout))
    finally:
        svc.close()
        shutil.rmtree(base, ignore_errors=True)

    c = CONCURRENCY
    label = {"reference": "Python rq worker (5+3 processes)",
             "rq-worker": f"rq-worker (-c {c['extract']}, -c {c['index']})",
             "rq-worker-shared": f"rq-worker, one process on both queues (-c {c['shared']})"}
    print()
    print(f"| worker | documents/s | pages/s | seconds | chunks | embedding requests | peak RSS | final statuses |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        st = ", ".join(f"{k} {v}" for k, v in r["statuses"].items())
        print(f"| {label[r['kind']]} | {r['docs'] / r['seconds']:.2f} | {r['pages'] / r['seconds']:.1f} | "
              f"{r['seconds']:.1f} | {r['chunks']} | {r['requests']} | {r['rss_mb']:.0f} MB | {st} |")
    if len(results) >= 2 and results[0]["kind"] == "reference":
        ref, ours = results[0], results[1]
        print(f"| ratio | {ref['seconds'] / ours['seconds']:.1f}x | {ref['seconds'] / ours['seconds']:.1f}x | | | "
              f"{ref['requests'] / max(1, ours['requests']):.1f}x fewer | "
              f"{ref['rss_mb'] / max(1e-9, ours['rss_mb']):.1f}x less | |")
    print()
    for r in results:
        print(f"{label[r['kind']]}: {r['pages_stored']} pages stored, {r['embeddings']} embeddings, "
              f"{r['requests']} requests carrying {r['inputs']} inputs; chunks/32 = {r['chunks'] / 32:.1f}, "
              f"sum over documents of ceil(chunks/32) = {r['per_doc_bound']}")
    for r in results:
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu"].items())
        print(f"{label[r['kind']]}: CPU seconds during the run: {cpu} (wall {r['seconds']:.1f} s, "
              f"{os.cpu_count()} cores, load average before {r['load']:.1f})")
        if r["phases"]:
            ph = r["phases"]
            print(f"  index jobs ({ph['documents']} documents), thread-seconds: read+chunk {ph['read+chunk']:.1f}, "
                  f"embed {ph['embed']:.1f}, write {ph['write']:.1f}")
    for r in results:
        for name, error in r["failures"]:
            print(f"  {r['kind']} failed {name}: {(error or '').splitlines()[0][:150] if error else ''}")


if __name__ == "__main__":
    main()
