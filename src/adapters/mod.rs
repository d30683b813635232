//! Clients for the systems the jobs talk to: PostgreSQL, SQLite, Supabase Storage and
//! OpenAI-compatible embeddings. Each adapter owns its connection settings, timeouts and retries.

pub mod embed_batcher;
pub mod embeddings;
pub mod postgres;
pub mod retry;
pub mod sqlite;
pub mod storage;
