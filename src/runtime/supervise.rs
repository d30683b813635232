//! The last line of defence against panics in the worker's own threads.
//!
//! Every value from outside is checked where it is read, so no panic is expected; this module is
//! for the one nobody foresaw. [`catch`] runs a thread's loop and turns a panic into its message;
//! [`Strikes`] decides whether to start a fresh loop or give up: a thread that panics again and
//! again without getting anything done cannot go on, and the process must stop and say so (exit
//! non-zero, `/healthz` failing) rather than serve silently with fewer threads. [`service`] runs
//! a service thread (heartbeat, pub/sub, maintenance, scheduler) under the same rules. What a
//! slot must do with the jobs it held when it panicked is the slot's business (`slot::recover`).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use log::{error, warn};

use crate::ops::metrics;
use crate::runtime::Process;
use crate::runtime::shutdown::Phase;

/// Panics in a row, with nothing done in between, after which a thread gives up.
pub const MAX_STRIKES: u32 = 3;

/// Run `f`, returning its panic's message instead of unwinding further.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// The message of a panic payload (`panic!` with a literal or a formatted string).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

/// What to do after a panic.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Start a fresh loop after this pause.
    Retry(Duration),
    GiveUp,
}

/// Consecutive panics of one thread.
#[derive(Debug, Default)]
pub struct Strikes {
    count: u32,
}

impl Strikes {
    /// The thread got something done (a job, a pass): earlier panics no longer count.
    pub fn progress(&mut self) {
        self.count = 0;
    }

    /// One more panic. The pause grows with each one (1 s, 2 s, ...), so a panic that repeats
    /// does not spin.
    pub fn strike(&mut self) -> Verdict {
        self.count += 1;
        if self.count >= MAX_STRIKES {
            Verdict::GiveUp
        } else {
            Verdict::Retry(Duration::from_secs(u64::from(self.count)))
        }
    }
}

/// Run a service thread's loop `f` until it returns; a panic restarts it (a fresh call of `f`)
/// under [`Strikes`]. `f` returns normally at shutdown. A loop that ran for a while before it
/// panicked counts as progress.
pub fn service(process: &Arc<Process>, name: &str, f: impl Fn()) {
    let mut strikes = Strikes::default();
    loop {
        let began = std::time::Instant::now();
        let Err(panic) = catch(&f) else { return };
        error!("{name} thread panicked: {panic}");
        metrics::with(|m| m.slot_panics.inc());
        if began.elapsed() > Duration::from_secs(600) {
            strikes.progress();
        }
        match strikes.strike() {
            Verdict::Retry(pause) => {
                warn!("{name} thread restarts in {pause:?}");
                if process.shutdown.sleep(pause, Phase::Done) >= Phase::Done {
                    return;
                }
            }
            Verdict::GiveUp => {
                process.give_up(format!(
                    "the {name} thread panicked {MAX_STRIKES} times in a row ({panic}); the process stops"
                ));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_repeated_panics_without_progress() {
        let mut s = Strikes::default();
        assert_eq!(s.strike(), Verdict::Retry(Duration::from_secs(1)));
        assert_eq!(s.strike(), Verdict::Retry(Duration::from_secs(2)));
        s.progress();
        assert_eq!(s.strike(), Verdict::Retry(Duration::from_secs(1)));
        assert_eq!(s.strike(), Verdict::Retry(Duration::from_secs(2)));
        assert_eq!(s.strike(), Verdict::GiveUp);
    }

    #[test]
    fn catch_returns_the_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| -> u8 { panic!("boom {}", 1) }),
            Err("boom 1".into())
        );
        assert_eq!(catch(|| -> u8 { panic!("plain") }), Err("plain".into()));
    }
}
