//! The maintenance thread: registry cleaning for every queue at start and then every
//! `--maintenance-interval` seconds (RQ: 600), under RQ's per-queue lock so that Python workers
//! and rq-worker processes never clean the same queue at once; then groups and rq 3.0's
//! concurrency limits.

use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::rq::maintenance;
use crate::runtime::Process;
use crate::runtime::shutdown::Phase;

pub fn run(process: Arc<Process>) {
    let every = Duration::from_secs(process.config.maintenance_interval.max(1));
    loop {
        match process.connector.connect(Duration::from_secs(60)) {
            Ok(mut con) => {
                for q in &process.queues {
                    match maintenance::clean_queue(
                        &mut con,
                        &process.keys,
                        q,
                        process.config.results_ttl,
                    ) {
                        Ok(Some(c)) => {
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
