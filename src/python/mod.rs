//! The Python executor (`--python`): job functions this binary does not implement run in Python
//! processes of the user's environment, one per worker slot.
//!
//! Rust keeps everything RQ's worker does around a job: dequeue, registries, results,
//! heartbeats, timeouts, stop-job, kill-horse, shutdown, maintenance. Python only runs the
//! function, through the user's own `rq` (`runner.py`, shipped inside the binary), so the payload
//! is decoded by RQ's serializer and `get_current_job()`, `job.meta`, `job.connection` and the
//! callbacks behave as under `rq worker`. Two modes:
//! - pool: one long-lived process per slot runs jobs one after another; it is replaced after
//!   `--python-max-jobs` jobs, when its RSS passes `--python-max-rss`, and after a job timeout
//!   (the interrupted code may have left it in any state);
//! - fork: a zygote that imported `--preload` modules forks a child per job: RQ's isolation,
//!   without RQ's per-job imports and Redis round trips.
//!
//! Python enforces the job timeout first (RQ's own death penalty, so the traceback is RQ's). Code
//! that does not return to the interpreter is killed (SIGKILL) a grace period later, as are the
//! processes of a stopped job, a kill-horse, a cold shutdown and a process over its memory limit.
//! A process that dies mid-job fails the job with RQ's work-horse text. Every Python process dies
//! with the thread that started it (PR_SET_PDEATHSIG): nothing outlives a killed worker.

pub mod protocol;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::process::ChildStdout;

use crate::config::{PythonMode, SerializerKind};
use crate::jobs::CancelReason;
use crate::ops::metrics;
use crate::runtime::executor::{Control, WaitFor};
use protocol::{Frame, parse_frame, write_frame};

/// What one look at a process's replies found.
enum Reply {
    Frame(Frame),
    /// Nothing complete within the time given.
    Timeout,
    /// The process closed its end (it exited), or sent something unreadable.
    Closed,
}

/// Reads a Python process's replies on the slot thread itself: poll(2) with a timeout, then the
/// bytes that are there (the pipe is non-blocking), so the wait for a job costs no thread
/// hand-off and a process that stops mid-frame never blocks the slot.
struct FrameReader {
    stdout: ChildStdout,
    buf: Vec<u8>,
    closed: bool,
}

impl FrameReader {
    fn new(stdout: ChildStdout) -> Self {
        let fd = stdout.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL touch no memory.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        FrameReader {
            stdout,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// The next reply, waiting at most `timeout`.
    fn next(&mut self, timeout: Duration) -> Reply {
        let until = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match parse_frame(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Reply::Frame(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    warn!("Python process: unreadable reply ({e})");
                    self.closed = true;
                    return Reply::Closed;
                }
            }
            if self.closed {
                return Reply::Closed;
            }
            let left = until.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(std::ptr::from_mut(&mut pfd), 1, ms) };
            if n == 0 {
                return Reply::Timeout;
            }
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                self.closed = true;
                return Reply::Closed;
            }
            match self.stdout.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.closed = true,
            }
            if !self.closed && Instant::now() >= until {
                return match parse_frame(&self.buf) {
                    Ok(Some((frame, used))) => {
                        self.buf.drain(..used);
                        Reply::Frame(frame)
                    }
                    _ => Reply::Timeout,
                };
            }
        }
    }
}

/// The program the Python processes run.
pub const RUNNER: &str = include_str!("runner.py");

/// What `python -c` runs: read [`RUNNER`] from stdin (u32 length, text) and run it as
/// `rq-worker/runner.py`, so its frames in a job's traceback name a file (RQ's show
/// `rq/worker.py`), and `ps` shows a short command line.
const BOOTSTRAP: &str = "import os,sys\n\
def _r(n):\n b=b''\n while len(b)<n:\n  c=os.read(0,n-len(b))\n  if not c: sys.exit(1)\n  b+=c\n return b\n\
exec(compile(_r(int.from_bytes(_r(4),'big')),'rq-worker/runner.py','exec'),{'__name__':'__main__'})";

/// How long a new Python process may take to import `rq` and the `--preload` modules.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopped job's `on_stopped` callback may run when it does not say (RQ: 60 s).
const CALLBACK_DEFAULT: Duration = Duration::from_secs(60);

/// What the Python processes are started with.
#[derive(Debug, Clone)]
pub struct PythonConfig {
    /// The interpreter of the user's environment (where their code and `rq` are installed).
    pub interpreter: PathBuf,
    pub mode: PythonMode,
    /// Replace a pool process after this many jobs.
    pub max_jobs: Option<u64>,
    /// Kill a process whose resident memory passes this many MiB.
    pub max_rss_mb: Option<u64>,
    /// Modules imported at process start.
    pub preload: Vec<String>,
    /// `sys.path` entries put first (`-P`), relative ones against the worker's directory.
    pub paths: Vec<String>,
    /// What `job.connection` connects to.
    pub redis_url: String,
    pub serializer: SerializerKind,
    /// RQ's key prefix (rq 3.0's `RQ_KEY_PREFIX`), passed on when it is not the default.
    pub key_prefix: String,
}

/// One job to run: its id and its hash as the start script read it.
pub struct PyJob<'a> {
    pub id: &'a str,
    pub fields: &'a HashMap<String, Vec<u8>>,
}

/// How a Python job ended.
#[derive(Debug, PartialEq)]
pub enum PyOutcome {
    /// The function returned; its value serialized by the job's serializer (`None`: it returned
    /// None).
    Finished { value: Option<Vec<u8>> },
    /// The function (or its callback) raised: RQ's `exc_info` text, the real traceback.
    Failed { exc_string: String },
    /// The process running the job died (or was killed over its memory limit): RQ's work-horse
    /// text.
    Died { text: String },
    /// Stopped by the worker (timeout Python could not enforce, stop-job, kill-horse, cold
    /// shutdown); the process was killed.
    Interrupted(CancelReason),
    /// No Python process could be started or reached.
    Unavailable { text: String },
}

/// A running Python process and the thread reading its replies.
struct PyProc {
    child: Child,
    stdin: ChildStdin,
    replies: FrameReader,
    pid: u32,
    jobs: u64,
    /// `rq.__version__` in that environment.
    rq_version: String,
}

impl PyProc {
    fn spawn(cfg: &PythonConfig, slot: &str) -> Result<PyProc, String> {
        let mut cmd = Command::new(&cfg.interpreter);
        cmd.arg("-c")
            .arg(BOOTSTRAP)
            .env(
                "RQ_WORKER_MODE",
                match cfg.mode {
                    PythonMode::Pool => "pool",
                    PythonMode::Fork => "fork",
                },
            )
            .env("RQ_WORKER_REDIS_URL", &cfg.redis_url)
            .env(
                "RQ_WORKER_SERIALIZER",
                match cfg.serializer {
                    SerializerKind::Pickle => "pickle",
                    SerializerKind::Json => "json",
                },
            )
            .env("RQ_WORKER_PATH", join_paths(&cfg.paths))
            .env("RQ_WORKER_PRELOAD", cfg.preload.join(","))
            .env("RQ_WORKER_SLOT", slot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if cfg.key_prefix != "rq" {
            cmd.env("RQ_KEY_PREFIX", &cfg.key_prefix);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", cfg.interpreter.display()))?;
        let pid = child.id();
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            reap(&mut child);
            return Err("the Python process has no pipes".into());
        };
        let source = RUNNER.as_bytes();
        let sent = u32::try_from(source.len())
            .map_err(std::io::Error::other)
            .and_then(|n| {
                stdin.write_all(&n.to_be_bytes())?;
                stdin.write_all(source)
            });
        if let Err(e) = sent {
            let status = child.try_wait().ok().flatten();
            reap(&mut child);
            return Err(format!("it exited at once ({}; {e})", describe(status)));
        }
        let mut p = PyProc {
            child,
            stdin,
            replies: FrameReader::new(stdout),
            pid,
            jobs: 0,
            rq_version: String::new(),
        };
        match p.replies.next(START_TIMEOUT) {
            Reply::Frame(f) if first(&f) == b"ready" => {
                p.rq_version = text(f.get(2));
                debug!(
                    "Python process {pid} ready for slot {slot} (rq {})",
                    p.rq_version
                );
                Ok(p)
            }
            Reply::Frame(f) if first(&f) == b"fatal" => {
                let status = p.kill();
                Err(format!(
                    "it failed to start ({}):\n{}",
                    describe(status),
                    text(f.get(1)).trim_end()
                ))
            }
            Reply::Frame(f) => {
                p.kill();
                Err(format!("unexpected first reply {:?}", text(f.first())))
            }
            Reply::Timeout => {
                p.kill();
                Err(format!("it was not ready within {START_TIMEOUT:?}"))
            }
            Reply::Closed => {
                let status = p.kill();
                Err(format!(
                    "it exited before it was ready ({})",
                    describe(status)
                ))
            }
        }
    }

    /// SIGKILL and reap; the exit status when there was one to collect.
    fn kill(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    fn send(&mut self, items: &[&[u8]]) -> std::io::Result<()> {
        write_frame(&mut self.stdin, items)
    }
}

impl Drop for PyProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn first(f: &Frame) -> &[u8] {
    f.first().map_or(&[][..], Vec::as_slice)
}

fn text(item: Option<&Vec<u8>>) -> String {
    item.map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn join_paths(paths: &[String]) -> String {
    let mut out = String::new();
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(p);
    }
    out
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => s.to_string(),
        None => "exit status unknown".into(),
    }
}

/// RQ's text for a work-horse that died (`Worker.monitor_work_horse`): the raw wait status, and
/// the signal when one ended it.
pub fn horse_died_text(raw_status: i32) -> String {
    let signal = if libc::WIFSIGNALED(raw_status) {
        format!(" (signal {})", libc::WTERMSIG(raw_status))
    } else {
        String::new()
    };
    format!("Work-horse terminated unexpectedly; waitpid returned {raw_status}{signal}; ")
}

/// Resident memory of `pid` in MiB (Linux `/proc`), when it can be read.
fn rss_mb(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    Some(pages.saturating_mul(page) / (1024 * 1024))
}

fn signal_kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) with a positive pid has no memory-safety preconditions; the pid is a
        // child of ours (or of our zygote) that has not been reaped.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Start a Python process once and stop it: the start-up check of `--python` (interpreter,
/// `rq` importable, `--preload` modules). Returns the `rq` version it found.
pub fn probe(cfg: &PythonConfig) -> Result<String, String> {
    let mut p = PyProc::spawn(cfg, "probe")?;
    p.kill();
    Ok(std::mem::take(&mut p.rq_version))
}

/// The Python side of one worker slot.
pub struct PythonExecutor {
    cfg: std::sync::Arc<PythonConfig>,
    slot: String,
    proc: Option<PyProc>,
}

impl PythonExecutor {
    pub fn new(cfg: std::sync::Arc<PythonConfig>, slot: &str) -> Self {
        PythonExecutor {
            cfg,
            slot: slot.to_string(),
            proc: None,
        }
    }

    /// A live process, started when there is none (or the last one has exited).
    fn process(&mut self) -> Result<&mut PyProc, String> {
        if let Some(p) = &mut self.proc
            && !matches!(p.child.try_wait(), Ok(Some(_)) | Err(_))
        {
            // Still running: `try_wait` said `Ok(None)`.
        } else {
            self.proc = None;
        }
        if self.proc.is_none() {
            let started = Instant::now();
            let p = PyProc::spawn(&self.cfg, &self.slot).map_err(|e| {
                format!(
                    "rq-worker could not start its Python executor ({}): {e}",
                    self.cfg.interpreter.display()
                )
            })?;
            info!(
                "worker {}: Python process {} started ({} mode) in {} ms",
                self.slot,
                p.pid,
                match self.cfg.mode {
                    PythonMode::Pool => "pool",
                    PythonMode::Fork => "fork",
                },
                started.elapsed().as_millis()
            );
            metrics::with(|m| m.python_starts.inc());
            self.proc = Some(p);
        }
        self.proc
            .as_mut()
            .ok_or_else(|| "no Python process".to_string())
    }

    /// Send a request, starting a fresh process once if the current one is gone.
    fn send(&mut self, items: &[&[u8]]) -> Result<(), String> {
        for attempt in 0..2 {
            let p = self.process()?;
            let Err(e) = p.send(items) else {
                return Ok(());
            };
            let pid = p.pid;
            let status = p.kill();
            self.proc = None;
            warn!(
                "worker {}: Python process {pid} is gone ({}; {e}); {}",
                self.slot,
                describe(status),
                if attempt == 0 {
                    "starting another"
                } else {
                    "giving up"
                }
            );
            if attempt == 1 {
                return Err(format!("cannot send the job to Python: {e}"));
            }
        }
        Err("cannot send the job to Python".into())
    }

    /// Run `job` and wait for it, as [`crate::runtime::executor::Executor::wait`] does for a
    /// native handler: `w.deadline` is the job's timeout (Python enforces it), `w.grace` how
    /// much longer Python gets to report it before its process is killed.
    pub fn run(&mut self, job: &PyJob<'_>, w: &WaitFor<'_>) -> PyOutcome {
        let request = request(b"job", job);
        let refs: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        if let Err(text) = self.send(&refs) {
            return PyOutcome::Unavailable { text };
        }
        let outcome = self.wait(w);
        self.after_job(&outcome);
        outcome
    }

    /// Run a stopped job's `on_stopped` callback (RQ runs it in the worker after killing the
    /// work-horse); failures are logged, as RQ logs them.
    pub fn stopped_callback(&mut self, job: &PyJob<'_>) {
        let request = request(b"stopped", job);
        let refs: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        if let Err(text) = self.send(&refs) {
            warn!("job {}: on_stopped callback not run: {text}", job.id);
            return;
        }
        let mut limit = Instant::now() + CALLBACK_DEFAULT;
        loop {
            let Some(p) = self.proc.as_mut() else { return };
            let wait = limit.saturating_duration_since(Instant::now());
            match p.replies.next(wait) {
                Reply::Frame(f) if first(&f) == b"deadline" => {
                    limit = Instant::now() + seconds(f.get(1)) + Duration::from_secs(5);
                }
                Reply::Frame(f) if first(&f) == b"done" => return,
                Reply::Frame(_) => {}
                Reply::Timeout | Reply::Closed => {
                    warn!(
                        "job {}: the on_stopped callback did not end in time; its process is killed",
                        job.id
                    );
                    self.proc = None;
                    return;
                }
            }
        }
    }

    fn wait(&mut self, w: &WaitFor<'_>) -> PyOutcome {
        let fork = self.cfg.mode == PythonMode::Fork;
        let max_rss = self.cfg.max_rss_mb;
        let Some(pid) = self.proc.as_ref().map(|p| p.pid) else {
            return PyOutcome::Unavailable {
                text: "no Python process".into(),
            };
        };
        let mut job_pid = (!fork).then_some(pid);
        let mut hard = w.deadline.map(|d| d + w.grace);
        // How often stop-job, kill-horse, cold shutdown, the deadline and the memory limit are
        // looked at while the job runs (replies are read as soon as they come).
        let tick = Duration::from_millis(50);
        let reason = loop {
            if let Some(b) = w.beacon {
                b.alive_for(Duration::from_secs(30) + w.grace);
            }
            let wait = hard.map_or(tick, |d| {
                d.saturating_duration_since(Instant::now()).min(tick)
            });
            let Some(p) = self.proc.as_mut() else {
                return PyOutcome::Unavailable {
                    text: "no Python process".into(),
                };
            };
            match p.replies.next(wait) {
                Reply::Frame(f) => match first(&f) {
                    b"finished" => {
                        p.jobs += 1;
                        let value = (f.get(2).map(Vec::as_slice) == Some(b"1"))
                            .then(|| f.get(1).cloned().unwrap_or_default());
                        return PyOutcome::Finished { value };
                    }
                    b"failed" => {
                        p.jobs += 1;
                        if f.get(2).map(Vec::as_slice) == Some(b"1") && !fork {
                            debug!("Python process {pid}: replaced after a job timeout");
                            self.proc = None;
                        }
                        return PyOutcome::Failed {
                            exc_string: text(f.get(1)),
                        };
                    }
                    b"deadline" => {
                        hard = Some(Instant::now() + seconds(f.get(1)) + w.grace);
                    }
                    b"forked" => {
                        job_pid = text(f.get(1)).parse().ok();
                    }
                    b"died" => {
                        process_ended("died");
                        let raw = text(f.get(1)).parse().unwrap_or(-1);
                        return PyOutcome::Died {
                            text: horse_died_text(raw),
                        };
                    }
                    other => warn!(
                        "Python process {pid}: unexpected reply {:?}",
                        String::from_utf8_lossy(other)
                    ),
                },
                Reply::Closed => {
                    // The process ended (its pipe closed) without a reply.
                    process_ended("died");
                    let status = self.proc.take().and_then(|mut p| p.kill());
                    let raw = status.map_or(-1, ExitStatusExt::into_raw);
                    return PyOutcome::Died {
                        text: horse_died_text(raw),
                    };
                }
                Reply::Timeout => {}
            }
            if let Some(reason) = control(w) {
                break reason;
            }
            if hard.is_some_and(|d| Instant::now() >= d) {
                break CancelReason::Timeout;
            }
            if let (Some(limit), Some(job_pid)) = (max_rss, job_pid)
                && let Some(rss) = rss_mb(job_pid)
                && rss > limit
            {
                return self.kill_over_memory(job_pid, rss, limit);
            }
        };
        warn!(
            "job {}: {reason}; killing the Python process running it",
            w.job_id
        );
        process_ended("killed");
        self.kill_job(job_pid);
        PyOutcome::Interrupted(reason)
    }

    fn kill_over_memory(&mut self, pid: u32, rss: u64, limit: u64) -> PyOutcome {
        warn!(
            "worker {}: Python process {pid} uses {rss} MiB, over --python-max-rss {limit}; killing it",
            self.slot
        );
        process_ended("memory");
        let raw = self.kill_job(Some(pid)).unwrap_or(libc::SIGKILL);
        PyOutcome::Died {
            text: format!(
                "{}rq-worker killed it: its memory ({rss} MiB) went over --python-max-rss {limit} MiB",
                horse_died_text(raw)
            ),
        }
    }

    /// Kill the process running the current job: the pool process, or the fork child (then wait
    /// for the zygote to report it, so the next job starts clean). The raw wait status.
    fn kill_job(&mut self, job_pid: Option<u32>) -> Option<i32> {
        let fork = self.cfg.mode == PythonMode::Fork;
        let p = self.proc.as_mut()?;
        if !fork || job_pid.is_none() {
            let status = p.kill();
            self.proc = None;
            return status.map(ExitStatusExt::into_raw);
        }
        if let Some(pid) = job_pid {
            signal_kill(pid);
        }
        let limit = Instant::now() + Duration::from_secs(5);
        loop {
            match p
                .replies
                .next(limit.saturating_duration_since(Instant::now()))
            {
                Reply::Frame(f) if first(&f) == b"died" => return text(f.get(1)).parse().ok(),
                Reply::Frame(f) if matches!(first(&f), b"finished" | b"failed") => return Some(0),
                Reply::Frame(_) => {}
                Reply::Timeout | Reply::Closed => {
                    warn!(
                        "Python zygote {} did not report its killed child; replacing it",
                        p.pid
                    );
                    p.kill();
                    self.proc = None;
                    return None;
                }
            }
        }
    }

    /// Recycle a pool process after the job when the limits say so.
    fn after_job(&mut self, outcome: &PyOutcome) {
        if self.cfg.mode == PythonMode::Fork || matches!(outcome, PyOutcome::Unavailable { .. }) {
            return;
        }
        let Some(p) = self.proc.as_mut() else { return };
        let why = if self.cfg.max_jobs.is_some_and(|m| p.jobs >= m) {
            Some(format!("{} jobs (--python-max-jobs)", p.jobs))
        } else if let Some(limit) = self.cfg.max_rss_mb
            && let Some(rss) = rss_mb(p.pid)
            && rss > limit
        {
            Some(format!("{rss} MiB resident, over --python-max-rss {limit}"))
        } else {
            None
        };
        if let Some(why) = why {
            info!(
                "worker {}: replacing Python process {} after {why}",
                self.slot, p.pid
            );
            self.proc = None;
        }
    }
}

fn process_ended(cause: &str) {
    metrics::with(|m| m.python_ends.with_label_values(&[cause]).inc());
}

/// A stop-job, kill-horse or cold shutdown for the running job, if one has come.
fn control(w: &WaitFor<'_>) -> Option<CancelReason> {
    while let Ok(c) = w.control.try_recv() {
        match c {
            Control::StopJob(id) if id == w.job_id => return Some(CancelReason::StopJob),
            Control::StopJob(_) => {}
            Control::KillHorse => return Some(CancelReason::KillHorse),
            Control::ColdShutdown => return Some(CancelReason::ColdShutdown),
        }
    }
    (w.is_cold)().then_some(CancelReason::ColdShutdown)
}

/// `[kind, job_id, key1, value1, ...]`.
fn request(kind: &[u8], job: &PyJob<'_>) -> Vec<Vec<u8>> {
    let mut items = Vec::with_capacity(2 + 2 * job.fields.len());
    items.push(kind.to_vec());
    items.push(job.id.as_bytes().to_vec());
    for (k, v) in job.fields {
        items.push(k.as_bytes().to_vec());
        items.push(v.clone());
    }
    items
}

/// A seconds figure Python sent (a callback timeout); RQ's default when unreadable.
fn seconds(item: Option<&Vec<u8>>) -> Duration {
    text(item)
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(CALLBACK_DEFAULT, |s| {
            Duration::from_secs_f64(s.min(crate::config::MAX_SECS as f64))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_horse_text_is_rqs() {
        assert_eq!(
            horse_died_text(256),
            "Work-horse terminated unexpectedly; waitpid returned 256; "
        );
        assert_eq!(
            horse_died_text(9),
            "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); "
        );
    }

    #[test]
    fn callback_seconds_are_bounded() {
        assert_eq!(seconds(Some(&b"60".to_vec())), Duration::from_secs(60));
        assert_eq!(seconds(Some(&b"nan".to_vec())), CALLBACK_DEFAULT);
        assert_eq!(seconds(Some(&b"-1".to_vec())), CALLBACK_DEFAULT);
        assert_eq!(seconds(None), CALLBACK_DEFAULT);
        assert!(seconds(Some(&b"1e300".to_vec())) <= Duration::from_secs(crate::config::MAX_SECS));
    }

    #[test]
    fn requests_carry_the_job_hash() {
        let mut fields = HashMap::new();
        fields.insert("data".to_string(), vec![0u8, 1]);
        let r = request(
            b"job",
            &PyJob {
                id: "j1",
                fields: &fields,
            },
        );
        assert_eq!(
            r,
            vec![
                b"job".to_vec(),
                b"j1".to_vec(),
                b"data".to_vec(),
                vec![0, 1]
            ]
        );
    }
}
