"""Reference extract job: pypdf text per page into document_pages, then chain the index job."""

from __future__ import annotations

import io
import uuid

import psycopg
from pypdf import PdfReader
from redis import Redis
from rq import Queue

from . import _platform as p


def _set_status(workspace_id: uuid.UUID, document_id: uuid.UUID, status: str, error_message: str | None = None) -> None:
    conn = p.db()
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE documents SET status = %s, error_message = %s, updated_at = NOW() "
            "WHERE id = %s AND workspace_id = %s",
            (status, error_message, document_id, workspace_id),
        )
    conn.commit()


def ingest_extract(workspace_id: str, document_id: str, bucket: str, storage_path: str) -> dict:
    ws = uuid.UUID(workspace_id)
    doc = uuid.UUID(document_id)
    conn = p.db()
    with conn.cursor() as cur:
        allowed = p.allowed_statuses(cur)
    conn.commit()
    _set_status(ws, doc, "extracting" if "extracting" in allowed else "indexing")
    try:
        data = p.download(bucket, storage_path)
        reader = PdfReader(io.BytesIO(data))
        pages_total = len(reader.pages)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM document_pages WHERE workspace_id = %s AND document_id = %s", (ws, doc))
            for number, page in enumerate(reader.pages, start=1):
                cur.execute(
                    "INSERT INTO document_pages (workspace_id, document_id, page_number, content) "
                    "VALUES (%s, %s, %s, %s)",
                    (ws, doc, number, page.extract_text() or ""),
                )
            cur.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'documents' AND column_name = 'pages_total'"
            )
            extra = ", pages_total = %(n)s" if cur.fetchone() else ""
            cur.execute(
                "UPDATE documents SET page_count = %(n)s, status = 'indexing', error_message = NULL, "
                f"updated_at = NOW(){extra} WHERE id = %(doc)s AND workspace_id = %(ws)s",
                {"n": pages_total, "doc": doc, "ws": ws},
            )
        conn.commit()
        queue = Queue("ingest_index", connection=Redis.from_url(p.env("REDIS_URL", "redis://localhost:6379/0")))
        queue.enqueue("jobs.ingest_index.ingest_index", workspace_id=workspace_id, document_id=document_id)
        return {"document_id": document_id, "pages_total": pages_total, "status": "indexing"}
    except psycopg.IntegrityError as exc:
        conn.rollback()
        _set_status(ws, doc, "failed", f"Status constraint mismatch: {exc}")
        raise
    except Exception as exc:  # noqa: BLE001
        conn.rollback()
        _set_status(ws, doc, "failed", str(exc)[:2000])
        raise
