//! Commands from outside: the pub/sub listener (`rq:pubsub:<worker>`: shutdown, kill-horse,
//! stop-job, stop-execution) and the signal handler (SIGTERM/SIGINT: warm, then cold). Both only
//! route requests to slots and to the [`Shutdown`](crate::runtime::shutdown::Shutdown) handle.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use log::{info, warn};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::rq::pubsub::{self, Command};
use crate::rq::worker;
use crate::runtime::Process;
use crate::runtime::executor::Control;
use crate::runtime::shutdown::Phase;
use crate::runtime::slot::SlotShared;

/// Wake a slot blocked in BLMOVE so it sees a stop request now.
pub fn unblock(process: &Process, slot: &SlotShared) {
    let id = slot.blocking_client.load(Ordering::SeqCst);
    if id < 0 {
        return;
    }
    if let Ok(mut con) = process.pool.get() {
        let _: redis::RedisResult<i64> =
            redis::cmd("CLIENT").arg("UNBLOCK").arg(id).query(&mut *con);
    }
}

/// Ask one slot to stop taking jobs (its running job finishes).
pub fn stop_slot(process: &Process, slot: &SlotShared) {
    slot.stop.store(true, Ordering::SeqCst);
    if slot.running().is_some()
        && let Ok(mut con) = process.pool.get()
    {
        let _ = worker::shutdown_requested(&mut *con, &process.keys, &slot.info.name);
    }
    unblock(process, slot);
}

/// Warm shutdown of the whole process.
pub fn warm(process: &Process) {
    if process.shutdown.advance(Phase::Warm) {
        info!("warm shutdown requested: finishing running jobs, taking no new ones");
        for slot in &process.slots {
            stop_slot(process, slot);
        }
        if let Some(secs) = process.config.shutdown_timeout {
            let shutdown = process.shutdown.clone();
            let _ = std::thread::Builder::new()
                .name("shutdown-timeout".into())
                .spawn(move || {
                    if shutdown.sleep(Duration::from_secs(secs), Phase::Cold) < Phase::Cold {
                        info!("shutdown timeout of {secs}s expired: cold shutdown");
                        shutdown.advance(Phase::Cold);
                    }
                });
        }
    }
}

/// Cold shutdown: interrupt running jobs now.
pub fn cold(process: &Process) {
    warm(process);
    if process.shutdown.advance(Phase::Cold) {
        info!("cold shutdown requested: interrupting running jobs");
        for slot in &process.slots {
            let _ = slot.control.send(Control::ColdShutdown);
            unblock(process, slot);
        }
    }
}

/// Handle SIGTERM/SIGINT until the process is done.
pub fn signals(process: Arc<Process>) {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot install signal handlers: {e}");
            return;
        }
    };
    let handle = signals.handle();
    let p = process.clone();
    let _ = std::thread::Builder::new()
        .name("signal-close".into())
        .spawn(move || {
            while p.shutdown.sleep(Duration::from_secs(3600), Phase::Done) < Phase::Done {}
            handle.close();
        });
    for sig in signals.forever() {
        let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
        if process.shutdown.phase() == Phase::Running {
            info!("{name} received");
            warm(&process);
        } else {
            info!("{name} received again");
            cold(&process);
        }
    }
}

/// Listen on every slot's pub/sub channel until the process is done; resubscribe after outages.
pub fn pubsub(process: Arc<Process>) {
    let channels: Vec<String> = process
        .slots
        .iter()
        .map(|s| process.keys.pubsub(&s.info.name))
        .collect();
    loop {
        let mut con = match process.connector.connect_retrying(
            Duration::from_secs(1),
            &process.shutdown,
            Phase::Done,
            "pubsub",
            None,
        ) {
            Ok(c) => c,
            Err(_) => return,
        };
        let mut ps = con.as_pubsub();
        if let Err(e) = ps.subscribe(&channels) {
            warn!("pubsub: subscribe failed ({e}); retrying");
            if process.shutdown.sleep(Duration::from_secs(1), Phase::Done) >= Phase::Done {
                return;
            }
            continue;
        }
        let _ = ps.set_read_timeout(Some(Duration::from_millis(250)));
        loop {
            if process.shutdown.phase() >= Phase::Done {
                let _ = ps.unsubscribe(&channels);
                return;
            }
            match ps.get_message() {
                Ok(msg) => {
                    let channel = msg.get_channel_name().to_string();
                    let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
                    dispatch(&process, &channel, &payload);
                }
                Err(e) if e.is_timeout() => continue,
                Err(e) => {
                    warn!("pubsub: connection lost ({e}); resubscribing");
                    break;
                }
            }
        }
    }
}

fn dispatch(process: &Process, channel: &str, payload: &[u8]) {
    let Some(slot) = process
        .slots
        .iter()
        .find(|s| process.keys.pubsub(&s.info.name) == channel)
    else {
        return;
    };
    let name = &slot.info.name;
    let command = match pubsub::parse(payload) {
        Ok(c) => c,
        Err(e) => {
            warn!("worker {name}: ignoring pubsub message: {e}");
            return;
        }
    };
    info!("worker {name}: received command {command:?}");
    let running = slot.running();
    match command {
        Command::Shutdown => stop_slot(process, slot),
        Command::KillHorse => {
            if running.is_some() {
                let _ = slot.control.send(Control::KillHorse);
            }
        }
        Command::StopJob { job_id } => {
            if running.as_ref().is_some_and(|r| r.job_id == job_id) {
                let _ = slot.control.send(Control::StopJob(job_id));
            }
        }
        Command::StopExecution {
            job_id,
            execution_id,
        } => {
            if running
                .as_ref()
                .is_some_and(|r| r.job_id == job_id && r.execution_id == execution_id)
            {
                let _ = slot.control.send(Control::StopJob(job_id));
            }
        }
    }
}
