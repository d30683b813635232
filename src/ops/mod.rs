//! The operations surface: what an operator or an orchestrator sees of a running worker.
//!
//! - [`metrics`]: Prometheus metrics, recorded by the runtime, the jobs and the adapters, and
//!   free when `--metrics-addr` is not given.
//! - [`health`]: liveness (every serving thread making progress) and readiness (Redis, workers,
//!   PostgreSQL) checks.
//! - [`http`]: the listener that serves `/metrics`, `/healthz` and `/readyz`, and the probe
//!   client behind `rq-worker health`.
//! - [`logging`]: text or JSON log lines with structured job fields.
//!
//! It knows nothing of RQ's Redis layout or of what jobs do: the runtime registers its threads
//! and probes here.

pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
