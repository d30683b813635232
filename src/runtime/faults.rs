//! Fault injection for the test suites (`RQ_WORKER_TEST_FAULTS`, hidden from `--help`): the way
//! tests make a slot wedge or panic on purpose, to check that `/healthz` notices and that the slot
//! recovers. Production never sets it; unknown names are reported and ignored.
//!
//! - `slot-wedge-after-jobs=N`: after the process has finished N jobs, the slot that finished the
//!   N-th stops making progress (it sleeps without checking in until shutdown). Once.
//! - `slot-panic-after-jobs=N`: the same slot's loop panics instead (between jobs, holding the
//!   next job if its queue was busy). Once.
//! - `slot-panic-before-record=N`: the slot running the N-th job panics after the job ran and
//!   before its outcome is recorded (holding a running job). Once.
//! - `slot-panic-always`: every slot's loop panics each time it looks for work, so it cannot go on.

use std::sync::atomic::{AtomicBool, Ordering};

use log::warn;

/// The faults asked for.
#[derive(Debug, Default)]
pub struct Faults {
    wedge_after: Option<u64>,
    panic_after: Option<u64>,
    panic_before_record: Option<u64>,
    panic_always: bool,
    fired_after: AtomicBool,
    fired_before_record: AtomicBool,
}

/// What a slot must do after a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Fault {
    Wedge,
    Panic,
}

impl Faults {
    pub fn parse(spec: Option<&str>) -> Faults {
        let mut f = Faults::default();
        for item in spec
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let (name, n) = item.split_once('=').unwrap_or((item, "1"));
            let n = n.trim().parse::<u64>().ok();
            match (name.trim(), n) {
                ("slot-wedge-after-jobs", Some(n)) => f.wedge_after = Some(n),
                ("slot-panic-after-jobs", Some(n)) => f.panic_after = Some(n),
                ("slot-panic-before-record", Some(n)) => f.panic_before_record = Some(n),
                ("slot-panic-always", _) => f.panic_always = true,
                _ => warn!("RQ_WORKER_TEST_FAULTS: {item:?} not understood; ignored"),
            }
        }
        if f.wedge_after.is_some()
            || f.panic_after.is_some()
            || f.panic_before_record.is_some()
            || f.panic_always
        {
            warn!("test fault injection is on: {f:?}");
        }
        f
    }

    /// The fault to inject now that `jobs_done` jobs are done, at most once per process.
    pub fn after_job(&self, jobs_done: u64) -> Option<Fault> {
        let due = |n: Option<u64>| n.is_some_and(|n| jobs_done >= n);
        let fault = if due(self.panic_after) {
            Fault::Panic
        } else if due(self.wedge_after) {
            Fault::Wedge
        } else {
            return None;
        };
        (!self.fired_after.swap(true, Ordering::SeqCst)).then_some(fault)
    }

    /// Whether the slot about to record the outcome of job number `job_number` must panic.
    pub fn before_record(&self, job_number: u64) -> bool {
        self.panic_before_record.is_some_and(|n| job_number >= n)
            && !self.fired_before_record.swap(true, Ordering::SeqCst)
    }

    /// Whether a slot looking for work must panic.
    pub fn when_idle(&self) -> bool {
        self.panic_always
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_when_due() {
        let f = Faults::parse(Some("slot-wedge-after-jobs=2, bogus"));
        assert_eq!(f.after_job(1), None);
        assert_eq!(f.after_job(2), Some(Fault::Wedge));
        assert_eq!(f.after_job(3), None);
        assert_eq!(Faults::parse(None).after_job(100), None);
        let f = Faults::parse(Some("slot-panic-before-record=2,slot-panic-always"));
        assert!(!f.before_record(1));
        assert!(f.before_record(2));
        assert!(!f.before_record(3));
        assert!(f.when_idle() && f.when_idle());
    }
}
