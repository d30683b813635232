//! RQ's three timestamp dialects (rq-wire.md §1): ISO `%Y-%m-%dT%H:%M:%S.%fZ` in hashes, float
//! epoch in execution hashes and result entries, integer epoch in registry scores.

use chrono::{DateTime, NaiveDateTime, Utc};

/// One instant, rendered in every dialect RQ needs.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp {
    at: DateTime<Utc>,
}

impl Timestamp {
    pub fn now() -> Self {
        Timestamp { at: Utc::now() }
    }

    /// `2026-11-28T21:46:24.608441Z`: what job and worker hashes hold.
    pub fn iso(&self) -> String {
        self.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// Float epoch seconds with microseconds, as Python's `repr(datetime.timestamp())`.
    pub fn epoch_f(&self) -> String {
        let micros = self.at.timestamp_micros();
        let secs = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000);
        let mut s = format!("{secs}.{frac:06}");
        while s.ends_with('0') && !s.ends_with(".0") {
            s.pop();
        }
        s
    }

    /// Integer epoch seconds (truncated), as registry scores use.
    pub fn epoch(&self) -> i64 {
        self.at.timestamp()
    }

    /// The naive local-looking form Python prints for `datetime.now(timezone.utc)`
    /// (`2026-11-28 21:49:08.373813+00:00`), used in RQ's AbandonedJobError text.
    pub fn python_str(&self) -> String {
        self.at.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
    }
}

/// Parse an RQ ISO timestamp (with or without fraction); `None` for `''` or anything else.
pub fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let body = s.strip_suffix('Z')?;
    NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| DateTime::<Utc>::from_naive_utc_and_offset(n, Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dialects() {
        let t = Timestamp {
            at: Utc.timestamp_micros(1_795_902_384_608_441).unwrap(),
        };
        assert_eq!(t.iso(), "2026-11-28T21:46:24.608441Z");
        assert_eq!(t.epoch_f(), "1795902384.608441");
        assert_eq!(t.epoch(), 1_795_902_384);
        let t = Timestamp {
            at: Utc.timestamp_micros(1_795_902_384_000_000).unwrap(),
        };
        assert_eq!(t.iso(), "2026-11-28T21:46:24.000000Z");
        assert_eq!(t.epoch_f(), "1795902384.0");
        assert!(parse_iso("2026-11-28T21:46:24.608441Z").is_some());
        assert!(parse_iso("2026-11-28T21:46:24Z").is_some());
        assert!(parse_iso("").is_none());
    }
}
