//! Client for an OpenAI-compatible `POST {base}/embeddings` endpoint (OpenAI, vLLM, Ollama, TEI, LiteLLM).
//!
//! Sends `{model, input: [..], encoding_format}` with up to `EMBEDDING_BATCH_SIZE` inputs per request,
//! decodes float or base64 (little-endian f32) vectors, checks count and dimension, and retries with
//! exponential backoff on 429, 5xx, timeouts and connection errors, honouring `Retry-After` /
//! `retry-after-ms`; any other 4xx fails at once. Errors read like the official Python client's.

use crate::ops::metrics;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use crate::config::ingest::EmbeddingEncoding;

/// Why a batch could not be embedded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbeddingsError {
    /// The API answered with an error status (after retries, for 429 and 5xx).
    #[error("Error code: {status} - {body}")]
    Status { status: u16, body: String },
    /// No answer: connection refused/reset, DNS, TLS.
    #[error("Connection error: {message}")]
    Connection { message: String },
    /// No complete answer within OPENAI_EMBEDDING_TIMEOUT_SECONDS.
    #[error("Request timed out: {message}")]
    Timeout { message: String },
    /// A 2xx answer that is not an embeddings list for our inputs.
    #[error("invalid embeddings response: {0}")]
    BadResponse(String),
    /// A vector whose length differs from the `chunk_embeddings.embedding` column.
    #[error("Embedding dimension mismatch: expected {expected}, got {got}")]
    Dimension { expected: usize, got: usize },
    #[error("OPENAI_API_KEY is not configured")]
    NotConfigured,
    /// The job was asked to stop while waiting to retry.
    #[error("embedding cancelled")]
    Cancelled,
}

impl EmbeddingsError {
    /// The exception type the official Python client raises for the same failure.
    pub fn python_type(&self) -> &'static str {
        match self {
            EmbeddingsError::Status { status, .. } => match status {
                400 => "openai.BadRequestError",
                401 => "openai.AuthenticationError",
                403 => "openai.PermissionDeniedError",
                404 => "openai.NotFoundError",
                409 => "openai.ConflictError",
                422 => "openai.UnprocessableEntityError",
                429 => "openai.RateLimitError",
                s if *s >= 500 => "openai.InternalServerError",
                _ => "openai.APIStatusError",
            },
            EmbeddingsError::Connection { .. } => "openai.APIConnectionError",
            EmbeddingsError::Timeout { .. } => "openai.APITimeoutError",
            EmbeddingsError::BadResponse(_)
            | EmbeddingsError::Dimension { .. }
            | EmbeddingsError::NotConfigured => "ValueError",
            EmbeddingsError::Cancelled => "rq_worker.JobCancelled",
        }
    }
}

/// Settings of one client.
#[derive(Debug, Clone)]
pub struct EmbeddingsConfig {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub encoding: EmbeddingEncoding,
    pub timeout: Duration,
    pub max_retries: u32,
    /// Expected vector length (the column's dimension).
    pub dim: usize,
}

/// A reusable client; cheap to clone, safe to share between job threads.
#[derive(Debug, Clone)]
pub struct EmbeddingsClient {
    url: String,
    config: EmbeddingsConfig,
    agent: ureq::Agent,
}

/// Vectors for one batch, in input order.
#[derive(Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// `usage.total_tokens` as reported, when reported.
    pub total_tokens: Option<u64>,
    /// HTTP requests made, retries included.
    pub requests: u32,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vector,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    total_tokens: Option<u64>,
}

enum Attempt {
    Retry(EmbeddingsError, Option<Duration>),
    Final(EmbeddingsError),
}

impl EmbeddingsClient {
    pub fn new(config: EmbeddingsConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(10))))
            .user_agent(concat!("rq-worker/", env!("CARGO_PKG_VERSION")))
            .tls_config(super::tls::ureq_tls())
            .build()
            .into();
        let url = format!("{}/embeddings", config.base_url.trim_end_matches('/'));
        EmbeddingsClient { url, config, agent }
    }

    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// Embed `inputs` in one request (plus retries). `stop` is polled while waiting to retry.
    pub fn embed(
        &self,
        inputs: &[String],
        stop: &dyn Fn() -> bool,
    ) -> Result<Embedded, EmbeddingsError> {
        let key = self
            .config
            .api_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or(EmbeddingsError::NotConfigured)?;
        let encoding = match self.config.encoding {
            EmbeddingEncoding::Base64 => "base64",
            EmbeddingEncoding::Float => "float",
        };
        let body = serde_json::json!({"model": self.config.model, "input": inputs, "encoding_format": encoding});
        let body =
            serde_json::to_vec(&body).map_err(|e| EmbeddingsError::BadResponse(e.to_string()))?;
        let mut requests = 0u32;
        loop {
            requests += 1;
            let (err, wait) = match self.try_once(key, &body, inputs.len()) {
                Ok((vectors, total_tokens)) => {
                    metrics::with(|m| {
                        m.embedding_requests.with_label_values(&["ok"]).inc();
                        m.embedding_inputs.inc_by(inputs.len() as u64);
                        m.embedding_tokens.inc_by(total_tokens.unwrap_or(0));
                    });
                    return Ok(Embedded {
                        vectors,
                        total_tokens,
                        requests,
                    });
                }
                Err(Attempt::Final(e)) => {
                    metrics::with(|m| m.embedding_requests.with_label_values(&["error"]).inc());
                    return Err(e);
                }
                Err(Attempt::Retry(e, wait)) => {
                    metrics::with(|m| m.embedding_requests.with_label_values(&["error"]).inc());
                    (e, wait)
                }
            };
            if requests > self.config.max_retries {
                return Err(err);
            }
            metrics::with(|m| m.embedding_retries.inc());
            let delay = super::retry::Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(60),
            }
            .delay(requests, wait);
            log::warn!(
                "embeddings request failed (attempt {requests}): {err}; retrying in {delay:?}"
            );
            if !super::retry::sleep_unless(delay, stop) {
                return Err(EmbeddingsError::Cancelled);
            }
        }
    }

    fn try_once(
        &self,
        key: &str,
        body: &[u8],
        n: usize,
    ) -> Result<(Vec<Vec<f32>>, Option<u64>), Attempt> {
        let sent = self
            .agent
            .post(&self.url)
            .header("Authorization", &format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(body);
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Err(Attempt::Retry(transport_error(e), None)),
        };
        let status = response.status().as_u16();
        if status >= 400 {
            let wait = retry_after(response.headers());
            let text = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            let err = EmbeddingsError::Status {
                status,
                body: text.chars().take(1000).collect(),
            };
            return Err(
                if status == 429 || status >= 500 || status == 408 || status == 409 {
                    Attempt::Retry(err, wait)
                } else {
                    Attempt::Final(err)
                },
            );
        }
        let bytes = match response
            .body_mut()
            .with_config()
            .limit(512 * 1024 * 1024)
            .read_to_vec()
        {
            Ok(b) => b,
            Err(e) => return Err(Attempt::Retry(transport_error(e), None)),
        };
        let parsed: Response = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                let err = EmbeddingsError::BadResponse(format!(
                    "{e} (status {status}, {} bytes)",
                    bytes.len()
                ));
                // A cut-off body is a transport problem worth retrying; any other bad JSON is not.
                return Err(if e.is_eof() {
                    Attempt::Retry(err, None)
                } else {
                    Attempt::Final(err)
                });
            }
        };
        self.decode(parsed, n).map_err(Attempt::Final)
    }

    fn decode(
        &self,
        parsed: Response,
        n: usize,
    ) -> Result<(Vec<Vec<f32>>, Option<u64>), EmbeddingsError> {
        if parsed.data.len() != n {
            return Err(EmbeddingsError::BadResponse(format!(
                "{} embeddings for {n} inputs",
                parsed.data.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
        for (pos, item) in parsed.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(pos);
            let slot = out.get_mut(index).ok_or_else(|| {
                EmbeddingsError::BadResponse(format!("index {index} out of range"))
            })?;
            if slot.is_some() {
                return Err(EmbeddingsError::BadResponse(format!(
                    "index {index} repeated"
                )));
            }
            let vector = match item.embedding {
                Vector::Floats(v) => v,
                Vector::Base64(s) => decode_base64_f32(&s)?,
            };
            if vector.len() != self.config.dim {
                return Err(EmbeddingsError::Dimension {
                    expected: self.config.dim,
                    got: vector.len(),
                });
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(EmbeddingsError::BadResponse(format!(
                    "embedding {index} has a non-finite value"
                )));
            }
            *slot = Some(vector);
        }
        let vectors = out.into_iter().map(|v| v.unwrap_or_default()).collect();
        Ok((vectors, parsed.usage.and_then(|u| u.total_tokens)))
    }
}

fn transport_error(e: ureq::Error) -> EmbeddingsError {
    match e {
        ureq::Error::Timeout(t) => EmbeddingsError::Timeout {
            message: t.to_string(),
        },
        other => EmbeddingsError::Connection {
            message: other.to_string(),
        },
    }
}

/// `retry-after-ms` (OpenAI) or `Retry-After` in seconds. Any value a server sends is taken
/// safely: negative, NaN or unparsable ones are ignored, huge ones capped at an hour (the caller
/// caps the wait further).
fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let secs = get("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| get("retry-after"))?;
    Duration::try_from_secs_f64(secs.min(3600.0)).ok()
}

/// Base64 of little-endian float32s, as `encoding_format: base64` returns them.
pub fn decode_base64_f32(s: &str) -> Result<Vec<f32>, EmbeddingsError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| EmbeddingsError::BadResponse(format!("bad base64 embedding: {e}")))?;
    if bytes.len() % 4 != 0 {
        return Err(EmbeddingsError::BadResponse(format!(
            "base64 embedding of {} bytes is not float32s",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_any_header_value_safely() {
        let wait = |name: &str, value: &str| {
            let mut h = ureq::http::HeaderMap::new();
            h.insert(
                ureq::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                ureq::http::HeaderValue::from_str(value).unwrap(),
            );
            retry_after(&h)
        };
        assert_eq!(wait("retry-after", "2"), Some(Duration::from_secs(2)));
        assert_eq!(
            wait("retry-after-ms", "250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            wait("retry-after", "1e300"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(wait("retry-after", "inf"), None);
        for bad in ["-1", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", ""] {
            assert_eq!(wait("retry-after", bad), None, "{bad}");
        }
    }

    #[test]
    fn base64_roundtrip() {
        let v = [1.0f32, -0.5, 0.25];
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let s = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(decode_base64_f32(&s).unwrap(), v);
        assert!(decode_base64_f32("AAA=").is_err());
    }

    #[test]
    fn python_types() {
        assert_eq!(
            EmbeddingsError::Status {
                status: 401,
                body: String::new()
            }
            .python_type(),
            "openai.AuthenticationError"
        );
        assert_eq!(
            EmbeddingsError::Status {
                status: 503,
                body: String::new()
            }
            .python_type(),
            "openai.InternalServerError"
        );
    }
}
