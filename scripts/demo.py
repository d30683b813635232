"""The platform's side of scripts/demo.sh: upload PDFs as the API does, enqueue them with Python RQ,
wait for the workers, report. Run by scripts/demo.sh with the demo venv (rq 1.16.2, psycopg).

    demo.py upload PDF_DIR STATE.json   workspace + one `documents` row per PDF (pending_upload), the object
                                        uploaded to the Storage stand-in, status `uploaded`, then
                                        Queue("ingest_extract").enqueue("jobs.ingest_extract.ingest_extract", ...)
    demo.py wait STATE.json [TIMEOUT]   until every document is terminal and both queues are drained
    demo.py report STATE.json           each document's status, page/chunk/embedding counts, RQ job states

Environment: DATABASE_URL, REDIS_URL, SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, EMBEDDINGS_URL (stand-in root).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psycopg
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from make_pdf_set import read_manifest  # noqa: E402

TERMINAL = ("ready", "indexed", "failed")
BUCKET = os.environ.get("SUPABASE_STORAGE_BUCKET", "documents")


def db():
    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def redis():
    return Redis.from_url(os.environ["REDIS_URL"])


def storage_put(storage_path: str, data: bytes) -> None:
    """What the browser's signed upload leaves behind: the object in the bucket."""
    key = os.environ["SUPABASE_SERVICE_ROLE_KEY"]
    url = f"{os.environ['SUPABASE_URL']}/storage/v1/object/{urllib.parse.quote(BUCKET, safe='')}/" \
          f"{urllib.parse.quote(storage_path, safe='/')}"
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "apikey": key, "Authorization": f"Bearer {key}", "Content-Type": "application/pdf"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def upload(pdf_dir: str, state_file: str) -> None:
    rows = read_manifest(Path(pdf_dir))
    conn = db()
    workspace_id = str(uuid.uuid4())
    conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'rq-worker demo')", (workspace_id,))
    queue = Queue("ingest_extract", connection=redis())
    docs = []
    for r in rows:
        data = (Path(pdf_dir) / r["file"]).read_bytes()
        document_id = str(uuid.uuid4())
        storage_path = f"{workspace_id}/{document_id}/{r['file']}"
        # upload-prepare: the row, before the bytes arrive
        conn.execute(
            "INSERT INTO documents (id, workspace_id, filename, file_size_bytes, file_hash_sha256, storage_path, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'pending_upload')",
            (document_id, workspace_id, r["file"], len(data), hashlib.sha256(data).hexdigest(), storage_path))
        storage_put(storage_path, data)
        # upload-complete: status, then the extract job, exactly as the API enqueues it
        conn.execute("UPDATE documents SET status = 'uploaded', updated_at = now() WHERE id = %s", (document_id,))
        job = queue.enqueue("jobs.ingest_extract.ingest_extract", workspace_id=workspace_id,
                            document_id=document_id, bucket=BUCKET, storage_path=storage_path)
        docs.append({"document_id": document_id, "file": r["file"], "pages": r["pages"], "bytes": r["bytes"],
                     "source": r["source"], "expect": r["expect"], "extract_job": job.id})
        print(f"  uploaded {r['file']:<38} {r['pages']:>3} pages {r['bytes'] / 1024:>6.0f} KiB  "
              f"-> job {job.id} on ingest_extract")
    Path(state_file).write_text(json.dumps({"workspace_id": workspace_id, "documents": docs}, indent=1))


def wait(state_file: str, timeout: float = 900) -> None:
    state = json.loads(Path(state_file).read_text())
    ids = [d["document_id"] for d in state["documents"]]
    conn, r = db(), redis()
    queues = [Queue(n, connection=r) for n in ("ingest_extract", "ingest_index")]
    end = time.time() + timeout
    last = None
    while True:
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM documents WHERE id = ANY(%s::uuid[]) GROUP BY status ORDER BY status",
            (ids,)).fetchall())
        queued = [q.count for q in queues]
        started = [StartedJobRegistry(queue=q).count for q in queues]
        line = (f"  documents {dict(sorted(statuses.items()))}  queued extract/index {queued[0]}/{queued[1]}  "
                f"running {started[0]}/{started[1]}")
        if line != last:
            print(line, flush=True)
            last = line
        done = sum(n for s, n in statuses.items() if s in TERMINAL)
        if done == len(ids) and not any(queued) and not any(started):
            return
        if time.time() > end:
            sys.exit(f"demo: gave up after {timeout:.0f} s")
        time.sleep(0.25)


def index_jobs(r) -> dict[str, Job]:
    """document_id -> the index job the extract job enqueued (finished or failed)."""
    q = Queue("ingest_index", connection=r)
    ids = FinishedJobRegistry(queue=q).get_job_ids() + FailedJobRegistry(queue=q).get_job_ids()
    out = {}
    for job in Job.fetch_many(ids, connection=r):
        if job is not None:
            out[str(job.kwargs.get("document_id") or (job.args[0] if job.args else ""))] = job
    return out


def report(state_file: str) -> None:
    state = json.loads(Path(state_file).read_text())
    conn, r = db(), redis()
    by_index = index_jobs(r)
    print(f"{'document':<38} {'status':<7} {'pages':>5} {'chunks':>6} {'embeddings':>10}  "
          f"{'extract job':<11} {'index job':<9}  note")
    ok = True
    for d in state["documents"]:
        status, page_count, error = conn.execute(
            "SELECT status, page_count, error_message FROM documents WHERE id = %s", (d["document_id"],)).fetchone()
        pages, chunks, embeddings = conn.execute(
            "SELECT (SELECT count(*) FROM document_pages WHERE document_id = %(d)s), "
            "(SELECT count(*) FROM chunks WHERE document_id = %(d)s), "
            "(SELECT count(*) FROM chunk_embeddings WHERE document_id = %(d)s)", {"d": d["document_id"]}).fetchone()
        ext = Job.fetch(d["extract_job"], connection=r)
        idx = by_index.get(d["document_id"])
        note = ""
        if error:
            note = f"error_message: {error[:90]}"
        elif idx is not None and idx.return_value() is not None:
            rv = idx.return_value()
            note = f"return_value: chunks_total={rv.get('chunks_total')} tokens={rv.get('embedding_tokens_used')}"
        if d["expect"] == "failed":
            note = f"(expected: {d['pages']} pages > MAX_PDF_PAGE_COUNT) " + note
        print(f"{d['file']:<38} {status:<7} {pages:>5} {chunks:>6} {embeddings:>10}  "
              f"{ext.get_status():<11} {(idx.get_status() if idx else '-'):<9}  {note}")
        if (status in ("ready", "indexed")) != (d["expect"] == "ready"):
            ok = False
    used, reserved = conn.execute(
        "SELECT coalesce(sum(tokens_used), 0), coalesce(sum(tokens_reserved), 0) FROM workspace_daily_usage "
        "WHERE workspace_id = %s", (state["workspace_id"],)).fetchone()
    total_chunks = conn.execute("SELECT count(*) FROM chunks WHERE workspace_id = %s",
                                (state["workspace_id"],)).fetchone()[0]
    try:
        with urllib.request.urlopen(os.environ["EMBEDDINGS_URL"] + "/__stats", timeout=5) as resp:
            stats = json.loads(resp.read())
    except Exception:  # noqa: BLE001
        stats = {}
    print(f"workspace_daily_usage: tokens_used={used} tokens_reserved={reserved}; "
          f"{total_chunks} chunks embedded in {stats.get('requests', '?')} embedding requests "
          f"({stats.get('inputs', '?')} inputs)")
    if not ok:
        sys.exit("demo: some documents did not end as expected")


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "upload":
        upload(*args)
    elif cmd == "wait":
        wait(args[0], float(args[1]) if len(args) > 1 else 900)
    elif cmd == "report":
        report(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
