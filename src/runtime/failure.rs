//! Turns a job's failure into RQ's `exc_string`: traceback-shaped text whose last line reads
//! `Type: message`, with the cause chain printed first, as Python chains exceptions. This is the
//! only place failure text is produced, so every failure reads the same way in the dashboard.

use std::error::Error;

use crate::jobs::JobError;

/// Python-style traceback text for a job failure.
pub fn exc_text(func_name: &str, err: &JobError) -> String {
    let mut out = String::new();
    let mut causes: Vec<String> = Vec::new();
    let mut source = err.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    for cause in causes.iter().rev() {
        out.push_str(&format!(
            "rq_worker.Cause: {cause}\n\nThe above exception was the direct cause of the following exception:\n\n"
        ));
    }
    out.push_str(&traceback(func_name, err.python_type(), &err.to_string()));
    out
}

/// A one-frame traceback ending in `exc_type: message`.
pub fn traceback(func_name: &str, exc_type: &str, message: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"<rq-worker>\", line 0, in {func_name}\n{exc_type}: {message}\n"
    )
}

/// Text for a handler that panicked.
pub fn panic_text(func_name: &str, payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string());
    traceback(
        func_name,
        "SystemError",
        &format!("rq-worker job handler panicked: {msg}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_is_type_and_message() {
        let e = JobError::failed("ValueError", "page 3 has no text layer");
        let t = exc_text("jobs.x", &e);
        assert_eq!(
            t.lines().last(),
            Some("ValueError: page 3 has no text layer")
        );
        assert!(t.starts_with("Traceback (most recent call last):"));
        let io = std::io::Error::other("disk on fire");
        let e = JobError::with_source("OSError", "cannot read", io);
        let t = exc_text("jobs.x", &e);
        assert!(t.starts_with("rq_worker.Cause: disk on fire"));
        assert_eq!(t.lines().last(), Some("OSError: cannot read"));
        let t = exc_text("jobs.x", &JobError::Timeout { seconds: 2 });
        assert_eq!(
            t.lines().last(),
            Some(
                "rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (2 seconds)"
            )
        );
    }
}
