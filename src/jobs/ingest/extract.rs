//! `jobs.ingest_extract.ingest_extract(workspace_id, document_id, bucket, storage_path)` and
//! `jobs.ingest_extract.run(document_id)`: download the PDF, check it against the platform's limits
//! before writing, replace the document's `document_pages` in one transaction, move the document to
//! `indexing` and chain the index job. Any failure leaves the document `failed` with a message.

use crate::jobs::{Args, EnqueueRequest, JobContext, JobError};
use crate::ops::metrics;
use crate::value::PyValue;

use super::{IngestError, Services, check_cancel, db, parse_uuid, pdf_text, progress};

pub const FUNC: &str = "jobs.ingest_extract.ingest_extract";
pub const INDEX_FUNC: &str = "jobs.ingest_index.ingest_index";
pub const INDEX_QUEUE: &str = "ingest_index";

/// `ingest_extract(workspace_id, document_id, bucket, storage_path)`.
pub fn ingest_extract(
    services: &Services,
    ctx: &JobContext<'_>,
    mut args: Args,
) -> Result<PyValue, JobError> {
    let workspace_id: String = args.required(0, "workspace_id")?;
    let document_id: String = args.required(1, "document_id")?;
    let bucket: String = args.required(2, "bucket")?;
    let storage_path: String = args.required(3, "storage_path")?;
    args.finish()?;
    extract(
        services,
        ctx,
        &workspace_id,
        &document_id,
        &bucket,
        &storage_path,
    )
}

/// `run(document_id)`: workspace, storage path and bucket come from the `documents` row.
pub fn run(services: &Services, ctx: &JobContext<'_>, mut args: Args) -> Result<PyValue, JobError> {
    let document_id: String = args.required(0, "document_id")?;
    args.finish()?;
    let loc = db::locate_document_for_run(services, &document_id)?;
    let bucket = loc
        .bucket
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| services.config.supabase_storage_bucket.clone());
    extract(
        services,
        ctx,
        &loc.workspace_id,
        &document_id,
        &bucket,
        &loc.storage_path,
    )
}

fn extract(
    services: &Services,
    ctx: &JobContext<'_>,
    workspace_arg: &str,
    document_arg: &str,
    bucket: &str,
    storage_path: &str,
) -> Result<PyValue, JobError> {
    let ws = parse_uuid(workspace_arg).map_err(IngestError::into_job_error)?;
    let doc = parse_uuid(document_arg).map_err(IngestError::into_job_error)?;

    // Until the row is known to be ours, a failure touches no document.
    let started = (|| {
        let mut conn = services.db()?;
        let allowed = db::allowed_statuses(&mut *conn)?;
        let status = db::document_status(&mut *conn, &ws, &doc)?;
        Ok::<_, IngestError>((allowed, status))
    })();
    let (allowed, status) = started.map_err(IngestError::into_job_error)?;
    if status.is_none() {
        return Err(IngestError::Value("Document not found for workspace".into()).into_job_error());
    }

    let stored = StoredPdf {
        ws: &ws,
        doc: &doc,
        bucket,
        storage_path,
    };
    match extract_known(services, ctx, &allowed, &stored) {
        Ok(pages_total) => {
            // Chained exactly as the platform's API would enqueue it (kwargs as received).
            let request = EnqueueRequest {
                queue: INDEX_QUEUE.to_string(),
                func_name: INDEX_FUNC.to_string(),
                args: Vec::new(),
                kwargs: vec![
                    (
                        "workspace_id".to_string(),
                        PyValue::Str(workspace_arg.to_string()),
                    ),
                    (
                        "document_id".to_string(),
                        PyValue::Str(document_arg.to_string()),
                    ),
                ],
                timeout: Some(services.config.ingest_index_job_timeout_seconds),
                result_ttl: None,
                failure_ttl: None,
            };
            if let Err(e) = ctx.hooks.enqueue(request) {
                let err = IngestError::Enqueue(e);
                db::mark_failed(services, &ws, &doc, &err.document_message());
                return Err(err.into_job_error());
            }
            progress(ctx, vec![("stage", PyValue::Str("done".into()))]);
            metrics::with(|m| {
                m.ingest_documents
                    .with_label_values(&["extract", "ok"])
                    .inc();
                m.ingest_pages.inc_by(pages_total as u64);
            });
            Ok(PyValue::str_dict([
                ("document_id", PyValue::Str(document_arg.to_string())),
                ("pages_total", PyValue::count(pages_total)),
                ("status", PyValue::Str("indexing".into())),
            ]))
        }
        Err(err) => {
            metrics::with(|m| {
                m.ingest_documents
                    .with_label_values(&["extract", "failed"])
                    .inc();
            });
            db::mark_failed(services, &ws, &doc, &err.document_message());
            Err(err.into_job_error())
        }
    }
}

/// The document a job extracts: its workspace and id (checked UUIDs) and where its PDF is stored.
struct StoredPdf<'a> {
    ws: &'a str,
    doc: &'a str,
    bucket: &'a str,
    storage_path: &'a str,
}

/// Extract a document known to exist: status `extracting` (or `indexing` where the schema has no
/// `extracting`), download, check the limits, write its pages and move it to `indexing`. The page
/// count, or why not.
fn extract_known(
    services: &Services,
    ctx: &JobContext<'_>,
    allowed: &std::collections::HashSet<String>,
    stored: &StoredPdf<'_>,
) -> Result<usize, IngestError> {
    let StoredPdf {
        ws,
        doc,
        bucket,
        storage_path,
    } = *stored;
    let config = &services.config;
    // Any current status is accepted, as the platform's worker does: the API enqueues this job before
    // committing `uploaded`, so a fast worker can still read `pending_upload` here. The UPDATE below
    // waits for the API's row lock and then applies on top of its commit.
    let working = if allowed.contains("extracting") {
        "extracting"
    } else {
        "indexing"
    };
    {
        let mut conn = services.db()?;
        db::set_status(&mut *conn, ws, doc, working, None)?;
    }
    progress(ctx, vec![("stage", PyValue::Str("downloading".into()))]);
    check_cancel(ctx)?;

    let storage = services.storage()?;
    let stop = || ctx.cancel.reason().is_some();
    let bytes = storage.download(bucket, storage_path, config.max_file_size_bytes, &stop)?;
    check_cancel(ctx)?;

    let pdf = pdf_text::open(&bytes)?;
    let pages_total = pdf.page_count();
    let too_many = |n: usize| n > config.max_pdf_page_count as usize;
    if too_many(pages_total) {
        return Err(IngestError::Value(format!(
            "PDF has {pages_total} pages; at most {} are allowed (MAX_PDF_PAGE_COUNT)",
            config.max_pdf_page_count
        )));
    }
    progress(
        ctx,
        vec![
            ("stage", PyValue::Str("extracting".into())),
            ("pages_total", PyValue::count(pages_total)),
        ],
    );
    let token = ctx.cancel.clone();
    let pages: Vec<String> = pdf
        .extract_pages(
            ctx.deadline,
            std::sync::Arc::new(move || token.reason().is_some()),
        )
        .map_err(|e| match ctx.cancel.reason() {
            Some(r) => IngestError::Cancelled(r),
            None => e.into(),
        })?
        .into_iter()
        .map(storable_text)
        .collect();
    drop(bytes); // the PDF is not needed while the pages are written
    check_cancel(ctx)?;
    // When the cheap count could not tell (some encrypted files), the extraction did.
    let pages_total = if pages_total == 0 {
        pages.len()
    } else {
        pages_total
    };
    if too_many(pages_total) {
        return Err(IngestError::Value(format!(
            "PDF has {pages_total} pages; at most {} are allowed (MAX_PDF_PAGE_COUNT)",
            config.max_pdf_page_count
        )));
    }
    let text_chars: usize = pages
        .iter()
        .map(|p| super::chunking::py_strip(p).chars().count())
        .sum();
    if text_chars < config.min_extracted_text_chars {
        return Err(IngestError::Value(format!(
            "Extracted text too short: {text_chars} characters in {pages_total} page(s) (MIN_EXTRACTED_TEXT_CHARS is {})",
            config.min_extracted_text_chars
        )));
    }
    progress(
        ctx,
        vec![
            ("stage", PyValue::Str("saving".into())),
            ("pages_extracted", PyValue::count(pages.len())),
        ],
    );

    let mut conn = services.db()?;
    let has_pages_total = db::documents_has_column(&mut *conn, "pages_total")?;
    let mut tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM document_pages WHERE workspace_id = $1::text::uuid AND document_id = $2::text::uuid",
        &[&ws, &doc],
    )?;
    // Pages as arrays, a bounded number per statement (MAX_PDF_PAGE_COUNT may be set high).
    let insert_pages = tx.prepare(
        "INSERT INTO document_pages (workspace_id, document_id, page_number, content) \
         SELECT $1::text::uuid, $2::text::uuid, u.number, u.content FROM unnest($3::int4[], $4::text[]) AS u(number, content)",
    )?;
    for (group_index, group) in pages.chunks(db::ROWS_PER_STATEMENT).enumerate() {
        let first = group_index * db::ROWS_PER_STATEMENT + 1;
        let numbers: Vec<i32> = (first..first + group.len())
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .collect();
        tx.execute(&insert_pages, &[&ws, &doc, &numbers, &group])?;
    }
    let count = i32::try_from(pages_total).unwrap_or(i32::MAX);
    let extra = if has_pages_total {
        ", pages_total = $1"
    } else {
        ""
    };
    let changed = tx.execute(
        &format!(
            "UPDATE documents SET page_count = $1, status = 'indexing', error_message = NULL, updated_at = NOW(){extra} \
             WHERE id = $2::text::uuid AND workspace_id = $3::text::uuid"
        ),
        &[&count, &doc, &ws],
    )?;
    if changed != 1 {
        return Err(IngestError::Value(
            "Document not found for workspace".into(),
        ));
    }
    tx.commit()?;
    Ok(pages_total)
}

/// Page text as PostgreSQL `text` accepts it: NUL characters removed (the platform's worker loses
/// such documents with "A string literal cannot contain NUL (0x00) characters").
pub fn storable_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_removed() {
        assert_eq!(storable_text("alpha\0beta\0".into()), "alphabeta");
        assert_eq!(storable_text("plain".into()), "plain");
    }
}
