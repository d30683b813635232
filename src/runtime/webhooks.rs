//! Job webhooks (rq 2.10+, rq-wire.md §9.13): after a job reaches `finished`, or `failed` for
//! good (not a retry, not a stop), each webhook whose `job_status` matches gets a GET, or a POST
//! with a JSON summary. Sent from a short-lived thread so a slow endpoint never holds a worker;
//! errors are logged, never raised.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use serde_json::{Value, json};

/// Webhook threads still sending, so that exit can wait for them.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Wait up to `limit` for webhook threads still sending (called before the process exits).
pub fn wait_idle(limit: Duration) {
    let end = Instant::now() + limit;
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One webhook from the job's `webhooks` field.
#[derive(Debug, Clone, PartialEq)]
struct Webhook {
    url: String,
    job_status: String,
    method: String,
    headers: Vec<(String, String)>,
    timeout: f64,
}

fn parse(raw: &[u8]) -> Vec<Webhook> {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(raw) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|w| {
            let url = w.get("url")?.as_str()?.to_string();
            let job_status = w
                .get("job_status")
                .and_then(Value::as_str)
                .unwrap_or("finished")
                .to_string();
            let method = w
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("POST")
                .to_uppercase();
            let headers = w
                .get("headers")
                .and_then(Value::as_object)
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let timeout = w.get("timeout").and_then(Value::as_f64).unwrap_or(10.0);
            Some(Webhook {
                url,
                job_status,
                method,
                headers,
                timeout,
            })
        })
        .collect()
}

/// What the POST body says about the job.
pub struct Event {
    pub job_id: String,
    pub func_name: String,
    /// `finished` or `failed`.
    pub status: &'static str,
    pub enqueued_at: Option<String>,
    pub ended_at: Option<String>,
    pub exc_info: Option<String>,
}

/// Send the job's matching webhooks in the background. `raw` is the job's `webhooks` field.
pub fn send(raw: &[u8], event: Event) {
    let hooks: Vec<Webhook> = parse(raw)
        .into_iter()
        .filter(|w| w.job_status == event.status)
        .collect();
    if hooks.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || {
            let mut body = json!({
                "job_id": event.job_id,
                "func_name": event.func_name,
                "status": event.status,
                "enqueued_at": event.enqueued_at,
                "ended_at": event.ended_at,
            });
            if let Some(exc) = &event.exc_info {
                body["exc_info"] = json!(exc);
            }
            for w in hooks {
                let timeout = Duration::from_secs_f64(w.timeout.clamp(0.1, 300.0));
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(timeout))
                    .tls_config(crate::adapters::tls::ureq_tls())
                    .build()
                    .into();
                let result = if w.method == "GET" {
                    let mut req = agent.get(&w.url);
                    for (k, v) in &w.headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    req.call().map(|_| ())
                } else {
                    let mut req = agent.post(&w.url);
                    for (k, v) in &w.headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    req.header("Content-Type", "application/json")
                        .send(body.to_string())
                        .map(|_| ())
                };
                match result {
                    Ok(()) => info!(
                        "webhook job_id={} {} {} sent",
                        event.job_id, w.method, w.url
                    ),
                    Err(e) => warn!(
                        "webhook job_id={} {} {} failed: {e}",
                        event.job_id, w.method, w.url
                    ),
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start webhook thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rq_webhooks() {
        let raw = br#"[{"url": "http://127.0.0.1:9/h", "job_status": "failed", "method": "get", "headers": {"X-A": "1"}, "timeout": 3}, {"nourl": 1}]"#;
        let w = parse(raw);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].method, "GET");
        assert_eq!(w[0].headers, vec![("X-A".to_string(), "1".to_string())]);
        assert!(parse(b"not json").is_empty());
    }
}
