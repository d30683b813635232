//! One worker slot: one RQ worker identity (its own name, state, current job and counters) with
//! its own Redis connection and job thread. The slot thread registers the worker, dequeues,
//! starts, supervises and finishes jobs, and deregisters it at the end.
//!
//! Happy path per job: one script call dequeues and marks the job started, one records the
//! outcome (dependents included). Blocking waits use BLMOVE into the intermediate list, which a
//! warm shutdown interrupts with CLIENT UNBLOCK.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use log::{debug, error, info, warn};
use rand::seq::SliceRandom;

use crate::config::DequeueStrategy;
use crate::jobs::{Args, CancelReason, CancelToken, JobContext, JobError};
use crate::ops::health::{Beacon, BeaconGuard};
use crate::ops::metrics::{self, JobEnd};
use crate::python::{PyJob, PyOutcome, PythonExecutor};
use crate::rq::codec::{self, Payload};
use crate::rq::job::JobRecord;
use crate::rq::scripts::{
    self, Finish, Layout, NextStart, Outcome, Recorded, StartFrom, StartOutcome, Started,
};
use crate::rq::time::Timestamp;
use crate::rq::value::PyValue;
use crate::rq::worker::{self, WorkerInfo};
use crate::runtime::Process;
use crate::runtime::connection::is_connection_error;
use crate::runtime::executor::{Control, Executor, WaitFor, Waited};
use crate::runtime::failure;
use crate::runtime::faults::Fault;
use crate::runtime::hooks::RedisHooks;
use crate::runtime::shutdown::Phase;
use crate::runtime::supervise;
use crate::runtime::webhooks;

/// The job a slot is running, as the heartbeat and pub/sub threads need to see it.
#[derive(Debug, Clone)]
pub struct Running {
    pub job_id: String,
    pub execution_id: String,
    pub member: String,
    pub origin: String,
    pub started: Instant,
    /// Seconds; `None` for no timeout.
    pub timeout: Option<i64>,
}

/// State of one slot shared with the service threads.
pub struct SlotShared {
    pub info: WorkerInfo,
    /// The running job, if any.
    pub running: Mutex<Option<Running>>,
    /// Sends stop-job / kill-horse / cold-shutdown to the slot while a job runs.
    pub control: Sender<Control>,
    control_rx: Receiver<Control>,
    /// CLIENT ID of the slot's connection while it blocks in BLMOVE, else -1 (for CLIENT UNBLOCK).
    pub blocking_client: AtomicI64,
    /// A `shutdown` command for this worker alone.
    pub stop: AtomicBool,
    /// Registered and not yet dead: the heartbeat thread keeps it alive.
    pub registered: AtomicBool,
    /// When the worker hash was last refreshed by anyone.
    pub last_beat: Mutex<Instant>,
    /// The slot thread's check-in for `/healthz`, set when the thread starts.
    beacon: OnceLock<Arc<Beacon>>,
    /// Execution ids of starts made for this slot whose job is not running yet (including a start
    /// whose reply has not arrived): what a panic would strand, for [`recover`] to put back.
    held_starts: Mutex<Vec<String>>,
}

impl SlotShared {
    pub fn new(info: WorkerInfo) -> Self {
        let (control, control_rx) = unbounded();
        SlotShared {
            info,
            running: Mutex::new(None),
            control,
            control_rx,
            blocking_client: AtomicI64::new(-1),
            stop: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            last_beat: Mutex::new(Instant::now()),
            beacon: OnceLock::new(),
            held_starts: Mutex::new(Vec::new()),
        }
    }

    /// A start for this slot is about to be asked for (execution `execution_id`).
    fn hold_start(&self, execution_id: &str) {
        self.held_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(execution_id.to_string());
    }

    /// That start started nothing, or its job is now running (and tracked as running).
    fn release_start(&self, execution_id: &str) {
        self.held_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| e != execution_id);
    }

    fn take_held_starts(&self) -> Vec<String> {
        std::mem::take(&mut *self.held_starts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Promise `/healthz` that the slot thread checks in again within `bound`.
    pub fn check_in(&self, bound: Duration) {
        if let Some(b) = self.beacon.get() {
            b.alive_for(bound);
        }
    }

    pub fn beacon(&self) -> Option<&Beacon> {
        self.beacon.get().map(|b| &**b)
    }

    pub fn running(&self) -> Option<Running> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_running(&self, r: Option<Running>) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }

    pub fn beat(&self) {
        *self.last_beat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub fn since_beat(&self) -> Duration {
        self.last_beat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// Log prefix carrying the fields every job line has.
struct JobTag<'a> {
    job_id: &'a str,
    func: &'a str,
    queue: &'a str,
    worker: &'a str,
}

impl std::fmt::Display for JobTag<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job_id={}", self.job_id)?;
        if !self.func.is_empty() {
            write!(f, " func={}", self.func)?;
        }
        write!(f, " queue={} worker={}", self.queue, self.worker)
    }
}

/// The decided outcome of one execution, before it is written.
struct Decided {
    outcome: Outcome,
    return_value: String,
    exc_string: String,
    /// The failure text before encoding (empty on success), for the log line.
    exc_text: String,
    status_word: &'static str,
}

impl Decided {
    /// A failed (or stopped) outcome with its `exc_info` text.
    fn failure(outcome: Outcome, text: String, status_word: &'static str) -> Decided {
        Decided {
            outcome,
            return_value: String::new(),
            exc_string: codec::encode_exc_string(&text),
            exc_text: text,
            status_word,
        }
    }

    /// A failed outcome RQ may retry.
    fn failed(text: String) -> Decided {
        Decided::failure(Outcome::Failed { allow_retry: true }, text, "failed")
    }
}

/// The exception type and message of a failure text: its last line, `Type: message`, split; a
/// text that is not traceback-shaped is all message.
fn exc_summary(text: &str) -> (&str, &str) {
    let last = text.trim_end().lines().last().unwrap_or("");
    if text.starts_with("Traceback")
        && let Some((t, m)) = last.split_once(": ")
    {
        return (t, m);
    }
    ("", text.trim_end())
}

/// Run one slot until shutdown, burst exhaustion, `--max-jobs` or `--max-idle-time`.
/// Returns whether the worker was registered at all.
///
/// The serving loop runs under [`supervise::catch`]: a panic anywhere in it (a bug, or outside
/// data no check foresaw) is caught here; the jobs the slot held are failed (the one running) or
/// put back in their queue (those started but not yet running), and a fresh loop takes over. A
/// slot that keeps panicking without getting anything done gives up: it deregisters, `/healthz`
/// reports it dead and the process stops and exits non-zero instead of serving with fewer slots.
pub fn run(process: Arc<Process>, slot: Arc<SlotShared>) -> bool {
    let name = slot.info.name.clone();
    let cfg = &process.config;
    let bound = process.slot_bound();
    let beacon = slot
        .beacon
        .get_or_init(|| process.liveness.watch(format!("slot {name}"), bound))
        .clone();
    // Marks the beacon dead if this thread panics, exited if it returns.
    let _guard = BeaconGuard(beacon.clone());
    let read_timeout = cfg.dequeue_timeout() + Duration::from_secs(30);
    // Registration waits out a Redis that drops or is still loading its data, as the connection
    // does: a worker started during a Redis restart registers once Redis is back.
    let mut delay = Duration::from_millis(250);
    let (mut con, info) = loop {
        let mut con = match process.connector.connect_retrying(
            read_timeout,
            &process.shutdown,
            Phase::Warm,
            &name,
            slot.beacon(),
        ) {
            Ok(c) => c,
            Err(e) => {
                error!("worker {name}: {e}");
                return false;
            }
        };
        let mut info = slot.info.clone();
        info.ip_address = worker::client_address(&mut con, &name);
        match worker::birth(&mut con, &process.keys, &info, process.idle_ttl()) {
            Ok(()) => break (con, info),
            Err(worker::BirthError::Redis { source, .. }) if is_connection_error(&source) => {
                warn!(
                    "worker {name}: cannot register, Redis unavailable ({source}); retrying in {delay:?}"
                );
                if process.shutdown.sleep(delay, Phase::Warm) >= Phase::Warm {
                    return false;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                let cause = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                error!("worker {name}: {e}{cause}");
                return false;
            }
        }
    };
    slot.registered.store(true, Ordering::SeqCst);
    metrics::with(|m| m.slots.inc());
    let _ = worker::set_state(&mut con, &process.keys, &name, "idle", process.idle_ttl());
    slot.beat();
    info!(
        "worker {name} started on {} (pid {})",
        info.queues.join(","),
        info.pid
    );

    let mut strikes = supervise::Strikes::default();
    loop {
        let served = supervise::catch(|| serve(&process, &slot, &mut con));
        let Err(panic) = served else { break };
        error!("worker {name}: the slot loop panicked: {panic}");
        metrics::with(|m| m.slot_panics.inc());
        let released = recover(&process, &slot, &mut con, &panic);
        if released > 0 {
            strikes.progress();
        }
        match strikes.strike() {
            supervise::Verdict::Retry(pause) => {
                warn!(
                    "worker {name}: {released} held job(s) failed or put back; a fresh loop starts in {pause:?}"
                );
                process.shutdown.sleep(pause, Phase::Warm);
            }
            supervise::Verdict::GiveUp => {
                beacon.dead();
                process.give_up(format!(
                    "worker {name}: the slot loop panicked {} times in a row without getting a job done ({panic}); it stops, and the process with it",
                    supervise::MAX_STRIKES
                ));
                break;
            }
        }
    }

    // Teardown: deregister (retrying briefly if Redis is down).
    for attempt in 0..5 {
        match worker::death(&mut con, &process.keys, &info) {
            Ok(()) => break,
            Err(e) => {
                warn!(
                    "worker {name}: deregistering failed ({e}); attempt {}",
                    attempt + 1
                );
                std::thread::sleep(Duration::from_millis(500));
                if let Ok(c) = process.connector.connect(Duration::from_secs(10)) {
                    con = c;
                }
            }
        }
    }
    slot.registered.store(false, Ordering::SeqCst);
    metrics::with(|m| m.slots.dec());
    info!("worker {name} stopped");
    true
}

/// The serving loop of a registered slot: dequeue, run, record, until the slot should stop.
/// Everything a panic here would strand is visible to [`recover`]: the running job through
/// [`SlotShared::running`], jobs started for the slot but not yet running through its held starts.
fn serve(process: &Arc<Process>, slot: &Arc<SlotShared>, con: &mut redis::Connection) {
    let client_id = redis::cmd("CLIENT").arg("ID").query(con).unwrap_or(-1);
    let mut s = Serving {
        process,
        slot,
        con,
        client_id,
        executor: Executor::new(&format!("job-{}", slot.info.name)),
        python: process
            .python
            .as_ref()
            .map(|cfg| PythonExecutor::new(cfg.clone(), &slot.info.name)),
        queues: slot.info.queues.clone(),
        idle_since: Instant::now(),
        suspended: false,
        backoff: Duration::from_millis(10),
    };
    // A job already dequeued and marked started (by the start script, or by the previous
    // outcome's script): it runs whatever happens next, since it is in the started registry
    // under this worker. This is the only place jobs are run.
    let mut pending: Option<(Started, String)> = None;
    loop {
        slot.check_in(process.slot_bound());
        if let Some((started, execution_id)) = pending.take() {
            pending = s.run_pending(started, execution_id);
            continue;
        }
        if process.shutdown.stopping()
            || slot.stop.load(Ordering::SeqCst)
            || process.max_jobs_reached()
        {
            break;
        }
        match s.next_job() {
            Next::Job(p) => pending = Some(p),
            Next::Again => {}
            Next::Stop => break,
        }
    }
}

/// What one look for work came to.
enum Next {
    Job((Started, String)),
    /// Nothing yet (suspended, a wait that timed out, a Redis error handled): look again.
    Again,
    /// The slot should stop (burst done, idle too long, shutting down).
    Stop,
}

/// A slot's serving loop and the state it keeps between jobs.
struct Serving<'a> {
    process: &'a Arc<Process>,
    slot: &'a Arc<SlotShared>,
    con: &'a mut redis::Connection,
    /// CLIENT ID of `con`, for CLIENT UNBLOCK while it blocks in BLMOVE.
    client_id: i64,
    executor: Executor,
    /// The slot's Python process(es), with `--python`.
    python: Option<PythonExecutor>,
    /// Queues in the order they are served now (rotated or shuffled by the dequeue strategy).
    queues: Vec<String>,
    idle_since: Instant,
    /// The worker hash says `suspended` (rq suspend).
    suspended: bool,
    /// The BLMOVE wait with several queues, doubling to 500 ms while they stay empty.
    backoff: Duration,
}

impl Serving<'_> {
    fn name(&self) -> &str {
        &self.slot.info.name
    }

    /// Run a started job (and the test faults that fire after one); returns the next job its
    /// outcome call started, if any.
    fn run_pending(&mut self, started: Started, execution_id: String) -> Option<(Started, String)> {
        let process = self.process;
        if process.config.dequeue_strategy == DequeueStrategy::RoundRobin {
            rotate_after(&mut self.queues, &started.queue);
        }
        self.slot.beat();
        let next = run_job(self, started, execution_id);
        self.idle_since = Instant::now();
        match process.faults.after_job(process.jobs_done()) {
            Some(Fault::Panic) => panic!("test fault injection: slot-panic-after-jobs"),
            Some(Fault::Wedge) => {
                warn!(
                    "worker {}: test fault injection: wedged until shutdown",
                    self.name()
                );
                while !process.shutdown.stopping() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            None => {}
        }
        next
    }

    /// Start the first job of the first non-empty queue; when there is none, wait for one.
    fn next_job(&mut self) -> Next {
        let process = self.process;
        let cfg = &process.config;
        if cfg.dequeue_strategy == DequeueStrategy::Random {
            self.queues.shuffle(&mut rand::rng());
        }
        if process.faults.when_idle() {
            panic!("test fault injection: slot-panic-always");
        }
        let execution_id = uuid::Uuid::new_v4().simple().to_string();
        self.slot.hold_start(&execution_id);
        let started = metrics::redis_call("start", || {
            scripts::start(
                self.con,
                &process.keys,
                scripts::StartRequest {
                    from: StartFrom::Pop {
                        queues: &self.queues,
                    },
                    worker: &self.slot.info.name,
                    execution_id: &execution_id,
                    interval_secs: cfg.job_monitoring_interval,
                    layout: process.layout,
                    check_suspended: true,
                },
            )
        });
        match started {
            Ok(StartOutcome::Started(s)) => {
                // Held (since before the call) until run_job takes it. The start marked the
                // worker busy, which ends a suspension without another write.
                self.suspended = false;
                self.backoff = Duration::from_millis(10);
                Next::Job((s, execution_id))
            }
            Ok(StartOutcome::Suspended) => {
                self.slot.release_start(&execution_id);
                if cfg.burst {
                    info!("worker {}: suspended, burst mode exits", self.name());
                    return Next::Stop;
                }
                self.set_suspended(true);
                process.shutdown.sleep(Duration::from_secs(1), Phase::Warm);
                Next::Again
            }
            Ok(StartOutcome::Empty) => {
                self.slot.release_start(&execution_id);
                self.set_suspended(false);
                if cfg.burst {
                    return Next::Stop;
                }
                if let Some(max_idle) = cfg.max_idle_time
                    && self.idle_since.elapsed() >= Duration::from_secs(max_idle)
                {
                    info!("worker {}: idle for {max_idle}s, exiting", self.name());
                    return Next::Stop;
                }
                self.wait_for_job()
            }
            Err(e) => {
                let lost = is_connection_error(&e);
                self.redis_error(e);
                if lost {
                    put_back_lost_start(process, &self.slot.info.name, self.con, &execution_id);
                }
                self.slot.release_start(&execution_id);
                Next::Again
            }
        }
    }

    /// Record `suspended` in the worker hash when it changes.
    fn set_suspended(&mut self, suspended: bool) {
        if self.suspended == suspended {
            return;
        }
        let process = self.process;
        if suspended {
            info!(
                "worker {}: suspended (rq suspend); waiting for rq resume",
                self.name()
            );
        }
        let state = if suspended { "suspended" } else { "idle" };
        let _ = worker::set_state(
            self.con,
            &process.keys,
            &self.slot.info.name,
            state,
            process.idle_ttl(),
        );
        self.suspended = suspended;
    }

    /// Block in BLMOVE until a job arrives, then start it. A warm shutdown unblocks the wait with
    /// CLIENT UNBLOCK. One queue waits the whole dequeue timeout. BLMOVE cannot wait on several
    /// lists, so with several queues it waits on the first (highest priority) only, for a backoff
    /// capped at 500 ms, and the next pass takes from all of them atomically in priority order:
    /// the first queue is served at once, the others within the backoff. (RQ's BLPOP on all of
    /// them loses a job if the worker dies between pop and start.)
    fn wait_for_job(&mut self) -> Next {
        let process = self.process;
        let q = self.queues[0].clone();
        let wait_secs = if self.queues.len() == 1 {
            process.config.dequeue_timeout().as_secs_f64().max(1.0)
        } else {
            let w = self.backoff.as_secs_f64();
            self.backoff = (self.backoff * 2).min(Duration::from_millis(500));
            w
        };
        self.slot
            .blocking_client
            .store(self.client_id, Ordering::SeqCst);
        if process.shutdown.stopping() || self.slot.stop.load(Ordering::SeqCst) {
            self.slot.blocking_client.store(-1, Ordering::SeqCst);
            return Next::Stop;
        }
        let moved: redis::RedisResult<Option<String>> = redis::cmd("BLMOVE")
            .arg(process.keys.queue(&q))
            .arg(process.keys.intermediate(&q))
            .arg("LEFT")
            .arg("RIGHT")
            .arg(format!("{wait_secs:.3}"))
            .query(self.con);
        self.slot.blocking_client.store(-1, Ordering::SeqCst);
        self.slot.check_in(process.slot_bound());
        match moved {
            Ok(Some(job_id)) => self.start_moved(&q, &job_id),
            Ok(None) => Next::Again,
            Err(e) => {
                if is_connection_error(&e) {
                    // BLMOVE may have moved a job whose id never reached us.
                    process.request_intermediate_check();
                }
                self.redis_error(e);
                Next::Again
            }
        }
    }

    /// Start a job BLMOVE moved into `queue`'s intermediate list.
    fn start_moved(&mut self, queue: &str, job_id: &str) -> Next {
        let process = self.process;
        let execution_id = uuid::Uuid::new_v4().simple().to_string();
        self.slot.hold_start(&execution_id);
        let r = scripts::start(
            self.con,
            &process.keys,
            scripts::StartRequest {
                from: StartFrom::Moved { queue, job_id },
                worker: &self.slot.info.name,
                execution_id: &execution_id,
                interval_secs: process.config.job_monitoring_interval,
                layout: process.layout,
                check_suspended: false,
            },
        );
        match r {
            Ok(StartOutcome::Started(s)) => Next::Job((s, execution_id)),
            Ok(_) => {
                self.slot.release_start(&execution_id);
                Next::Again
            }
            Err(e) => {
                let lost = is_connection_error(&e);
                if lost {
                    // The start may not have run: the job would stay in the intermediate list.
                    process.request_intermediate_check();
                }
                self.redis_error(e);
                if lost {
                    put_back_lost_start(process, &self.slot.info.name, self.con, &execution_id);
                }
                self.slot.release_start(&execution_id);
                Next::Again
            }
        }
    }

    fn redis_error(&mut self, e: redis::RedisError) {
        handle_redis_error(self.process, self.slot, self.con, &mut self.client_id, e);
    }
}

/// The function name for log lines, from the job's `description` (`func(args...)`).
fn func_from_description(fields: &std::collections::HashMap<String, Vec<u8>>) -> String {
    let d = fields
        .get("description")
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_default();
    d.split('(').next().unwrap_or_default().to_string()
}

fn rotate_after(queues: &mut [String], served: &str) {
    if let Some(i) = queues.iter().position(|q| q == served) {
        queues[i..].rotate_left(1);
    }
}

/// After the connection died during a start call, the job it may have started (execution
/// `execution_id`) was never seen here: put it back at the front of its queue. If Redis is still
/// unreachable the job stays started and abandoned-job cleanup recovers it later.
fn put_back_lost_start(
    process: &Process,
    name: &str,
    con: &mut redis::Connection,
    execution_id: &str,
) {
    match scripts::unstart(con, &process.keys, name, execution_id) {
        Ok(Some(job_id)) => {
            info!(
                "worker {name}: job {job_id} was started by a call whose reply was lost; put back at the front of its queue"
            )
        }
        Ok(None) => {}
        Err(e) => warn!("worker {name}: could not check for a start lost with the connection: {e}"),
    }
}

/// After a panic in [`serve`]: a fresh connection, then every job the slot held is settled. The
/// running one is failed with the panic as its `exc_info` (or retried, if it has retries left),
/// unless its outcome was already recorded; those started but not yet running go back to the
/// front of their queue. Returns how many jobs were settled. A job still unsettled (Redis down
/// throughout) is left to abandoned-job cleanup, as a killed worker's would be.
fn recover(
    process: &Arc<Process>,
    slot: &Arc<SlotShared>,
    con: &mut redis::Connection,
    panic: &str,
) -> usize {
    let name = &slot.info.name;
    let read_timeout = process.config.dequeue_timeout() + Duration::from_secs(30);
    match process.connector.connect_retrying(
        read_timeout,
        &process.shutdown,
        Phase::Cold,
        name,
        slot.beacon(),
    ) {
        Ok(c) => *con = c,
        Err(e) => warn!("worker {name}: cannot reconnect after a panic ({e})"),
    }
    let mut settled = 0;
    if let Some(r) = slot.running() {
        let text = failure::traceback(
            None,
            "SystemError",
            &format!("the rq-worker slot running this job panicked: {panic}"),
        );
        let finish = Finish {
            job_id: &r.job_id,
            origin: &r.origin,
            worker: name,
            execution_id: &r.execution_id,
            member: &r.member,
            outcome: Outcome::Failed { allow_retry: true },
            started_f: String::new(),
            ended_f: Timestamp::now().epoch_f(),
            return_value: String::new(),
            exc_string: codec::encode_exc_string(&text),
            default_result_ttl: process.config.results_ttl,
            working_time_secs: r.started.elapsed().as_secs_f64(),
            worker_ttl: process.idle_ttl(),
        };
        // Replay semantics: recorded only if the job is still started by this worker.
        match scripts::finish_replay(con, &process.keys, &finish, "") {
            Ok(recorded) => {
                settled += 1;
                warn!(
                    "worker {name}: job {} held when the slot panicked: {recorded:?}",
                    r.job_id
                );
            }
            Err(e) => warn!(
                "worker {name}: cannot settle job {} after a panic ({e}); abandoned-job cleanup will",
                r.job_id
            ),
        }
        slot.set_running(None);
    }
    for execution_id in slot.take_held_starts() {
        match scripts::unstart(con, &process.keys, name, &execution_id) {
            Ok(Some(job_id)) => {
                settled += 1;
                warn!(
                    "worker {name}: job {job_id}, started for the slot but not yet running when it panicked, is back at the front of its queue"
                );
            }
            Ok(None) => {}
            Err(e) => warn!("worker {name}: cannot put back a held start after a panic ({e})"),
        }
    }
    settled
}

fn handle_redis_error(
    process: &Process,
    slot: &SlotShared,
    con: &mut redis::Connection,
    client_id: &mut i64,
    e: redis::RedisError,
) {
    let name = &slot.info.name;
    if is_connection_error(&e) {
        warn!("worker {name}: lost Redis connection ({e}); reconnecting");
        let read_timeout = process.config.dequeue_timeout() + Duration::from_secs(30);
        if let Ok(c) = process.connector.connect_retrying(
            read_timeout,
            &process.shutdown,
            Phase::Warm,
            name,
            slot.beacon(),
        ) {
            metrics::with(|m| m.redis_reconnects.inc());
            *con = c;
            *client_id = redis::cmd("CLIENT").arg("ID").query(con).unwrap_or(-1);
            let _ = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(name)
                .query::<()>(con);
        }
    } else {
        error!("worker {name}: Redis error ({e}); retrying in 1s");
        process.shutdown.sleep(Duration::from_secs(1), Phase::Warm);
    }
}

/// Execute one started job and record its outcome; returns the next job the recording call
/// started, if any.
fn run_job(
    serving: &mut Serving<'_>,
    s: Started,
    execution_id: String,
) -> Option<(Started, String)> {
    let Serving {
        process,
        slot,
        con,
        client_id,
        executor,
        python,
        queues: next_queues,
        ..
    } = serving;
    let (process, slot) = (*process, *slot);
    let name = slot.info.name.clone();
    let started_f = Timestamp::now().epoch_f();
    let started_at = Instant::now();
    // Drain controls meant for an earlier job.
    while slot.control_rx.try_recv().is_ok() {}

    let record = JobRecord::from_fields(&s.job_id, s.fields.clone(), &s.queue);
    let origin = record
        .as_ref()
        .map(|r| r.origin.clone())
        .unwrap_or_else(|_| s.queue.clone());
    // The function as metrics label it (bounded to the registered names), when metrics are on.
    let func_label = metrics::get().map(|_| {
        let f = func_from_description(&s.fields);
        if process.registry.get(&f).is_some() {
            f
        } else {
            metrics::UNREGISTERED_FUNC.to_string()
        }
    });
    if let Some(f) = &func_label {
        metrics::job_started(&origin, f);
    }
    let timeout = record.as_ref().ok().and_then(|r| r.timeout);
    slot.set_running(Some(Running {
        job_id: s.job_id.clone(),
        execution_id: execution_id.clone(),
        member: s.member.clone(),
        origin: origin.clone(),
        started: started_at,
        timeout,
    }));
    slot.release_start(&execution_id);

    let decided = match record {
        Err(e) => fail_text(&s.job_id, "ValueError", &format!("malformed job hash: {e}")),
        Ok(record) => execute(process, slot, executor, python.as_mut(), &record, &origin),
    };

    let func_for_log = if process.config.disable_job_desc_logging {
        String::new()
    } else {
        func_from_description(&s.fields)
    };
    let tag = JobTag {
        job_id: &s.job_id,
        func: &func_for_log,
        queue: &origin,
        worker: &name,
    };
    let ended_f = if decided.outcome == Outcome::Stopped {
        String::new()
    } else {
        Timestamp::now().epoch_f()
    };
    let elapsed = started_at.elapsed();
    let finish = Finish {
        job_id: &s.job_id,
        origin: &origin,
        worker: &name,
        execution_id: &execution_id,
        member: &s.member,
        outcome: decided.outcome,
        started_f,
        ended_f,
        return_value: decided.return_value,
        exc_string: decided.exc_string,
        default_result_ttl: process.config.results_ttl,
        working_time_secs: elapsed.as_secs_f64(),
        worker_ttl: process.idle_ttl(),
    };
    // On a busy queue the next job is dequeued and started in the same call (one round trip
    // per job), unless this slot is about to stop.
    let next_execution_id = uuid::Uuid::new_v4().simple().to_string();
    let next = (!process.shutdown.stopping()
        && !slot.stop.load(Ordering::SeqCst)
        && !process.max_jobs_reached_after(1))
    .then(|| NextStart {
        queues: next_queues.as_slice(),
        execution_id: &next_execution_id,
        interval_secs: process.config.job_monitoring_interval,
        layout: process.layout,
    });
    if next.is_some() {
        slot.hold_start(&next_execution_id);
    }
    if process.faults.before_record(process.jobs_done() + 1) {
        panic!("test fault injection: slot-panic-before-record");
    }
    let (recorded, next_started) = Recorder {
        process,
        slot,
        con,
        client_id,
    }
    .record(&finish, next, &next_execution_id, &tag);
    if !matches!(next_started, Some(StartOutcome::Started(_))) {
        slot.release_start(&next_execution_id);
    }
    slot.set_running(None);
    slot.beat();
    process.job_done();
    if let Some(raw) = s.fields.get("webhooks") {
        send_webhook(raw, &s, &func_for_log, recorded.as_ref(), &finish);
    }
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let (status, detail, end) = match &recorded {
        Some(Recorded::Finished) => ("finished", String::new(), JobEnd::Finished),
        Some(Recorded::Retried) => ("queued", " (retry, immediate)".into(), JobEnd::Retried),
        Some(Recorded::Scheduled(secs)) => (
            "scheduled",
            format!(" (retry in {secs} s)"),
            JobEnd::Retried,
        ),
        Some(Recorded::Gone) => ("deleted", " (while it ran)".into(), JobEnd::Unrecorded),
        Some(Recorded::Replayed) => (
            decided.status_word,
            " (recorded before the connection dropped)".into(),
            match decided.outcome {
                Outcome::Finished => JobEnd::Finished,
                Outcome::Stopped => JobEnd::Stopped,
                _ => JobEnd::Failed,
            },
        ),
        Some(Recorded::Failed) => ("failed", String::new(), JobEnd::Failed),
        Some(Recorded::Stopped) => ("stopped", String::new(), JobEnd::Stopped),
        None => ("unrecorded", String::new(), JobEnd::Unrecorded),
    };
    if let Some(f) = &func_label {
        metrics::job_ended(&origin, f, end, elapsed);
    }
    if recorded.is_some() {
        let (job_id, queue, worker) = (s.job_id.as_str(), origin.as_str(), name.as_str());
        let func = func_for_log.as_str();
        if decided.exc_text.is_empty() {
            info!(
                job_id, func, queue, worker, status, elapsed_ms = ms;
                "job {status}{detail}"
            );
        } else {
            let (exc_type, exc_message) = exc_summary(&decided.exc_text);
            info!(
                job_id, func, queue, worker, status, elapsed_ms = ms, exc_type, exc_message;
                "job {status}{detail}"
            );
        }
    }
    match next_started {
        Some(StartOutcome::Started(s)) => Some((s, next_execution_id)),
        _ => None,
    }
}

/// Writes one execution's outcome, holding it until Redis takes it.
struct Recorder<'a> {
    process: &'a Process,
    slot: &'a SlotShared,
    con: &'a mut redis::Connection,
    client_id: &'a mut i64,
}

impl Recorder<'_> {
    /// Record `finish` (and start `next`, when given, in the same call). An outage delays the
    /// write, it never loses it: after a connection error, whether the failed call ran is
    /// unknown, so the retries replay it (recording nothing twice, and putting back a next job it
    /// may have started). Returns what was recorded (`None`: Redis refused the call) and what the
    /// next start came to.
    fn record(
        &mut self,
        finish: &Finish<'_>,
        mut next: Option<NextStart<'_>>,
        next_execution_id: &str,
        tag: &JobTag<'_>,
    ) -> (Option<Recorded>, Option<StartOutcome>) {
        let process = self.process;
        let mut next_started = None;
        let mut replay: Option<&str> = None;
        let mut delay = Duration::from_millis(100);
        let recorded = loop {
            self.slot.check_in(process.slot_bound());
            let con = &mut *self.con;
            let attempt = match (&next, replay) {
                (_, Some(lost_next)) => metrics::redis_call("finish_replay", || {
                    scripts::finish_replay(con, &process.keys, finish, lost_next)
                }),
                (Some(n), None) => metrics::redis_call("finish_and_start", || {
                    scripts::finish_and_start(con, &process.keys, finish, n)
                })
                .map(|(r, s)| {
                    next_started = Some(s);
                    r
                }),
                (None, None) => {
                    metrics::redis_call("finish", || scripts::finish(con, &process.keys, finish))
                }
            };
            match attempt {
                Ok(r) => break Some(r),
                Err(e) if is_connection_error(&e) => {
                    warn!(
                        "{tag} cannot record outcome, Redis unavailable ({e}); retrying in {delay:?}"
                    );
                    if replay.is_none() {
                        replay = Some(if next.is_some() {
                            next_execution_id
                        } else {
                            ""
                        });
                    }
                    next = None;
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(process.connector.backoff_cap(Duration::from_secs(10)));
                    if let Ok(c) = process
                        .connector
                        .connect(process.config.dequeue_timeout() + Duration::from_secs(30))
                    {
                        metrics::with(|m| m.redis_reconnects.inc());
                        *self.con = c;
                        // The slot blocks in BLMOVE on this connection next: a warm shutdown must
                        // CLIENT UNBLOCK the new connection's id, not the dead one's.
                        *self.client_id =
                            redis::cmd("CLIENT").arg("ID").query(self.con).unwrap_or(-1);
                        let _ = redis::cmd("CLIENT")
                            .arg("SETNAME")
                            .arg(&self.slot.info.name)
                            .query::<()>(self.con);
                    }
                }
                Err(e) => {
                    error!("{tag} recording the outcome failed: {e}");
                    break None;
                }
            }
        };
        (recorded, next_started)
    }
}

/// POST the job's webhooks (rq 3.0's `webhooks` field) once its terminal status is known.
fn send_webhook(
    raw: &[u8],
    s: &Started,
    func: &str,
    recorded: Option<&Recorded>,
    finish: &Finish<'_>,
) {
    let status = match recorded {
        Some(Recorded::Finished) => "finished",
        Some(Recorded::Failed) => "failed",
        // Recorded by the call whose reply was lost: a finished outcome is certain.
        Some(Recorded::Replayed) if matches!(finish.outcome, Outcome::Finished) => "finished",
        _ => return,
    };
    let iso = |v: &[u8]| {
        crate::rq::time::parse_iso(&String::from_utf8_lossy(v))
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string())
    };
    webhooks::send(
        raw,
        webhooks::Event {
            job_id: s.job_id.clone(),
            func_name: func.to_string(),
            status,
            enqueued_at: s.fields.get("enqueued_at").and_then(|v| iso(v)),
            ended_at: iso(Timestamp::now().iso().as_bytes()),
            exc_info: (status == "failed")
                .then(|| codec::decode_exc_string(&finish.exc_string).ok())
                .flatten(),
        },
    );
}

fn fail_text(job_id: &str, exc_type: &str, message: &str) -> Decided {
    debug!("job {job_id}: {exc_type}: {message}");
    Decided::failed(failure::traceback(None, exc_type, message))
}

/// Decode, resolve and run the job on the job thread (or, with `--python`, in the slot's Python
/// process); decide its outcome.
fn execute(
    process: &Arc<Process>,
    slot: &Arc<SlotShared>,
    executor: &mut Executor,
    python: Option<&mut PythonExecutor>,
    record: &JobRecord,
    origin: &str,
) -> Decided {
    let Some(data) = record.data.as_deref() else {
        return fail_text(
            &record.id,
            "rq.exceptions.DeserializationError",
            "job hash has no 'data' field",
        );
    };
    let decoded = codec::decode_payload(data, process.serializer);
    // Functions implemented here run natively, from a payload the safe decoder read (no code
    // runs to decode it). With --python every other job goes to Python, including one whose
    // payload that decoder refuses (a pickled instance, a class it does not know): there it is
    // unpickled by the job's own serializer, as `rq worker` does.
    let native = matches!(&decoded, Ok(p) if p.instance == PyValue::None
        && process.registry.get(&p.func_name).is_some());
    if let Some(py) = python
        && !native
    {
        let func = match &decoded {
            Ok(p) => p.func_name.clone(),
            Err(_) => func_from_description(&record.fields),
        };
        return run_python(process, slot, py, record, &func);
    }
    let payload: Payload = match decoded {
        Ok(p) => p,
        Err(e) => {
            return fail_text(
                &record.id,
                "rq.exceptions.DeserializationError",
                &format!("cannot decode job payload: {e}"),
            );
        }
    };
    let func = payload.func_name.clone();
    if process.layout == Layout::V2 && record.id.contains(':') {
        return fail_text(
            &record.id,
            "ValueError",
            "job ids containing ':' cannot be tracked in the rq 2.x started registry; run rq-worker with --rq-version compat",
        );
    }
    let fail = |exc: &str| Decided::failed(exc.to_string());
    if payload.instance != PyValue::None {
        return fail(&failure::traceback(
            None,
            "TypeError",
            &format!(
                "rq-worker cannot call '{func}' on a pickled Python {} instance; enqueue a plain function by name",
                payload.instance.type_name()
            ),
        ));
    }
    if !record.callbacks.is_empty() {
        warn!(
            "job {}: Python callbacks {:?} cannot run in rq-worker and are ignored",
            record.id, record.callbacks
        );
    }
    let Some(handler) = process.registry.get(&func) else {
        return fail(&failure::exc_text(None, &process.registry.unknown(&func)));
    };

    let cancel = CancelToken::new();
    // A negative timeout expires at once (as it does in RQ); one too large for the clock to
    // represent (e.g. 2**63-1 written by hand) means no deadline rather than a panic.
    let deadline = record.timeout.and_then(|t| {
        Instant::now().checked_add(Duration::from_secs(u64::try_from(t).unwrap_or(0)))
    });
    let hooks = RedisHooks::new(process.clone(), record.id.clone());
    let (job_id, worker_name, queue, func_c, cancel_c) = (
        record.id.clone(),
        slot.info.name.clone(),
        origin.to_string(),
        func.clone(),
        cancel.clone(),
    );
    let args = Args::new(&func, payload.args, payload.kwargs);
    let rx = executor.submit(move || {
        let ctx = JobContext {
            job_id: &job_id,
            func_name: &func_c,
            queue: &queue,
            worker_name: &worker_name,
            cancel: &cancel_c,
            deadline,
            hooks: &hooks,
        };
        handler.call(&ctx, args)
    });
    let shutdown = process.shutdown.clone();
    let waited = executor.wait(
        &rx,
        WaitFor {
            control: &slot.control_rx,
            job_id: &record.id,
            cancel: &cancel,
            deadline,
            grace: Duration::from_secs(2),
            is_cold: &|| shutdown.phase() >= Phase::Cold,
            beacon: slot.beacon(),
        },
    );
    match waited {
        Waited::Done(Ok(Ok(value))) => {
            let return_value = if value == PyValue::None {
                String::new()
            } else {
                codec::encode_return_value(&value, process.serializer)
            };
            Decided {
                outcome: Outcome::Finished,
                return_value,
                exc_string: String::new(),
                exc_text: String::new(),
                status_word: "finished",
            }
        }
        Waited::Done(Ok(Err(JobError::Cancelled(reason)))) => {
            interrupted(record, &func, reason, &slot.info.name)
        }
        Waited::Done(Ok(Err(e))) => fail(&failure::exc_text(Some(&func), &e)),
        Waited::Done(Err(panic)) => fail(&failure::traceback(
            Some(&func),
            "SystemError",
            &format!("rq-worker job handler panicked: {panic}"),
        )),
        Waited::Interrupted { reason } => interrupted(record, &func, reason, &slot.info.name),
    }
}

/// How long past its timeout a Python job may take to report it (RQ's death penalty raises in the
/// job's own code) before its process is killed.
const PYTHON_TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// Run a job in the slot's Python process and decide its outcome.
fn run_python(
    process: &Arc<Process>,
    slot: &Arc<SlotShared>,
    py: &mut PythonExecutor,
    record: &JobRecord,
    func: &str,
) -> Decided {
    let deadline = record.timeout.and_then(|t| {
        Instant::now().checked_add(Duration::from_secs(u64::try_from(t).unwrap_or(0)))
    });
    let shutdown = process.shutdown.clone();
    let cancel = CancelToken::new();
    let job = PyJob {
        id: &record.id,
        fields: &record.fields,
    };
    let outcome = py.run(
        &job,
        &WaitFor {
            control: &slot.control_rx,
            job_id: &record.id,
            cancel: &cancel,
            deadline,
            grace: PYTHON_TIMEOUT_GRACE,
            is_cold: &|| shutdown.phase() >= Phase::Cold,
            beacon: slot.beacon(),
        },
    );
    match outcome {
        PyOutcome::Finished { value } => Decided {
            outcome: Outcome::Finished,
            return_value: value
                .map(|v| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.encode(v)
                })
                .unwrap_or_default(),
            exc_string: String::new(),
            exc_text: String::new(),
            status_word: "finished",
        },
        PyOutcome::Failed { exc_string } => Decided::failed(exc_string),
        PyOutcome::Died { text } => Decided::failed(text),
        PyOutcome::Unavailable { text } => {
            error!("job {}: {text}", record.id);
            Decided::failed(failure::traceback(None, "RuntimeError", &text))
        }
        PyOutcome::Interrupted(reason) => {
            if reason == CancelReason::StopJob {
                py.stopped_callback(&job);
            }
            interrupted(record, func, reason, &slot.info.name)
        }
    }
}

fn interrupted(record: &JobRecord, func: &str, reason: CancelReason, worker: &str) -> Decided {
    match reason {
        CancelReason::Timeout => Decided::failed(failure::exc_text(
            Some(func),
            &JobError::Timeout {
                seconds: record.timeout.unwrap_or(0),
            },
        )),
        CancelReason::StopJob => Decided::failure(
            Outcome::Stopped,
            "Job stopped by user, work-horse terminated.".into(),
            "stopped",
        ),
        CancelReason::KillHorse => Decided::failed(
            "Work-horse terminated unexpectedly; rq-worker abandoned the job thread on a kill-horse command"
                .into(),
        ),
        CancelReason::ColdShutdown => Decided::failed(failure::traceback(
            Some(func),
            "rq.exceptions.ShutDownImminentException",
            &format!("job interrupted by a cold shutdown of worker {worker}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> SlotShared {
        SlotShared::new(WorkerInfo {
            name: "w1".into(),
            queues: vec!["default".into()],
            pid: 1,
            hostname: "host".into(),
            ip_address: "unknown".into(),
            version: "2.6.0".into(),
            python_version: "3.12".into(),
        })
    }

    #[test]
    fn held_starts_are_what_recover_would_put_back() {
        let slot = shared();
        assert!(slot.take_held_starts().is_empty());
        slot.hold_start("e1");
        slot.hold_start("e2");
        slot.hold_start("e3");
        slot.release_start("e2");
        slot.release_start("never-held");
        assert_eq!(slot.take_held_starts(), ["e1", "e3"]);
        assert!(slot.take_held_starts().is_empty(), "taken once");
        slot.hold_start("e4");
        slot.release_start("e4");
        assert!(slot.take_held_starts().is_empty());
    }

    #[test]
    fn held_starts_survive_a_poisoned_lock() {
        // recover() runs after a panic, possibly one raised while the lock was held.
        let slot = Arc::new(shared());
        slot.hold_start("e1");
        let s = slot.clone();
        let _ = std::thread::spawn(move || {
            let _g = s.held_starts.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(slot.held_starts.is_poisoned());
        slot.hold_start("e2");
        slot.release_start("e1");
        assert_eq!(slot.take_held_starts(), ["e2"]);
    }

    #[test]
    fn running_is_shared_and_cleared() {
        let slot = shared();
        assert!(slot.running().is_none());
        slot.set_running(Some(Running {
            job_id: "j1".into(),
            execution_id: "e1".into(),
            member: "j1".into(),
            origin: "default".into(),
            started: Instant::now(),
            timeout: Some(180),
        }));
        let r = slot.running().unwrap();
        assert_eq!((r.job_id.as_str(), r.timeout), ("j1", Some(180)));
        slot.set_running(None);
        assert!(slot.running().is_none());
    }

    #[test]
    fn round_robin_moves_the_served_queue_last() {
        let mut q: Vec<String> = ["a", "b", "c", "d"].map(String::from).into();
        rotate_after(&mut q, "b");
        assert_eq!(q, ["a", "c", "d", "b"]);
        rotate_after(&mut q, "b");
        assert_eq!(q, ["a", "c", "d", "b"], "the last one stays last");
        rotate_after(&mut q, "a");
        assert_eq!(q, ["c", "d", "b", "a"]);
        rotate_after(&mut q, "unknown");
        assert_eq!(q, ["c", "d", "b", "a"]);
        let mut empty: Vec<String> = vec![];
        rotate_after(&mut empty, "a");
        assert!(empty.is_empty());
    }

    #[test]
    fn exc_summary_splits_a_traceback_and_keeps_other_text_whole() {
        let tb = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nValueError: bad: value\n\n";
        assert_eq!(exc_summary(tb), ("ValueError", "bad: value"));
        // The last line without `Type: message` is all message.
        assert_eq!(
            exc_summary("Traceback (most recent call last):\nKeyboardInterrupt\n"),
            ("", "Traceback (most recent call last):\nKeyboardInterrupt")
        );
        assert_eq!(
            exc_summary("RuntimeError: not a traceback\n"),
            ("", "RuntimeError: not a traceback")
        );
        assert_eq!(exc_summary(""), ("", ""));
    }

    #[test]
    fn job_tags_and_function_names_for_log_lines() {
        let tag = |func| {
            JobTag {
                job_id: "j1",
                func,
                queue: "q",
                worker: "w1",
            }
            .to_string()
        };
        assert_eq!(tag("app.f"), "job_id=j1 func=app.f queue=q worker=w1");
        assert_eq!(tag(""), "job_id=j1 queue=q worker=w1");

        let mut fields = std::collections::HashMap::new();
        assert_eq!(func_from_description(&fields), "");
        fields.insert("description".to_string(), b"app.tasks.add(1, 2)".to_vec());
        assert_eq!(func_from_description(&fields), "app.tasks.add");
        fields.insert("description".to_string(), b"no_parens".to_vec());
        assert_eq!(func_from_description(&fields), "no_parens");
    }

    #[test]
    fn decided_failures_carry_their_text_encoded() {
        let d = Decided::failed("ValueError: x".into());
        assert_eq!(d.outcome, Outcome::Failed { allow_retry: true });
        assert_eq!((d.status_word, d.return_value.as_str()), ("failed", ""));
        assert_eq!(
            codec::decode_exc_string(&d.exc_string).unwrap(),
            "ValueError: x"
        );
        assert_eq!(d.exc_text, "ValueError: x");
        let d = Decided::failure(Outcome::Stopped, "stopped".into(), "stopped");
        assert_eq!((d.outcome, d.status_word), (Outcome::Stopped, "stopped"));
    }
}
