//! Waiting between attempts at an outside service (storage, embeddings): capped exponential
//! backoff with jitter, a wait the server asked for honoured (within the cap), and a sleep that
//! ends as soon as the job is asked to stop. One helper, so every adapter retries alike.
//!
//! Jitter matters here: the jobs of a fleet that hit the same 429 or outage together would
//! otherwise retry together, in lockstep, and meet the same limit again.

use std::time::{Duration, Instant};

/// Backoff for attempt `n`: a random point between half of and all of `base * 2^(n-1)`, the
/// exponent capped so the doubling stops at `base * 16`, and never more than `cap`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retrying after failed attempt `attempt` (1-based). A wait the server
    /// asked for (`Retry-After`) replaces the computed one, also capped.
    pub fn delay(&self, attempt: u32, server_wait: Option<Duration>) -> Duration {
        if let Some(w) = server_wait {
            return w.min(self.cap);
        }
        let exp = attempt.saturating_sub(1).min(4);
        let full = self.base.saturating_mul(1 << exp).min(self.cap);
        let half = full / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::random_range(0..=jitter_ms))
    }
}

/// Sleep `delay` in short steps; `false` as soon as `stop()` says the job must stop.
pub fn sleep_unless(delay: Duration, stop: &dyn Fn() -> bool) -> bool {
    let end = Instant::now().checked_add(delay);
    loop {
        if stop() {
            return false;
        }
        let left = end.map_or(Duration::from_millis(50), |e| {
            e.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_and_stay_capped() {
        let b = Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        };
        for attempt in 1..=8 {
            let full = Duration::from_millis(500 * (1 << (attempt - 1).min(4)));
            let d = b.delay(attempt, None);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        let tight = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(15),
        };
        assert!(tight.delay(9, None) <= Duration::from_secs(15));
    }

    #[test]
    fn sleep_ends_when_asked_to_stop() {
        assert!(sleep_unless(Duration::from_millis(20), &|| false));
        let started = Instant::now();
        assert!(!sleep_unless(Duration::from_secs(60), &|| true));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
