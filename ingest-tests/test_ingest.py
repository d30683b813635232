"""End-to-end ingestion through Redis: enqueue as the platform's API does (Python RQ 1.16), run the worker
in burst mode on ingest_extract then ingest_index, check rows, statuses, budget totals and RQ job states.

The worker is rq-worker unless INGEST_WORKER=reference (the Python reference under `rq worker`); tests
marked rq_worker_only check behaviour where rq-worker deliberately does better than the original.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job

from conftest import FIXTURES, rq_worker_bin, worker_kind
from pdfs import raw_pdf, report, text_stream, words

rq_worker_only = pytest.mark.skipif(worker_kind() != "rq-worker", reason="rq-worker behaviour, not the original's")


def finished(job: Job):
    job.refresh()
    assert job.get_status() == "finished", job.exc_info
    return job.return_value()


def failed(job: Job) -> str:
    job.refresh()
    assert job.get_status() == "failed", job.get_status()
    result = job.latest_result()
    exc = (result.exc_string if result is not None else None) or ""
    assert exc.strip(), "failed job without exc_info"
    return exc.strip().splitlines()[-1]


def test_happy_path_three_documents(world):
    docs = []
    for seed, pages in ((1, 1), (2, 3), (3, 10)):
        doc, path = world.upload(f"report-{seed}.pdf", report(seed, pages))
        docs.append((doc, pages, world.enqueue_extract(doc, path)))

    world.work("ingest_extract")
    index_jobs = Queue("ingest_index", connection=world.redis).jobs
    assert len(index_jobs) == 3
    for doc, pages, job in docs:
        out = finished(job)
        assert out == {"document_id": doc, "pages_total": pages, "status": "indexing"}
        assert world.document(doc) == {"status": "indexing", "error_message": None, "page_count": pages}
        assert world.count("document_pages", doc) == pages
    chained = {j.kwargs["document_id"]: j for j in index_jobs}
    for doc, _, _ in docs:
        j = chained[doc]
        assert j.func_name == "jobs.ingest_index.ingest_index"
        assert j.args == () or j.args == []
        assert j.kwargs == {"workspace_id": world.workspace_id, "document_id": doc}
        assert j.origin == "ingest_index"

    world.work("ingest_index")
    total = 0
    for doc, pages, _ in docs:
        out = finished(chained[doc])
        chunks = world.chunks(doc)
        assert chunks and len(chunks) >= pages
        assert world.document(doc)["status"] == "ready"
        assert world.count("chunk_embeddings", doc) == len(chunks)
        assert all(c[1] == c[2] for c in chunks)
        tokens = sum(c[5] for c in chunks)
        assert out == {"document_id": doc, "status": "ready", "chunks_total": len(chunks),
                       "embeddings_total": len(chunks), "embedding_tokens_used": tokens}
        total += tokens
    assert world.usage() == (total, 0)


@rq_worker_only
def test_progress_meta_and_chained_timeout(world):
    doc, path = world.upload("a.pdf", report(5, 2))
    job = world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    finished(job)
    assert job.meta.get("pages_total") == 2
    (index_job,) = Queue("ingest_index", connection=world.redis).jobs
    assert index_job.timeout == 1800
    world.work("ingest_index")
    finished(index_job)
    assert index_job.meta.get("chunks_total") == world.count("chunks", doc)
    assert index_job.meta.get("chunks_embedded") == world.count("chunks", doc)
    # Batched: one request for this document's chunks.
    assert world.embeddings.stats()["requests"] == 1


def test_rerun_is_idempotent(world):
    doc, path = world.upload("a.pdf", report(6, 2))
    world.enqueue_extract(doc, path)
    world.ingest()
    first = [(c[0], c[3]) for c in world.chunks(doc)]
    used1, _ = world.usage()
    # The platform's retry/reindex paths: status back to uploaded, extract again.
    world.conn.execute("UPDATE documents SET status = 'uploaded' WHERE id = %s", (doc,))
    world.enqueue_extract(doc, path)
    world.ingest()
    assert [(c[0], c[3]) for c in world.chunks(doc)] == first
    assert world.count("document_pages", doc) == 2
    assert world.count("chunk_embeddings", doc) == len(first)
    assert world.usage() == (2 * used1, 0)


def assert_failed_cleanly(world, doc: str, message_part: str, *, pages: int = 0) -> None:
    d = world.document(doc)
    assert d["status"] == "failed"
    assert message_part in (d["error_message"] or ""), d
    assert len(d["error_message"]) <= 2000
    assert world.count("chunks", doc) == 0
    assert world.count("chunk_embeddings", doc) == 0
    assert world.count("document_pages", doc) == pages
    assert world.usage()[1] == 0


def test_missing_storage_object(world):
    doc, _ = world.upload("a.pdf", report(7, 1))
    job = world.enqueue_extract(doc, f"{world.workspace_id}/{doc}/missing.pdf")
    world.work("ingest_extract")
    assert "Supabase storage download failed (404)" in failed(job)
    assert_failed_cleanly(world, doc, "Supabase storage download failed (404)")
    assert Queue("ingest_index", connection=world.redis).count == 0


def test_corrupt_pdf(world):
    doc, path = world.upload("bad.pdf", b"%PDF-1.7\n this is not a PDF at all")
    job = world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    failed(job)
    d = world.document(doc)
    assert d["status"] == "failed" and d["error_message"]


@rq_worker_only
def test_page_limit_checked_before_extraction(world):
    doc, path = world.upload("long.pdf", report(8, 11, words_per_page=20))
    job = world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    assert failed(job) == "ValueError: PDF has 11 pages; at most 10 are allowed (MAX_PDF_PAGE_COUNT)"
    assert_failed_cleanly(world, doc, "MAX_PDF_PAGE_COUNT")
    assert world.document(doc)["page_count"] is None


@rq_worker_only
def test_nul_characters_do_not_lose_the_document(world):
    pdf = raw_pdf([text_stream(b"alpha\x00beta " + words(9, 40).encode())])
    doc, path = world.upload("nul.pdf", pdf)
    world.enqueue_extract(doc, path)
    world.ingest()
    assert world.document(doc)["status"] == "ready"
    content = world.conn.execute("SELECT content FROM document_pages WHERE document_id = %s", (doc,)).fetchone()[0]
    assert "\x00" not in content and "alpha" in content


def test_original_weaknesses_in_the_reference(make_world):
    """What rq-worker fixes: the original loses NUL documents and >10-page ones at the database."""
    w = make_world("reference")
    doc_nul, path_nul = w.upload("nul.pdf", raw_pdf([text_stream(b"alpha\x00beta")]))
    doc_long, path_long = w.upload("long.pdf", report(10, 11, words_per_page=10))
    j1 = w.enqueue_extract(doc_nul, path_nul)
    j2 = w.enqueue_extract(doc_long, path_long)
    w.work("ingest_extract")
    failed(j1)
    failed(j2)
    assert "NUL" in w.document(doc_nul)["error_message"]
    assert "chk_page_count" in w.document(doc_long)["error_message"]


@rq_worker_only
def test_file_too_large(world):
    world.env_overrides["MAX_FILE_SIZE_BYTES"] = "1000"
    doc, path = world.upload("big.pdf", report(11, 3))
    job = world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    assert "MAX_FILE_SIZE_BYTES is 1000" in failed(job)
    assert_failed_cleanly(world, doc, "File too large")


@rq_worker_only
def test_no_text(world):
    doc, path = world.upload("blank.pdf", raw_pdf([b"0 0 m 10 10 l S"]))
    job = world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    assert "MIN_EXTRACTED_TEXT_CHARS" in failed(job)
    assert_failed_cleanly(world, doc, "MIN_EXTRACTED_TEXT_CHARS")


def test_index_wrong_status_and_missing_document(world):
    doc, _ = world.upload("a.pdf", report(12, 1))
    world.conn.execute("UPDATE documents SET status = 'ready' WHERE id = %s", (doc,))
    job = world.enqueue_index(doc)
    q = Queue("ingest_index", connection=world.redis)
    ghost = q.enqueue("jobs.ingest_index.ingest_index", workspace_id=world.workspace_id,
                      document_id="00000000-0000-4000-8000-000000000000")
    world.work("ingest_index")
    assert failed(job).endswith("Document status must be indexing or uploaded (got: ready)")
    assert world.document(doc)["status"] == "failed"
    assert failed(ghost).endswith("Document not found for workspace")


def test_budget_exhausted(world):
    world.env_overrides["DAILY_TOKEN_LIMIT"] = "300"
    doc, path = world.upload("a.pdf", report(13, 3))
    world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    (job,) = Queue("ingest_index", connection=world.redis).jobs
    world.work("ingest_index")
    assert "Daily token limit reached for this workspace" in failed(job)
    d = world.document(doc)
    assert d["status"] == "failed" and d["error_message"] == "Insufficient token budget for embeddings"
    used, reserved = world.usage()
    assert reserved == 0 and used <= 300
    if world.kind == "rq-worker":
        assert world.count("chunks", doc) == 0


def test_embeddings_down(world):
    world.embeddings.faults([{"status": 503}])
    doc, path = world.upload("a.pdf", report(14, 2))
    world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    (job,) = Queue("ingest_index", connection=world.redis).jobs
    world.work("ingest_index")
    failed(job)
    d = world.document(doc)
    assert d["status"] == "failed" and "503" in d["error_message"]
    assert world.usage() == (0, 0)
    assert world.count("chunk_embeddings", doc) == 0


def test_cleanup_stale_reservations_job(world, tmp_path):
    world.conn.execute(
        "INSERT INTO workspace_daily_usage (workspace_id, date, tokens_used, tokens_reserved, updated_at) "
        "VALUES (%s, current_date, 5, 40, now() - interval '1 hour')", (world.workspace_id,))
    q = Queue("maintenance", connection=world.redis)
    job = q.enqueue("jobs.maintenance.cleanup_stale_reservations")
    world.work("maintenance")
    assert finished(job) == 1
    assert world.usage() == (5, 0)

    db = tmp_path / "dev.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE workspace_daily_usage (workspace_id TEXT, date TEXT, tokens_used INT, "
                  "tokens_reserved INT, created_at DATETIME, updated_at DATETIME)")
        c.execute("INSERT INTO workspace_daily_usage VALUES ('w', '2026-01-01', 1, 9, datetime('now', '-1 day'), "
                  "datetime('now', '-1 day'))")
    world.env_overrides["DATABASE_URL"] = f"sqlite:///{db}"
    job = q.enqueue("jobs.maintenance.cleanup_stale_reservations")
    world.work("maintenance")
    assert finished(job) == 1


def test_differential_chunks_and_budget_match_the_reference(make_world):
    """Same pages in, same chunks, hashes, token counts, statuses and budget totals out."""
    ours = make_world("rq-worker")
    theirs = make_world("reference")
    docs = []
    for seed, pages in ((21, 1), (22, 4), (23, 7)):
        doc, path = ours.upload(f"d{seed}.pdf", report(seed, pages, words_per_page=600))
        ours.enqueue_extract(doc, path)
        docs.append(doc)
    ours.work("ingest_extract")
    # Copy documents and pages into the reference's database, as the extract job left them.
    theirs.conn.execute("UPDATE workspaces SET id = %s WHERE id = %s", (ours.workspace_id, theirs.workspace_id))
    theirs.workspace_id = ours.workspace_id
    for doc in docs:
        row = ours.conn.execute(
            "SELECT filename, file_size_bytes, file_hash_sha256, storage_path, status, page_count FROM documents "
            "WHERE id = %s", (doc,)).fetchone()
        theirs.conn.execute(
            "INSERT INTO documents (id, workspace_id, filename, file_size_bytes, file_hash_sha256, storage_path, "
            "status, page_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", (doc, ours.workspace_id, *row))
        for number, content in ours.conn.execute(
                "SELECT page_number, content FROM document_pages WHERE document_id = %s", (doc,)).fetchall():
            theirs.conn.execute(
                "INSERT INTO document_pages (workspace_id, document_id, page_number, content) VALUES (%s, %s, %s, %s)",
                (ours.workspace_id, doc, number, content))
        theirs.enqueue_index(doc)
    ours.work("ingest_index")
    theirs.work("ingest_index")
    for doc in docs:
        assert ours.document(doc) == theirs.document(doc)
        assert [c[:6] for c in ours.chunks(doc)] == [c[:6] for c in theirs.chunks(doc)]
    assert ours.usage() == theirs.usage()
    # One request per chunk for the original, batches for rq-worker.
    n_chunks = sum(len(ours.chunks(d)) for d in docs)
    assert n_chunks > 3


def test_differential_unicode_windows_match_tiktoken(make_world):
    """Token windows that cut multi-byte characters decode with U+FFFD exactly as tiktoken's decode does."""
    rng = random.Random(7)
    alphabet = ["naïve", "café", "日本語のテキスト", "中文分词", "😀🚀", "Ωμέγα", "дом", "x\u200by", "🇫🇷", "\u00a0", "a\x1fb"]
    pages = [" ".join(rng.choice(alphabet) for _ in range(900)) for _ in range(2)]
    worlds = [make_world("rq-worker"), make_world("reference")]
    ws = worlds[0].workspace_id
    doc = "11111111-2222-4333-8444-555555555555"
    for w in worlds:
        if w.workspace_id != ws:
            w.conn.execute("UPDATE workspaces SET id = %s WHERE id = %s", (ws, w.workspace_id))
            w.workspace_id = ws
        w.conn.execute(
            "INSERT INTO documents (id, workspace_id, filename, file_size_bytes, file_hash_sha256, storage_path, "
            "status, page_count) VALUES (%s, %s, 'u.pdf', 1, 'h', 'p', 'indexing', 2)", (doc, ws))
        for i, text in enumerate(pages, start=1):
            w.conn.execute("INSERT INTO document_pages (workspace_id, document_id, page_number, content) "
                           "VALUES (%s, %s, %s, %s)", (ws, doc, i, text))
        w.enqueue_index(doc)
        w.work("ingest_index")
    ours, theirs = worlds
    assert ours.document(doc)["status"] == theirs.document(doc)["status"] == "ready"
    mine = [c[:6] for c in ours.chunks(doc)]
    assert len(mine) > 4
    assert mine == [c[:6] for c in theirs.chunks(doc)]
    assert ours.usage() == theirs.usage()


def test_worker_killed_mid_embedding_then_cleanup(world):
    """A crash leaves the in-flight reservation; cleanup_stale_reservations gives it back."""
    doc, path = world.upload("a.pdf", report(15, 2))
    world.enqueue_extract(doc, path)
    world.work("ingest_extract")
    world.embeddings.faults([{"latency_ms": 20000}])
    if world.kind == "reference":
        cmd = [str(Path(sys.executable).parent / "rq"), "worker", "--burst", "--url", world.redis_url, "ingest_index"]
        env = world.env()
        env["PYTHONPATH"] = str(FIXTURES / "reference_worker")
    else:
        cmd = [rq_worker_bin(), "--burst", "--url", world.redis_url, "ingest_index"]
        env = world.env()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while world.usage()[1] == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert world.usage()[1] > 0, "no reservation while the embedding request hangs"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    world.embeddings.reset()
    assert world.usage()[0] == 0
    world.env_overrides["RESERVATION_TTL_SECONDS"] = "0"
    job = Queue("maintenance", connection=world.redis).enqueue("jobs.maintenance.cleanup_stale_reservations")
    world.work("maintenance")
    assert finished(job) == 1
    assert world.usage() == (0, 0)


def _same_pages_in(worlds, doc: str, pages: list[str]) -> None:
    ws = worlds[0].workspace_id
    for w in worlds:
        if w.workspace_id != ws:
            w.conn.execute("UPDATE workspaces SET id = %s WHERE id = %s", (ws, w.workspace_id))
            w.workspace_id = ws
        w.conn.execute(
            "INSERT INTO documents (id, workspace_id, filename, file_size_bytes, file_hash_sha256, storage_path, "
            "status, page_count) VALUES (%s, %s, 'b.pdf', 1, %s, 'p', 'indexing', %s)", (doc, ws, doc, len(pages)))
        for i, text in enumerate(pages, start=1):
            w.conn.execute("INSERT INTO document_pages (workspace_id, document_id, page_number, content) "
                           "VALUES (%s, %s, %s, %s)", (ws, doc, i, text))


@pytest.mark.parametrize("limit", [1, 2500, 6000])
def test_differential_budget_exhaustion_totals(make_world, limit):
    """Budget exhausted part-way: same document status, error and usage totals as the original."""
    worlds = [make_world("rq-worker"), make_world("reference")]
    pages = [words(300 + i, 700) for i in range(3)]
    docs = ["aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"]
    for doc in docs:
        _same_pages_in(worlds, doc, pages)
    for w in worlds:
        w.env_overrides["DAILY_TOKEN_LIMIT"] = str(limit)
        for doc in docs:
            w.enqueue_index(doc)
        w.work("ingest_index")
    ours, theirs = worlds
    for doc in docs:
        assert ours.document(doc) == theirs.document(doc)
    assert ours.usage() == theirs.usage()
    used, reserved = ours.usage()
    assert reserved == 0 and used <= limit
    assert ours.document(docs[-1]) == {"status": "failed", "error_message": "Insufficient token budget for embeddings",
                                       "page_count": 3}
    if limit > 1:
        assert used > 0, "the limit lets some chunks through"
