//! The platform's ingestion jobs as native handlers: extract (PDF → `document_pages`), index
//! (pages → `chunks` + `chunk_embeddings` under the token budget) and the maintenance job.
//!
//! [`register`] puts all five function names of `shared/spec/upstream.md` in the registry. The
//! services they need (PostgreSQL pool, storage, embeddings client) are built on first use and
//! shared by every job thread, so a worker that only runs other jobs never needs `DATABASE_URL`.

pub mod budget;
pub mod chunking;
pub mod db;
pub mod extract;
pub mod index;
pub mod pdf_text;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapters::embed_batcher::EmbedBatcher;
use crate::adapters::embeddings::{EmbeddingsClient, EmbeddingsConfig, EmbeddingsError};
use crate::adapters::postgres::{PgConn, PgError, PgPool};
use crate::adapters::storage::{LocalStorage, Storage, StorageError, SupabaseStorage};
use crate::config::IngestConfig;
use crate::jobs::{CancelReason, JobContext, JobError, Registry};
use crate::value::PyValue;

/// Longest `error_message` written to `documents`, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 2000;

/// Register `jobs.ingest_extract.{ingest_extract,run}`, `jobs.ingest_index.{ingest_index,run}` and
/// `jobs.maintenance.cleanup_stale_reservations`. `concurrency` sizes the PostgreSQL pool.
pub fn register(registry: &mut Registry, config: &IngestConfig, concurrency: usize) {
    let services = Arc::new(Services::new(config.clone(), concurrency));
    let s = services.clone();
    registry.register(
        "jobs.ingest_extract.ingest_extract",
        move |ctx: &JobContext<'_>, args| extract::ingest_extract(&s, ctx, args),
    );
    let s = services.clone();
    registry.register(
        "jobs.ingest_extract.run",
        move |ctx: &JobContext<'_>, args| extract::run(&s, ctx, args),
    );
    let s = services.clone();
    registry.register(
        "jobs.ingest_index.ingest_index",
        move |ctx: &JobContext<'_>, args| index::ingest_index(&s, ctx, args),
    );
    let s = services.clone();
    registry.register(
        "jobs.ingest_index.run",
        move |ctx: &JobContext<'_>, args| index::run(&s, ctx, args),
    );
    if config.database_url_given && !config.database_url.starts_with("sqlite:") {
        let url = config.database_url.clone();
        registry.add_probe(
            "postgres",
            Arc::new(move || crate::adapters::postgres::ping(&url, Duration::from_secs(3))),
        );
    }
    let s = services;
    registry.register(
        "jobs.maintenance.cleanup_stale_reservations",
        move |ctx: &JobContext<'_>, args| {
            crate::jobs::maintenance::cleanup_stale_reservations(&s.config, ctx, args)
        },
    );
}

/// Clients shared by the job threads, created lazily; a failed creation is retried by the next job.
pub struct Services {
    pub config: IngestConfig,
    concurrency: usize,
    pg: Mutex<Option<PgPool>>,
    storage: Mutex<Option<Storage>>,
    embeddings: Mutex<Option<EmbedBatcher>>,
}

impl Services {
    pub fn new(config: IngestConfig, concurrency: usize) -> Self {
        Services {
            config,
            concurrency: concurrency.max(1),
            pg: Mutex::new(None),
            storage: Mutex::new(None),
            embeddings: Mutex::new(None),
        }
    }

    /// A pooled PostgreSQL connection.
    pub fn db(&self) -> Result<PgConn, IngestError> {
        let pool = {
            let mut guard = self.pg.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(p) => p.clone(),
                None => {
                    let timeout =
                        Duration::from_secs(self.config.database_statement_timeout_seconds);
                    let pool = PgPool::new(
                        &self.config.database_url,
                        u32::try_from(self.concurrency).unwrap_or(u32::MAX),
                        timeout,
                    )?;
                    *guard = Some(pool.clone());
                    pool
                }
            }
        };
        Ok(pool.get()?)
    }

    /// The object store: STORAGE_DIR when set, else Supabase.
    pub fn storage(&self) -> Result<Storage, IngestError> {
        let mut guard = self.storage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let c = &self.config;
        let storage = if let Some(dir) = &c.storage_dir {
            Storage::Local(LocalStorage { dir: dir.clone() })
        } else {
            match (
                c.supabase_url.as_deref().filter(|u| !u.is_empty()),
                c.supabase_service_key(),
            ) {
                (Some(url), Some(key)) => Storage::Supabase(SupabaseStorage::new(
                    url,
                    key,
                    Duration::from_secs_f64(c.storage_timeout_seconds.clamp(0.1, 86_400.0)),
                    c.storage_max_retries,
                )),
                _ => return Err(StorageError::NotConfigured.into()),
            }
        };
        *guard = Some(storage.clone());
        Ok(storage)
    }

    /// The embeddings client, behind the batcher that lets concurrent index jobs share requests.
    pub fn embeddings(&self) -> EmbedBatcher {
        let mut guard = self.embeddings.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = guard.as_ref() {
            return e.clone();
        }
        let c = &self.config;
        let client = EmbeddingsClient::new(EmbeddingsConfig {
            base_url: c.openai_base_url.clone(),
            api_key: c.openai_api_key.clone(),
            model: c.embedding_model.clone(),
            encoding: c.embedding_encoding_format,
            timeout: Duration::from_secs_f64(
                c.openai_embedding_timeout_seconds.clamp(0.1, 86_400.0),
            ),
            max_retries: c.embedding_max_retries,
            dim: c.embedding_dim,
        });
        let batcher = EmbedBatcher::new(
            client,
            c.embedding_batch_size,
            Duration::from_millis(c.embedding_batch_wait_ms),
        );
        *guard = Some(batcher.clone());
        batcher
    }
}

/// Why an ingestion job failed. `Display` is what goes into `documents.error_message`.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Bad input or state the job refuses (Python `ValueError`).
    #[error("{0}")]
    Value(String),
    /// A database statement failed.
    #[error("{message}")]
    Db {
        message: String,
        #[source]
        source: ::postgres::Error,
    },
    #[error("{0}")]
    Pool(#[from] PgError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Pdf(#[from] pdf_text::PdfTextError),
    #[error("{0}")]
    Embeddings(#[from] EmbeddingsError),
    /// The daily token budget cannot cover the next chunk.
    #[error("Insufficient token budget for embeddings")]
    Budget {
        used: i64,
        reserved: i64,
        limit: i64,
    },
    /// Chaining the index job failed.
    #[error("Failed to enqueue the index job: {0}")]
    Enqueue(String),
    #[error("job cancelled: {0}")]
    Cancelled(CancelReason),
}

impl From<::postgres::Error> for IngestError {
    fn from(source: ::postgres::Error) -> Self {
        IngestError::Db {
            message: crate::adapters::postgres::describe(&source),
            source,
        }
    }
}

impl From<JobError> for IngestError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Cancelled(r) => IngestError::Cancelled(r),
            other => IngestError::Value(other.to_string()),
        }
    }
}

impl IngestError {
    /// The text for `documents.error_message` (at most 2000 characters).
    pub fn document_message(&self) -> String {
        match self {
            IngestError::Cancelled(CancelReason::Timeout) => {
                "Task exceeded maximum timeout value".to_string()
            }
            other => truncate_chars(&other.to_string(), MAX_ERROR_MESSAGE_CHARS),
        }
    }

    /// The job failure the runtime reports, with a Python-looking exception type.
    pub fn into_job_error(self) -> JobError {
        let exc_type = match &self {
            IngestError::Value(_) => "ValueError",
            IngestError::Db { source, .. } => {
                if source.as_db_error().is_some() {
                    "sqlalchemy.exc.DatabaseError"
                } else {
                    "sqlalchemy.exc.OperationalError"
                }
            }
            IngestError::Pool(_) => "sqlalchemy.exc.OperationalError",
            IngestError::Storage(StorageError::Transport { .. }) => "httpx.TransportError",
            IngestError::Storage(StorageError::Cancelled) => "rq_worker.JobCancelled",
            IngestError::Storage(_) => "ValueError",
            IngestError::Pdf(pdf_text::PdfTextError(crate::pdf::PdfError::Encrypted)) => {
                "pypdf.errors.FileNotDecryptedError"
            }
            IngestError::Pdf(_) => "pypdf.errors.PdfReadError",
            IngestError::Embeddings(e) => e.python_type(),
            IngestError::Budget { .. } => "app.core.errors.BudgetExceededError",
            IngestError::Enqueue(_) => "redis.exceptions.ConnectionError",
            IngestError::Cancelled(r) => return JobError::Cancelled(*r),
        };
        let message = match &self {
            IngestError::Budget { .. } => {
                "Daily token limit reached for this workspace".to_string()
            }
            other => other.to_string(),
        };
        match self {
            IngestError::Db { source, .. } => JobError::with_source(exc_type, message, source),
            _ => JobError::failed(exc_type, message),
        }
    }
}

/// The first `max` characters of `s`.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Parse a UUID as Python's `uuid.UUID(str)` does (hyphens optional, braces and `urn:uuid:` allowed),
/// returning its canonical lowercase hyphenated form.
pub fn parse_uuid(s: &str) -> Result<String, IngestError> {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| IngestError::Value("badly formed hexadecimal UUID string".into()))
}

/// Write progress into the job's `meta`; a failure to do so never fails the job.
pub fn progress(ctx: &JobContext<'_>, entries: Vec<(&str, PyValue)>) {
    let entries = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Err(e) = ctx.hooks.update_meta(entries) {
        log::debug!("job {}: could not save progress: {e}", ctx.job_id);
    }
}

/// `Err(Cancelled)` once the runtime asked the job to stop.
pub fn check_cancel(ctx: &JobContext<'_>) -> Result<(), IngestError> {
    match ctx.cancel.reason() {
        Some(r) => Err(IngestError::Cancelled(r)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms_python_accepts() {
        let canon = "12345678-1234-5678-1234-567812345678";
        assert_eq!(
            parse_uuid("12345678123456781234567812345678").unwrap(),
            canon
        );
        assert_eq!(
            parse_uuid("{12345678-1234-5678-1234-567812345678}").unwrap(),
            canon
        );
        assert_eq!(
            parse_uuid("urn:uuid:12345678-1234-5678-1234-567812345678").unwrap(),
            canon
        );
        assert_eq!(
            parse_uuid("nope").unwrap_err().to_string(),
            "badly formed hexadecimal UUID string"
        );
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("ab", 5), "ab");
    }

    #[test]
    fn budget_error_reads_like_the_platform() {
        let e = IngestError::Budget {
            used: 1,
            reserved: 0,
            limit: 1,
        };
        assert_eq!(
            e.document_message(),
            "Insufficient token budget for embeddings"
        );
        let j = e.into_job_error();
        assert_eq!(j.python_type(), "app.core.errors.BudgetExceededError");
        assert_eq!(
            j.to_string(),
            "Daily token limit reached for this workspace"
        );
    }
}
