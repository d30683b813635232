//! The job hash `rq:job:<id>` (rq-wire.md §3): exact status strings, the fields a worker reads,
//! and the full mapping an enqueuer writes.
//!
//! Values are bytes (`data` and `meta` are binary); a field that does not parse is reported as a
//! [`JobFormatError`] naming the field, so the runtime can fail that one job instead of crashing.

use std::collections::HashMap;

use crate::rq::time::Timestamp;

/// RQ job statuses, spelled exactly as clients parse them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Created,
    Queued,
    Started,
    Deferred,
    Scheduled,
    Finished,
    Failed,
    Stopped,
    Canceled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Queued => "queued",
            JobStatus::Started => "started",
            JobStatus::Deferred => "deferred",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Stopped => "stopped",
            JobStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "created" => JobStatus::Created,
            "queued" => JobStatus::Queued,
            "started" => JobStatus::Started,
            "deferred" => JobStatus::Deferred,
            "scheduled" => JobStatus::Scheduled,
            "finished" => JobStatus::Finished,
            "failed" => JobStatus::Failed,
            "stopped" => JobStatus::Stopped,
            "canceled" => JobStatus::Canceled,
            _ => return None,
        })
    }
}

/// A job hash field that is present but not in RQ's format.
#[derive(Debug, thiserror::Error)]
#[error("job {job_id}: field '{field}' is malformed: {value:?}")]
pub struct JobFormatError {
    pub job_id: String,
    pub field: &'static str,
    pub value: String,
}

/// The timeout RQ's workers give a job that has none (`Queue.DEFAULT_TIMEOUT`).
pub const DEFAULT_TIMEOUT: i64 = 180;

/// A timeout as RQ's `parse_timeout` reads it: an integer, or digits followed by one of
/// `d`, `h`, `m`, `s` (any case). `None` when it is neither, or does not fit.
pub fn parse_timeout(t: &str) -> Option<i64> {
    if let Ok(n) = t.parse::<i64>() {
        return Some(n);
    }
    let unit = t.chars().last()?;
    let secs = match unit.to_ascii_lowercase() {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    t[..t.len() - unit.len_utf8()]
        .parse::<i64>()
        .ok()?
        .checked_mul(secs)
}

/// What the worker needs from a job hash.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    /// Raw `data`: zlib over the serialized `(func_name, instance, args, kwargs)`.
    pub data: Option<Vec<u8>>,
    /// The queue whose registries the job belongs to.
    pub origin: String,
    pub description: String,
    /// Seconds; `None` = no timeout (`-1`).
    pub timeout: Option<i64>,
    pub result_ttl: Option<i64>,
    pub failure_ttl: Option<i64>,
    pub retries_left: Option<i64>,
    pub status: Option<String>,
    pub callbacks: Vec<String>,
    pub fields: HashMap<String, Vec<u8>>,
}

impl JobRecord {
    /// Parse HGETALL output. `default_origin` is used when `origin` is missing.
    pub fn from_fields(
        id: &str,
        fields: HashMap<String, Vec<u8>>,
        default_origin: &str,
    ) -> Result<JobRecord, JobFormatError> {
        let text = |name: &str| {
            fields
                .get(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let int = |name: &'static str| -> Result<Option<i64>, JobFormatError> {
            match text(name) {
                None => Ok(None),
                Some(s) if s.is_empty() => Ok(None),
                Some(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| JobFormatError {
                        job_id: id.to_string(),
                        field: name,
                        value: s,
                    }),
            }
        };
        // RQ's parse_timeout: an integer, or digits with a unit (`90s`, `30m`, `1h`, `2d`); a
        // worker runs a job whose timeout is 0 or missing with the default (180), one whose
        // timeout is negative without any.
        let timeout = match text("timeout").map(|t| t.trim().to_string()) {
            None => Some(DEFAULT_TIMEOUT),
            Some(t) if t.is_empty() => Some(DEFAULT_TIMEOUT),
            Some(t) => match parse_timeout(&t) {
                Some(0) => Some(DEFAULT_TIMEOUT),
                Some(n) if n < 0 => None,
                Some(n) => Some(n),
                None => {
                    return Err(JobFormatError {
                        job_id: id.to_string(),
                        field: "timeout",
                        value: t,
                    });
                }
            },
        };
        let origin = text("origin")
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| default_origin.to_string());
        let callbacks = [
            "success_callback_name",
            "failure_callback_name",
            "stopped_callback_name",
        ]
        .iter()
        .filter_map(|f| text(f).filter(|v| !v.is_empty()))
        .collect();
        Ok(JobRecord {
            id: id.to_string(),
            data: fields.get("data").cloned(),
            origin,
            description: text("description").unwrap_or_default(),
            timeout,
            result_ttl: int("result_ttl")?,
            failure_ttl: int("failure_ttl")?,
            retries_left: int("retries_left")?,
            status: text("status"),
            callbacks,
            fields,
        })
    }

    /// A text field, lossily decoded.
    pub fn text(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A job to create, in the shape `Queue.enqueue` writes it (rq-wire.md §3).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub origin: String,
    /// zlib over the serialized call.
    pub data: Vec<u8>,
    pub description: String,
    pub timeout: i64,
    pub result_ttl: Option<i64>,
    pub failure_ttl: Option<i64>,
}

impl NewJob {
    /// The full mapping, with RQ's always-present empty fields, for `status = queued`.
    pub fn mapping(&self, now: &Timestamp) -> Vec<(&'static str, Vec<u8>)> {
        let iso = now.iso().into_bytes();
        let mut m: Vec<(&'static str, Vec<u8>)> = vec![
            ("created_at", iso.clone()),
            ("data", self.data.clone()),
            ("success_callback_name", Vec::new()),
            ("failure_callback_name", Vec::new()),
            ("stopped_callback_name", Vec::new()),
            ("started_at", Vec::new()),
            ("ended_at", Vec::new()),
            ("last_heartbeat", Vec::new()),
            ("worker_name", Vec::new()),
            ("group_id", Vec::new()),
            ("origin", self.origin.clone().into_bytes()),
            ("description", self.description.clone().into_bytes()),
            ("enqueued_at", iso),
            ("timeout", self.timeout.to_string().into_bytes()),
            ("status", JobStatus::Queued.as_str().as_bytes().to_vec()),
        ];
        if let Some(t) = self.result_ttl {
            m.push(("result_ttl", t.to_string().into_bytes()));
        }
        if let Some(t) = self.failure_ttl {
            m.push(("failure_ttl", t.to_string().into_bytes()));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> HashMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn parses_rq_fields() {
        let r = JobRecord::from_fields(
            "j",
            f(&[("timeout", "-1"), ("origin", "q"), ("result_ttl", "0")]),
            "x",
        )
        .unwrap();
        assert_eq!(r.timeout, None);
        assert_eq!(r.origin, "q");
        assert_eq!(r.result_ttl, Some(0));
        let r = JobRecord::from_fields("j", f(&[]), "x").unwrap();
        assert_eq!(r.timeout, Some(180));
        assert_eq!(r.origin, "x");
        let timeout = |t: &str| JobRecord::from_fields("j", f(&[("timeout", t)]), "x");
        assert_eq!(timeout("1h").unwrap().timeout, Some(3600));
        assert_eq!(timeout("2D").unwrap().timeout, Some(172_800));
        assert_eq!(timeout(" 45 ").unwrap().timeout, Some(45));
        assert_eq!(timeout("0").unwrap().timeout, Some(180));
        assert_eq!(timeout("-5").unwrap().timeout, None);
        assert_eq!(
            timeout("9223372036854775807").unwrap().timeout,
            Some(i64::MAX)
        );
        for bad in [
            "1.5",
            "abc",
            "1e400",
            "nan",
            "h",
            "9223372036854775807d",
            "0x10",
        ] {
            assert_eq!(timeout(bad).unwrap_err().field, "timeout", "{bad}");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            "created",
            "queued",
            "started",
            "deferred",
            "scheduled",
            "finished",
            "failed",
            "stopped",
            "canceled",
        ] {
            assert_eq!(JobStatus::parse(s).map(JobStatus::as_str), Some(s));
        }
        assert_eq!(JobStatus::parse("FINISHED"), None);
    }
}
