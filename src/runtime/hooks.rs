//! [`JobHooks`] over Redis: what a running native job may ask of the worker (progress into
//! `meta`, enqueuing a follow-up job), using the process's connection pool.

use std::sync::Arc;

use crate::jobs::{EnqueueRequest, JobHooks};
use crate::rq::enqueue::{self, Enqueue};
use crate::runtime::Process;
use crate::value::PyValue;

/// Hooks for one running job.
pub struct RedisHooks {
    process: Arc<Process>,
    job_id: String,
}

impl RedisHooks {
    pub fn new(process: Arc<Process>, job_id: String) -> Self {
        RedisHooks { process, job_id }
    }

    fn con(
        &self,
    ) -> Result<r2d2::PooledConnection<crate::runtime::connection::PooledManager>, String> {
        self.process
            .pool
            .get()
            .map_err(|e| format!("no Redis connection: {e}"))
    }
}

impl JobHooks for RedisHooks {
    fn update_meta(&self, entries: Vec<(String, PyValue)>) -> Result<(), String> {
        let mut con = self.con()?;
        enqueue::update_meta(
            &mut *con,
            &self.process.keys,
            &self.job_id,
            entries,
            self.process.serializer,
        )
        .map_err(|e| format!("saving meta of job {}: {e}", self.job_id))
    }

    fn enqueue(&self, r: EnqueueRequest) -> Result<String, String> {
        let mut con = self.con()?;
        enqueue::enqueue(
            &mut *con,
            &self.process.keys,
            Enqueue {
                queue: &r.queue,
                func_name: &r.func_name,
                args: r.args,
                kwargs: r.kwargs,
                timeout: r.timeout,
                result_ttl: r.result_ttl,
                failure_ttl: r.failure_ttl,
                serializer: self.process.serializer,
            },
        )
        .map_err(|e| format!("enqueuing {} on {}: {e}", r.func_name, r.queue))
    }
}
