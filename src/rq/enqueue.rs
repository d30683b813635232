//! Enqueue a job the way Python's `Queue.enqueue` does (rq-wire.md §3, §9 "enqueue" traces), so
//! a job chained by a native job is indistinguishable from one the Python API enqueued: any
//! Python or Rust worker can take it and the dashboard shows it normally.

use redis::ConnectionLike;

use crate::rq::codec::{self, Payload, Serializer};
use crate::rq::job::{JobStatus, NewJob};
use crate::rq::keys::Keys;
use crate::rq::time::Timestamp;
use crate::value::PyValue;

/// RQ's `Queue.DEFAULT_TIMEOUT`.
pub const DEFAULT_TIMEOUT: i64 = 180;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct Enqueue<'a> {
    pub queue: &'a str,
    pub func_name: &'a str,
    pub args: Vec<PyValue>,
    pub kwargs: Vec<(String, PyValue)>,
    pub timeout: Option<i64>,
    pub result_ttl: Option<i64>,
    pub failure_ttl: Option<i64>,
    pub serializer: Serializer,
}

/// Why a job could not be enqueued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("cannot serialize the call")]
    Codec(#[from] codec::CodecError),
    #[error("writing the job to Redis")]
    Redis(#[from] redis::RedisError),
}

/// Create the job hash and push the id, in one transaction; returns the new job id.
pub fn enqueue(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    e: Enqueue<'_>,
) -> Result<String, EnqueueError> {
    let id = uuid::Uuid::new_v4().to_string();
    let payload = Payload {
        func_name: e.func_name.to_string(),
        instance: PyValue::None,
        args: e.args,
        kwargs: e.kwargs,
    };
    let job = NewJob {
        id: id.clone(),
        origin: e.queue.to_string(),
        data: codec::encode_payload(&payload, e.serializer)?,
        description: payload.description(),
        timeout: e.timeout.unwrap_or(DEFAULT_TIMEOUT),
        result_ttl: e.result_ttl,
        failure_ttl: e.failure_ttl,
    };
    let job_key = keys.job(&id);
    let now = Timestamp::now();
    redis::pipe()
        .atomic()
        .sadd(keys.queues(), keys.queue(e.queue))
        .ignore()
        .hset(&job_key, "status", JobStatus::Queued.as_str())
        .ignore()
        .hset_multiple(&job_key, &job.mapping(&now))
        .ignore()
        .rpush(keys.queue(e.queue), &id)
        .ignore()
        .query::<()>(con)?;
    Ok(id)
}

/// Why `meta` could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("the job's existing meta cannot be decoded; left untouched")]
    Unreadable(#[source] codec::CodecError),
    #[error("the job's existing meta is a {0}, not a dict; left untouched")]
    NotADict(&'static str),
    #[error("writing meta to Redis")]
    Redis(#[from] redis::RedisError),
}

/// Merge entries into the job's pickled `meta` dict (Python's `job.meta.update(); save_meta()`).
pub fn update_meta(
    con: &mut dyn ConnectionLike,
    keys: &Keys,
    job_id: &str,
    entries: Vec<(String, PyValue)>,
    serializer: Serializer,
) -> Result<(), MetaError> {
    let key = keys.job(job_id);
    let raw: Option<Vec<u8>> = redis::cmd("HGET").arg(&key).arg("meta").query(con)?;
    // A `meta` this worker cannot read (say, a Python object an enqueuer put there) is left as it
    // is: overwriting it would lose the enqueuer's data, so the update is refused instead.
    let mut items: Vec<(PyValue, PyValue)> = match raw.map(|b| codec::decode_value(&b, serializer))
    {
        None => Vec::new(),
        Some(Ok(PyValue::Dict(items))) => items,
        Some(Ok(other)) => return Err(MetaError::NotADict(other.type_name())),
        Some(Err(e)) => return Err(MetaError::Unreadable(e)),
    };
    for (k, v) in entries {
        let k = PyValue::Str(k);
        match items.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => items.push((k, v)),
        }
    }
    let bytes = codec::encode_value(&PyValue::Dict(items), serializer);
    // Only while the job exists: a deleted job must not be resurrected as a meta-only hash.
    let script = redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'meta', ARGV[1]) end return 1",
    );
    let _: i64 = script.key(&key).arg(bytes).invoke(con)?;
    Ok(())
}
