//! The RQ wire protocol: key names, job hashes, payload codec, registries, results streams,
//! worker records, pub/sub commands and the Lua scripts that apply them atomically.
//!
//! Implements `shared/spec/rq-wire.md` and the superset layout of `shared/spec/rq-versions.md` §5.
//! Knows nothing about threads, handlers or what jobs do.

pub mod codec;
pub mod enqueue;
pub mod job;
pub mod keys;
pub mod maintenance;
pub mod pickle;
pub mod pubsub;
pub mod scripts;
pub mod time;
pub mod worker;

/// [`PyValue`](crate::value::PyValue) lives in [`crate::value`] (jobs use it without the wire
/// module); this path is kept so code written against `rq::value` still builds. New code imports
/// `crate::value`.
pub use crate::value;
