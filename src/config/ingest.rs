//! Settings of the ingestion jobs, read from the environment variables the platform already sets
//! (`shared/spec/upstream.md`), so swapping the container image needs no new configuration.
//! Settings the platform never had (retries, encoding format, tokenizer choice, statement timeout)
//! get new names and defaults that keep the platform's behaviour.

use clap::Args;

/// Ingestion settings: database, storage, embeddings, budget and limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Ingestion jobs (platform environment)")]
pub struct IngestConfig {
    /// PostgreSQL (or `sqlite:///path` for the maintenance job) the ingestion jobs write to.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgresql://postgres:postgres@localhost:5432/enterprise_rag"
    )]
    pub database_url: String,

    /// Whether DATABASE_URL (or --database-url) was given rather than defaulted: readiness then
    /// checks PostgreSQL, since this worker is meant to serve the jobs that write to it.
    #[arg(skip)]
    pub database_url_given: bool,

    /// Supabase project URL; PDFs are downloaded from `{SUPABASE_URL}/storage/v1/object/{bucket}/{path}`.
    #[arg(long, env = "SUPABASE_URL")]
    pub supabase_url: Option<String>,

    /// Supabase service-role key (preferred over SUPABASE_KEY).
    #[arg(long, env = "SUPABASE_SERVICE_ROLE_KEY", hide_env_values = true)]
    pub supabase_service_role_key: Option<String>,

    /// Supabase anon key, used when no service-role key is set.
    #[arg(long, env = "SUPABASE_KEY", hide_env_values = true)]
    pub supabase_key: Option<String>,

    /// Bucket for the `run(document_id)` job forms.
    #[arg(long, env = "SUPABASE_STORAGE_BUCKET", default_value = "documents")]
    pub supabase_storage_bucket: String,

    /// Read objects from this local folder (`{dir}/{bucket}/{path}`) instead of Supabase Storage.
    #[arg(long, env = "STORAGE_DIR")]
    pub storage_dir: Option<std::path::PathBuf>,

    /// API key for the embeddings endpoint.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Base URL of an OpenAI-compatible API (vLLM, Ollama, TEI, LiteLLM, ...).
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub openai_base_url: String,

    /// Embedding model name.
    #[arg(
        long,
        env = "EMBEDDING_MODEL",
        default_value = "text-embedding-3-small"
    )]
    pub embedding_model: String,

    /// Dimension of the `chunk_embeddings.embedding` column.
    #[arg(long, env = "EMBEDDING_DIM", default_value_t = 1536)]
    pub embedding_dim: usize,

    /// Chunks per embeddings request.
    #[arg(long, env = "EMBEDDING_BATCH_SIZE", default_value_t = 32)]
    pub embedding_batch_size: usize,

    /// Longest time, in milliseconds, that chunks wait for other documents' chunks to fill a shared
    /// embeddings request (only while other index jobs of this process are running; 0 sends what is
    /// queued at once).
    #[arg(long, env = "EMBEDDING_BATCH_WAIT_MS", default_value_t = 1000)]
    pub embedding_batch_wait_ms: u64,

    /// Timeout of one embeddings request, in seconds.
    #[arg(
        long,
        env = "OPENAI_EMBEDDING_TIMEOUT_SECONDS",
        default_value_t = 300.0
    )]
    pub openai_embedding_timeout_seconds: f64,

    /// Tokens per workspace per UTC day.
    #[arg(long, env = "DAILY_TOKEN_LIMIT", default_value_t = 100_000)]
    pub daily_token_limit: i64,

    /// Reservations untouched for longer than this are reset by cleanup_stale_reservations.
    #[arg(
        long,
        env = "RESERVATION_TTL_SECONDS",
        default_value_t = 600,
        allow_negative_numbers = true
    )]
    pub reservation_ttl_seconds: i64,

    /// Largest PDF accepted, in bytes.
    #[arg(long, env = "MAX_FILE_SIZE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_file_size_bytes: u64,

    /// Most pages accepted per PDF.
    #[arg(long, env = "MAX_PDF_PAGE_COUNT", default_value_t = 10)]
    pub max_pdf_page_count: u32,

    /// Fewest extracted characters accepted per document.
    #[arg(long, env = "MIN_EXTRACTED_TEXT_CHARS", default_value_t = 1)]
    pub min_extracted_text_chars: usize,

    /// Timeout written on the index jobs the extract job enqueues.
    #[arg(long, env = "INGEST_INDEX_JOB_TIMEOUT_SECONDS", default_value_t = 1800)]
    pub ingest_index_job_timeout_seconds: i64,

    /// Timeout of extract jobs (informational: the enqueuer writes it on the job).
    #[arg(
        long,
        env = "INGEST_EXTRACT_JOB_TIMEOUT_SECONDS",
        default_value_t = 900
    )]
    pub ingest_extract_job_timeout_seconds: i64,

    /// `encoding_format` asked of the embeddings API: `base64` (what the official Python client
    /// asks for) or `float`.
    #[arg(long, env = "EMBEDDING_ENCODING_FORMAT", value_enum, default_value_t = EmbeddingEncoding::Base64)]
    pub embedding_encoding_format: EmbeddingEncoding,

    /// Retries of one embeddings request on 429, 5xx, timeouts and connection errors.
    #[arg(long, env = "EMBEDDING_MAX_RETRIES", default_value_t = 4)]
    pub embedding_max_retries: u32,

    /// How chunks are cut: cl100k_base tokens (500/100) or characters (2000/400), the platform's
    /// fallback when tiktoken is missing.
    #[arg(long, env = "CHUNK_TOKENIZER", value_enum, default_value_t = ChunkTokenizer::Cl100kBase)]
    pub chunk_tokenizer: ChunkTokenizer,

    /// PostgreSQL `statement_timeout` for the ingestion jobs' connections, in seconds (0 = none).
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_SECONDS", default_value_t = 60)]
    pub database_statement_timeout_seconds: u64,

    /// Timeout of one Supabase Storage download, in seconds.
    #[arg(long, env = "STORAGE_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub storage_timeout_seconds: f64,

    /// Retries of one Supabase Storage download on 5xx, timeouts and connection errors.
    #[arg(long, env = "STORAGE_MAX_RETRIES", default_value_t = 3)]
    pub storage_max_retries: u32,
}

/// `encoding_format` of embeddings requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbeddingEncoding {
    /// Little-endian float32 arrays, base64-encoded (smaller and faster to parse).
    Base64,
    /// JSON arrays of numbers.
    Float,
}

/// How the index job cuts page text into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChunkTokenizer {
    /// 500-token windows with 100 tokens of overlap, tiktoken `cl100k_base`.
    #[value(name = "cl100k_base")]
    Cl100kBase,
    /// 2000-character windows with 400 characters of overlap.
    Chars,
}

impl IngestConfig {
    /// Settings from the environment and defaults only (no flags), for tests and tools.
    pub fn from_env() -> Result<Self, String> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            ingest: IngestConfig,
        }
        <Only as clap::Parser>::try_parse_from(["rq-worker"])
            .map(|o| o.ingest)
            .map_err(|e| e.to_string())
    }

    /// The Supabase key: service-role key, else the anon key.
    pub fn supabase_service_key(&self) -> Option<&str> {
        [&self.supabase_service_role_key, &self.supabase_key]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|k| !k.is_empty())
    }
}
