//! Every Redis key and channel name RQ uses, in one place (rq-wire.md §2).
//!
//! The prefix is `rq` unless rq 3.0's `RQ_KEY_PREFIX` says otherwise. Note the double colon in
//! [`Keys::dependencies`]: it is RQ's long-standing spelling and must be reproduced.

/// Key builder for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// SET of every queue key ever used.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }
    /// LIST of queued job ids; head = next.
    pub fn queue(&self, queue: &str) -> String {
        format!("{}:queue:{queue}", self.prefix)
    }
    /// LIST of ids moved off the queue and not yet marked started.
    pub fn intermediate(&self, queue: &str) -> String {
        format!("{}:queue:{queue}:intermediate", self.prefix)
    }
    /// When maintenance first saw `job_id` stuck in the intermediate list.
    pub fn intermediate_first_seen(&self, queue: &str, job_id: &str) -> String {
        format!(
            "{}:queue:{queue}:intermediate:first_seen:{job_id}",
            self.prefix
        )
    }
    pub fn job(&self, job_id: &str) -> String {
        format!("{}:job:{job_id}", self.prefix)
    }
    /// SET of ids waiting on `job_id`.
    pub fn dependents(&self, job_id: &str) -> String {
        format!("{}:job:{job_id}:dependents", self.prefix)
    }
    /// SET of ids `job_id` waits on (double colon, as RQ spells it).
    pub fn dependencies(&self, job_id: &str) -> String {
        format!("{}:job::{job_id}:dependencies", self.prefix)
    }
    /// StartedJobRegistry.
    pub fn started(&self, queue: &str) -> String {
        format!("{}:wip:{queue}", self.prefix)
    }
    pub fn finished(&self, queue: &str) -> String {
        format!("{}:finished:{queue}", self.prefix)
    }
    pub fn failed(&self, queue: &str) -> String {
        format!("{}:failed:{queue}", self.prefix)
    }
    pub fn deferred(&self, queue: &str) -> String {
        format!("{}:deferred:{queue}", self.prefix)
    }
    pub fn scheduled(&self, queue: &str) -> String {
        format!("{}:scheduled:{queue}", self.prefix)
    }
    pub fn execution(&self, job_id: &str, execution_id: &str) -> String {
        format!("{}:execution:{job_id}:{execution_id}", self.prefix)
    }
    pub fn executions(&self, job_id: &str) -> String {
        format!("{}:executions:{job_id}", self.prefix)
    }
    pub fn results(&self, job_id: &str) -> String {
        format!("{}:results:{job_id}", self.prefix)
    }
    /// SET of every live worker key.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }
    /// SET of the worker keys listening on `queue`.
    pub fn queue_workers(&self, queue: &str) -> String {
        format!("{}:workers:{queue}", self.prefix)
    }
    pub fn worker(&self, name: &str) -> String {
        format!("{}:worker:{name}", self.prefix)
    }
    /// rq 3.0's per-worker set of `job_id:execution_id`.
    pub fn worker_executions(&self, name: &str) -> String {
        format!("{}:worker:{name}:executions", self.prefix)
    }
    /// Pub/sub channel of commands for one worker.
    pub fn pubsub(&self, name: &str) -> String {
        format!("{}:pubsub:{name}", self.prefix)
    }
    pub fn suspended(&self) -> String {
        format!("{}:suspended", self.prefix)
    }
    pub fn clean_registries_lock(&self, queue: &str) -> String {
        format!("{}:clean_registries:{queue}", self.prefix)
    }
    pub fn scheduler_lock(&self, queue: &str) -> String {
        format!("{}:scheduler-lock:{queue}", self.prefix)
    }
    pub fn scheduler(&self, name: &str) -> String {
        format!("{}:scheduler:{name}", self.prefix)
    }
    /// rq 3.0: dependents between deferred and queued (`ready_to_enqueue`).
    pub fn ready(&self, queue: &str) -> String {
        format!("{}:ready:{queue}", self.prefix)
    }
    /// rq 3.0: the set of concurrency-limit keys in use.
    pub fn rate_limit_keys(&self) -> String {
        format!("{}:rl-keys", self.prefix)
    }
    /// rq ≥ 2: the set of group ids, and the lock of their maintenance (rq 3.0).
    pub fn groups(&self) -> String {
        format!("{}:groups", self.prefix)
    }
    pub fn clean_groups_lock(&self) -> String {
        format!("{}:clean_groups", self.prefix)
    }
    pub fn group(&self, group_id: &str) -> String {
        format!("{}:group:{group_id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_like_rq() {
        let k = Keys::new("rq");
        assert_eq!(k.dependencies("a"), "rq:job::a:dependencies");
        assert_eq!(k.dependents("a"), "rq:job:a:dependents");
        assert_eq!(k.started("q"), "rq:wip:q");
        assert_eq!(k.intermediate("q"), "rq:queue:q:intermediate");
        assert_eq!(k.execution("j", "e"), "rq:execution:j:e");
        assert_eq!(k.worker_executions("w"), "rq:worker:w:executions");
        assert_eq!(k.clean_registries_lock("q"), "rq:clean_registries:q");
        assert_eq!(k.scheduler_lock("q"), "rq:scheduler-lock:q");
        assert_eq!(Keys::new("x").pubsub("w"), "x:pubsub:w");
    }
}
