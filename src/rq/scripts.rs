//! Typed wrappers over the Lua scripts in `src/rq/lua/` that apply RQ's state transitions.
//!
//! Each transition that RQ performs with WATCH/MULTI/EXEC (start, finish with dependents,
//! heartbeat, scheduler moves) is one script here: atomic like RQ's transactions, and one round
//! trip instead of several. Results come back as plain Rust values; nothing here panics on odd
//! replies.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::{ConnectionLike, Script, Value};

use crate::rq::keys::Keys;
use crate::rq::time::Timestamp;

static START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/fields_fn.lua"),
        include_str!("lua/start_fn.lua"),
        include_str!("lua/start.lua")
    ))
});
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/fields_fn.lua"),
        include_str!("lua/start_fn.lua"),
        include_str!("lua/unstart_fn.lua"),
        include_str!("lua/enqueue_fn.lua"),
        include_str!("lua/finish.lua")
    ))
});
static READY_RECOVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/enqueue_fn.lua"),
        include_str!("lua/ready_recover.lua")
    ))
});
static INTERMEDIATE_REQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/intermediate_requeue.lua")));
static GROUP_CLEAN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/group_clean.lua")));
static RATE_LIMIT_CLEAN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/enqueue_fn.lua"),
        include_str!("lua/rate_limit_clean.lua")
    ))
});
static UNSTART: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/unstart_fn.lua"),
        include_str!("lua/unstart.lua")
    ))
});
static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
static OWNED_LOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/owned_lock.lua")));
static OWNED_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/owned_release.lua")));
static RUNNING_CHECK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/running_check.lua")));
static ENQUEUE_DUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/enqueue_due.lua")));

/// How the started registry names a running job (rq-versions.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Plain `job_id` members: readable by rq 1.16, 2.x and 3.0.
    Compat,
    /// `job_id:execution_id` members: rq ≥ 2.0 only.
    V2,
}

/// Where the job to start comes from.
pub enum StartFrom<'a> {
    /// Pop the first job of the first non-empty queue (LMOVE into the intermediate list).
    Pop { queues: &'a [String] },
    /// A job BLMOVE already moved from `queue` into its intermediate list.
    Moved { queue: &'a str, job_id: &'a str },
}

/// A job marked started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The queue it was popped from.
    pub queue: String,
    pub job_id: String,
    /// Its member in the started registry.
    pub member: String,
    /// The heartbeat TTL applied at start.
    pub ttl: i64,
    /// The job hash after the start writes.
    pub fields: HashMap<String, Vec<u8>>,
}

/// What the start script found.
#[derive(Debug)]
pub enum StartOutcome {
    Started(Started),
    Empty,
    Suspended,
}

fn bulk_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn protocol_error(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "protocol error; unexpected script reply",
        what.to_string(),
    ))
}

/// Start a job: dequeue (or take a moved id), register the execution and mark it started.
#[allow(clippy::too_many_arguments)]
pub fn start(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    from: StartFrom<'_>,
    worker: &str,
    execution_id: &str,
    interval_secs: u64,
    layout: Layout,
    check_suspended: bool,
) -> redis::RedisResult<StartOutcome> {
    let now = Timestamp::now();
    let mut inv = START.prepare_invoke();
    inv.arg("prefix")
        .arg(keys.prefix())
        .arg("worker")
        .arg(worker)
        .arg("execution_id")
        .arg(execution_id)
        .arg("iso")
        .arg(now.iso())
        .arg("now_f")
        .arg(now.epoch_f())
        .arg("now")
        .arg(now.epoch())
        .arg("interval")
        .arg(interval_secs)
        .arg("compat")
        .arg(if layout == Layout::Compat { "1" } else { "0" })
        .arg("check_suspended")
        .arg(if check_suspended { "1" } else { "0" });
    match from {
        StartFrom::Pop { queues } => {
            inv.arg("mode")
                .arg("pop")
                .arg("queues")
                .arg(queues.join(","));
        }
        StartFrom::Moved { queue, job_id } => {
            inv.arg("mode")
                .arg("moved")
                .arg("queue")
                .arg(queue)
                .arg("job_id")
                .arg(job_id);
        }
    }
    let reply: Value = inv.invoke(con)?;
    parse_start_reply(reply)
}

fn parse_start_reply(reply: Value) -> redis::RedisResult<StartOutcome> {
    let Value::Array(items) = reply else {
        return Err(protocol_error("start: not an array"));
    };
    match items.first().and_then(bulk_text).as_deref() {
        Some("empty") => Ok(StartOutcome::Empty),
        Some("suspended") => Ok(StartOutcome::Suspended),
        Some("started") if items.len() >= 6 => {
            let text = |i: usize| items.get(i).and_then(bulk_text).unwrap_or_default();
            let mut fields = HashMap::new();
            if let Some(Value::Array(flat)) = items.get(5) {
                for pair in flat.chunks(2) {
                    if let [Value::BulkString(k), Value::BulkString(v)] = pair {
                        fields.insert(String::from_utf8_lossy(k).into_owned(), v.clone());
                    }
                }
            }
            Ok(StartOutcome::Started(Started {
                queue: text(1),
                job_id: text(2),
                member: text(3),
                ttl: text(4).parse().unwrap_or(90),
                fields,
            }))
        }
        _ => Err(protocol_error("start: unknown status")),
    }
}

/// The outcome to record for one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// An exception; retried when the job has retries left and `allow_retry`.
    Failed {
        allow_retry: bool,
    },
    /// Stopped by `stop-job`: status `stopped`, no retry, dependents kept waiting.
    Stopped,
}

/// Everything the finish script needs.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub job_id: &'a str,
    pub origin: &'a str,
    /// `""` for abandoned-job cleanup (no worker to update).
    pub worker: &'a str,
    pub execution_id: &'a str,
    pub member: &'a str,
    pub outcome: Outcome,
    /// Float epoch of the execution start, `""` if unknown.
    pub started_f: String,
    /// Float epoch of the execution end, `""` if none.
    pub ended_f: String,
    /// base64 of the serialized return value; `""` for None.
    pub return_value: String,
    /// base64 of zlib of the traceback text.
    pub exc_string: String,
    pub default_result_ttl: i64,
    pub working_time_secs: f64,
    /// EXPIRE of the worker hash once idle again (worker_ttl + 60).
    pub worker_ttl: u64,
}

/// What the finish script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Finished,
    Failed,
    Stopped,
    /// Re-enqueued at once (retry with no interval).
    Retried,
    /// Put in the scheduled registry for a retry in this many seconds.
    Scheduled(String),
    /// The job hash was gone (deleted while running); only bookkeeping was done.
    Gone,
    /// A replay found the outcome already recorded by the call whose reply was lost.
    Replayed,
}

/// The next job to start in the same call as recording an outcome.
#[derive(Debug, Clone)]
pub struct NextStart<'a> {
    pub queues: &'a [String],
    pub execution_id: &'a str,
    pub interval_secs: u64,
    pub layout: Layout,
}

/// Record the outcome of an execution, dependents included, in one atomic step.
pub fn finish(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    f: &Finish<'_>,
) -> redis::RedisResult<Recorded> {
    finish_inner(con, keys, f, None, None).map(|(r, _)| r)
}

/// Record the outcome again after the connection died during an earlier call for it (whose
/// reply was lost, so whether it ran is unknown): nothing is recorded twice, and the next job
/// that call may have started (execution `lost_next_execution_id`, `""` if it started none) goes
/// back to the front of its queue, since this worker never saw it.
pub fn finish_replay(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    f: &Finish<'_>,
    lost_next_execution_id: &str,
) -> redis::RedisResult<Recorded> {
    finish_inner(con, keys, f, None, Some(lost_next_execution_id)).map(|(r, _)| r)
}

/// Undo a start whose reply was lost with the connection (execution `execution_id` of `worker`):
/// the job goes back to the front of its queue. Returns its id, if there was one to put back.
pub fn unstart(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    worker: &str,
    execution_id: &str,
) -> redis::RedisResult<Option<String>> {
    UNSTART
        .prepare_invoke()
        .arg(keys.prefix())
        .arg(worker)
        .arg(execution_id)
        .invoke(con)
}

/// Record the outcome and, in the same atomic call, dequeue and start the next job (one round
/// trip per job on a busy queue instead of two).
pub fn finish_and_start(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    f: &Finish<'_>,
    next: &NextStart<'_>,
) -> redis::RedisResult<(Recorded, StartOutcome)> {
    let (recorded, started) = finish_inner(con, keys, f, Some(next), None)?;
    Ok((recorded, started.unwrap_or(StartOutcome::Empty)))
}

fn finish_inner(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    f: &Finish<'_>,
    next: Option<&NextStart<'_>>,
    replay: Option<&str>,
) -> redis::RedisResult<(Recorded, Option<StartOutcome>)> {
    let now = Timestamp::now();
    let (outcome, allow_retry, counter) = match f.outcome {
        Outcome::Finished => ("finished", false, "successful_job_count"),
        Outcome::Failed { allow_retry } => ("failed", allow_retry, "failed_job_count"),
        Outcome::Stopped => ("stopped", false, "failed_job_count"),
    };
    let mut inv = FINISH.prepare_invoke();
    inv.arg("prefix")
        .arg(keys.prefix())
        .arg("job_id")
        .arg(f.job_id)
        .arg("origin")
        .arg(f.origin)
        .arg("worker")
        .arg(f.worker)
        .arg("execution_id")
        .arg(f.execution_id)
        .arg("member")
        .arg(f.member)
        .arg("outcome")
        .arg(outcome)
        .arg("allow_retry")
        .arg(if allow_retry { "1" } else { "0" })
        .arg("iso")
        .arg(now.iso())
        .arg("now")
        .arg(now.epoch())
        .arg("now_f")
        .arg(now.epoch_f())
        .arg("started_f")
        .arg(&f.started_f)
        .arg("ended_f")
        .arg(&f.ended_f)
        .arg("return_value")
        .arg(&f.return_value)
        .arg("exc_string")
        .arg(&f.exc_string)
        .arg("default_result_ttl")
        .arg(f.default_result_ttl)
        .arg("working_time")
        .arg(format!("{:.6}", f.working_time_secs.max(0.0)))
        .arg("worker_ttl")
        .arg(f.worker_ttl)
        .arg("counter")
        .arg(counter);
    if let Some(n) = next {
        inv.arg("next_queues")
            .arg(n.queues.join(","))
            .arg("next_execution_id")
            .arg(n.execution_id)
            .arg("next_interval")
            .arg(n.interval_secs)
            .arg("next_compat")
            .arg(if n.layout == Layout::Compat { "1" } else { "0" });
    }
    if let Some(lost) = replay {
        inv.arg("replay")
            .arg("1")
            .arg("lost_next_execution_id")
            .arg(lost);
    }
    let reply: Value = inv.invoke(con)?;
    let Value::Array(mut items) = reply else {
        return Err(protocol_error("finish: not an array"));
    };
    // Fused form: {result, start_reply}.
    let mut started = None;
    if next.is_some() && matches!(items.first(), Some(Value::Array(_))) {
        let start_reply = if items.len() > 1 {
            items.swap_remove(1)
        } else {
            Value::Nil
        };
        started = Some(parse_start_reply(start_reply)?);
        match items.swap_remove(0) {
            Value::Array(inner) => items = inner,
            _ => return Err(protocol_error("finish: not an array")),
        }
    }
    let status = items.first().and_then(bulk_text).unwrap_or_default();
    let recorded = match status.as_str() {
        "finished" => Recorded::Finished,
        "failed" => Recorded::Failed,
        "stopped" => Recorded::Stopped,
        "retried" => Recorded::Retried,
        "scheduled" => Recorded::Scheduled(items.get(1).and_then(bulk_text).unwrap_or_default()),
        "gone" => Recorded::Gone,
        "replayed" => Recorded::Replayed,
        _ => return Err(protocol_error("finish: unknown status")),
    };
    Ok((recorded, started))
}

/// A running execution, as the heartbeat needs it.
#[derive(Debug, Clone)]
pub struct Beat<'a> {
    pub worker: &'a str,
    pub job_id: &'a str,
    pub execution_id: &'a str,
    pub member: &'a str,
    pub origin: &'a str,
    pub ttl: i64,
    pub working_time_secs: f64,
}

/// Heartbeat a busy worker. Returns true when the worker hash had vanished and must be rewritten.
pub fn heartbeat_busy(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    b: &Beat<'_>,
) -> redis::RedisResult<bool> {
    let now = Timestamp::now();
    let vanished: i64 = HEARTBEAT
        .arg("prefix")
        .arg(keys.prefix())
        .arg("worker")
        .arg(b.worker)
        .arg("job_id")
        .arg(b.job_id)
        .arg("execution_id")
        .arg(b.execution_id)
        .arg("member")
        .arg(b.member)
        .arg("origin")
        .arg(b.origin)
        .arg("iso")
        .arg(now.iso())
        .arg("now_f")
        .arg(now.epoch_f())
        .arg("now")
        .arg(now.epoch())
        .arg("ttl")
        .arg(b.ttl)
        .arg("working_time")
        .arg(format!("{:.6}", b.working_time_secs))
        .invoke(con)?;
    Ok(vanished == 1)
}

/// Take or refresh locks that `owner` holds for `ttl` seconds: each key is taken when free and
/// refreshed when `owner` already holds it. Returns the keys held after the call.
pub fn lock_owned(
    con: &mut dyn ConnectionLike,
    owner: &str,
    ttl: u64,
    lock_keys: &[String],
) -> redis::RedisResult<Vec<String>> {
    let mut inv = OWNED_LOCK.prepare_invoke();
    inv.arg(owner).arg(ttl.max(1));
    for k in lock_keys {
        inv.arg(k);
    }
    inv.invoke(con)
}

/// Take every job in `running` that a client deleted or cancelled out of the started state
/// (started registry; for a deleted job also its execution keys and the worker's `current_job`),
/// while it keeps running. Returns the ids this call changed something for. See
/// `lua/running_check.lua` for why: rq 2.x/3.0 clients remove only composite members.
pub fn running_check(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    running: &[Beat<'_>],
) -> redis::RedisResult<Vec<String>> {
    if running.is_empty() {
        return Ok(Vec::new());
    }
    let mut inv = RUNNING_CHECK.prepare_invoke();
    inv.arg(keys.prefix());
    for b in running {
        inv.arg(b.worker)
            .arg(b.job_id)
            .arg(b.execution_id)
            .arg(b.member)
            .arg(b.origin);
    }
    inv.invoke(con)
}

/// Release the locks among `lock_keys` that `owner` still holds (one that expired and was taken
/// by someone else is left alone).
pub fn release_owned(
    con: &mut dyn ConnectionLike,
    owner: &str,
    lock_keys: &[String],
) -> redis::RedisResult<()> {
    let mut inv = OWNED_RELEASE.prepare_invoke();
    inv.arg(owner);
    for k in lock_keys {
        inv.arg(k);
    }
    let _: Value = inv.invoke(con)?;
    Ok(())
}

/// Take or refresh the scheduler locks of `queues`; returns the queues whose lock we hold.
pub fn scheduler_lock(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    owner: &str,
    queues: &[String],
    ttl: u64,
) -> redis::RedisResult<Vec<String>> {
    let lock_keys: Vec<String> = queues.iter().map(|q| keys.scheduler_lock(q)).collect();
    let held = lock_owned(con, owner, ttl, &lock_keys)?;
    Ok(queues
        .iter()
        .filter(|q| held.contains(&keys.scheduler_lock(q)))
        .cloned()
        .collect())
}

/// Release the scheduler locks we own.
pub fn scheduler_release(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    owner: &str,
    queues: &[String],
) -> redis::RedisResult<()> {
    let lock_keys: Vec<String> = queues.iter().map(|q| keys.scheduler_lock(q)).collect();
    release_owned(con, owner, &lock_keys)
}

/// Move due jobs of `queue` from the scheduled registry to the queue; returns how many.
pub fn enqueue_due(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    queue: &str,
) -> redis::RedisResult<i64> {
    let now = Timestamp::now();
    ENQUEUE_DUE
        .arg("prefix")
        .arg(keys.prefix())
        .arg("queue")
        .arg(queue)
        .arg("now")
        .arg(now.epoch())
        .arg("iso")
        .arg(now.iso())
        .invoke(con)
}

/// What maintenance did to one rq 3.0 concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitCleaned {
    /// Slots freed: held by jobs that are gone, or neither queued nor started, and not running.
    pub released: i64,
    /// Waiting (`rate_limited`) jobs moved onto their queues.
    pub promoted: i64,
    /// The limit had nothing allowed or waiting left, and its keys were removed.
    pub forgotten: bool,
}

/// rq 3.0's maintenance of concurrency limit `key`, in one script (see rate_limit_clean.lua).
pub fn clean_rate_limit(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    key: &str,
) -> redis::RedisResult<RateLimitCleaned> {
    let now = Timestamp::now();
    let (released, promoted, forgotten): (i64, i64, i64) = RATE_LIMIT_CLEAN
        .arg("prefix")
        .arg(keys.prefix())
        .arg("key")
        .arg(key)
        .arg("now_f")
        .arg(now.epoch_f())
        .arg("iso")
        .arg(now.iso())
        .invoke(con)?;
    Ok(RateLimitCleaned {
        released,
        promoted,
        forgotten: forgotten == 1,
    })
}

/// Enqueue what an rq 3.0 worker left in `queue`'s ready registry (see ready_recover.lua);
/// returns how many jobs were enqueued.
/// What [`requeue_intermediate`] did with an id found in the intermediate list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    /// Put back at the front of its queue (it never started).
    Requeued,
    /// Its status says a worker got further than the move: fail it as RQ does.
    Fail,
    /// The job hash is gone; the id was dropped.
    Dangling,
    /// No longer in the intermediate list (a worker started it meanwhile).
    Gone,
}

/// Put a job that never started back in its queue (`lua/intermediate_requeue.lua`).
pub fn requeue_intermediate(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    queue: &str,
    job_id: &str,
) -> redis::RedisResult<Requeued> {
    let r: String = INTERMEDIATE_REQUEUE
        .arg(keys.prefix())
        .arg(queue)
        .arg(job_id)
        .invoke(con)?;
    Ok(match r.as_str() {
        "requeued" => Requeued::Requeued,
        "dangling" => Requeued::Dangling,
        "gone" => Requeued::Gone,
        _ => Requeued::Fail,
    })
}

pub fn recover_ready(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    queue: &str,
) -> redis::RedisResult<i64> {
    let now = Timestamp::now();
    READY_RECOVER
        .arg("prefix")
        .arg(keys.prefix())
        .arg("queue")
        .arg(queue)
        .arg("now_f")
        .arg(now.epoch_f())
        .arg("iso")
        .arg(now.iso())
        .invoke(con)
}

/// Group maintenance for `group` (see group_clean.lua): returns (ids removed, group removed).
pub fn clean_group(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    group: &str,
) -> redis::RedisResult<(i64, bool)> {
    let (removed, gone): (i64, i64) = GROUP_CLEAN
        .arg("prefix")
        .arg(keys.prefix())
        .arg("group")
        .arg(group)
        .invoke(con)?;
    Ok((removed, gone == 1))
}
