//! Turns a job's failure into RQ's `exc_string`: Python-traceback-shaped text, chained as Python
//! chains exceptions (causes first, each followed by "The above exception was the direct cause of
//! the following exception:"), whose last line reads `Type: message`. This is the only place
//! failure text is produced, so every failure reads the same way in the dashboard.
//!
//! Frames name where the failure happened without any `<...>`: rq-dashboard 0.9's job page puts
//! `exc_info` into the page as HTML without escaping, where `<rq-worker>` would vanish as an
//! unknown tag. Every block has the outer frame `File "rq-worker:runtime", line 0, in perform_job`
//! (where RQ fails a job it cannot run) and, when the job function ran, a frame for it:
//! `File "rq-worker:<module>", line 0, in <function>` from its dotted name. Frame text taken from
//! the payload (the function name) has `<`, `>`, `&`, quotes and control characters replaced; the
//! message on the last line is kept verbatim, since RQ, the dashboard and users parse it.

use std::error::Error;

use crate::jobs::JobError;

/// The pseudo file of the outer frame.
const RUNTIME_FILE: &str = "rq-worker:runtime";
/// The outer frame's function: RQ's worker method that runs a job.
const RUNTIME_FUNC: &str = "perform_job";
/// Exception type shown for a cause in the chain (Rust errors carry no Python type).
const CAUSE_TYPE: &str = "rq_worker.Cause";

/// Python-style traceback text for a job failure. `ran` is the job function's dotted name when
/// the function itself ran (its frame is shown); `None` when the job failed before it could run.
pub fn exc_text(ran: Option<&str>, err: &JobError) -> String {
    // A cause that reads exactly like the error it caused (an adapter error wrapped with its own
    // text as the message) adds nothing: it is printed once, not twice.
    let mut causes: Vec<String> = Vec::new();
    let mut shown = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if text != shown {
            causes.push(text.clone());
        }
        shown = text;
        source = s.source();
    }
    let mut out = String::new();
    // Python prints the root cause first; a cause was raised inside the function, so its block
    // shows the function's frame.
    for cause in causes.iter().rev() {
        out.push_str(&block(false, ran, CAUSE_TYPE, cause));
        out.push_str("\nThe above exception was the direct cause of the following exception:\n\n");
    }
    out.push_str(&block(true, ran, err.python_type(), &err.to_string()));
    out
}

/// A traceback without a chain, ending in `exc_type: message`.
pub fn traceback(ran: Option<&str>, exc_type: &str, message: &str) -> String {
    block(true, ran, exc_type, message)
}

/// One `Traceback (most recent call last):` block: the runtime frame (if `outer`), the job
/// function's frame (if it ran) and the `Type: message` line.
fn block(outer: bool, ran: Option<&str>, exc_type: &str, message: &str) -> String {
    let mut out = String::from("Traceback (most recent call last):\n");
    if outer || ran.is_none() {
        out.push_str(&frame(RUNTIME_FILE, RUNTIME_FUNC));
    }
    if let Some(func_name) = ran {
        let (module, function) = match func_name.rsplit_once('.') {
            Some((m, f)) if !m.is_empty() && !f.is_empty() => (m, f),
            _ => ("", func_name),
        };
        let file = if module.is_empty() {
            "rq-worker".to_string()
        } else {
            format!("rq-worker:{}", frame_text(module))
        };
        out.push_str(&frame(&file, &frame_text(function)));
    }
    out.push_str(&format!("{exc_type}: {message}\n"));
    out
}

fn frame(file: &str, function: &str) -> String {
    format!("  File \"{file}\", line 0, in {function}\n")
}

/// Frame text that survives unescaped HTML and Python's `File "...", line N, in F` shape: no
/// tag or entity characters, no quotes, one line.
fn frame_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => '‹',
            '>' => '›',
            '&' => '+',
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a browser shows for text inserted into a page as HTML: tags dropped.
    fn strip_tags(s: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '<' if chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphabetic() || *n == '/') =>
                {
                    in_tag = true
                }
                '>' if in_tag => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn last_line_is_type_and_message() {
        let e = JobError::failed("ValueError", "page 3 has no text layer");
        let t = exc_text(Some("jobs.x.run"), &e);
        assert_eq!(
            t,
            "Traceback (most recent call last):\n  File \"rq-worker:runtime\", line 0, in perform_job\n  File \"rq-worker:jobs.x\", line 0, in run\nValueError: page 3 has no text layer\n"
        );
        let io = std::io::Error::other("disk on fire");
        let e = JobError::with_source("OSError", "cannot read", io);
        let t = exc_text(Some("jobs.x.run"), &e);
        assert_eq!(
            t,
            "Traceback (most recent call last):\n  File \"rq-worker:jobs.x\", line 0, in run\nrq_worker.Cause: disk on fire\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"rq-worker:runtime\", line 0, in perform_job\n  File \"rq-worker:jobs.x\", line 0, in run\nOSError: cannot read\n"
        );
        // A cause with the same text as the error it caused is printed once.
        let io = std::io::Error::other("connection refused");
        let e = JobError::with_source("OSError", io.to_string(), io);
        assert_eq!(
            exc_text(Some("jobs.x.run"), &e),
            traceback(Some("jobs.x.run"), "OSError", "connection refused")
        );
        let t = exc_text(Some("jobs.x"), &JobError::Timeout { seconds: 2 });
        assert_eq!(
            t.lines().last(),
            Some(
                "rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (2 seconds)"
            )
        );
    }

    #[test]
    fn failure_before_the_function_ran_has_the_runtime_frame_only() {
        let t = traceback(None, "rq.exceptions.DeserializationError", "bad payload");
        assert_eq!(
            t,
            "Traceback (most recent call last):\n  File \"rq-worker:runtime\", line 0, in perform_job\nrq.exceptions.DeserializationError: bad payload\n"
        );
        // A function name without a module is the frame's function.
        let t = traceback(Some("print"), "TypeError", "x");
        assert!(
            t.contains("  File \"rq-worker\", line 0, in print\n"),
            "{t}"
        );
    }

    #[test]
    fn frames_survive_unescaped_html() {
        let names = [
            "jobs.ingest_extract.ingest_extract",
            "tests.<lambda>",
            "app.make.<locals>.job",
            "a&b.\"q\"\nx",
        ];
        for name in names {
            let io = std::io::Error::other("inner");
            let t = exc_text(Some(name), &JobError::with_source("OSError", "outer", io));
            // Every frame line reads the same once rendered as HTML.
            for line in t.lines().filter(|l| l.starts_with("  File ")) {
                assert_eq!(strip_tags(line), line, "{name}");
                assert!(!line.contains(['<', '>', '&']), "{line}");
                assert_eq!(line.matches('"').count(), 2, "{line}");
            }
            assert_eq!(t.lines().last(), Some("OSError: outer"));
            assert!(t.starts_with("Traceback (most recent call last):\n"));
        }
        let t = traceback(Some("app.make.<locals>.job"), "ValueError", "m");
        assert!(
            t.contains("  File \"rq-worker:app.make.‹locals›\", line 0, in job\n"),
            "{t}"
        );
    }
}
