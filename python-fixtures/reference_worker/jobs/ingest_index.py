"""Reference index job: token-window chunks per page, one embedding request per chunk, per-chunk budget."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime

from openai import OpenAI

from . import _platform as p

try:
    import tiktoken
except Exception:  # noqa: BLE001
    tiktoken = None  # type: ignore[assignment]

SIZE, OVERLAP = 500, 100


def estimate(text: str) -> int:
    return max(1, int(math.ceil((len(text) / 4.0) * 1.1)))


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


def chunk_text(text: str) -> list[str]:
    normalized = (text or "").strip()
    if not normalized:
        return []
    enc = _encoding()
    if enc is None:
        pieces = (normalized[s:e].strip() for s, e in _windows(len(normalized), SIZE * 4, OVERLAP * 4))
    else:
        tokens = enc.encode(normalized)
        pieces = (enc.decode(tokens[s:e]).strip() for s, e in _windows(len(tokens), SIZE, OVERLAP))
    return [piece for piece in pieces if piece]


def _fail(ws, doc, message: str) -> None:
    conn = p.db()
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE documents SET status = 'failed', error_message = %s, updated_at = NOW() "
            "WHERE id = %s AND workspace_id = %s",
            (message[:2000], doc, ws),
        )
    conn.commit()


def ingest_index(workspace_id: str, document_id: str) -> dict:
    ws = uuid.UUID(workspace_id)
    doc = uuid.UUID(document_id)
    day = datetime.now(UTC).date()
    pending: list[int] = []
    conn = p.db()
    try:
        with conn.cursor() as cur:
            allowed = p.allowed_statuses(cur)
            cur.execute("SELECT status FROM documents WHERE id = %s AND workspace_id = %s LIMIT 1", (doc, ws))
            row = cur.fetchone()
            if row is None:
                raise ValueError("Document not found for workspace")
            accepted = {"indexing", "uploaded"} | ({"extracting"} if "extracting" in allowed else set())
            if row[0] not in accepted:
                raise ValueError(f"Document status must be indexing or uploaded (got: {row[0]})")
            cur.execute(
                "UPDATE documents SET status = 'indexing', error_message = NULL, updated_at = NOW() "
                "WHERE id = %s AND workspace_id = %s",
                (doc, ws),
            )
            cur.execute(
                "SELECT page_number, content FROM document_pages WHERE workspace_id = %s AND document_id = %s "
                "ORDER BY page_number ASC",
                (ws, doc),
            )
            pages = cur.fetchall()
            cur.execute("DELETE FROM chunk_embeddings WHERE workspace_id = %s AND document_id = %s", (ws, doc))
            cur.execute("DELETE FROM chunks WHERE workspace_id = %s AND document_id = %s", (ws, doc))
        conn.commit()

        rows = []
        for number, content in pages:
            for piece in chunk_text(str(content or "")):
                rows.append((uuid.uuid4(), int(number), len(rows), piece))
        with conn.cursor() as cur:
            for chunk_id, number, index, piece in rows:
                cur.execute(
                    "INSERT INTO chunks (id, workspace_id, document_id, page_start, page_end, chunk_index, content, "
                    "content_hash, token_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (chunk_id, ws, doc, number, number, index, piece, hashlib.sha256(piece.encode("utf-8")).hexdigest(),
                     estimate(piece)),
                )
        conn.commit()

        client = OpenAI(api_key=p.env("OPENAI_API_KEY"), base_url=p.env("OPENAI_BASE_URL") or None)
        model = p.env("EMBEDDING_MODEL", "text-embedding-3-small")
        used_total = 0
        for chunk_id, _number, _index, piece in rows:
            amount = estimate(piece)
            with conn.cursor() as cur:
                p.reserve(cur, ws, day, amount)
            conn.commit()
            pending.append(amount)
            vector = list(client.embeddings.create(model=model, input=piece).data[0].embedding)
            literal = "[" + ",".join(f"{v:.10f}" for v in vector) + "]"
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO chunk_embeddings (chunk_id, workspace_id, document_id, embedding, embedding_model) "
                    "VALUES (%s, %s, %s, CAST(%s AS vector), %s)",
                    (chunk_id, ws, doc, literal, model),
                )
                p.commit_usage(cur, ws, day, amount)
            conn.commit()
            pending.pop()
            used_total += amount

        with conn.cursor() as cur:
            final = "indexed" if "indexed" in p.allowed_statuses(cur) else "ready"
            cur.execute(
                "UPDATE documents SET status = %s, error_message = NULL, updated_at = NOW() "
                "WHERE id = %s AND workspace_id = %s",
                (final, doc, ws),
            )
        conn.commit()
        return {"document_id": document_id, "status": final, "chunks_total": len(rows),
                "embeddings_total": len(rows), "embedding_tokens_used": used_total}
    except Exception as exc:  # noqa: BLE001
        conn.rollback()
        for amount in reversed(pending):
            try:
                with conn.cursor() as cur:
                    p.release(cur, ws, day, amount)
                conn.commit()
            except Exception:  # noqa: BLE001
                conn.rollback()
        message = "Insufficient token budget for embeddings" if isinstance(exc, p.BudgetExceededError) else str(exc)
        _fail(ws, doc, message)
        raise
