//! The worker process: job threads, dequeue loop, heartbeats, timeouts, shutdown, maintenance and
//! the scheduler role. Knows the RQ protocol and the job registry, not what jobs do.
//!
//! Threads: one per worker slot (`--concurrency`), each with its own job thread; one heartbeat
//! thread; one pub/sub listener; one signal handler; one maintenance thread; and, with
//! `--with-scheduler`, one scheduler thread. They share a [`Process`] and stop through its
//! [`Shutdown`] handle.

pub mod connection;
pub mod control;
pub mod executor;
pub mod failure;
pub mod faults;
pub mod heartbeat;
pub mod hooks;
pub mod maintenance;
pub mod scheduler;
pub mod sentinel;
pub mod shutdown;
pub mod slot;
pub mod supervise;
pub mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};
use redis::Commands;

use crate::config::{RqVersion, SerializerKind, WorkerConfig};
use crate::jobs::Registry;
use crate::ops::health::{Liveness, Readiness};
use crate::ops::{http, metrics};
use crate::rq::codec::Serializer;
use crate::rq::keys::Keys;
use crate::rq::scripts::Layout;
use crate::rq::worker::WorkerInfo;
use connection::{ConnectError, Connector, PooledManager};
use shutdown::{Phase, Shutdown};
use slot::SlotShared;

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("Redis {version} is too old: rq-worker needs Redis 6.2 or later (LMOVE/BLMOVE)")]
    RedisTooOld { version: String },
    #[error(
        "--rq-version v2 refused: live rq 1.x workers ({versions:?}) cannot read job_id:execution_id \
         started-registry members and would lose those jobs; use --rq-version compat"
    )]
    V2WithRq1Workers { versions: Vec<String> },
    #[error("--concurrency must be at least 1")]
    NoSlots,
    #[error("no worker could be registered (see the log)")]
    NoWorkerStarted,
    #[error("{0}")]
    GaveUp(String),
    #[error("--python: {0}")]
    Python(String),
    #[error(transparent)]
    Metrics(#[from] http::BindError),
}

/// What every thread of the process shares.
pub struct Process {
    pub config: WorkerConfig,
    pub keys: Keys,
    pub queues: Vec<String>,
    pub layout: Layout,
    pub serializer: Serializer,
    pub registry: Registry,
    pub connector: Connector,
    /// Short-command connections for job hooks and control messages.
    pub pool: r2d2::Pool<PooledManager>,
    pub shutdown: Arc<Shutdown>,
    pub slots: Vec<Arc<SlotShared>>,
    pub hostname: String,
    /// The serving threads' check-ins, for `/healthz`.
    pub liveness: Arc<Liveness>,
    /// Test-only fault injection (`RQ_WORKER_TEST_FAULTS`).
    pub faults: faults::Faults,
    /// When the maintenance thread should look at the intermediate lists early (see
    /// [`Process::request_intermediate_check`]).
    intermediate_checks: std::sync::Mutex<Vec<std::time::Instant>>,
    /// Jobs finished by all slots, for `--max-jobs`.
    jobs_done: AtomicU64,
    /// Why a thread gave up (see [`Process::give_up`]); the process then exits non-zero.
    gave_up: std::sync::Mutex<Option<String>>,
    /// How Python jobs run (`--python`), when they do.
    pub python: Option<Arc<crate::python::PythonConfig>>,
}

impl Process {
    /// EXPIRE of an idle worker hash (RQ: worker_ttl + 60).
    pub fn idle_ttl(&self) -> u64 {
        self.config.worker_ttl + 60
    }

    /// A thread cannot go on (it kept panicking): say so, stop the whole process (a warm
    /// shutdown: the other slots finish their jobs) and make it exit non-zero, rather than serve
    /// on with fewer threads.
    pub fn give_up(&self, why: String) {
        log::error!("{why}");
        self.gave_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.shutdown.advance(Phase::Warm);
    }

    pub fn job_done(&self) {
        self.jobs_done.fetch_add(1, Ordering::SeqCst);
    }

    pub fn jobs_done(&self) -> u64 {
        self.jobs_done.load(Ordering::SeqCst)
    }

    /// How long a slot may take between check-ins: its longest Redis call (the read timeout
    /// of a blocking dequeue) and a margin.
    pub fn slot_bound(&self) -> Duration {
        self.config.dequeue_timeout() + Duration::from_secs(40)
    }

    /// A dequeue's reply was lost with the connection, so a job may sit in an intermediate list
    /// that no worker will start: have maintenance look now (to note it) and again once it counts
    /// as stuck (to put it back in its queue), instead of at its next full run.
    pub fn request_intermediate_check(&self) {
        let now = std::time::Instant::now();
        let later = Duration::from_secs_f64(crate::rq::maintenance::STUCK_AFTER_SECS + 2.0);
        let mut c = self
            .intermediate_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.push(now + Duration::from_secs(1));
        c.push(now + later);
    }

    /// Whether an early intermediate check is due at `now` (due ones are taken).
    pub fn intermediate_check_due(&self, now: std::time::Instant) -> bool {
        let mut c = self
            .intermediate_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = c.len();
        c.retain(|t| *t > now);
        c.len() < before
    }

    /// The next early intermediate check asked for.
    pub fn next_intermediate_check(&self) -> Option<std::time::Instant> {
        self.intermediate_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .min()
            .copied()
    }

    pub fn max_jobs_reached(&self) -> bool {
        self.max_jobs_reached_after(0)
    }

    /// Whether `--max-jobs` is reached once `more` further jobs are done.
    pub fn max_jobs_reached_after(&self, more: u64) -> bool {
        self.config
            .max_jobs
            .is_some_and(|m| self.jobs_done.load(Ordering::SeqCst) + more >= m)
    }
}

/// Names of the slots: the given name (or a random uuid hex) for one slot; `<name>-<i>` for several.
fn slot_names(config: &WorkerConfig) -> Vec<String> {
    let n = config.concurrency;
    match (&config.name, n) {
        (Some(name), 1) => vec![name.clone()],
        (Some(name), _) => (1..=n).map(|i| format!("{name}-{i}")).collect(),
        (None, _) => (0..n)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect(),
    }
}

fn redis_version(con: &mut redis::Connection) -> Option<(u32, u32, String)> {
    let info: String = redis::cmd("INFO").arg("server").query(con).ok()?;
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?
        .trim()
        .to_string();
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Some((it.next().unwrap_or(0), it.next().unwrap_or(0), v))
}

/// Marks rq-worker's own worker records in their `version` field.
const VERSION_MARKER: &str = "rq-worker";

/// The worker hash's `version`, which rq-dashboard shows as "RQ {version}": the oldest RQ release
/// whose clients read everything this layout writes (verified: 1.16.0 for compat, 2.12.0 for v2),
/// with rq-worker's own version as a PEP 440 local label, e.g. `1.16.0+rq-worker.0.1.0`. It
/// parses as a version (`packaging.version.Version`) should any tool compare it, and the marker
/// tells rq-worker's records apart from Python workers'.
fn worker_version(layout: Layout) -> String {
    let rq = match layout {
        Layout::Compat => "1.16.0",
        Layout::V2 => "2.12.0",
    };
    format!("{rq}+{VERSION_MARKER}.{}", env!("CARGO_PKG_VERSION"))
}

/// The worker hash's `python_version` (a Python worker writes `sys.version`), which rq-dashboard
/// shows as "Python {python_version}": there is no Python here, so it says what runs instead.
fn worker_python_version(layout: Layout) -> String {
    format!(
        "n/a (Rust {VERSION_MARKER} {}, {} layout)",
        env!("CARGO_PKG_VERSION"),
        match layout {
            Layout::Compat => "compat",
            Layout::V2 => "v2",
        }
    )
}

/// Whether a worker hash's `version` is an rq-worker's (this one's format or the older
/// `rq-worker X.Y.Z`).
fn is_rq_worker_version(version: &str) -> bool {
    version.contains(VERSION_MARKER)
}

/// RQ versions of the live Python workers (rq-worker processes excluded).
fn python_worker_versions(con: &mut redis::Connection, keys: &Keys) -> Vec<String> {
    let workers: Vec<String> = con.smembers(keys.workers()).unwrap_or_default();
    let mut versions = Vec::new();
    for w in workers.iter().take(1000) {
        if let Ok(Some(v)) = con.hget::<_, _, Option<String>>(w, "version")
            && !is_rq_worker_version(&v)
        {
            versions.push(v);
        }
    }
    versions
}

fn is_rq1(version: &str) -> bool {
    version.starts_with("0.") || version.starts_with("1.")
}

/// `--rq-version auto`: v2 only on unambiguous ≥ 2.0 evidence (rq-versions.md §5.2).
fn detect_layout(con: &mut redis::Connection, keys: &Keys) -> Layout {
    let python = python_worker_versions(con, keys);
    let old = python.iter().any(|v| is_rq1(v));
    let modern = python
        .iter()
        .any(|v| v.starts_with("2.") || v.starts_with("3."));
    let layout = if !old && modern {
        Layout::V2
    } else {
        Layout::Compat
    };
    info!(
        "--rq-version auto: live Python worker versions {:?} -> {} layout",
        python,
        if layout == Layout::V2 { "v2" } else { "compat" }
    );
    layout
}

/// The readiness probes: Redis answers, this process has registered workers and is not stopping,
/// and whatever the job registry adds (PostgreSQL for the ingestion jobs).
fn readiness(process: &Arc<Process>) -> Readiness {
    let r = Readiness::default();
    let p = process.clone();
    r.add(
        "redis",
        Box::new(move || {
            let mut con = p
                .pool
                .get_timeout(Duration::from_secs(3))
                .map_err(|e| format!("unreachable ({e})"))?;
            redis::cmd("PING")
                .query::<String>(&mut *con)
                .map(|_| ())
                .map_err(|e| format!("PING failed ({e})"))
        }),
    );
    let p = process.clone();
    r.add(
        "workers",
        Box::new(move || {
            if p.shutdown.stopping() {
                return Err("shutting down".into());
            }
            let n = p
                .slots
                .iter()
                .filter(|s| s.registered.load(Ordering::SeqCst))
                .count();
            if n == 0 {
                return Err("no worker registered yet".into());
            }
            Ok(())
        }),
    );
    for (name, probe) in process.registry.probes() {
        r.add(name, Box::new(move || probe()));
    }
    r
}

/// The Python executor's settings, checked by starting one Python process (`None` without
/// `--python`): a wrong interpreter, an environment without `rq` or a `--preload` module that
/// does not import stops the worker at start instead of failing jobs.
fn python_config(
    config: &WorkerConfig,
) -> Result<Option<Arc<crate::python::PythonConfig>>, RuntimeError> {
    let Some(interpreter) = config.python.interpreter.clone() else {
        return Ok(None);
    };
    if config.sentinel.sentinel.is_some() || sentinel::is_sentinel_url(&config.url) {
        return Err(RuntimeError::Python(
            "Python jobs with Redis Sentinel are not supported yet (job.connection would not \
             follow a failover); give the master's redis:// URL"
                .into(),
        ));
    }
    let paths = if config.python_only.path.is_empty() {
        vec![".".to_string()]
    } else {
        config.python_only.path.clone()
    };
    let cfg = crate::python::PythonConfig {
        interpreter,
        mode: config.python.python_mode,
        max_jobs: config.python.python_max_jobs,
        max_rss_mb: config.python.python_max_rss,
        preload: config.python.preload.clone(),
        paths,
        redis_url: config.url.clone(),
        serializer: config.serializer,
        key_prefix: config.key_prefix.clone(),
    };
    let version = crate::python::probe(&cfg).map_err(RuntimeError::Python)?;
    info!(
        "Python jobs: {} (rq {version}), {:?} mode; functions not implemented natively run there",
        cfg.interpreter.display(),
        cfg.mode
    );
    Ok(Some(Arc::new(cfg)))
}

/// Run the worker until it is told to stop. Returns when every slot has deregistered.
pub fn run(config: WorkerConfig, registry: Registry) -> Result<(), RuntimeError> {
    if config.concurrency == 0 {
        return Err(RuntimeError::NoSlots);
    }
    // Bind the operations listener first, so that a bad address fails at start.
    let listener = match config
        .metrics_addr
        .as_deref()
        .filter(|a| !a.trim().is_empty())
    {
        Some(addr) => {
            metrics::enable();
            Some(http::bind(addr.trim())?)
        }
        None => None,
    };
    let connector = Connector::configure(&config.url, &config.sentinel)?;
    let mut con = connector.connect(Duration::from_secs(30))?;
    if let Some((major, minor, v)) = redis_version(&mut con) {
        if (major, minor) < (6, 2) {
            return Err(RuntimeError::RedisTooOld { version: v });
        }
        info!("Redis {v} (rq-worker needs 6.2 or later)");
    }
    let keys = Keys::new(&config.key_prefix);
    let queues = config.queue_names();
    let layout = match config.rq_version {
        RqVersion::Compat => Layout::Compat,
        RqVersion::V2 => {
            let old: Vec<String> = python_worker_versions(&mut con, &keys)
                .into_iter()
                .filter(|v| is_rq1(v))
                .collect();
            if !old.is_empty() {
                return Err(RuntimeError::V2WithRq1Workers { versions: old });
            }
            Layout::V2
        }
        RqVersion::Auto => detect_layout(&mut con, &keys),
    };
    drop(con);
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    let slots: Vec<Arc<SlotShared>> = slot_names(&config)
        .into_iter()
        .map(|name| {
            Arc::new(SlotShared::new(WorkerInfo {
                name,
                queues: queues.clone(),
                pid: std::process::id(),
                hostname: hostname.clone(),
                ip_address: "unknown".into(),
                version: worker_version(layout),
                python_version: worker_python_version(layout),
            }))
        })
        .collect();
    let pool = connector.pool(
        u32::try_from(config.concurrency)
            .unwrap_or(u32::MAX)
            .saturating_add(2),
    )?;
    let serializer = match config.serializer {
        SerializerKind::Pickle => Serializer::Pickle,
        SerializerKind::Json => Serializer::Json,
    };
    let python = python_config(&config)?;
    let process = Arc::new(Process {
        python,
        keys,
        queues,
        layout,
        serializer,
        registry,
        connector,
        pool,
        shutdown: Arc::new(Shutdown::default()),
        slots,
        hostname,
        liveness: Arc::new(Liveness::default()),
        faults: faults::Faults::parse(config.test_faults.as_deref()),
        intermediate_checks: std::sync::Mutex::new(Vec::new()),
        jobs_done: AtomicU64::new(0),
        gave_up: std::sync::Mutex::new(None),
        config,
    });
    info!(
        "rq-worker {} on {} queues={:?} concurrency={} layout={:?} burst={}",
        env!("CARGO_PKG_VERSION"),
        process.connector.display_url,
        process.queues,
        process.slots.len(),
        process.layout,
        process.config.burst
    );

    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| -> Option<JoinHandle<()>> {
        match std::thread::Builder::new().name(name.to_string()).spawn(f) {
            Ok(h) => Some(h),
            Err(e) => {
                warn!("cannot spawn thread {name}: {e}");
                None
            }
        }
    };
    let mut services = Vec::new();
    if let Some(listener) = listener {
        let p = process.clone();
        services.extend(spawn(
            "ops-http",
            Box::new(move || {
                let endpoints = http::Endpoints {
                    liveness: p.liveness.clone(),
                    readiness: Arc::new(readiness(&p)),
                };
                listener.serve(endpoints, &|| p.shutdown.phase() >= Phase::Done);
            }),
        ));
    }
    {
        let p = process.clone();
        spawn("signals", Box::new(move || control::signals(p)));
    }
    // Each service loop runs under supervise::service: a panic restarts it, repeated ones stop
    // the process.
    let supervised = |name: &'static str, f: fn(Arc<Process>)| -> Box<dyn FnOnce() + Send> {
        let p = process.clone();
        Box::new(move || supervise::service(&p, name, || f(p.clone())))
    };
    for (name, f) in [
        ("heartbeat", heartbeat::run as fn(Arc<Process>)),
        ("pubsub", control::pubsub),
        ("maintenance", maintenance::run),
    ] {
        services.extend(spawn(name, supervised(name, f)));
    }
    if process.config.with_scheduler {
        if process.config.burst {
            // Like `rq worker --burst --with-scheduler`: due jobs are enqueued once before dequeuing.
            let name = process
                .slots
                .first()
                .map(|s| s.info.name.clone())
                .unwrap_or_default();
            scheduler::pass_once(&process, &name);
        }
        let p = process.clone();
        let name = process
            .slots
            .first()
            .map(|s| s.info.name.clone())
            .unwrap_or_default();
        services.extend(spawn(
            "scheduler",
            Box::new(move || {
                supervise::service(&p, "scheduler", || scheduler::run(p.clone(), name.clone()))
            }),
        ));
    }
    let mut workers = Vec::new();
    for slot in &process.slots {
        let (p, s) = (process.clone(), slot.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("slot-{}", slot.info.name))
            .spawn(move || slot::run(p, s));
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => warn!("cannot spawn worker thread: {e}"),
        }
    }
    let mut registered = 0;
    for w in workers {
        if let Ok(true) = w.join() {
            registered += 1;
        }
    }
    // Every slot has exited: burst done, max-jobs, idle timeout or shutdown. Stop the services.
    process.shutdown.advance(Phase::Warm);
    process.shutdown.advance(Phase::Done);
    for s in services {
        let _ = s.join();
    }
    webhooks::wait_idle(Duration::from_secs(30));
    if let Some(why) = process
        .gave_up
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(RuntimeError::GaveUp(why));
    }
    if registered == 0 {
        return Err(RuntimeError::NoWorkerStarted);
    }
    info!("rq-worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_fields_read_as_rq_and_mark_rq_worker() {
        let pkg = env!("CARGO_PKG_VERSION");
        assert_eq!(
            worker_version(Layout::Compat),
            format!("1.16.0+rq-worker.{pkg}")
        );
        assert_eq!(
            worker_version(Layout::V2),
            format!("2.12.0+rq-worker.{pkg}")
        );
        assert_eq!(
            worker_python_version(Layout::Compat),
            format!("n/a (Rust rq-worker {pkg}, compat layout)")
        );
        for layout in [Layout::Compat, Layout::V2] {
            let v = worker_version(layout);
            // PEP 440: release, then a local label of alphanumerics and separators.
            let (release, local) = v.split_once('+').expect("local label");
            assert!(release.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
            assert!(
                local
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
                "{v}"
            );
            assert!(is_rq_worker_version(&v));
            assert!(!worker_python_version(layout).contains(['<', '>', '&']));
        }
        // Older rq-worker records are still recognised; Python workers' are not.
        assert!(is_rq_worker_version("rq-worker 0.1.0"));
        assert!(!is_rq_worker_version("1.16.0") && !is_rq_worker_version("2.12.0"));
        assert!(is_rq1("1.16.0"));
    }
}
