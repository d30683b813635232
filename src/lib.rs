//! rq-worker: a wire-compatible, drop-in replacement for the Python RQ worker.
//!
//! Python enqueuers, `rq info`, rq-dashboard and Python `rq worker`s keep working against the Redis
//! state this crate writes; the job functions named in payloads run as native Rust handlers.
//!
//! # Layout
//!
//! - [`config`]: every flag and environment variable, parsed once into typed settings.
//! - [`value`]: [`value::PyValue`], the Python values payloads, results and `meta` carry, with
//!   Python's `repr()` and `json` rules. Depends on nothing else in the crate.
//! - [`rq`]: the RQ wire protocol (keys, job hashes, payload codec, registries, results, worker
//!   records, pub/sub commands, scripts). Knows nothing about threads or job functions.
//! - [`runtime`]: the worker process: job threads, dequeue loop, heartbeats, timeouts, shutdown,
//!   maintenance and the scheduler role. Knows RQ and the job registry, not what jobs do.
//! - [`jobs`]: the job registry (function name → handler with typed arguments) and the native jobs
//!   (diagnostics, ingestion, maintenance). Never sees Redis.
//! - [`adapters`]: clients for the outside world the jobs use (PostgreSQL, SQLite, Supabase
//!   Storage, OpenAI-compatible embeddings).
//! - [`pdf`]: PDF text extraction on lopdf; bytes in, per-page text out.
//! - [`ops`]: metrics, liveness/readiness probes and the log format: what operators see.

pub mod adapters;
pub mod config;
pub mod jobs;
pub mod ops;
pub mod pdf;
pub mod rq;
pub mod runtime;
pub mod value;
