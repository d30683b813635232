//! Fault injection for the test suites (`RQ_WORKER_TEST_FAULTS`, hidden from `--help`): the way
//! tests make a slot wedge or die on purpose, to check that `/healthz` notices. Each fault fires
//! once per process. Production never sets it; unknown names are reported and ignored.
//!
//! - `slot-wedge-after-jobs=N`: after the process has finished N jobs, the slot that finished the
//!   N-th stops making progress (it sleeps without checking in until shutdown).
//! - `slot-panic-after-jobs=N`: the same slot panics instead.

use std::sync::atomic::{AtomicBool, Ordering};

use log::warn;

/// The faults asked for.
#[derive(Debug, Default)]
pub struct Faults {
    wedge_after: Option<u64>,
    panic_after: Option<u64>,
    fired: AtomicBool,
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
                _ => warn!("RQ_WORKER_TEST_FAULTS: {item:?} not understood; ignored"),
            }
        }
        if f.wedge_after.is_some() || f.panic_after.is_some() {
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
        (!self.fired.swap(true, Ordering::SeqCst)).then_some(fault)
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
    }
}
