//! The job thread of one worker slot, and how a running job is waited for.
//!
//! Handlers run on a dedicated thread so the slot thread can enforce the job's timeout and react
//! to stop-job, kill-horse and cold shutdown while the handler runs. A handler is first asked to
//! stop through its [`CancelToken`]; one that does not return within the grace period is
//! abandoned (its thread is left to finish on its own, its result discarded) and a fresh job
//! thread takes its place, like RQ killing a stuck work-horse.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};
use log::warn;

use crate::jobs::{CancelReason, CancelToken, JobError};
use crate::ops::health::Beacon;
use crate::value::PyValue;

/// What a handler produced: its return value, its error, or the text of its panic.
pub type HandlerResult = Result<Result<PyValue, JobError>, String>;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// A thread that runs one job at a time.
pub struct Executor {
    name: String,
    tx: Sender<Task>,
    /// Threads abandoned because a handler would not stop (for the log).
    abandoned: usize,
}

/// Messages to a slot about its running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop the job with this id (stop-job / stop-execution).
    StopJob(String),
    /// Kill the running job, whatever it is.
    KillHorse,
    /// The process is shutting down cold.
    ColdShutdown,
}

/// What a wait for a running job watches.
pub struct WaitFor<'a> {
    /// Stop-job / kill-horse / cold-shutdown messages for this slot.
    pub control: &'a Receiver<Control>,
    pub job_id: &'a str,
    pub cancel: &'a CancelToken,
    /// When the job's timeout expires (`None`: never).
    pub deadline: Option<Instant>,
    /// How long an interrupted handler may take to return before its thread is abandoned.
    pub grace: Duration,
    /// Polled so a process-wide cold shutdown interrupts the job too.
    pub is_cold: &'a dyn Fn() -> bool,
    /// The waiting thread's check-in for `/healthz`, renewed at every tick.
    pub beacon: Option<&'a Beacon>,
}

/// How the wait for a job ended.
pub enum Waited {
    /// The handler returned (or panicked).
    Done(HandlerResult),
    /// The job was interrupted; `late` holds the handler's result if it returned within the grace
    /// period (it is ignored: the interruption decides the outcome).
    Interrupted { reason: CancelReason },
}

fn spawn_thread(name: &str) -> Sender<Task> {
    let (tx, rx) = bounded::<Task>(1);
    let spawned = thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            for task in rx {
                task();
            }
        });
    if let Err(e) = spawned {
        warn!("cannot spawn job thread {name}: {e}");
    }
    tx
}

impl Executor {
    pub fn new(name: &str) -> Self {
        Executor {
            name: name.to_string(),
            tx: spawn_thread(name),
            abandoned: 0,
        }
    }

    /// Run `job` on the job thread; returns the channel its result arrives on.
    pub fn submit<F>(&mut self, job: F) -> Receiver<HandlerResult>
    where
        F: FnOnce() -> Result<PyValue, JobError> + Send + 'static,
    {
        let (rtx, rrx) = bounded::<HandlerResult>(1);
        let task: Task = Box::new(move || {
            let r = crate::runtime::supervise::catch(job);
            let _ = rtx.send(r);
        });
        if let Err(crossbeam_channel::SendError(task)) = self.tx.send(task) {
            // The thread is gone (could not be spawned or died): start another and retry once.
            self.tx = spawn_thread(&self.name);
            let _ = self.tx.send(task);
        }
        rrx
    }

    /// Wait for the result, enforcing the deadline and obeying control messages for the job.
    pub fn wait(&mut self, result: &Receiver<HandlerResult>, w: WaitFor<'_>) -> Waited {
        let WaitFor {
            control,
            job_id,
            cancel,
            deadline,
            grace,
            is_cold,
            beacon,
        } = w;
        let tick = Duration::from_millis(200);
        let reason = loop {
            if let Some(b) = beacon {
                // A tick, then at most the grace period: well inside this bound.
                b.alive_for(Duration::from_secs(30) + grace);
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(tick),
                None => tick,
            };
            select! {
                recv(result) -> r => match r {
                    Ok(r) => return Waited::Done(r),
                    Err(_) => return Waited::Done(Err("job thread ended without a result".into())),
                },
                recv(control) -> c => match c {
                    Ok(Control::StopJob(id)) if id == job_id => break CancelReason::StopJob,
                    Ok(Control::StopJob(_)) => continue,
                    Ok(Control::KillHorse) => break CancelReason::KillHorse,
                    Ok(Control::ColdShutdown) => break CancelReason::ColdShutdown,
                    Err(_) => continue,
                },
                default(wait) => {
                    if is_cold() {
                        break CancelReason::ColdShutdown;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break CancelReason::Timeout;
                    }
                }
            }
        };
        cancel.cancel(reason);
        // Kill-horse means kill: do not wait for the handler. Otherwise give it a moment.
        let returned = reason != CancelReason::KillHorse && result.recv_timeout(grace).is_ok();
        if !returned {
            self.abandoned += 1;
            warn!(
                "job {job_id} did not stop within {grace:?} after {reason}; abandoning its thread \
                 ({} abandoned so far) and starting a fresh one",
                self.abandoned
            );
            self.tx = spawn_thread(&self.name);
        }
        Waited::Interrupted { reason }
    }
}
