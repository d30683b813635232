//! RQ's scheduler role (`--with-scheduler`, rq-wire.md §8.5): per queue, take the scheduler lock
//! (acquire-or-refresh, rq 2.11 semantics), keep the `rq:scheduler:<name>` record alive, and move
//! due jobs (interval retries, `enqueue_at`/`enqueue_in`) from the scheduled registry to their queue
//! every second. Locks are released on exit.

use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use redis::Commands;

use crate::rq::scripts;
use crate::rq::time::Timestamp;
use crate::runtime::Process;
use crate::runtime::connection::is_connection_error;
use crate::runtime::shutdown::Phase;

const LOCK_TTL: u64 = 61;

/// One scheduler pass (lock, enqueue due jobs, release), for burst mode's start.
pub fn pass_once(process: &Process, name: &str) {
    let Ok(mut c) = process.connector.connect(Duration::from_secs(30)) else {
        return;
    };
    let keys = &process.keys;
    match scripts::scheduler_lock(&mut c, keys, name, &process.queues, LOCK_TTL) {
        Ok(held) => {
            for q in &held {
                match scripts::enqueue_due(&mut c, keys, q) {
                    Ok(n) if n > 0 => info!("scheduler {name}: enqueued {n} due job(s) on {q}"),
                    Ok(_) => {}
                    Err(e) => warn!("scheduler {name}: {e}"),
                }
            }
            let _ = scripts::scheduler_release(&mut c, keys, name, &held);
        }
        Err(e) => warn!("scheduler {name}: {e}"),
    }
}

pub fn run(process: Arc<Process>, name: String) {
    let keys = &process.keys;
    let queues = process.queues.clone();
    let record = keys.scheduler(&name);
    let created = Timestamp::now().iso();
    let mut con: Option<redis::Connection> = None;
    let mut held: Vec<String> = Vec::new();
    loop {
        if process.shutdown.phase() >= Phase::Warm {
            break;
        }
        let c = match con.as_mut() {
            Some(c) => c,
            None => match process.connector.connect(Duration::from_secs(30)) {
                Ok(c) => con.insert(c),
                Err(e) => {
                    warn!("scheduler: {e}");
                    process.shutdown.sleep(Duration::from_secs(1), Phase::Warm);
                    continue;
                }
            },
        };
        let step = (|| -> redis::RedisResult<()> {
            let now_held = scripts::scheduler_lock(c, keys, &name, &queues, LOCK_TTL)?;
            if now_held != held {
                info!("scheduler {name}: holding locks for {now_held:?}");
                held = now_held;
            }
            if held.is_empty() {
                return Ok(());
            }
            let _: () = redis::pipe()
                .atomic()
                .hset_multiple(
                    &record,
                    &[
                        ("name", name.clone()),
                        ("hostname", process.hostname.clone()),
                        ("pid", std::process::id().to_string()),
                        ("queues", held.join(",")),
                        ("created_at", created.clone()),
                        ("last_heartbeat", Timestamp::now().iso()),
                    ],
                )
                .expire(&record, LOCK_TTL.cast_signed())
                .query(c)?;
            for q in &held {
                let n = scripts::enqueue_due(c, keys, q)?;
                if n > 0 {
                    info!("scheduler {name}: enqueued {n} due job(s) on {q}");
                }
            }
            Ok(())
        })();
        if let Err(e) = step {
            warn!("scheduler {name}: {e}");
            if is_connection_error(&e) {
                con = None;
            }
        }
        process.shutdown.sleep(Duration::from_secs(1), Phase::Warm);
    }
    if let Some(c) = con.as_mut() {
        let _ = scripts::scheduler_release(c, keys, &name, &queues);
        let _: redis::RedisResult<()> = c.del(&record);
    }
}
