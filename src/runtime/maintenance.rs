//! The maintenance thread: registry cleaning for every queue at start and then every
//! `--maintenance-interval` seconds (RQ: 600), under RQ's per-queue lock so that Python workers
//! and rq-worker processes never clean the same queue at once; then groups and rq 3.0's
//! concurrency limits.

use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::ops::metrics;
use crate::rq::maintenance;
use crate::runtime::Process;
use crate::runtime::shutdown::Phase;

pub fn run(process: Arc<Process>) {
    let every = Duration::from_secs(process.config.maintenance_interval.max(1));
    loop {
        match process.connector.connect(Duration::from_secs(60)) {
            Ok(mut con) => {
                metrics::with(|m| m.maintenance_runs.inc());
                for q in &process.queues {
                    match maintenance::clean_queue(
                        &mut con,
                        &process.keys,
                        q,
                        process.config.results_ttl,
                    ) {
                        Ok(Some(c)) => {
                            metrics::with(|m| {
                                m.jobs_abandoned
                                    .with_label_values(&[q.as_str()])
                                    .inc_by(c.abandoned.len() as u64);
                                let k = &m.maintenance_cleaned;
                                k.with_label_values(&["abandoned_jobs"])
                                    .inc_by(c.abandoned.len() as u64);
                                k.with_label_values(&["stuck_jobs"])
                                    .inc_by(c.stuck.len() as u64);
                                k.with_label_values(&["dangling_ids"])
                                    .inc_by(c.dangling as u64);
                                k.with_label_values(&["dead_workers"])
                                    .inc_by(c.dead_workers as u64);
                                k.with_label_values(&["ready_enqueued"])
                                    .inc_by(c.ready.max(0) as u64);
                            });
                            if !c.abandoned.is_empty()
                                || !c.stuck.is_empty()
                                || c.dangling > 0
                                || c.dead_workers > 0
                                || c.ready > 0
                            {
                                info!(
                                    "maintenance queue={q}: abandoned={:?} stuck={:?} dangling_ids={} dead_workers={} ready_enqueued={}",
                                    c.abandoned, c.stuck, c.dangling, c.dead_workers, c.ready
                                );
                            }
                        }
                        Ok(None) => {}
                        Err(e) => warn!("maintenance queue={q}: {e}"),
                    }
                }
                let lock_secs = process.config.maintenance_interval.saturating_sub(1);
                match maintenance::clean_groups(&mut con, &process.keys, lock_secs) {
                    Ok(Some((ids, groups))) if ids > 0 || groups > 0 => {
                        metrics::with(|m| {
                            let k = &m.maintenance_cleaned;
                            k.with_label_values(&["group_ids"]).inc_by(ids as u64);
                            k.with_label_values(&["groups"]).inc_by(groups as u64);
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
                                    .inc_by(c.released.max(0) as u64);
                                k.with_label_values(&["rate_limit_promoted"])
                                    .inc_by(c.promoted.max(0) as u64);
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
        if process.shutdown.sleep(every, Phase::Warm) >= Phase::Warm {
            return;
        }
    }
}
