//! Log output: env_logger with the level from the command line and `RUST_LOG` filters, in one of
//! two formats (`--log-format`):
//!
//! - `text` (default): `[timestamp LEVEL target] message key=value ...`, for people;
//! - `json`: one object per line with `timestamp`, `level`, `target`, `message` and the record's
//!   structured fields (for job lines: `job_id`, `func`, `queue`, `worker`, `status`,
//!   `elapsed_ms`, and for failures `exc_type` and `exc_message`), for log pipelines.
//!
//! Structured fields are `log`'s key-values, so a call site writes them once for both formats.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

struct Fields(Vec<(String, FieldValue)>);

enum FieldValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = if let Some(i) = value.to_i64() {
            FieldValue::Int(i)
        } else if let Some(f) = value.to_f64() {
            FieldValue::Float(f)
        } else if let Some(b) = value.to_bool() {
            FieldValue::Bool(b)
        } else {
            FieldValue::Text(value.to_string())
        };
        self.0.push((key.as_str().to_string(), v));
        Ok(())
    }
}

fn fields(record: &log::Record<'_>) -> Fields {
    let mut f = Fields(Vec::new());
    let _ = record.key_values().visit(&mut f);
    f
}

/// A text value as it appears after `key=` in a text line: bare when it has no spaces or quotes.
fn text_value(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
    {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// One text line (without the newline).
pub fn text_line(record: &log::Record<'_>, ts: &str) -> String {
    let mut line = format!(
        "[{ts} {:<5} {}] {}",
        record.level(),
        record.target(),
        record.args()
    );
    for (k, v) in fields(record).0 {
        line.push(' ');
        line.push_str(&k);
        line.push('=');
        match v {
            FieldValue::Int(i) => line.push_str(&i.to_string()),
            FieldValue::Float(f) => line.push_str(&f.to_string()),
            FieldValue::Bool(b) => line.push_str(&b.to_string()),
            FieldValue::Text(s) => line.push_str(&text_value(&s)),
        }
    }
    line
}

/// One JSON line (without the newline), keys in a fixed order: the four fixed ones, then the
/// record's fields.
pub fn json_line(record: &log::Record<'_>, ts: &str) -> String {
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let mut line = format!(
        "{{\"timestamp\":{},\"level\":{},\"target\":{},\"message\":{}",
        q(ts),
        q(record.level().as_str()),
        q(record.target()),
        q(&record.args().to_string())
    );
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in fields(record).0 {
        // A field never replaces one of the four fixed keys, nor an earlier field.
        if ["timestamp", "level", "target", "message"].contains(&k.as_str()) || seen.contains(&k) {
            continue;
        }
        let v = match v {
            FieldValue::Int(i) => i.to_string(),
            FieldValue::Float(f) => serde_json::Value::from(f).to_string(),
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::Text(s) => q(&s),
        };
        line.push(',');
        line.push_str(&q(&k));
        line.push(':');
        line.push_str(&v);
        seen.push(k);
    }
    line.push('}');
    line
}

/// Install the logger: `level` from the command line, then `RUST_LOG` filters on top.
pub fn init(format: LogFormat, level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level).parse_env("RUST_LOG");
    match format {
        LogFormat::Text => {
            b.format(|buf, record| writeln!(buf, "{}", text_line(record, &timestamp())));
        }
        LogFormat::Json => {
            b.format(|buf, record| writeln!(buf, "{}", json_line(record, &timestamp())));
        }
    }
    let _ = b.try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_record(f: impl FnOnce(&log::Record<'_>)) {
        let kvs: [(&str, Value<'_>); 4] = [
            ("job_id", Value::from("a b")),
            ("elapsed_ms", Value::from(12u64)),
            ("exc_type", Value::from("ValueError")),
            ("message", Value::from("not the message")),
        ];
        let args = format_args!("job failed");
        let r = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("rq_worker::runtime::slot")
            .key_values(&kvs)
            .build();
        f(&r);
    }

    #[test]
    fn text_and_json_lines_carry_the_fields() {
        with_record(|r| {
            assert_eq!(
                text_line(r, "T"),
                "[T INFO  rq_worker::runtime::slot] job failed job_id=\"a b\" elapsed_ms=12 \
                 exc_type=ValueError message=\"not the message\""
            );
            let v: serde_json::Value = serde_json::from_str(&json_line(r, "T")).unwrap();
            assert_eq!(v["message"], "job failed");
            assert_eq!(v["job_id"], "a b");
            assert_eq!(v["elapsed_ms"], 12);
            assert_eq!(v["exc_type"], "ValueError");
            assert_eq!(v["level"], "INFO");
            assert!(json_line(r, "T").starts_with("{\"timestamp\":\"T\",\"level\":\"INFO\""));
        });
    }
}
