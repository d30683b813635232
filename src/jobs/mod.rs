//! The job registry and the native job functions.
//!
//! A payload names a Python function (`jobs.ingest_extract.ingest_extract`); the [`Registry`] maps
//! that name to a Rust [`Handler`]. Handlers take typed arguments through [`Args`] and report
//! failures as [`JobError`], which the runtime turns into RQ's `exc_string`. Jobs never see Redis:
//! what they need from the worker (progress in `meta`, enqueuing a follow-up job, cancellation)
//! comes through [`JobContext`].

pub mod args;
pub mod diag;
pub mod ingest;
pub mod maintenance;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

pub use args::{Args, FromPy};

use crate::value::PyValue;

/// Why a job failed. `Display` is the message a Python user reads on the last line of `exc_info`;
/// [`JobError::python_type`] is the exception type printed before it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The payload names a function this binary does not implement.
    #[error("rq-worker does not implement the job function '{func_name}' (known: {known})")]
    UnknownFunction { func_name: String, known: String },
    /// Missing, extra or mistyped argument.
    #[error("{func_name}(): {problem}")]
    BadArguments { func_name: String, problem: String },
    /// The job ran past its timeout.
    #[error("Task exceeded maximum timeout value ({seconds} seconds)")]
    Timeout { seconds: i64 },
    /// The job noticed a cancellation (stop-job, cold shutdown) and returned early.
    #[error("job cancelled: {0}")]
    Cancelled(CancelReason),
    /// Any other failure of the job itself.
    #[error("{message}")]
    Failed {
        /// Python exception type shown to users (`ValueError`, `RuntimeError`, ...).
        exc_type: &'static str,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl JobError {
    /// A failure with a Python-style exception type and a message.
    pub fn failed(exc_type: &'static str, message: impl Into<String>) -> Self {
        JobError::Failed {
            exc_type,
            message: message.into(),
            source: None,
        }
    }

    /// A failure carrying its cause; the cause chain is printed in `exc_info`.
    pub fn with_source(
        exc_type: &'static str,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        JobError::Failed {
            exc_type,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The Python exception type name written on the last line of `exc_string`.
    pub fn python_type(&self) -> &'static str {
        match self {
            JobError::UnknownFunction { .. } => "ValueError",
            JobError::BadArguments { .. } => "TypeError",
            JobError::Timeout { .. } => "rq.timeouts.JobTimeoutException",
            JobError::Cancelled(_) => "rq_worker.JobCancelled",
            JobError::Failed { exc_type, .. } => exc_type,
        }
    }
}

/// Why a running job is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CancelReason {
    Timeout = 1,
    StopJob = 2,
    ColdShutdown = 3,
    KillHorse = 4,
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelReason::Timeout => "timeout",
            CancelReason::StopJob => "stopped by user",
            CancelReason::ColdShutdown => "cold shutdown",
            CancelReason::KillHorse => "kill-horse",
        })
    }
}

/// Cooperative cancellation flag shared between the runtime and a running handler.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicU8>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the job to stop; the first reason wins.
    pub fn cancel(&self, reason: CancelReason) {
        let _ = self
            .0
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
    }
    /// The reason the job was asked to stop, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(CancelReason::Timeout),
            2 => Some(CancelReason::StopJob),
            3 => Some(CancelReason::ColdShutdown),
            4 => Some(CancelReason::KillHorse),
            _ => None,
        }
    }
    /// `Err(JobError::Cancelled)` once cancelled: handlers call this between steps with `?`.
    pub fn check(&self) -> Result<(), JobError> {
        match self.reason() {
            Some(r) => Err(JobError::Cancelled(r)),
            None => Ok(()),
        }
    }
}

/// A job to enqueue from inside a job (chaining), in the shape Python's `Queue.enqueue` writes.
#[derive(Debug, Clone)]
pub struct EnqueueRequest {
    pub queue: String,
    pub func_name: String,
    pub args: Vec<PyValue>,
    pub kwargs: Vec<(String, PyValue)>,
    /// Job timeout in seconds; `None` = the queue default (180).
    pub timeout: Option<i64>,
    pub result_ttl: Option<i64>,
    pub failure_ttl: Option<i64>,
}

/// What a running job may ask of the worker. Implemented by the runtime over Redis.
pub trait JobHooks: Send + Sync {
    /// Merge `entries` into the job's `meta` dict (Python `job.meta.update(...); job.save_meta()`).
    fn update_meta(&self, entries: Vec<(String, PyValue)>) -> Result<(), String>;
    /// Enqueue another job; returns its id.
    fn enqueue(&self, request: EnqueueRequest) -> Result<String, String>;
}

/// Hooks that do nothing; for unit tests of handlers.
pub struct NoHooks;

impl JobHooks for NoHooks {
    fn update_meta(&self, _entries: Vec<(String, PyValue)>) -> Result<(), String> {
        Ok(())
    }
    fn enqueue(&self, _request: EnqueueRequest) -> Result<String, String> {
        Err("enqueue is not available here".into())
    }
}

/// Everything a handler may know about the job it runs.
pub struct JobContext<'a> {
    pub job_id: &'a str,
    pub func_name: &'a str,
    /// The queue the job came from (`origin`).
    pub queue: &'a str,
    pub worker_name: &'a str,
    /// Set by the runtime on timeout, stop-job, kill-horse and cold shutdown.
    pub cancel: &'a CancelToken,
    /// When the job's timeout expires (`None` for `timeout = -1`).
    pub deadline: Option<Instant>,
    pub hooks: &'a dyn JobHooks,
}

/// A native job function.
pub trait Handler: Send + Sync {
    fn call(&self, ctx: &JobContext<'_>, args: Args) -> Result<PyValue, JobError>;
}

impl<F> Handler for F
where
    F: Fn(&JobContext<'_>, Args) -> Result<PyValue, JobError> + Send + Sync,
{
    fn call(&self, ctx: &JobContext<'_>, args: Args) -> Result<PyValue, JobError> {
        self(ctx, args)
    }
}

/// A readiness check a job family needs (its database reachable, ...): `Ok` or why not.
pub type ReadinessProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Function name (as written in the payload) → handler; plus the readiness checks of the
/// services the handlers depend on.
#[derive(Default, Clone)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
    probes: Vec<(String, ReadinessProbe)>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `handler` under the Python dotted name enqueuers use.
    pub fn register(&mut self, func_name: &str, handler: impl Handler + 'static) {
        self.handlers
            .insert(func_name.to_string(), Arc::new(handler));
    }

    /// Add a readiness check (shown by `/readyz` under `name`).
    pub fn add_probe(&mut self, name: &str, probe: ReadinessProbe) {
        self.probes.push((name.to_string(), probe));
    }

    /// The readiness checks added by the job families.
    pub fn probes(&self) -> Vec<(String, ReadinessProbe)> {
        self.probes.clone()
    }

    pub fn get(&self, func_name: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(func_name).cloned()
    }

    /// Sorted names, for `--help`-style listings and error messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The error for a name that is not registered.
    pub fn unknown(&self, func_name: &str) -> JobError {
        JobError::UnknownFunction {
            func_name: func_name.to_string(),
            known: self.names().join(", "),
        }
    }
}

/// Every native job this binary implements.
pub fn registry(ingest: &crate::config::IngestConfig, concurrency: usize) -> Registry {
    let mut r = Registry::new();
    diag::register(&mut r);
    ingest::register(&mut r, ingest, concurrency);
    r
}
