//! Prometheus metrics of the process: jobs by queue and function, job durations, Redis calls,
//! maintenance, the ingestion jobs' outside calls, and the process itself (RSS, CPU, threads, fds).
//!
//! One process-wide set, created by [`enable`] when `--metrics-addr` is given. Until then (and in
//! tools and tests that never enable it) [`get`] returns `None` and every recording site does
//! nothing, so metrics cost nothing when they are off. Names follow Prometheus conventions
//! (`rq_worker_` prefix, `_total` counters, `_seconds` and `_bytes` in base units); README maps
//! them to rq-exporter's names where a figure overlaps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The label value used for a function this binary does not implement: payloads come from
/// outside, and one series per unknown name would let any enqueuer grow the registry without end.
pub const UNREGISTERED_FUNC: &str = "<unregistered>";

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Jobs taken from a queue and started, by queue and function.
    pub jobs_started: IntCounterVec,
    /// Jobs that ended `finished`.
    pub jobs_finished: IntCounterVec,
    /// Jobs that ended `failed` (no retry left, or not retryable).
    pub jobs_failed: IntCounterVec,
    /// Failed executions put back for another try (immediately or scheduled).
    pub jobs_retried: IntCounterVec,
    /// Jobs stopped by a stop-job command.
    pub jobs_stopped: IntCounterVec,
    /// Started jobs of dead workers found by this process's maintenance, by queue.
    pub jobs_abandoned: IntCounterVec,
    /// Execution time of jobs, by queue and function.
    pub job_duration: HistogramVec,
    /// Jobs running now.
    pub jobs_in_flight: IntGauge,
    /// Worker slots (RQ workers) of this process that are registered now.
    pub slots: IntGauge,
    /// Duration of the worker's Redis calls (scripts and commands), by operation.
    pub redis_duration: HistogramVec,
    /// The series of the operations every job uses, resolved once.
    redis_ops: Vec<(&'static str, Histogram)>,
    /// Redis connections re-established after a loss.
    pub redis_reconnects: IntCounter,
    /// Redis calls that failed, by kind (`connection`, `response`).
    pub redis_errors: IntCounterVec,
    /// Panics caught in the worker's own threads (slot loops and service threads), each
    /// followed by a fresh loop or, when they repeat, by the process stopping.
    pub slot_panics: IntCounter,
    /// Python processes started for `--python` (pool processes and fork zygotes).
    pub python_starts: IntCounter,
    /// Python processes that ended while running a job, by cause (died, memory, killed).
    pub python_ends: IntCounterVec,
    /// Maintenance passes run (one per interval, all queues).
    pub maintenance_runs: IntCounter,
    /// What maintenance cleaned, by kind.
    pub maintenance_cleaned: IntCounterVec,
    /// Ingestion documents that reached a final state of a stage, by stage and outcome.
    pub ingest_documents: IntCounterVec,
    /// Pages extracted and written.
    pub ingest_pages: IntCounter,
    /// Chunks written with their embeddings.
    pub ingest_chunks: IntCounter,
    /// Embeddings requests sent, by outcome (`ok`, `error`).
    pub embedding_requests: IntCounterVec,
    /// Inputs (chunks) sent in embeddings requests.
    pub embedding_inputs: IntCounter,
    /// Tokens reported by the embeddings API (`usage.total_tokens`, else our count).
    pub embedding_tokens: IntCounter,
    /// Embeddings requests retried after a 429, 5xx or transport error.
    pub embedding_retries: IntCounter,
    /// Bytes downloaded from storage.
    pub storage_bytes: IntCounter,
    /// Storage downloads retried.
    pub storage_retries: IntCounter,
    /// Index jobs refused by the workspace's daily token budget.
    pub budget_refusals: IntCounter,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

impl Metrics {
    // The names and label sets below are constants: `new` panics only on a programming error,
    // which the unit test catches.
    fn new() -> Metrics {
        let mut m = Metrics::unresolved();
        m.redis_ops = ["start", "finish", "finish_and_start", "finish_replay"]
            .into_iter()
            .map(|op| (op, m.redis_duration.with_label_values(&[op])))
            .collect();
        m
    }

    fn unresolved() -> Metrics {
        let r = Registry::new();
        let qf = &["queue", "func"];
        let jobs_in_flight = IntGauge::new("rq_worker_jobs_in_flight", "Jobs running now.")
            .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(jobs_in_flight.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let slots = IntGauge::new(
            "rq_worker_slots",
            "Worker slots (each one RQ worker) of this process that are registered now.",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(slots.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        Metrics {
            jobs_started: counter_vec(
                &r,
                "rq_worker_jobs_started_total",
                "Jobs dequeued and started, by queue and function.",
                qf,
            ),
            jobs_finished: counter_vec(
                &r,
                "rq_worker_jobs_finished_total",
                "Jobs that ended finished.",
                qf,
            ),
            jobs_failed: counter_vec(
                &r,
                "rq_worker_jobs_failed_total",
                "Jobs that ended failed (no retry left or not retryable).",
                qf,
            ),
            jobs_retried: counter_vec(
                &r,
                "rq_worker_jobs_retried_total",
                "Failed executions put back for another try (immediately or scheduled).",
                qf,
            ),
            jobs_stopped: counter_vec(
                &r,
                "rq_worker_jobs_stopped_total",
                "Jobs stopped by a stop-job command.",
                qf,
            ),
            jobs_abandoned: counter_vec(
                &r,
                "rq_worker_jobs_abandoned_total",
                "Started jobs of dead workers found by this process's maintenance, by queue.",
                &["queue"],
            ),
            job_duration: histogram_vec(
                &r,
                "rq_worker_job_duration_seconds",
                "Execution time of jobs (start to outcome), by queue and function.",
                qf,
                vec![
                    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 180.0, 600.0, 1800.0,
                ],
            ),
            jobs_in_flight,
            slots,
            redis_duration: histogram_vec(
                &r,
                "rq_worker_redis_command_duration_seconds",
                "Duration of the worker's Redis calls (blocking dequeues excluded), by operation.",
                &["op"],
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
                    1.0, 5.0,
                ],
            ),
            redis_ops: Vec::new(),
            redis_reconnects: counter(
                &r,
                "rq_worker_redis_reconnects_total",
                "Redis connections re-established after a loss.",
            ),
            slot_panics: counter(
                &r,
                "rq_worker_thread_panics_total",
                "Panics caught in the worker's own threads (each followed by a fresh loop, or by the process stopping when they repeat).",
            ),
            python_starts: counter(
                &r,
                "rq_worker_python_processes_started_total",
                "Python processes started for --python (pool processes and fork-mode zygotes), including replacements.",
            ),
            python_ends: counter_vec(
                &r,
                "rq_worker_python_job_process_ends_total",
                "Processes running a Python job that ended without a reply: died (exit or signal of its own), memory (killed over --python-max-rss), killed (timeout past the grace, stop-job, kill-horse, cold shutdown).",
                &["cause"],
            ),
            redis_errors: counter_vec(
                &r,
                "rq_worker_redis_errors_total",
                "Redis calls that failed, by kind (connection, response).",
                &["kind"],
            ),
            maintenance_runs: counter(
                &r,
                "rq_worker_maintenance_runs_total",
                "Maintenance passes run by this process.",
            ),
            maintenance_cleaned: counter_vec(
                &r,
                "rq_worker_maintenance_cleaned_total",
                "What maintenance cleaned, by kind (abandoned_jobs, stuck_jobs, dangling_ids, \
                 dead_workers, ready_enqueued, group_ids, groups, rate_limit_slots, \
                 rate_limit_promoted).",
                &["kind"],
            ),
            ingest_documents: counter_vec(
                &r,
                "rq_worker_ingest_documents_total",
                "Documents that ended an ingestion stage, by stage (extract, index) and outcome \
                 (ok, failed).",
                &["stage", "outcome"],
            ),
            ingest_pages: counter(
                &r,
                "rq_worker_ingest_pages_total",
                "Pages extracted and written.",
            ),
            ingest_chunks: counter(
                &r,
                "rq_worker_ingest_chunks_total",
                "Chunks written with their embeddings.",
            ),
            embedding_requests: counter_vec(
                &r,
                "rq_worker_embedding_requests_total",
                "Embeddings requests, by outcome (ok, error).",
                &["outcome"],
            ),
            embedding_inputs: counter(
                &r,
                "rq_worker_embedding_inputs_total",
                "Inputs (chunks) sent in successful embeddings requests.",
            ),
            embedding_tokens: counter(
                &r,
                "rq_worker_embedding_tokens_total",
                "Tokens embedded (the API's usage.total_tokens).",
            ),
            embedding_retries: counter(
                &r,
                "rq_worker_embedding_retries_total",
                "Embeddings requests retried after a 429, 5xx or transport error.",
            ),
            storage_bytes: counter(
                &r,
                "rq_worker_storage_downloaded_bytes_total",
                "Bytes downloaded from storage.",
            ),
            storage_retries: counter(
                &r,
                "rq_worker_storage_retries_total",
                "Storage downloads retried after a 5xx, timeout or connection error.",
            ),
            budget_refusals: counter(
                &r,
                "rq_worker_budget_refusals_total",
                "Index jobs refused by the workspace's daily token budget.",
            ),
            registry: r,
        }
    }

    /// The text exposition format (version 0.0.4) of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            log::warn!("metrics: cannot encode: {e}");
        }
        out
    }
}

/// Turn metrics on for the rest of the process (idempotent).
pub fn enable() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// The metrics, when enabled.
#[inline]
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Run `f` with the metrics when they are enabled.
#[inline]
pub fn with(f: impl FnOnce(&'static Metrics)) {
    if let Some(m) = METRICS.get() {
        f(m);
    }
}

/// Time one Redis call under `op` when metrics are on; the call's result passes through, and a
/// failure is counted by kind.
#[inline]
pub fn redis_call<T>(
    op: &'static str,
    f: impl FnOnce() -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    let Some(m) = METRICS.get() else {
        return f();
    };
    let t = std::time::Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    match m.redis_ops.iter().find(|(name, _)| *name == op) {
        Some((_, h)) => h.observe(secs),
        None => m.redis_duration.with_label_values(&[op]).observe(secs),
    }
    if let Err(e) = &r {
        let kind = if crate::runtime::connection::is_connection_error(e) {
            "connection"
        } else {
            "response"
        };
        m.redis_errors.with_label_values(&[kind]).inc();
    }
    r
}

/// The series of one (queue, function) pair, resolved once per thread: label lookups hash the
/// label values and take the family's lock, which a job's few increments should not pay each time.
struct JobSeries {
    started: IntCounter,
    finished: IntCounter,
    failed: IntCounter,
    retried: IntCounter,
    stopped: IntCounter,
    duration: Histogram,
}

thread_local! {
    static JOB_SERIES: RefCell<HashMap<String, HashMap<String, Rc<JobSeries>>>> =
        RefCell::new(HashMap::new());
}

fn job_series(m: &Metrics, queue: &str, func: &str) -> Rc<JobSeries> {
    JOB_SERIES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(s) = cache.get(queue).and_then(|q| q.get(func)) {
            return s.clone();
        }
        let l = [queue, func];
        let s = Rc::new(JobSeries {
            started: m.jobs_started.with_label_values(&l),
            finished: m.jobs_finished.with_label_values(&l),
            failed: m.jobs_failed.with_label_values(&l),
            retried: m.jobs_retried.with_label_values(&l),
            stopped: m.jobs_stopped.with_label_values(&l),
            duration: m.job_duration.with_label_values(&l),
        });
        cache
            .entry(queue.to_string())
            .or_default()
            .insert(func.to_string(), s.clone());
        s
    })
}

/// Record a job's start.
pub fn job_started(queue: &str, func: &str) {
    with(|m| {
        job_series(m, queue, func).started.inc();
        m.jobs_in_flight.inc();
    });
}

/// Record a job's end.
pub fn job_ended(queue: &str, func: &str, outcome: JobEnd, elapsed: Duration) {
    with(|m| {
        m.jobs_in_flight.dec();
        let s = job_series(m, queue, func);
        match outcome {
            JobEnd::Finished => s.finished.inc(),
            JobEnd::Failed => s.failed.inc(),
            JobEnd::Retried => s.retried.inc(),
            JobEnd::Stopped => s.stopped.inc(),
            JobEnd::Unrecorded => {}
        }
        s.duration.observe(elapsed.as_secs_f64());
    });
}

/// How a job ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    Finished,
    Failed,
    Retried,
    Stopped,
    /// The outcome could not be written (or the job was deleted while it ran).
    Unrecorded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        m.jobs_started.with_label_values(&["q", "f"]).inc();
        m.embedding_requests.with_label_values(&["ok"]).inc();
        m.job_duration.with_label_values(&["q", "f"]).observe(0.2);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("rq_worker_jobs_started_total{func=\"f\",queue=\"q\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE rq_worker_job_duration_seconds histogram"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
