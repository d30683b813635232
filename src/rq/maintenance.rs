//! Registry cleaning under RQ's lock (rq-wire.md §8.2, §8.3, §9.8): expired finished/failed
//! entries, abandoned started jobs (failed or retried, never a finished one), dead worker keys in
//! the worker sets, and ids stuck in the intermediate list; and rq 3.0's concurrency limits
//! (leaked slots freed, waiting jobs promoted) and ready registry (dependents an rq 3.0 worker
//! left between deferred and queued), only where rq 3.0 clients created them; and groups (rq ≥ 2).

use redis::{Commands, ConnectionLike};

use crate::rq::codec;
use crate::rq::keys::Keys;
use crate::rq::scripts::{self, Finish, Outcome, RateLimitCleaned};
use crate::rq::time::Timestamp;

/// What one cleaning run did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub abandoned: Vec<String>,
    pub stuck: Vec<String>,
    /// Jobs that sat in the intermediate list without ever starting, put back in their queue.
    pub requeued: Vec<String>,
    pub dangling: usize,
    pub dead_workers: usize,
    /// Jobs an rq 3.0 worker left in the ready registry, now enqueued.
    pub ready: i64,
}

/// Seconds an id may sit in the intermediate list before maintenance acts on it (RQ 1.16.2+: 60).
pub const STUCK_AFTER_SECS: f64 = 60.0;

/// How long the registry-cleaning lock is taken for. RQ's workers take it for 899 s and never
/// release it (it doubles as "cleaned recently" across their fleet), so a worker killed while
/// cleaning blocks everyone's cleaning for 15 minutes. Here it is held only while the pass runs:
/// taken for this long, re-armed between the pass's steps, released (if still ours) at the end.
pub const CLEAN_LOCK_SECS: u64 = 60;

/// Clean one queue's registries if the cleaning lock is free. Returns `None` when another worker
/// holds the lock. `owner` identifies this worker's hold on the lock (e.g. its name).
pub fn clean_queue<C: ConnectionLike + Commands>(
    con: &mut C,
    keys: &Keys,
    queue: &str,
    owner: &str,
    default_result_ttl: i64,
) -> redis::RedisResult<Option<Cleaned>> {
    let lock = [keys.clean_registries_lock(queue)];
    if scripts::lock_owned(con, owner, CLEAN_LOCK_SECS, &lock)?.is_empty() {
        return Ok(None);
    }
    let rearm = |con: &mut C| scripts::lock_owned(con, owner, CLEAN_LOCK_SECS, &lock).map(|_| ());
    let result = clean_locked(con, keys, queue, default_result_ttl, &rearm);
    let _ = scripts::release_owned(con, owner, &lock);
    result.map(Some)
}

/// rq 3.0's concurrency-limit maintenance (its `RateLimitRegistry.cleanup` for every key in
/// `rq:rl-keys`): each key in one atomic script, so no lock is needed. Data-driven: without rq 3.0
/// enqueuers using limits the set does not exist and this is one SMEMBERS.
pub fn clean_rate_limits<C: ConnectionLike + Commands>(
    con: &mut C,
    keys: &Keys,
) -> redis::RedisResult<Vec<(String, RateLimitCleaned)>> {
    let limits: Vec<String> = con.smembers(keys.rate_limit_keys())?;
    let mut out = Vec::new();
    for key in limits {
        let cleaned = scripts::clean_rate_limit(con, keys, &key)?;
        out.push((key, cleaned));
    }
    Ok(out)
}

/// Group maintenance (rq 2.x/3.0's `Group.clean_registries`): ids of jobs that are gone leave
/// their groups, and empty groups leave the registry. Under rq 3.0's `clean_groups` lock, held
/// until it expires (`lock_secs`, just under the maintenance interval) so that one worker of the
/// fleet does it per interval. Data-driven: nothing happens without an `rq:groups` set. Returns
/// (ids removed, groups removed), or `None` when another worker holds the lock.
pub fn clean_groups<C: ConnectionLike + Commands>(
    con: &mut C,
    keys: &Keys,
    lock_secs: u64,
) -> redis::RedisResult<Option<(i64, i64)>> {
    let any: bool = con.exists(keys.groups())?;
    if !any {
        return Ok(Some((0, 0)));
    }
    let got: Option<String> = redis::cmd("SET")
        .arg(keys.clean_groups_lock())
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(lock_secs.max(1))
        .query(con)?;
    if got.is_none() {
        return Ok(None);
    }
    let groups: Vec<String> = con.smembers(keys.groups())?;
    let (mut ids, mut gone) = (0, 0);
    for g in groups {
        let (removed, group_gone) = scripts::clean_group(con, keys, &g)?;
        ids += removed;
        gone += i64::from(group_gone);
    }
    Ok(Some((ids, gone)))
}

fn clean_locked<C: ConnectionLike + Commands>(
    con: &mut C,
    keys: &Keys,
    queue: &str,
    default_result_ttl: i64,
    rearm: &dyn Fn(&mut C) -> redis::RedisResult<()>,
) -> redis::RedisResult<Cleaned> {
    let now = Timestamp::now();
    let mut out = Cleaned::default();
    let _: () = redis::pipe()
        .zrembyscore(keys.finished(queue), 0, now.epoch())
        .ignore()
        .zrembyscore(keys.failed(queue), 0, now.epoch())
        .ignore()
        .query(con)?;

    // Abandoned jobs: started-registry members whose heartbeat lapsed.
    let started = keys.started(queue);
    let expired: Vec<String> = con.zrangebyscore(&started, 0, now.epoch())?;
    for member in expired {
        let job_id = resolve_member(con, keys, &member)?;
        let status: Option<String> = con.hget(keys.job(&job_id), "status")?;
        if status.as_deref() != Some("started") {
            // Finished, failed or gone: only the stale member goes.
            let _: () = con.zrem(&started, &member)?;
            continue;
        }
        let text = format!(
            "Moved to FailedJobRegistry, due to AbandonedJobError, at {}",
            now.python_str()
        );
        fail_unowned(
            con,
            keys,
            queue,
            &job_id,
            &member,
            &text,
            true,
            default_result_ttl,
        )?;
        out.abandoned.push(job_id);
    }
    rearm(con)?;

    // Worker sets: drop keys whose hash expired.
    for set in [keys.queue_workers(queue), keys.workers()] {
        let members: Vec<String> = con.smembers(&set)?;
        for m in members {
            let alive: bool = con.exists(&m)?;
            if !alive {
                let _: () = con.srem(&set, &m)?;
                out.dead_workers += 1;
            }
        }
    }

    rearm(con)?;

    // rq 3.0's ready registry, only where an rq 3.0 worker wrote one.
    let ready: bool = con.exists(keys.ready(queue))?;
    if ready {
        out.ready = scripts::recover_ready(con, keys, queue)?;
    }

    // Intermediate list: ids popped but never marked started.
    intermediate(con, keys, queue, default_result_ttl, &mut out)?;
    Ok(out)
}

/// Ids in `queue`'s intermediate list that no worker started (rq-wire.md §8.3). The first pass
/// that sees one notes when (a marker key with a day's TTL); a pass more than
/// [`STUCK_AFTER_SECS`] later acts on it: a job still `queued` never ran and goes back to the
/// front of its queue; any other (a worker got further than the move) is failed as RQ fails it.
/// Safe without the cleaning lock: each step is one atomic script or an idempotent marker.
pub fn intermediate<C: ConnectionLike + Commands>(
    con: &mut C,
    keys: &Keys,
    queue: &str,
    default_result_ttl: i64,
    out: &mut Cleaned,
) -> redis::RedisResult<()> {
    let now = Timestamp::now();
    let started = keys.started(queue);
    let inter = keys.intermediate(queue);
    let ids: Vec<String> = con.lrange(&inter, 0, -1)?;
    for id in ids {
        let in_started: Option<f64> = con.zscore(&started, &id)?;
        if in_started.is_some() {
            continue;
        }
        let exists: bool = con.exists(keys.job(&id))?;
        if !exists {
            let _: () = con.lrem(&inter, 1, &id)?;
            out.dangling += 1;
            continue;
        }
        let seen_key = keys.intermediate_first_seen(queue, &id);
        // `SET NX EX` then, only if it did not set, `GET` (`SET ... NX GET` needs Redis 7.0;
        // the floor is 6.2). The marker only grows older, so the two steps need no atomicity.
        let set: Option<String> = redis::cmd("SET")
            .arg(&seen_key)
            .arg(now.epoch_f())
            .arg("NX")
            .arg("EX")
            .arg(86_400)
            .query(con)?;
        if set.is_some() {
            continue;
        }
        let first: Option<String> = con.get(&seen_key)?;
        let Some(first) = first else { continue };
        let first: f64 = first.parse().unwrap_or(f64::MAX);
        let now_f: f64 = now.epoch_f().parse().unwrap_or(0.0);
        if now_f - first <= STUCK_AFTER_SECS {
            continue;
        }
        match scripts::requeue_intermediate(con, keys, queue, &id)? {
            scripts::Requeued::Requeued => out.requeued.push(id),
            scripts::Requeued::Dangling => out.dangling += 1,
            scripts::Requeued::Gone => {}
            scripts::Requeued::Fail => {
                let text = "Job was stuck in intermediate queue.";
                fail_unowned(con, keys, queue, &id, "", text, false, default_result_ttl)?;
                let _: () = con.lrem(&inter, 1, &id)?;
                out.stuck.push(id);
            }
        }
        let _: () = con.del(&seen_key)?;
    }
    Ok(())
}

/// Fail a job no worker is running any more (abandoned or stuck), with `text` as its exc_string.
#[allow(clippy::too_many_arguments)]
fn fail_unowned<C: ConnectionLike>(
    con: &mut C,
    keys: &Keys,
    queue: &str,
    job_id: &str,
    member: &str,
    text: &str,
    allow_retry: bool,
    default_result_ttl: i64,
) -> redis::RedisResult<()> {
    scripts::finish(
        con,
        keys,
        &Finish {
            job_id,
            origin: queue,
            worker: "",
            execution_id: "",
            member,
            outcome: Outcome::Failed { allow_retry },
            started_f: String::new(),
            ended_f: String::new(),
            return_value: String::new(),
            exc_string: codec::encode_exc_string(text),
            default_result_ttl,
            working_time_secs: 0.0,
            worker_ttl: 0,
        },
    )
    .map(|_| ())
}

/// The job id of a started-registry member: plain (1.x, compat) or `job_id:execution_id` (2.x).
/// A plain id may itself contain `:` (1.16 allows it), so the whole member wins when that job exists.
pub fn resolve_member<C: Commands>(
    con: &mut C,
    keys: &Keys,
    member: &str,
) -> redis::RedisResult<String> {
    if let Some((job, exec)) = member.rsplit_once(':') {
        let looks_like_exec = exec.len() == 32 && exec.bytes().all(|b| b.is_ascii_hexdigit());
        if looks_like_exec {
            let whole: bool = con.exists(keys.job(member))?;
            if !whole {
                return Ok(job.to_string());
            }
        }
    }
    Ok(member.to_string())
}
