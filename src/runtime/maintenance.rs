//! The maintenance thread: registry cleaning for every queue at start and then every
//! `--maintenance-interval` seconds (RQ: 600), under RQ's per-queue lock so that Python workers
//! and rq-worker processes never clean the same queue at once (held only while the pass runs, see
//! [`maintenance::CLEAN_LOCK_SECS`]); then groups and rq 3.0's concurrency limits.
//!
//! Between those runs it also answers the slots' requests for an early look at the intermediate
//! lists: a slot whose dequeue lost its reply with the connection may have left a job there, and
//! that job goes back to its queue about a minute later instead of waiting for the next run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::ops::metrics;
use crate::rq::maintenance;
use crate::runtime::Process;
use crate::runtime::shutdown::Phase;

pub fn run(process: Arc<Process>) {
    let every = Duration::from_secs(process.config.maintenance_interval.max(1));
    let mut next_full = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_full {
            full_pass(&process);
            next_full = Instant::now() + every;
            let _ = process.intermediate_check_due(now);
        } else if process.intermediate_check_due(now) {
            intermediate_pass(&process);
        }
        // Wake for the next full run or an early check a slot asked for, whichever is first;
        // in short steps, so that a check asked for meanwhile is not missed.
        let wake = process
            .next_intermediate_check()
            .map_or(next_full, |c| c.min(next_full));
        let nap = wake
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(2));
        if process.shutdown.sleep(nap, Phase::Warm) >= Phase::Warm {
            return;
        }
    }
}

/// Only the intermediate lists, outside the cleaning lock (each step is atomic or idempotent).
fn intermediate_pass(process: &Process) {
    let mut con = match process.connector.connect(Duration::from_secs(60)) {
        Ok(c) => c,
        Err(e) => {
            warn!("maintenance (intermediate lists): {e}");
            return;
        }
    };
    for q in &process.queues {
        let mut c = maintenance::Cleaned::default();
        match maintenance::intermediate(
            &mut con,
            &process.keys,
            q,
            process.config.results_ttl,
            &mut c,
        ) {
            Ok(()) => report(q, &c),
            Err(e) => warn!("maintenance queue={q} (intermediate list): {e}"),
        }
    }
}

/// Log and count what a pass cleaned in queue `q`.
fn report(q: &str, c: &maintenance::Cleaned) {
    metrics::with(|m| {
        m.jobs_abandoned
            .with_label_values(&[q])
            .inc_by(c.abandoned.len() as u64);
        let k = &m.maintenance_cleaned;
        k.with_label_values(&["abandoned_jobs"])
            .inc_by(c.abandoned.len() as u64);
        k.with_label_values(&["stuck_jobs"])
            .inc_by(c.stuck.len() as u64);
        k.with_label_values(&["requeued_jobs"])
            .inc_by(c.requeued.len() as u64);
        k.with_label_values(&["dangling_ids"])
            .inc_by(c.dangling as u64);
        k.with_label_values(&["dead_workers"])
            .inc_by(c.dead_workers as u64);
        k.with_label_values(&["ready_enqueued"])
            .inc_by(u64::try_from(c.ready).unwrap_or(0));
    });
    if !c.abandoned.is_empty()
        || !c.stuck.is_empty()
        || !c.requeued.is_empty()
        || c.dangling > 0
        || c.dead_workers > 0
        || c.ready > 0
    {
        info!(
            "maintenance queue={q}: abandoned={:?} stuck={:?} requeued_never_started={:?} dangling_ids={} dead_workers={} ready_enqueued={}",
            c.abandoned, c.stuck, c.requeued, c.dangling, c.dead_workers, c.ready
        );
    }
}

fn full_pass(process: &Process) {
    // This process's hold on the cleaning locks: the first slot's worker name is unique.
    let owner = process
        .slots
        .first()
        .map(|s| s.info.name.clone())
        .unwrap_or_else(|| format!("rq-worker-{}", std::process::id()));
    {
        match process.connector.connect(Duration::from_secs(60)) {
            Ok(mut con) => {
                metrics::with(|m| m.maintenance_runs.inc());
                for q in &process.queues {
                    match maintenance::clean_queue(
                        &mut con,
                        &process.keys,
                        q,
                        &owner,
                        process.config.results_ttl,
                    ) {
                        Ok(Some(c)) => report(q, &c),
                        Ok(None) => {}
                        Err(e) => warn!("maintenance queue={q}: {e}"),
                    }
                }
                let lock_secs = process.config.maintenance_interval.saturating_sub(1);
                match maintenance::clean_groups(&mut con, &process.keys, lock_secs) {
                    Ok(Some((ids, groups))) if ids > 0 || groups > 0 => {
                        metrics::with(|m| {
                            let k = &m.maintenance_cleaned;
                            k.with_label_values(&["group_ids"])
                                .inc_by(u64::try_from(ids).unwrap_or(0));
                            k.with_label_values(&["groups"])
                                .inc_by(u64::try_from(groups).unwrap_or(0));
                        });
                        info!(
                            "maintenance groups: {ids} expired job id(s) and {groups} empty group(s) removed"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => warn!("maintenance groups: {e}"),
                }
                match maintenance::clean_rate_limits(&mut con, &process.keys) {
                    Ok(limits) => {
                        for (key, c) in limits {
                            metrics::with(|m| {
                                let k = &m.maintenance_cleaned;
                                k.with_label_values(&["rate_limit_slots"])
                                    .inc_by(u64::try_from(c.released).unwrap_or(0));
                                k.with_label_values(&["rate_limit_promoted"])
                                    .inc_by(u64::try_from(c.promoted).unwrap_or(0));
                            });
                            if c.released > 0 || c.promoted > 0 {
                                info!(
                                    "maintenance rate limit {key:?}: released={} promoted={}",
                                    c.released, c.promoted
                                );
                            }
                        }
                    }
                    Err(e) => warn!("maintenance rate limits: {e}"),
                }
            }
            Err(e) => warn!("maintenance: {e}"),
        }
    }
}
