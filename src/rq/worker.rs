//! Worker records (rq-wire.md §7, §9.1, §9.11): the `rq:worker:<name>` hash, the worker sets,
//! birth, idle heartbeats, state changes and death, with every field in the format that
//! `Worker.all()`, `rq info` and rq-dashboard parse.

use redis::ConnectionLike;

use crate::rq::keys::Keys;
use crate::rq::time::Timestamp;

/// Identity fields written at birth.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub name: String,
    /// Queue names in priority order.
    pub queues: Vec<String>,
    pub pid: u32,
    pub hostname: String,
    /// `host:port` of the worker's connection as Redis sees it, or `unknown`.
    pub ip_address: String,
    /// Shown by the dashboard in the RQ-version column.
    pub version: String,
    /// Shown by the dashboard in the Python-version column.
    pub python_version: String,
}

/// Why a worker could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum BirthError {
    #[error("there exists an active worker named '{0}' already")]
    NameTaken(String),
    #[error("registering worker {name}")]
    Redis {
        name: String,
        #[source]
        source: redis::RedisError,
    },
}

/// The address Redis sees for this connection (`CLIENT SETNAME` + `CLIENT INFO`), as RQ records it.
/// A TTL in seconds as EXPIRE takes it (a configured value; past `i64::MAX` it saturates).
fn expire_secs(ttl: u64) -> i64 {
    i64::try_from(ttl).unwrap_or(i64::MAX)
}

pub fn client_address(con: &mut redis::Connection, name: &str) -> String {
    let _: redis::RedisResult<()> = redis::cmd("CLIENT").arg("SETNAME").arg(name).query(con);
    let info: redis::RedisResult<String> = redis::cmd("CLIENT").arg("INFO").query(con);
    info.ok()
        .and_then(|s| {
            s.split_whitespace()
                .find_map(|kv| kv.strip_prefix("addr=").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn birth_mapping(info: &WorkerInfo, now: &Timestamp) -> Vec<(&'static str, String)> {
    vec![
        ("birth", now.iso()),
        ("last_heartbeat", now.iso()),
        ("queues", info.queues.join(",")),
        ("pid", info.pid.to_string()),
        ("hostname", info.hostname.clone()),
        ("ip_address", info.ip_address.clone()),
        ("version", info.version.clone()),
        ("python_version", info.python_version.clone()),
    ]
}

/// Register a worker: refuse a live namesake, then write the hash and the set memberships in one
/// transaction, and set `state started`.
pub fn birth(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    info: &WorkerInfo,
    ttl: u64,
) -> Result<(), BirthError> {
    let key = keys.worker(&info.name);
    let redis_err = |source| BirthError::Redis {
        name: info.name.clone(),
        source,
    };
    let (exists, has_death): (bool, bool) = redis::pipe()
        .exists(&key)
        .hexists(&key, "death")
        .query(con)
        .map_err(redis_err)?;
    if exists && !has_death {
        return Err(BirthError::NameTaken(info.name.clone()));
    }
    let now = Timestamp::now();
    let mut p = redis::pipe();
    p.atomic()
        .del(&key)
        .hset_multiple(&key, &birth_mapping(info, &now))
        .sadd(keys.workers(), &key);
    for q in &info.queues {
        p.sadd(keys.queue_workers(q), &key);
    }
    p.expire(&key, expire_secs(ttl))
        .hset(&key, "state", "started");
    p.query::<()>(con).map_err(redis_err)
}

/// Rewrite the birth fields of a worker whose hash expired while it was alive (Redis stall).
pub fn reregister(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    info: &WorkerInfo,
    state: &str,
    ttl: u64,
) -> redis::RedisResult<()> {
    let key = keys.worker(&info.name);
    let now = Timestamp::now();
    let mut p = redis::pipe();
    p.atomic()
        .hset_multiple(&key, &birth_mapping(info, &now))
        .hset(&key, "state", state)
        .sadd(keys.workers(), &key);
    for q in &info.queues {
        p.sadd(keys.queue_workers(q), &key);
    }
    p.expire(&key, expire_secs(ttl)).query(con)
}

/// Idle heartbeat. Returns true when the hash had vanished (the caller re-registers).
pub fn heartbeat_idle(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    name: &str,
    ttl: u64,
) -> redis::RedisResult<bool> {
    let key = keys.worker(name);
    let (created, _): (i64, i64) = redis::pipe()
        .atomic()
        .hset(&key, "last_heartbeat", Timestamp::now().iso())
        .expire(&key, expire_secs(ttl))
        .query(con)?;
    Ok(created == 1)
}

/// `HSET state <state>` plus a heartbeat.
pub fn set_state(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    name: &str,
    state: &str,
    ttl: u64,
) -> redis::RedisResult<()> {
    let key = keys.worker(name);
    redis::pipe()
        .atomic()
        .hset(&key, "state", state)
        .hset(&key, "last_heartbeat", Timestamp::now().iso())
        .expire(&key, expire_secs(ttl))
        .query(con)
}

/// Warm shutdown requested while busy.
pub fn shutdown_requested(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    name: &str,
) -> redis::RedisResult<()> {
    redis::cmd("HSET")
        .arg(keys.worker(name))
        .arg("shutdown_requested_date")
        .arg(Timestamp::now().iso())
        .query(con)
}

/// Deregister: leave the sets, record `death`, let the hash expire in 60 s.
pub fn death(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    info: &WorkerInfo,
) -> redis::RedisResult<()> {
    let key = keys.worker(&info.name);
    let mut p = redis::pipe();
    p.atomic().srem(keys.workers(), &key);
    for q in &info.queues {
        p.srem(keys.queue_workers(q), &key);
    }
    p.hset(&key, "death", Timestamp::now().iso())
        .expire(&key, 60)
        .del(keys.worker_executions(&info.name));
    p.query(con)
}
