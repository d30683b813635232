//! The heartbeat thread: keeps every slot's worker hash alive while idle (EXPIRE worker_ttl+60)
//! and, while a job runs, refreshes the worker hash, the execution, the started-registry score
//! and the job's `last_heartbeat` every `--job-monitoring-interval` seconds (rq-wire.md §9.4).
//! It runs beside the job threads, so a long job never misses a beat.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use log::{debug, info, warn};

use crate::ops::health::BeaconGuard;
use crate::rq::scripts::{self, Beat};
use crate::rq::worker;
use crate::runtime::Process;
use crate::runtime::connection::is_connection_error;
use crate::runtime::shutdown::Phase;

/// Heartbeat TTL while busy: `min(timeout - elapsed, interval) + 60`, as RQ computes it.
pub fn busy_ttl(timeout: Option<i64>, elapsed_secs: f64, interval: u64) -> i64 {
    let interval = interval as f64;
    let base = match timeout {
        Some(t) if t > 0 => (t as f64 - elapsed_secs).min(interval).max(0.0),
        _ => interval,
    };
    crate::num::f64_to_i64(base) + 60
}

pub fn run(process: Arc<Process>) {
    let interval = Duration::from_secs(process.config.job_monitoring_interval.max(1));
    let mut con: Option<redis::Connection> = None;
    // Each step below is a connect (10 s) or one call (30 s read timeout).
    let bound = Duration::from_secs(60);
    let beacon = process.liveness.watch("heartbeat", bound);
    let _guard = BeaconGuard(beacon.clone());
    loop {
        beacon.alive_for(bound);
        if process.shutdown.sleep(Duration::from_secs(1), Phase::Done) >= Phase::Done {
            return;
        }
        for slot in &process.slots {
            beacon.alive_for(bound);
            if !slot.registered.load(Ordering::SeqCst) || slot.since_beat() < interval {
                continue;
            }
            let Some(c) = connected(&mut con, &process, true) else {
                break;
            };
            let name = &slot.info.name;
            let result = match slot.running() {
                Some(r) => {
                    let elapsed = r.started.elapsed().as_secs_f64();
                    let ttl = busy_ttl(r.timeout, elapsed, process.config.job_monitoring_interval);
                    scripts::heartbeat_busy(
                        c,
                        &process.keys,
                        &Beat {
                            worker: name,
                            job_id: &r.job_id,
                            execution_id: &r.execution_id,
                            member: &r.member,
                            origin: &r.origin,
                            ttl,
                            working_time_secs: elapsed,
                        },
                    )
                    .and_then(|vanished| {
                        if vanished {
                            warn!("worker {name}: worker key had expired; re-registering");
                            worker::reregister(
                                c,
                                &process.keys,
                                &slot.info,
                                "busy",
                                ttl.max(0).unsigned_abs(),
                            )?;
                        }
                        Ok(())
                    })
                }
                None => worker::heartbeat_idle(c, &process.keys, name, process.idle_ttl())
                    .and_then(|vanished| {
                        if vanished {
                            warn!("worker {name}: worker key had expired; re-registering");
                            worker::reregister(
                                c,
                                &process.keys,
                                &slot.info,
                                "idle",
                                process.idle_ttl(),
                            )?;
                        }
                        Ok(())
                    }),
            };
            match result {
                Ok(()) => {
                    debug!("heartbeat worker={name}");
                    slot.beat();
                }
                Err(e) => {
                    warn!("heartbeat worker={name}: {e}");
                    if is_connection_error(&e) {
                        con = None;
                    }
                }
            }
        }
        beacon.alive_for(bound);
        check_running(&process, &mut con);
    }
}

/// The thread's connection, made if there is none (`warn`: log a failure as a warning, else at
/// debug level, so one outage is not logged twice a second).
fn connected<'a>(
    con: &'a mut Option<redis::Connection>,
    process: &Process,
    warn: bool,
) -> Option<&'a mut redis::Connection> {
    if con.is_none() {
        match process.connector.connect(Duration::from_secs(30)) {
            Ok(c) => *con = Some(c),
            Err(e) if warn => {
                warn!("heartbeat: {e}");
                return None;
            }
            Err(e) => {
                debug!("heartbeat: {e}");
                return None;
            }
        }
    }
    con.as_mut()
}

/// Every second: running jobs that a client deleted (or cancelled) leave the started registry
/// now, not when they end (`scripts::running_check`). rq 2.x/3.0's `Job.delete()` removes only
/// `job_id:execution_id` members, and the compat layout's member is the plain id, so without
/// this the queue's started count stays one too high for the rest of the job.
fn check_running(process: &Process, con: &mut Option<redis::Connection>) {
    let running: Vec<(String, crate::runtime::slot::Running)> = process
        .slots
        .iter()
        .filter(|s| s.registered.load(Ordering::SeqCst))
        .filter_map(|s| s.running().map(|r| (s.info.name.clone(), r)))
        .collect();
    if running.is_empty() {
        return;
    }
    let Some(c) = connected(con, process, false) else {
        return;
    };
    let beats: Vec<Beat<'_>> = running
        .iter()
        .map(|(name, r)| Beat {
            worker: name,
            job_id: &r.job_id,
            execution_id: &r.execution_id,
            member: &r.member,
            origin: &r.origin,
            ttl: 0,
            working_time_secs: 0.0,
        })
        .collect();
    match scripts::running_check(c, &process.keys, &beats) {
        Ok(ids) => {
            for id in ids {
                info!(
                    "job {id} was deleted or cancelled while it runs: no longer in the started registry; it runs to its end"
                );
            }
        }
        Err(e) => {
            if is_connection_error(&e) {
                debug!("running-job check: {e}");
                *con = None;
            } else {
                warn!("running-job check: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_like_rq() {
        assert_eq!(busy_ttl(Some(180), 0.0, 30), 90);
        assert_eq!(busy_ttl(Some(2), 0.5, 30), 61);
        assert_eq!(busy_ttl(None, 1000.0, 30), 90);
        assert_eq!(busy_ttl(Some(10), 20.0, 30), 60);
    }
}
