//! Every flag and environment variable of `rq-worker`, in one place.
//!
//! Flags copy `rq worker`'s names; environment variables keep the platform's names (`QUEUE_NAME`,
//! `REDIS_URL`, `WORKER_COUNT`, ...), so replacing the container image needs no new settings.
//! Nothing else in the crate reads the environment.

pub mod ingest;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use ingest::IngestConfig;

/// A wire-compatible, drop-in replacement for the Python RQ worker.
///
/// Runs the job functions named in RQ payloads as native Rust handlers, writing the Redis state
/// that Python RQ 1.16, 2.x and 3.0 clients, `rq info` and rq-dashboard read as their own.
#[derive(Debug, Parser)]
// An option given twice takes its last value, as `rq worker` (click) does.
#[command(
    name = "rq-worker",
    version,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub worker: WorkerConfig,

    #[command(flatten)]
    pub ingest: IngestConfig,
}

/// Tools besides the worker itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the text rq-worker extracts from a PDF, pages separated by form feeds (like pdftotext).
    PdfText(PdfTextArgs),
    /// Probe a running worker's /healthz (or /readyz): exit 0 when it answers 200, else 1.
    /// For container HEALTHCHECKs and exec probes; needs --metrics-addr on the worker.
    Health(HealthArgs),
}

/// `rq-worker health [--ready] [--addr HOST:PORT]`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Probe /readyz (Redis, workers registered, PostgreSQL) instead of /healthz (liveness).
    #[arg(long)]
    pub ready: bool,
    /// The worker's --metrics-addr; an unspecified host (0.0.0.0, [::]) means this machine.
    #[arg(long, env = "RQ_WORKER_METRICS_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

/// `rq-worker pdf-text FILE [--page N]`.
#[derive(Debug, Clone, clap::Args)]
pub struct PdfTextArgs {
    /// The PDF file to read.
    pub file: PathBuf,
    /// Print only this page (1-based).
    #[arg(long)]
    pub page: Option<u32>,
    /// Rejoin words hyphenated at line ends, as pdftotext does (the worker keeps them as-is).
    #[arg(long)]
    pub rejoin_hyphens: bool,
}

/// How jobs are picked among several queues (`rq worker --dequeue-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum DequeueStrategy {
    /// Queues in the order given: the first is the highest priority.
    Default,
    /// Rotate the queue list after each dequeue, so the queue just served goes last.
    RoundRobin,
    /// Shuffle the queue list before each dequeue.
    Random,
}

/// Payload serializer (`rq worker --serializer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SerializerKind {
    /// Python's pickle (RQ's default).
    #[value(
        alias = "rq.serializers.DefaultSerializer",
        alias = "rq.serializers.PickleSerializer"
    )]
    Pickle,
    /// `rq.serializers.JSONSerializer`.
    #[value(alias = "rq.serializers.JSONSerializer")]
    Json,
}

/// Which RQ Redis layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RqVersion {
    /// Superset layout that rq 1.16, 2.x and 3.0 clients all read (plain started-registry members).
    Compat,
    /// Native rq ≥ 2.0 layout (`job_id:execution_id` started members); every client must be ≥ 2.0.
    V2,
    /// Pick v2 only when Redis shows unambiguous ≥ 2.0 evidence and no 1.x worker or job; else compat.
    Auto,
}

/// Log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatKind {
    /// `[timestamp LEVEL target] message key=value ...`
    Text,
    /// One JSON object per line: timestamp, level, target, message and the job fields.
    Json,
}

/// Log verbosity (`rq worker --logging-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

/// The worker's own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    /// Queues to listen on, highest priority first (default: QUEUE_NAME, comma-separated, else `default`).
    #[arg(value_name = "QUEUE")]
    pub queues: Vec<String>,

    /// Queue names when none are given as arguments (comma-separated).
    #[arg(
        long = "queue-name",
        env = "QUEUE_NAME",
        value_name = "QUEUES",
        hide = true
    )]
    pub queue_name_env: Option<String>,

    /// Redis URL: redis://[:password@]host:port/db, rediss:// (TLS) or unix:///path?db=N, or
    /// Sentinel: redis+sentinel://[:password@]host:port[,host:port...]/master_name[/db]
    /// (rediss+sentinel:// for TLS) [default: REDIS_URL, else rq's RQ_REDIS_URL, else
    /// redis://localhost:6379/0].
    #[arg(
        short = 'u',
        long = "url",
        env = "REDIS_URL",
        default_value_t = default_redis_url(),
        hide_default_value = true
    )]
    pub url: String,

    /// Run until every queue is empty, then exit.
    #[arg(short = 'b', long)]
    pub burst: bool,

    /// Worker name (default: a random uuid4 hex). With --concurrency N > 1 each job thread is
    /// registered as `<name>-<i>`.
    #[arg(short = 'n', long)]
    pub name: Option<String>,

    /// Worker key TTL in seconds while idle is this + 60; the dequeue timeout is this - 15.
    #[arg(long, default_value_t = 420, value_parser = secs(1))]
    pub worker_ttl: u64,

    /// Heartbeat period in seconds while a job runs.
    #[arg(long, default_value_t = 30, value_parser = secs(1))]
    pub job_monitoring_interval: u64,

    /// Default result TTL in seconds for jobs that do not set one.
    #[arg(long, default_value_t = 500, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..=MAX_SECS as i64))]
    pub results_ttl: i64,

    /// Stop after this many jobs (per process).
    #[arg(long)]
    pub max_jobs: Option<u64>,

    /// Stop after being idle this many seconds.
    #[arg(long, value_parser = secs(0))]
    pub max_idle_time: Option<u64>,

    /// How to pick among several queues.
    #[arg(long, value_enum, default_value_t = DequeueStrategy::Default)]
    pub dequeue_strategy: DequeueStrategy,

    /// Log level.
    #[arg(short = 'l', long, alias = "logging_level", value_enum, ignore_case = true, default_value_t = LogLevel::Info)]
    pub logging_level: LogLevel,

    /// Show only warnings and errors (like `rq worker -q`).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Show debug output (like `rq worker -v`).
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Payload serializer; must match the enqueuers'.
    #[arg(short = 'S', long, value_enum, default_value_t = SerializerKind::Pickle)]
    pub serializer: SerializerKind,

    /// Also take RQ's scheduler role: move due jobs (interval retries, enqueue_at/in) to their queues.
    #[arg(short = 's', long)]
    pub with_scheduler: bool,

    /// Job threads in this process; each registers as its own RQ worker.
    #[arg(short = 'c', long, env = "WORKER_COUNT", default_value_t = 1, value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Redis layout to write: compat (readable by rq 1.16, 2.x and 3.0), v2, or auto.
    #[arg(long, value_enum, default_value_t = RqVersion::Compat)]
    pub rq_version: RqVersion,

    /// Prefix of every key (rq 3.0's RQ_KEY_PREFIX); must match the Python side.
    #[arg(long, env = "RQ_KEY_PREFIX", default_value = "rq")]
    pub key_prefix: String,

    /// Seconds a warm shutdown waits for running jobs before turning cold (default: forever).
    #[arg(long, value_parser = secs(0))]
    pub shutdown_timeout: Option<u64>,

    /// Seconds between registry-cleaning runs (RQ: 600).
    #[arg(long, default_value_t = 600, value_parser = secs(1))]
    pub maintenance_interval: u64,

    /// Write the process id to FILE at start (like `rq worker --pid`).
    #[arg(long, value_name = "FILE")]
    pub pid: Option<PathBuf>,

    /// Leave the job's function out of log lines (like `rq worker --disable-job-desc-logging`).
    #[arg(long)]
    pub disable_job_desc_logging: bool,

    /// Serve Prometheus metrics at /metrics, liveness at /healthz and readiness at /readyz on
    /// this address (e.g. 0.0.0.0:9727); off when not given.
    #[arg(long, env = "RQ_WORKER_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// Log line format: text or json. Any other value is taken as `rq worker`'s Python logging
    /// format string, which cannot apply here: it is reported and text is used.
    #[arg(long, env = "RQ_WORKER_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Fault injection for the test suites (comma-separated `name=N`); never set in production.
    #[arg(long, env = "RQ_WORKER_TEST_FAULTS", hide = true)]
    pub test_faults: Option<String>,

    #[command(flatten)]
    pub sentinel: SentinelOptions,

    #[command(flatten)]
    pub python: PythonOptions,

    #[command(flatten)]
    pub python_only: PythonOnlyOptions,
}

/// How Python jobs run (`--python-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum PythonMode {
    /// One long-lived Python process per slot runs jobs one after another.
    #[default]
    Pool,
    /// A zygote that imported the --preload modules forks a child per job.
    Fork,
}

/// Python jobs (`--python`): every job whose function is not implemented natively runs in a
/// Python process of the given environment, with that environment's `rq`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Python jobs")]
pub struct PythonOptions {
    /// Run jobs whose function is not native with this Python interpreter: the one of the
    /// environment where the job code and `rq` are installed. Off when not given (such jobs fail
    /// with "does not implement").
    #[arg(long = "python", env = "RQ_WORKER_PYTHON", value_name = "PATH")]
    pub interpreter: Option<PathBuf>,
    /// pool: one long-lived process per slot; fork: a fresh child per job, forked from a zygote
    /// that imported the --preload modules.
    #[arg(long, env = "RQ_WORKER_PYTHON_MODE", value_enum, default_value_t = PythonMode::Pool)]
    pub python_mode: PythonMode,
    /// Replace a pool process after this many jobs.
    #[arg(long, env = "RQ_WORKER_PYTHON_MAX_JOBS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub python_max_jobs: Option<u64>,
    /// Kill a Python process whose resident memory passes this many MiB (a job running in it
    /// fails; a pool process over it between jobs is replaced).
    #[arg(long, env = "RQ_WORKER_PYTHON_MAX_RSS", value_name = "MB",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub python_max_rss: Option<u64>,
    /// Modules to import when a Python process starts (the zygote in fork mode), e.g. the
    /// modules of the job functions. Repeatable or comma-separated.
    #[arg(
        long,
        env = "RQ_WORKER_PRELOAD",
        value_name = "MODULE",
        value_delimiter = ','
    )]
    pub preload: Vec<String>,
}

/// Redis Sentinel (RQ's `SENTINEL` settings): the master is asked of the sentinels at every
/// (re)connect, so the worker follows a failover without a restart. The other way to say the
/// same is a `redis+sentinel://` `--url`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Redis Sentinel")]
pub struct SentinelOptions {
    /// Sentinel addresses (RQ's INSTANCES), host:port comma-separated (port default 26379).
    /// The master's password, user, db and TLS (rediss://) are then taken from --url, whose host
    /// and port are not used.
    #[arg(long, env = "RQ_WORKER_SENTINEL", value_name = "HOST:PORT,...")]
    pub sentinel: Option<String>,
    /// The master's service name in the sentinels (RQ's MASTER_NAME); a redis+sentinel:// URL
    /// names it in its path instead.
    #[arg(
        long,
        env = "RQ_WORKER_SENTINEL_MASTER",
        value_name = "NAME",
        default_value = "mymaster"
    )]
    pub sentinel_master: String,
    /// Password of the sentinels themselves (their requirepass; RQ's SENTINEL_KWARGS), not the
    /// master's.
    #[arg(
        long,
        env = "RQ_WORKER_SENTINEL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub sentinel_password: Option<String>,
    /// ACL user of the sentinels, with --sentinel-password.
    #[arg(long, env = "RQ_WORKER_SENTINEL_USERNAME", value_name = "USER")]
    pub sentinel_username: Option<String>,
    /// Connect to the sentinels over TLS (always on with rediss+sentinel://).
    #[arg(long, env = "RQ_WORKER_SENTINEL_TLS")]
    pub sentinel_tls: bool,
}

/// Options of Python's `rq worker` that only mean something to a Python process. They are
/// accepted, so that an existing `rq worker ...` command line keeps working when the binary is
/// swapped, and each one given is reported at start with what rq-worker does instead.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Accepted for `rq worker` compatibility")]
pub struct PythonOnlyOptions {
    /// Python worker class (jobs run as native handlers on threads here).
    #[arg(short = 'w', long, value_name = "CLASS")]
    pub worker_class: Option<String>,
    /// Python job class.
    #[arg(short = 'j', long, value_name = "CLASS")]
    pub job_class: Option<String>,
    /// Python queue class.
    #[arg(long, value_name = "CLASS")]
    pub queue_class: Option<String>,
    /// Python Redis connection class.
    #[arg(long, value_name = "CLASS")]
    pub connection_class: Option<String>,
    /// Python import path entries, put first on `sys.path` of the --python processes (default:
    /// the current directory, as `rq worker`); without --python, nothing is imported.
    #[arg(short = 'P', long, value_name = "PATH")]
    pub path: Vec<String>,
    /// Python exception handlers.
    #[arg(long, value_name = "HANDLER")]
    pub exception_handler: Vec<String>,
    /// Turn off RQ's default exception handler (failures are always recorded as RQ records them).
    #[arg(short = 'd', long)]
    pub disable_default_exception_handler: bool,
    /// Sentry DSN.
    #[arg(long, value_name = "DSN")]
    pub sentry_dsn: Option<String>,
    /// Sentry CA certificates.
    #[arg(long, value_name = "FILE")]
    pub sentry_ca_certs: Option<String>,
    /// Sentry debug output.
    #[arg(long)]
    pub sentry_debug: bool,
    /// Python logging date format.
    #[arg(long, value_name = "FORMAT")]
    pub date_format: Option<String>,
}

impl PythonOnlyOptions {
    /// One line per option given: what it was and what rq-worker does instead.
    pub fn report(&self, python: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut note = |given: bool, what: String, instead: &str| {
            if given {
                out.push(format!("{what} ignored: {instead}"));
            }
        };
        let classes = "jobs run as native handlers on threads, with RQ's own records";
        note(
            self.worker_class.is_some(),
            format!(
                "--worker-class {:?}",
                self.worker_class.as_deref().unwrap_or_default()
            ),
            classes,
        );
        note(
            self.job_class.is_some(),
            format!(
                "--job-class {:?}",
                self.job_class.as_deref().unwrap_or_default()
            ),
            classes,
        );
        note(
            self.queue_class.is_some(),
            format!(
                "--queue-class {:?}",
                self.queue_class.as_deref().unwrap_or_default()
            ),
            classes,
        );
        note(
            self.connection_class.is_some(),
            format!(
                "--connection-class {:?}",
                self.connection_class.as_deref().unwrap_or_default()
            ),
            "the connection comes from --url",
        );
        note(
            !self.path.is_empty() && !python,
            format!("--path {:?}", self.path),
            "job functions are native, nothing is imported",
        );
        note(
            !self.exception_handler.is_empty(),
            format!("--exception-handler {:?}", self.exception_handler),
            "Python handlers cannot run here; failures are recorded as RQ's default handler records them",
        );
        note(
            self.disable_default_exception_handler,
            "--disable-default-exception-handler".into(),
            "failures are always recorded (failed registry, exc_info)",
        );
        note(
            self.sentry_dsn.is_some() || self.sentry_ca_certs.is_some() || self.sentry_debug,
            "--sentry-*".into(),
            "Sentry is not supported; failures are in the failed registry and the log",
        );
        note(
            self.date_format.is_some(),
            "--date-format".into(),
            "log lines carry RFC 3339 UTC timestamps (--log-format text or json)",
        );
        out
    }
}

/// The last path component of a program name.
fn basename(a: &str) -> &str {
    a.rsplit('/').next().unwrap_or(a)
}

fn is_python(a: &str) -> bool {
    let b = basename(a);
    b == "python"
        || b.strip_prefix("python")
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Recognise the command lines the platform starts its Python worker with, so that swapping only
/// the image keeps them working, and turn them into rq-worker's own:
///
/// - `python worker.py [QUEUE]` (any python, any path to `worker.py`): the platform's script takes
///   `QUEUE_NAME` first, then its first argument, then `default`, and nothing else; so does this.
/// - `rq worker [OPTIONS] [QUEUES]` (any path to `rq`): the rest is read as `rq worker`'s options.
///
/// Returns the arguments to parse and, for a legacy command line, a note to log saying what it
/// was mapped to. `queue_name_env` is the value of `QUEUE_NAME`.
pub fn map_legacy_command(
    args: Vec<std::ffi::OsString>,
    queue_name_env: Option<&str>,
) -> (Vec<std::ffi::OsString>, Option<String>) {
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let prog = args.first().cloned().unwrap_or_else(|| "rq-worker".into());
    let shown = |v: &[String]| v.join(" ");
    if text.len() >= 3 && is_python(&text[1]) && basename(&text[2]) == "worker.py" {
        let env_queue = queue_name_env.map(str::trim).filter(|q| !q.is_empty());
        let mut out = vec![prog];
        let why = if let Some(q) = env_queue {
            format!("QUEUE_NAME={q} (worker.py takes QUEUE_NAME before its argument)")
        } else if let Some(q) = text.get(3) {
            out.push(q.into());
            format!("queue {q} from the argument")
        } else {
            "QUEUE_NAME unset and no argument: queue default".to_string()
        };
        let mut new: Vec<String> = vec!["rq-worker".into()];
        new.extend(out.iter().skip(1).map(|a| a.to_string_lossy().into_owned()));
        let ignored = if text.len() > 4 || (env_queue.is_some() && text.len() > 3) {
            format!(
                "; ignored as worker.py ignores them: {}",
                shown(&text[if env_queue.is_some() { 3 } else { 4 }..])
            )
        } else {
            String::new()
        };
        let note = format!(
            "legacy command line `{}` mapped to `{}`: {why}{ignored}",
            shown(&text[1..]),
            shown(&new)
        );
        return (out, Some(note));
    }
    if text.len() >= 3 && basename(&text[1]) == "rq" && text[2] == "worker" {
        let mut out = vec![prog];
        out.extend(args.into_iter().skip(3));
        let note = format!(
            "`rq worker` command line mapped to `rq-worker {}` (rq worker's options are read as they are)",
            shown(&text[3..])
        );
        return (out, Some(note));
    }
    (args, None)
}

/// `rq worker` spells the dequeue strategy's short option `-ds`, which a standard parser reads as
/// `-d -s`: turn it into `--dequeue-strategy` before parsing (also `-ds=X` and `-dsX`).
pub fn normalize_rq_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    for a in args {
        match a.to_str() {
            Some("-ds") => out.push("--dequeue-strategy".into()),
            Some(s) if s.starts_with("-ds") && s.len() > 3 => {
                let v = s[3..].strip_prefix('=').unwrap_or(&s[3..]);
                out.push(format!("--dequeue-strategy={v}").into());
            }
            _ => out.push(a),
        }
    }
    out
}

/// The URL when neither `--url` nor REDIS_URL (the platform's variable) is given: `rq worker`'s own
/// variable RQ_REDIS_URL, else RQ's default.
fn default_redis_url() -> String {
    std::env::var("RQ_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://localhost:6379/0".to_string())
}

/// The largest number of seconds any option takes (ten years): every duration the worker adds
/// to a clock or hands to Redis as a TTL stays far from overflow.
pub const MAX_SECS: u64 = 315_360_000;

/// A number of seconds from `min` to [`MAX_SECS`].
fn secs(min: u64) -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(min..=MAX_SECS)
}

/// `-c N`; a value that is not a number is most likely `rq worker -c settings_module`.
fn parse_concurrency(v: &str) -> Result<usize, String> {
    v.trim().parse::<usize>().map_err(|_| {
        "not a number of job threads: -c is --concurrency in rq-worker (rq worker's -c/--config names a \
         Python settings module, which rq-worker cannot read; pass --url, queues, or \
         REDIS_URL/QUEUE_NAME instead)"
            .to_string()
    })
}

impl WorkerConfig {
    /// Queue names: positional arguments, else QUEUE_NAME, else `default`; empty names dropped.
    pub fn queue_names(&self) -> Vec<String> {
        let from_args: Vec<String> = self
            .queues
            .iter()
            .flat_map(|q| q.split(','))
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(String::from)
            .collect();
        if !from_args.is_empty() {
            return from_args;
        }
        let from_env: Vec<String> = self
            .queue_name_env
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(String::from)
            .collect();
        if !from_env.is_empty() {
            return from_env;
        }
        vec!["default".to_string()]
    }

    /// BLMOVE/BLPOP timeout: `max(1, worker_ttl - 15)` like RQ, shortened by --max-idle-time.
    pub fn dequeue_timeout(&self) -> Duration {
        // Capped at a day: a larger --worker-ttl only delays noticing a dead connection.
        let mut secs = self.worker_ttl.saturating_sub(15).clamp(1, 86_400);
        if let Some(idle) = self.max_idle_time {
            secs = secs.min(idle.max(1));
        }
        Duration::from_secs(secs)
    }

    /// The log format, and the value given when it was not `text` or `json` (then taken as
    /// `rq worker`'s Python logging format string, which is reported and ignored).
    pub fn log_format(&self) -> (LogFormatKind, Option<String>) {
        match self.log_format.as_deref().map(str::trim) {
            None | Some("") => (LogFormatKind::Text, None),
            Some(v) => match LogFormatKind::from_str(v, true) {
                Ok(k) => (k, None),
                Err(_) => (LogFormatKind::Text, Some(v.to_string())),
            },
        }
    }

    /// Effective log filter for env_logger.
    pub fn log_filter(&self) -> log::LevelFilter {
        if self.verbose {
            return log::LevelFilter::Debug;
        }
        if self.quiet {
            return log::LevelFilter::Warn;
        }
        match self.logging_level {
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warning => log::LevelFilter::Warn,
            LogLevel::Error | LogLevel::Critical => log::LevelFilter::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn rq_worker_spellings_are_accepted() {
        let args = normalize_rq_args(
            [
                "rq-worker",
                "-ds",
                "round_robin",
                "--logging_level",
                "debug",
                "-s",
                "-d",
                "-S",
                "rq.serializers.JSONSerializer",
                "high",
                "low",
            ]
            .map(std::ffi::OsString::from),
        );
        let w = Cli::try_parse_from(args).unwrap().worker;
        assert_eq!(w.dequeue_strategy, DequeueStrategy::RoundRobin);
        assert_eq!(w.logging_level, LogLevel::Debug);
        assert!(w.with_scheduler && w.python_only.disable_default_exception_handler);
        assert_eq!(w.serializer, SerializerKind::Json);
        assert_eq!(w.queue_names(), ["high", "low"]);
        let w = Cli::try_parse_from(normalize_rq_args(
            ["rq-worker", "-ds=random"].map(std::ffi::OsString::from),
        ))
        .unwrap()
        .worker;
        assert_eq!(w.dequeue_strategy, DequeueStrategy::Random);
        // Given twice: the last value wins (click's rule); repeatable options keep every value.
        let w = Cli::try_parse_from([
            "rq-worker",
            "-l",
            "DEBUG",
            "--logging-level",
            "WARNING",
            "-P",
            "a",
            "-P",
            "b",
            "q",
        ])
        .unwrap()
        .worker;
        assert_eq!(w.logging_level, LogLevel::Warning);
        assert_eq!(w.python_only.path, ["a", "b"]);
    }

    #[test]
    fn legacy_command_lines_map_to_rq_worker() {
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        // The dev compose: `command: python worker.py ingest_extract`, QUEUE_NAME also set.
        let (args, note) = map_legacy_command(
            os(&["rq-worker", "python", "worker.py", "ingest_extract"]),
            Some("ingest_extract"),
        );
        assert_eq!(args, os(&["rq-worker"]));
        assert!(note.unwrap().contains("QUEUE_NAME=ingest_extract"));
        // worker.py's argument when QUEUE_NAME is unset; only the first one counts.
        let (args, note) = map_legacy_command(
            os(&[
                "rq-worker",
                "/usr/local/bin/python3.11",
                "/app/worker.py",
                "ingest_index",
                "x",
            ]),
            None,
        );
        assert_eq!(args, os(&["rq-worker", "ingest_index"]));
        assert!(
            note.unwrap()
                .contains("ignored as worker.py ignores them: x")
        );
        let (args, _) = map_legacy_command(os(&["rq-worker", "python", "worker.py"]), Some(" "));
        assert_eq!(args, os(&["rq-worker"]));
        // `rq worker` command lines keep their options.
        let (args, note) = map_legacy_command(
            os(&[
                "rq-worker",
                "rq",
                "worker",
                "-u",
                "redis://r:6379/0",
                "--burst",
                "high",
                "low",
            ]),
            None,
        );
        assert_eq!(
            args,
            os(&[
                "rq-worker",
                "-u",
                "redis://r:6379/0",
                "--burst",
                "high",
                "low"
            ])
        );
        assert!(note.is_some());
        let w = Cli::try_parse_from(args).unwrap().worker;
        assert!(w.burst);
        assert_eq!(w.queue_names(), ["high", "low"]);
        // Anything else is left alone (a queue may be called `python`).
        let (args, note) = map_legacy_command(os(&["rq-worker", "python", "default"]), None);
        assert_eq!(args, os(&["rq-worker", "python", "default"]));
        assert!(note.is_none());
    }

    #[test]
    fn log_format_json_text_or_a_python_format() {
        let w = |v: &[&str]| Cli::try_parse_from(v).unwrap().worker;
        assert_eq!(
            w(&["rq-worker", "--log-format", "JSON"]).log_format(),
            (LogFormatKind::Json, None)
        );
        assert_eq!(w(&["rq-worker"]).log_format(), (LogFormatKind::Text, None));
        assert_eq!(
            w(&["rq-worker", "--log-format", "%(asctime)s %(message)s"]).log_format(),
            (LogFormatKind::Text, Some("%(asctime)s %(message)s".into()))
        );
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn queues_from_args_then_env_then_default() {
        let cli = Cli::try_parse_from(["rq-worker", "a", "b,c"]).unwrap();
        assert_eq!(cli.worker.queue_names(), ["a", "b", "c"]);
        let mut w = Cli::try_parse_from(["rq-worker"]).unwrap().worker;
        w.queue_name_env = Some("x, y".into());
        assert_eq!(w.queue_names(), ["x", "y"]);
        w.queue_name_env = None;
        assert_eq!(w.queue_names(), ["default"]);
    }
}

/// The configuration reference (`docs/configuration.md`) is checked against the command line
/// definition, so the two never drift. Regenerate its tables with
/// `cargo test --lib print_configuration_reference -- --ignored --nocapture`.
#[cfg(test)]
mod reference {
    use super::*;
    use clap::CommandFactory;

    const DOC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ));

    /// One row per visible option: (section, flag cell, env cell, default cell, help).
    fn rows(
        cmd: &clap::Command,
        section_default: &str,
    ) -> Vec<(String, String, String, String, String)> {
        let mut out = Vec::new();
        for a in cmd.get_arguments() {
            if a.is_hide_set() || a.get_id() == "help" || a.get_id() == "version" {
                continue;
            }
            let flag = match (a.get_short(), a.get_long()) {
                (Some(s), Some(l)) => format!("`-{s}, --{l}`"),
                (None, Some(l)) => format!("`--{l}`"),
                (Some(s), None) => format!("`-{s}`"),
                (None, None) => format!("`{}`", a.get_id().as_str().to_uppercase()),
            };
            let env = a
                .get_env()
                .map(|e| format!("`{}`", e.to_string_lossy()))
                .unwrap_or_default();
            let default = a
                .get_default_values()
                .iter()
                .map(|v| format!("`{}`", v.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(", ");
            let help = a
                .get_help()
                .map(|h| h.to_string().replace('\n', " ").replace('|', "\\|"))
                .unwrap_or_default();
            let section = a.get_help_heading().unwrap_or(section_default).to_string();
            out.push((section, flag, env, default, help));
        }
        out
    }

    fn all_rows() -> Vec<(String, String, String, String, String)> {
        let cli = Cli::command();
        let mut r = rows(&cli, "Worker");
        for sub in cli.get_subcommands() {
            r.extend(rows(sub, &format!("`rq-worker {}`", sub.get_name())));
        }
        r
    }

    #[test]
    #[ignore]
    fn print_configuration_reference() {
        let mut section = String::new();
        for (s, flag, env, default, help) in all_rows() {
            if s != section {
                println!("\n### {s}\n\n| flag | env | default | meaning |\n|---|---|---|---|");
                section = s;
            }
            println!("| {flag} | {env} | {default} | {help} |");
        }
    }

    #[test]
    fn docs_configuration_md_matches_the_command_line() {
        let doc_rows: Vec<Vec<String>> = DOC
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                l.split(" | ")
                    .map(|c| c.trim_matches(|c| c == '|' || c == ' ').to_string())
                    .collect()
            })
            .collect();
        let mut missing = Vec::new();
        for (section, flag, env, default, _help) in all_rows() {
            let found = doc_rows.iter().any(|r| {
                r.first() == Some(&flag) && r.get(1) == Some(&env) && r.get(2) == Some(&default)
            });
            if !found {
                missing.push(format!("{section}: {flag} | {env} | {default}"));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/configuration.md lacks (or has stale) rows for:\n{}\nregenerate: cargo test --lib \
             print_configuration_reference -- --ignored --nocapture",
            missing.join("\n")
        );
        let known: Vec<String> = all_rows().into_iter().map(|r| r.1).collect();
        let stale: Vec<&String> = doc_rows
            .iter()
            .filter_map(|r| r.first())
            .filter(|f| !known.contains(f))
            .collect();
        assert!(
            stale.is_empty(),
            "docs/configuration.md names options that do not exist: {stale:?}"
        );
    }
}
