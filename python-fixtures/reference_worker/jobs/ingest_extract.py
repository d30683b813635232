"""Reference extract job: download the PDF (Supabase client, REST fallback), pypdf text per page into
document_pages, page_count, then chain the index job. Each database step runs in its own session."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from pypdf import PdfReader
from redis import Redis
from rq import Queue
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ._platform import db, storage
from ._platform.config import settings

log = logging.getLogger(__name__)

_SET_STATUS = text(
    "UPDATE documents SET status = :status, error_message = :message, updated_at = NOW() "
    "WHERE id = :doc AND workspace_id = :ws"
)
_HAS_PAGES_TOTAL = text(
    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'documents' AND column_name = :column"
)


def _set_status(ws: uuid.UUID, doc: uuid.UUID, status: str, message: str | None = None) -> None:
    with db.Session() as session:
        session.execute(_SET_STATUS, {"status": status, "message": message, "doc": doc, "ws": ws})
        session.commit()


def ingest_extract(workspace_id: str, document_id: str, bucket: str, storage_path: str) -> dict:
    ws = uuid.UUID(workspace_id)
    doc = uuid.UUID(document_id)
    # The PDF goes through a scratch file named after the document, as in the original.
    scratch = Path(f"/tmp/{doc}.pdf")

    with db.Session() as session:
        allowed = db.allowed_statuses(session)
    _set_status(ws, doc, "extracting" if "extracting" in allowed else "indexing")

    try:
        scratch.write_bytes(storage.download(bucket, storage_path))
        reader = PdfReader(str(scratch))
        pages_total = len(reader.pages)

        with db.Session() as session:
            session.execute(text("DELETE FROM document_pages WHERE workspace_id = :ws AND document_id = :doc"),
                            {"ws": ws, "doc": doc})
            insert = text("INSERT INTO document_pages (workspace_id, document_id, page_number, content) "
                          "VALUES (:ws, :doc, :number, :content)")
            for number, page in enumerate(reader.pages, start=1):
                session.execute(insert, {"ws": ws, "doc": doc, "number": number, "content": page.extract_text() or ""})
            assignments = "page_count = :n, status = 'indexing', error_message = NULL, updated_at = NOW()"
            if session.execute(_HAS_PAGES_TOTAL, {"column": "pages_total"}).scalar_one_or_none() is not None:
                assignments += ", pages_total = :n"
            session.execute(text(f"UPDATE documents SET {assignments} WHERE id = :doc AND workspace_id = :ws"),
                            {"n": pages_total, "doc": doc, "ws": ws})
            session.commit()

        queue = Queue("ingest_index", connection=Redis.from_url(settings.REDIS_URL))
        queue.enqueue("jobs.ingest_index.ingest_index", workspace_id=workspace_id, document_id=document_id)
        return {"document_id": document_id, "pages_total": pages_total, "status": "indexing"}
    except IntegrityError as exc:
        log.exception("ingest_extract: constraint violation (document %s)", document_id)
        # The driver's own message (psycopg2), without SQLAlchemy's statement and parameters.
        _set_status(ws, doc, "failed", f"Status constraint mismatch: {exc.orig}")
        raise
    except Exception as exc:  # noqa: BLE001
        log.exception("ingest_extract failed (document %s)", document_id)
        _set_status(ws, doc, "failed", str(exc)[:2000])
        raise
    finally:
        scratch.unlink(missing_ok=True)
