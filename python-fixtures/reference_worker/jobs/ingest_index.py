"""Reference index job: token-window chunks per page, one embedding request per chunk through the official
`openai` client, per-chunk reserve/commit. A new session for every step: the document check and cleanup,
the chunk inserts, each chunk's reservation, each chunk's embedding row + commit, the final status."""

from __future__ import annotations

import hashlib
import logging
import math
import uuid

from openai import OpenAI
from sqlalchemy import text

from ._platform import budget, db
from ._platform.config import settings, utc_today

try:
    import tiktoken
except Exception:  # noqa: BLE001
    tiktoken = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
SIZE, OVERLAP = 500, 100

_WHERE_DOC = "WHERE workspace_id = :ws AND document_id = :doc"


def estimate(value: str) -> int:
    return max(1, int(math.ceil((len(value) / 4.0) * 1.1)))


def _encoding():
    if tiktoken is None:
        return None
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001
        return None


def _windows(total: int, size: int, overlap: int):
    start = 0
    while start < total:
        end = min(total, start + size)
        yield start, end
        if end >= total:
            return
        start = max(0, end - overlap)


def chunk_text(value: str) -> list[str]:
    normalized = (value or "").strip()
    if not normalized:
        return []
    enc = _encoding()
    if enc is None:
        pieces = (normalized[s:e].strip() for s, e in _windows(len(normalized), SIZE * 4, OVERLAP * 4))
    else:
        tokens = enc.encode(normalized)
        pieces = (enc.decode(tokens[s:e]).strip() for s, e in _windows(len(tokens), SIZE, OVERLAP))
    return [piece for piece in pieces if piece]


def _fail(ws: uuid.UUID, doc: uuid.UUID, message: str) -> None:
    with db.Session() as session:
        session.execute(
            text("UPDATE documents SET status = 'failed', error_message = :message, updated_at = NOW() "
                 "WHERE id = :doc AND workspace_id = :ws"),
            {"message": message[:2000], "doc": doc, "ws": ws},
        )
        session.commit()


def _release_all(ws: uuid.UUID, day, pending: list[int], document_id: str) -> None:
    for amount in reversed(pending):
        try:
            with db.Session() as session:
                budget.release(session, ws, amount, day)
                session.commit()
        except Exception:  # noqa: BLE001
            log.exception("ingest_index: could not release %s reserved tokens (document %s)", amount, document_id)


def ingest_index(workspace_id: str, document_id: str) -> dict:
    ws = uuid.UUID(workspace_id)
    doc = uuid.UUID(document_id)
    day = utc_today()
    ids = {"ws": ws, "doc": doc}
    pending: list[int] = []
    try:
        with db.Session() as session:
            allowed = db.allowed_statuses(session)
            row = session.execute(
                text("SELECT id, status FROM documents WHERE id = :doc AND workspace_id = :ws LIMIT 1"), ids,
            ).mappings().first()
            if row is None:
                raise ValueError("Document not found for workspace")
            accepted = {"indexing", "uploaded"} | ({"extracting"} if "extracting" in allowed else set())
            if row["status"] not in accepted:
                raise ValueError(f"Document status must be indexing or uploaded (got: {row['status']})")
            session.execute(text("UPDATE documents SET status = 'indexing', error_message = NULL, updated_at = NOW() "
                                 "WHERE id = :doc AND workspace_id = :ws"), ids)
            pages = session.execute(
                text(f"SELECT page_number, content FROM document_pages {_WHERE_DOC} ORDER BY page_number ASC"), ids,
            ).mappings().all()
            session.execute(text(f"DELETE FROM chunk_embeddings {_WHERE_DOC}"), ids)
            session.execute(text(f"DELETE FROM chunks {_WHERE_DOC}"), ids)
            session.commit()

        rows = []
        for page in pages:
            number = int(page["page_number"])
            for piece in chunk_text(str(page["content"] or "")):
                rows.append({"id": uuid.uuid4(), "ws": ws, "doc": doc, "page": number, "index": len(rows),
                             "content": piece, "hash": hashlib.sha256(piece.encode("utf-8")).hexdigest(),
                             "tokens": estimate(piece)})
        with db.Session() as session:
            insert = text(
                "INSERT INTO chunks (id, workspace_id, document_id, page_start, page_end, chunk_index, content, "
                "content_hash, token_count) VALUES (:id, :ws, :doc, :page, :page, :index, :content, :hash, :tokens)")
            for row in rows:
                session.execute(insert, row)
            session.commit()

        # OPENAI_BASE_URL, when set, is picked up by the client itself.
        client = OpenAI(api_key=settings.OPENAI_API_KEY)
        model = settings.EMBEDDING_MODEL
        store = text("INSERT INTO chunk_embeddings (chunk_id, workspace_id, document_id, embedding, embedding_model) "
                     "VALUES (:id, :ws, :doc, CAST(:vector AS vector), :model)")
        used_total = 0
        for row in rows:
            piece = str(row["content"])
            amount = estimate(piece)
            with db.Session() as session:
                budget.reserve(session, ws, amount, day, ttl_seconds=settings.RESERVATION_TTL_SECONDS)
                session.commit()
            pending.append(amount)

            vector = list(client.embeddings.create(model=model, input=piece).data[0].embedding)
            literal = "[" + ",".join(f"{v:.10f}" for v in vector) + "]"
            with db.Session() as session:
                session.execute(store, {"id": row["id"], "ws": ws, "doc": doc, "vector": literal, "model": model})
                budget.commit_usage(session, ws, amount, day)
                session.commit()
            pending.pop()
            used_total += amount

        with db.Session() as session:
            final = "indexed" if "indexed" in db.allowed_statuses(session) else "ready"
            session.execute(text("UPDATE documents SET status = :final, error_message = NULL, updated_at = NOW() "
                                 "WHERE id = :doc AND workspace_id = :ws"), {**ids, "final": final})
            session.commit()
        return {"document_id": document_id, "status": final, "chunks_total": len(rows),
                "embeddings_total": len(rows), "embedding_tokens_used": used_total}
    except budget.BudgetExceededError:
        _release_all(ws, day, pending, document_id)
        _fail(ws, doc, "Insufficient token budget for embeddings")
        raise
    except Exception as exc:  # noqa: BLE001
        _release_all(ws, day, pending, document_id)
        log.exception("ingest_index failed (document %s)", document_id)
        _fail(ws, doc, str(exc))
        raise
