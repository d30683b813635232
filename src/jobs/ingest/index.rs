//! `jobs.ingest_index.ingest_index(workspace_id, document_id)` and `jobs.ingest_index.run(document_id)`:
//! chunk the document's pages, embed the chunks in batches under the daily token budget, and write
//! chunks, embeddings and the final status in one transaction, so a failure leaves no partial rows
//! and nothing reserved. Token totals match the platform's one-request-per-chunk worker.

use std::sync::Arc;

use crate::adapters::embed_batcher::StopFn;
use crate::adapters::postgres::PgVector;
use crate::jobs::{Args, JobContext, JobError};
use crate::ops::metrics;
use crate::value::PyValue;

use super::budget::Budget;
use super::chunking::{chunk_text, content_hash, estimate_tokens};
use super::{IngestError, Services, check_cancel, db, parse_uuid, progress};

/// `ingest_index(workspace_id, document_id)`.
pub fn ingest_index(
    services: &Services,
    ctx: &JobContext<'_>,
    mut args: Args,
) -> Result<PyValue, JobError> {
    let workspace_id: String = args.required(0, "workspace_id")?;
    let document_id: String = args.required(1, "document_id")?;
    args.finish()?;
    index(services, ctx, &workspace_id, &document_id)
}

/// `run(document_id)`: the workspace comes from the `documents` row.
pub fn run(services: &Services, ctx: &JobContext<'_>, mut args: Args) -> Result<PyValue, JobError> {
    let document_id: String = args.required(0, "document_id")?;
    args.finish()?;
    let loc = db::locate_document_for_run(services, &document_id)?;
    index(services, ctx, &loc.workspace_id, &document_id)
}

struct Chunk {
    id: String,
    page: i32,
    index: i32,
    content: String,
    hash: String,
    tokens: i64,
}

/// What the job reports when it succeeds.
struct Outcome {
    status: String,
    chunks: usize,
    embeddings: usize,
    tokens: i64,
}

fn index(
    services: &Services,
    ctx: &JobContext<'_>,
    workspace_arg: &str,
    document_arg: &str,
) -> Result<PyValue, JobError> {
    let ws = parse_uuid(workspace_arg).map_err(IngestError::into_job_error)?;
    let doc = parse_uuid(document_arg).map_err(IngestError::into_job_error)?;
    let date = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let budget = Budget {
        workspace_id: &ws,
        date: &date,
        limit: services.config.daily_token_limit,
    };
    // Tokens reserved and not yet committed or released; given back on any failure.
    let mut outstanding: i64 = 0;
    // While this job runs, other index jobs' chunks may wait a little for ours to share a request.
    let _participant = services.embeddings().participant();

    let found = (|| {
        let mut conn = services.db()?;
        Ok::<_, IngestError>(db::document_status(&mut *conn, &ws, &doc)?.is_some())
    })()
    .map_err(IngestError::into_job_error)?;
    if !found {
        return Err(IngestError::Value("Document not found for workspace".into()).into_job_error());
    }

    match index_known(services, ctx, &ws, &doc, &budget, &mut outstanding) {
        Ok(o) => {
            metrics::with(|m| {
                m.ingest_documents.with_label_values(&["index", "ok"]).inc();
                m.ingest_chunks.inc_by(o.chunks as u64);
            });
            progress(ctx, vec![("stage", PyValue::Str("done".into()))]);
            Ok(PyValue::str_dict([
                ("document_id", PyValue::Str(document_arg.to_string())),
                ("status", PyValue::Str(o.status)),
                ("chunks_total", PyValue::count(o.chunks)),
                ("embeddings_total", PyValue::count(o.embeddings)),
                ("embedding_tokens_used", PyValue::Int(o.tokens)),
            ]))
        }
        Err(err) => {
            metrics::with(|m| {
                m.ingest_documents
                    .with_label_values(&["index", "failed"])
                    .inc();
                if matches!(err, IngestError::Budget { .. }) {
                    m.budget_refusals.inc();
                }
            });
            if outstanding > 0 {
                let released = services
                    .db()
                    .and_then(|mut c| budget.release(&mut *c, outstanding));
                if let Err(e) = released {
                    log::error!(
                        "document {doc}: could not release {outstanding} reserved tokens: {e}"
                    );
                }
            }
            db::mark_failed(services, &ws, &doc, &err.document_message());
            Err(err.into_job_error())
        }
    }
}

/// Insert the chunks and their embeddings, a few hundred rows per statement.
fn write_rows(
    tx: &mut ::postgres::Transaction<'_>,
    ws: &str,
    doc: &str,
    chunks: &[Chunk],
    vectors: &[Vec<f32>],
    model: &str,
) -> Result<(), IngestError> {
    let insert_chunks = tx.prepare(
        "INSERT INTO chunks (id, workspace_id, document_id, page_start, page_end, chunk_index, content, content_hash, token_count) \
         SELECT u.id::uuid, $1::text::uuid, $2::text::uuid, u.page, u.page, u.idx, u.content, u.hash, u.tokens \
         FROM unnest($3::text[], $4::int4[], $5::int4[], $6::text[], $7::text[], $8::int4[]) \
         AS u(id, page, idx, content, hash, tokens)",
    )?;
    let insert_embeddings = tx.prepare(
        "INSERT INTO chunk_embeddings (chunk_id, workspace_id, document_id, embedding, embedding_model) \
         SELECT u.id::uuid, $1::text::uuid, $2::text::uuid, u.embedding, $4 \
         FROM unnest($3::text[], $5::vector[]) AS u(id, embedding)",
    )?;
    for group in chunks.chunks(db::ROWS_PER_STATEMENT) {
        let ids: Vec<&str> = group.iter().map(|c| c.id.as_str()).collect();
        let pages: Vec<i32> = group.iter().map(|c| c.page).collect();
        let indexes: Vec<i32> = group.iter().map(|c| c.index).collect();
        let contents: Vec<&str> = group.iter().map(|c| c.content.as_str()).collect();
        let hashes: Vec<&str> = group.iter().map(|c| c.hash.as_str()).collect();
        let tokens: Vec<i32> = group
            .iter()
            .map(|c| i32::try_from(c.tokens).unwrap_or(i32::MAX))
            .collect();
        tx.execute(
            &insert_chunks,
            &[
                &ws, &doc, &ids, &pages, &indexes, &contents, &hashes, &tokens,
            ],
        )?;
    }
    let pairs: Vec<(&Chunk, &Vec<f32>)> = chunks.iter().zip(vectors).collect();
    for group in pairs.chunks(db::ROWS_PER_STATEMENT) {
        let ids: Vec<&str> = group.iter().map(|(c, _)| c.id.as_str()).collect();
        let embeddings: Vec<PgVector<'_>> = group.iter().map(|(_, v)| PgVector(v)).collect();
        tx.execute(&insert_embeddings, &[&ws, &doc, &ids, &model, &embeddings])?;
    }
    Ok(())
}

fn index_known(
    services: &Services,
    ctx: &JobContext<'_>,
    ws: &str,
    doc: &str,
    budget: &Budget<'_>,
    outstanding: &mut i64,
) -> Result<Outcome, IngestError> {
    let config = &services.config;
    let t0 = std::time::Instant::now();

    // Check the status, move to `indexing`, read the pages and drop the previous chunks, atomically.
    let (allowed, pages, column_dim) = {
        let mut conn = services.db()?;
        let allowed = db::allowed_statuses(&mut *conn)?;
        let column_dim = db::embedding_column_dim(&mut *conn)?;
        let mut tx = conn.transaction()?;
        let rows = tx.query(
            "SELECT status FROM documents WHERE id = $1::text::uuid AND workspace_id = $2::text::uuid LIMIT 1 FOR UPDATE",
            &[&doc, &ws],
        )?;
        let status: String = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => {
                return Err(IngestError::Value(
                    "Document not found for workspace".into(),
                ));
            }
        };
        let accepted = status == "indexing"
            || status == "uploaded"
            || (status == "extracting" && allowed.contains("extracting"));
        if !accepted {
            return Err(IngestError::Value(format!(
                "Document status must be indexing or uploaded (got: {status})"
            )));
        }
        db::set_status(&mut tx, ws, doc, "indexing", None)?;
        let page_rows = tx.query(
            "SELECT page_number, content FROM document_pages \
             WHERE workspace_id = $1::text::uuid AND document_id = $2::text::uuid ORDER BY page_number ASC",
            &[&ws, &doc],
        )?;
        let mut pages = Vec::with_capacity(page_rows.len());
        for row in &page_rows {
            let number: i32 = row.try_get(0)?;
            let content: Option<String> = row.try_get(1)?;
            pages.push((number, content.unwrap_or_default()));
        }
        tx.execute(
            "DELETE FROM chunk_embeddings WHERE workspace_id = $1::text::uuid AND document_id = $2::text::uuid",
            &[&ws, &doc],
        )?;
        tx.execute(
            "DELETE FROM chunks WHERE workspace_id = $1::text::uuid AND document_id = $2::text::uuid",
            &[&ws, &doc],
        )?;
        tx.commit()?;
        (allowed, pages, column_dim)
    };

    if let Some(dim) = column_dim
        && usize::try_from(dim).ok() != Some(config.embedding_dim)
    {
        return Err(IngestError::Value(format!(
            "Embedding dimension mismatch: chunk_embeddings.embedding is vector({dim}) but EMBEDDING_DIM is {}",
            config.embedding_dim
        )));
    }

    let mut chunks = Vec::new();
    for (page, content) in &pages {
        for piece in chunk_text(content, config.chunk_tokenizer) {
            chunks.push(Chunk {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                page: *page,
                index: i32::try_from(chunks.len()).unwrap_or(i32::MAX),
                tokens: estimate_tokens(&piece),
                hash: content_hash(&piece),
                content: piece,
            });
        }
    }
    drop(pages);
    let t_chunked = t0.elapsed();
    let total_tokens: i64 = chunks.iter().map(|c| c.tokens).sum();
    progress(
        ctx,
        vec![
            ("stage", PyValue::Str("embedding".into())),
            ("chunks_total", PyValue::count(chunks.len())),
            ("chunks_embedded", PyValue::Int(0)),
            ("embedding_tokens_estimated", PyValue::Int(total_tokens)),
        ],
    );
    check_cancel(ctx)?;

    // Embed batch by batch; each batch reserves its chunks in order, and commits them once embedded.
    // The batcher may pack them into requests shared with other documents' chunks.
    let batcher = services.embeddings();
    let cancel = ctx.cancel.clone();
    let stop: StopFn = Arc::new(move || cancel.reason().is_some());
    let batch_size = config.embedding_batch_size.max(1);
    let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(chunks.len());
    let mut committed: i64 = 0;
    let mut requests: i64 = 0;
    for batch in chunks.chunks(batch_size) {
        check_cancel(ctx)?;
        let amounts: Vec<i64> = batch.iter().map(|c| c.tokens).collect();
        let reserved = {
            let mut conn = services.db()?;
            budget.reserve_prefix(&mut *conn, &amounts)?
        };
        *outstanding += reserved.tokens;
        let fitting = &batch[..reserved.count];
        if !fitting.is_empty() {
            let inputs: Vec<String> = fitting.iter().map(|c| c.content.clone()).collect();
            let embedded = batcher.embed(inputs, stop.clone())?;
            requests += embedded.requests as i64;
            vectors.extend(embedded.vectors);
            let mut conn = services.db()?;
            budget.commit(&mut *conn, reserved.tokens)?;
            *outstanding -= reserved.tokens;
            committed += reserved.tokens;
        }
        progress(
            ctx,
            vec![
                ("chunks_embedded", PyValue::count(vectors.len())),
                ("embedding_requests", PyValue::Int(requests)),
                ("embedding_tokens_used", PyValue::Int(committed)),
            ],
        );
        if reserved.count < batch.len() {
            let used = reserved.used + reserved.tokens;
            return Err(IngestError::Budget {
                used,
                reserved: reserved.reserved_before,
                limit: budget.limit,
            });
        }
    }
    check_cancel(ctx)?;
    let t_embedded = t0.elapsed();

    // Write everything, and the final status, in one transaction.
    progress(ctx, vec![("stage", PyValue::Str("saving".into()))]);
    let final_status = if allowed.contains("indexed") {
        "indexed"
    } else {
        "ready"
    };
    let model = batcher.client().model().to_string();
    let mut conn = services.db()?;
    let mut tx = conn.transaction()?;
    write_rows(&mut tx, ws, doc, &chunks, &vectors, &model)?;
    db::set_status(&mut tx, ws, doc, final_status, None)?;
    tx.commit()?;
    log::debug!(
        "document {doc}: {} chunks, {requests} embedding request(s); read+chunk {} ms, embed {} ms, write {} ms",
        chunks.len(),
        t_chunked.as_millis(),
        t_embedded.saturating_sub(t_chunked).as_millis(),
        t0.elapsed().saturating_sub(t_embedded).as_millis()
    );

    Ok(Outcome {
        status: final_status.to_string(),
        chunks: chunks.len(),
        embeddings: vectors.len(),
        tokens: committed,
    })
}
