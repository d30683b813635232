//! The SQL the ingestion jobs share: reading a document's row and schema facts (`chk_status`,
//! optional columns, the embedding column's dimension), and moving a document between statuses.
//! UUIDs travel as text and are cast in SQL; every row value is read with `try_get`.

use std::collections::HashSet;

use ::postgres::GenericClient;

use super::{IngestError, MAX_ERROR_MESSAGE_CHARS, truncate_chars};

/// Rows per INSERT statement (each carries its rows as arrays, so a document costs a couple of round
/// trips however many pages or chunks it has, and no statement's parameters grow without bound).
pub const ROWS_PER_STATEMENT: usize = 256;

/// The statuses `chk_status` allows, read the way the platform's worker reads them: the text between
/// `IN (` and the last `)` of the constraint definition, split on commas, quotes stripped. PostgreSQL
/// prints such a constraint as `= ANY (ARRAY[...])`, so on PostgreSQL this finds nothing and the jobs
/// use `indexing` / `ready` as the platform's worker does (its query API accepts only `ready`).
pub fn parse_allowed_statuses(definition: &str) -> HashSet<String> {
    let Some((_, after)) = definition.split_once("IN (") else {
        return HashSet::new();
    };
    let inside = match after.rsplit_once(')') {
        Some((inside, _)) => inside,
        None => after,
    };
    inside
        .split(',')
        .map(|p| p.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect()
}

/// [`parse_allowed_statuses`] of the live constraint (empty when there is none).
pub fn allowed_statuses(db: &mut impl GenericClient) -> Result<HashSet<String>, IngestError> {
    let rows = db.query(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON c.conrelid = t.oid \
         WHERE t.relname = 'documents' AND c.conname = 'chk_status' LIMIT 1",
        &[],
    )?;
    let def: Option<String> = match rows.first() {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    Ok(def.map(|d| parse_allowed_statuses(&d)).unwrap_or_default())
}

/// Whether `documents` has `column` in the current schema.
pub fn documents_has_column(
    db: &mut impl GenericClient,
    column: &str,
) -> Result<bool, IngestError> {
    let rows = db.query(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = 'documents' AND column_name = $1",
        &[&column],
    )?;
    Ok(!rows.is_empty())
}

/// The dimension of `chunk_embeddings.embedding` (`None` when the column has no fixed dimension).
pub fn embedding_column_dim(db: &mut impl GenericClient) -> Result<Option<i32>, IngestError> {
    let rows = db.query(
        "SELECT a.atttypmod FROM pg_attribute a JOIN pg_class t ON a.attrelid = t.oid \
         JOIN pg_namespace n ON t.relnamespace = n.oid \
         WHERE t.relname = 'chunk_embeddings' AND a.attname = 'embedding' AND n.nspname = current_schema() \
         AND NOT a.attisdropped",
        &[],
    )?;
    let typmod: Option<i32> = match rows.first() {
        Some(row) => row.try_get(0)?,
        None => {
            return Err(IngestError::Value(
                "table chunk_embeddings has no column 'embedding'".into(),
            ));
        }
    };
    Ok(typmod.filter(|m| *m > 0))
}

/// A document's status, `None` when no row has this id in this workspace.
pub fn document_status(
    db: &mut impl GenericClient,
    workspace_id: &str,
    document_id: &str,
) -> Result<Option<String>, IngestError> {
    let rows = db.query(
        "SELECT status FROM documents WHERE id = $1::text::uuid AND workspace_id = $2::text::uuid LIMIT 1",
        &[&document_id, &workspace_id],
    )?;
    match rows.first() {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}

/// Set status and error_message (NULL for `None`), touching updated_at. Returns rows changed.
pub fn set_status(
    db: &mut impl GenericClient,
    workspace_id: &str,
    document_id: &str,
    status: &str,
    error_message: Option<&str>,
) -> Result<u64, IngestError> {
    let message =
        error_message.map(|m| truncate_chars(&m.replace('\0', ""), MAX_ERROR_MESSAGE_CHARS));
    Ok(db.execute(
        "UPDATE documents SET status = $1, error_message = $2, updated_at = NOW() \
         WHERE id = $3::text::uuid AND workspace_id = $4::text::uuid",
        &[&status, &message, &document_id, &workspace_id],
    )?)
}

/// The fields the `run(document_id)` job forms take from the row: workspace, storage path, bucket.
pub struct DocumentLocation {
    pub workspace_id: String,
    pub storage_path: String,
    pub bucket: Option<String>,
}

/// Find a document by id alone (the older `run(document_id)` API).
/// The `run(document_id)` job forms: the document's workspace, bucket and storage path, or the
/// job error for a malformed id, an unreachable database or a missing row.
pub fn locate_document_for_run(
    services: &super::Services,
    document_id: &str,
) -> Result<DocumentLocation, crate::jobs::JobError> {
    let located = (|| {
        let doc = super::parse_uuid(document_id)?;
        let mut conn = services.db()?;
        locate_document(&mut *conn, &doc)
    })()
    .map_err(IngestError::into_job_error)?;
    located.ok_or_else(|| crate::jobs::JobError::failed("ValueError", "Document not found"))
}

pub fn locate_document(
    db: &mut impl GenericClient,
    document_id: &str,
) -> Result<Option<DocumentLocation>, IngestError> {
    let bucket_col = if documents_has_column(db, "storage_bucket")? {
        "storage_bucket"
    } else {
        "NULL::text"
    };
    let rows = db.query(
        &format!(
            "SELECT workspace_id::text, storage_path, {bucket_col} FROM documents WHERE id = $1::text::uuid LIMIT 1"
        ),
        &[&document_id],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(DocumentLocation {
        workspace_id: row.try_get(0)?,
        storage_path: row.try_get(1)?,
        bucket: row.try_get(2)?,
    }))
}

/// Best effort: mark the document failed with `message`; a failure here is logged, not raised.
pub fn mark_failed(
    services: &super::Services,
    workspace_id: &str,
    document_id: &str,
    message: &str,
) {
    let result = services.db().and_then(|mut db| {
        set_status(&mut *db, workspace_id, document_id, "failed", Some(message))
    });
    if let Err(e) = result {
        log::error!("could not mark document {document_id} failed ({message}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_definitions_yield_nothing_like_the_platform() {
        let pg = "CHECK ((status = ANY (ARRAY['pending_upload'::text, 'uploaded'::text, 'extracting'::text])))";
        assert!(parse_allowed_statuses(pg).is_empty());
    }

    #[test]
    fn in_lists_are_read() {
        let set = parse_allowed_statuses("status IN ('uploaded', 'extracting', \"indexed\")");
        assert!(set.contains("extracting") && set.contains("indexed") && set.contains("uploaded"));
        // Like the platform, only the last ')' is cut: a doubled one sticks to the last name.
        assert!(parse_allowed_statuses("CHECK (status IN ('a', 'b'))").contains("b')"));
    }
}
