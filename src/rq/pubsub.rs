//! Commands published on `rq:pubsub:<worker>` (rq-wire.md §8.4, rq 3.0's `stop-execution`).
//! Payloads are JSON from Python's `json.dumps`; anything unrecognised is reported, never fatal.

/// A command for one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Warm shutdown of that worker.
    Shutdown,
    /// Kill the running job as if its process died.
    KillHorse,
    /// Stop the job with this id if it is the current one.
    StopJob { job_id: String },
    /// Stop one execution of a job (rq 3.0).
    StopExecution {
        job_id: String,
        execution_id: String,
    },
}

/// Why a payload was not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("pubsub payload is not a JSON object: {0:?}")]
    NotJson(String),
    #[error("unknown pubsub command {0:?}")]
    Unknown(String),
    #[error("pubsub command {command:?} lacks {field:?}")]
    Missing {
        command: String,
        field: &'static str,
    },
}

/// Parse one payload.
pub fn parse(payload: &[u8]) -> Result<Command, CommandError> {
    let text = String::from_utf8_lossy(payload);
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| CommandError::NotJson(text.chars().take(200).collect()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| CommandError::NotJson(text.chars().take(200).collect()))?;
    let command = obj
        .get("command")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string();
    let field = |name: &'static str| {
        obj.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| CommandError::Missing {
                command: command.clone(),
                field: name,
            })
    };
    match command.as_str() {
        "shutdown" => Ok(Command::Shutdown),
        "kill-horse" => Ok(Command::KillHorse),
        "stop-job" => Ok(Command::StopJob {
            job_id: field("job_id")?,
        }),
        "stop-execution" => Ok(Command::StopExecution {
            job_id: field("job_id")?,
            execution_id: field("execution_id")?,
        }),
        _ => Err(CommandError::Unknown(command)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rq_payloads() {
        assert_eq!(parse(br#"{"command": "shutdown"}"#), Ok(Command::Shutdown));
        assert_eq!(
            parse(br#"{"command": "kill-horse"}"#),
            Ok(Command::KillHorse)
        );
        assert_eq!(
            parse(br#"{"command": "stop-job", "job_id": "abc"}"#),
            Ok(Command::StopJob {
                job_id: "abc".into()
            })
        );
        assert_eq!(
            parse(br#"{"command":"stop-execution","job_id":"a","execution_id":"e"}"#),
            Ok(Command::StopExecution {
                job_id: "a".into(),
                execution_id: "e".into()
            })
        );
        assert!(parse(b"nope").is_err());
        assert!(parse(br#"{"command": "stop-job"}"#).is_err());
        assert!(parse(br#"{"command": "dance"}"#).is_err());
    }
}
