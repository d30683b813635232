//! Clients for the systems the jobs talk to: PostgreSQL, SQLite, Supabase Storage and
//! OpenAI-compatible embeddings. Each adapter owns its connection settings, timeouts and retries;
//! [`tls`] is the one TLS setup they all use (and the worker's Redis connections and webhooks).

pub mod embed_batcher;
pub mod embeddings;
pub mod postgres;
pub mod retry;
pub mod sqlite;
pub mod storage;
pub mod tls;
