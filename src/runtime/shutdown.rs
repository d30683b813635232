//! The process-wide shutdown state: running → warm (finish in-flight jobs, take no new ones) →
//! cold (cancel in-flight jobs now). Set by signals, `--shutdown-timeout` and burst exits; read by
//! every thread. Sleeping threads wait on it so that a shutdown wakes them at once.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Shutdown phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// Stop dequeuing; let running jobs finish.
    Warm,
    /// Cancel running jobs (failed or retried as RQ would) and exit.
    Cold,
    /// Every job slot has exited; service threads stop.
    Done,
}

/// Shared shutdown handle; clone the `Arc` into each thread.
#[derive(Debug)]
pub struct Shutdown {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            phase: Mutex::new(Phase::Running),
            changed: Condvar::new(),
        }
    }
}

impl Shutdown {
    pub fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move forward to `phase` (never backwards); returns true if this call changed it.
    pub fn advance(&self, phase: Phase) -> bool {
        let mut cur = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if phase > *cur {
            *cur = phase;
            self.changed.notify_all();
            true
        } else {
            false
        }
    }

    pub fn stopping(&self) -> bool {
        self.phase() >= Phase::Warm
    }

    /// Sleep up to `d`, waking early when the phase reaches `wake_at` or later.
    /// Returns the phase at wake-up.
    pub fn sleep(&self, d: Duration, wake_at: Phase) -> Phase {
        let guard = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, d, |p| *p < wake_at)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}
