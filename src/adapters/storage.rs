//! Where uploaded PDFs are read from: Supabase Storage over HTTP (`ureq`) or a local folder.
//!
//! Supabase: `GET {SUPABASE_URL}/storage/v1/object/{bucket}/{path}` with `apikey` and `Authorization:
//! Bearer` headers, bucket percent-encoded whole and path with `/` kept (upstream.md "External HTTP
//! APIs"); bounded retries on 5xx, timeouts and connection errors, none on 4xx; objects larger than
//! `MAX_FILE_SIZE_BYTES` are refused from `Content-Length` or after at most limit + 1 bytes read.

use crate::ops::metrics;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Supabase answered with an error status (the platform's message shape).
    #[error("Supabase storage download failed ({status}): {body}")]
    Status { status: u16, body: String },
    /// Transport failure after the retries ran out.
    #[error("Supabase storage download failed after {attempts} attempt(s): {message}")]
    Transport { attempts: u32, message: String },
    /// The object is larger than `MAX_FILE_SIZE_BYTES`.
    #[error("File too large: {} bytes (MAX_FILE_SIZE_BYTES is {limit})", size.map_or_else(|| format!("more than {limit}"), |s| s.to_string()))]
    TooLarge { size: Option<u64>, limit: u64 },
    /// Local backend: no such file.
    #[error("Storage object not found: {bucket}/{path}")]
    NotFound { bucket: String, path: String },
    /// A bucket or path that would leave the storage folder.
    #[error("invalid storage path {bucket}/{path}: {reason}")]
    BadPath {
        bucket: String,
        path: String,
        reason: &'static str,
    },
    /// Local backend: the file exists but could not be read.
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Neither STORAGE_DIR nor SUPABASE_URL plus a key is set.
    #[error(
        "Supabase storage is not configured (set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or STORAGE_DIR)"
    )]
    NotConfigured,
    /// The job was asked to stop while waiting to retry.
    #[error("download cancelled")]
    Cancelled,
}

/// A configured object store.
#[derive(Debug, Clone)]
pub enum Storage {
    Supabase(SupabaseStorage),
    Local(LocalStorage),
}

impl Storage {
    /// Read `bucket/path` whole, refusing more than `max_bytes`. `stop` is polled between retries.
    pub fn download(
        &self,
        bucket: &str,
        path: &str,
        max_bytes: u64,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, StorageError> {
        let r = match self {
            Storage::Supabase(s) => s.download(bucket, path, max_bytes, stop),
            Storage::Local(l) => l.download(bucket, path, max_bytes),
        };
        if let Ok(bytes) = &r {
            metrics::with(|m| m.storage_bytes.inc_by(bytes.len() as u64));
        }
        r
    }
}

/// Supabase Storage's REST API.
#[derive(Debug, Clone)]
pub struct SupabaseStorage {
    base_url: String,
    key: String,
    agent: ureq::Agent,
    /// Retries after the first attempt, on 5xx, timeouts and connection errors only.
    max_retries: u32,
}

impl SupabaseStorage {
    pub fn new(base_url: &str, key: &str, timeout: Duration, max_retries: u32) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .user_agent(concat!("rq-worker/", env!("CARGO_PKG_VERSION")))
            .tls_config(super::tls::ureq_tls())
            .build()
            .into();
        SupabaseStorage {
            base_url: base_url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            agent,
            max_retries,
        }
    }

    /// The object URL, encoded as the platform encodes it.
    pub fn object_url(&self, bucket: &str, path: &str) -> String {
        format!(
            "{}/storage/v1/object/{}/{}",
            self.base_url,
            quote(bucket, false),
            quote(path, true)
        )
    }

    fn download(
        &self,
        bucket: &str,
        path: &str,
        max_bytes: u64,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, StorageError> {
        let url = self.object_url(bucket, path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let retryable = match self.try_once(&url, max_bytes) {
                Ok(bytes) => return Ok(bytes),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(e)) => e,
            };
            if attempt > self.max_retries {
                return Err(match retryable {
                    StorageError::Transport { message, .. } => StorageError::Transport {
                        attempts: attempt,
                        message,
                    },
                    other => other,
                });
            }
            let delay = super::retry::Backoff {
                base: Duration::from_millis(250),
                cap: Duration::from_secs(30),
            }
            .delay(attempt, None);
            metrics::with(|m| m.storage_retries.inc());
            log::warn!(
                "storage download {bucket}/{path} failed (attempt {attempt}): {retryable}; retrying in {delay:?}"
            );
            if !super::retry::sleep_unless(delay, stop) {
                return Err(StorageError::Cancelled);
            }
        }
    }

    fn try_once(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, Attempt> {
        let transport = |e: ureq::Error| {
            Attempt::Retry(StorageError::Transport {
                attempts: 1,
                message: e.to_string(),
            })
        };
        let mut response = self
            .agent
            .get(url)
            .header("apikey", &self.key)
            .header("Authorization", &format!("Bearer {}", self.key))
            .call()
            .map_err(transport)?;
        let status = response.status().as_u16();
        if status >= 400 {
            let body = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            let body: String = body.chars().take(500).collect();
            let err = StorageError::Status { status, body };
            return Err(if status >= 500 {
                Attempt::Retry(err)
            } else {
                Attempt::Final(err)
            });
        }
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(size) = length
            && size > max_bytes
        {
            return Err(Attempt::Final(StorageError::TooLarge {
                size: Some(size),
                limit: max_bytes,
            }));
        }
        match response
            .body_mut()
            .with_config()
            .limit(max_bytes.saturating_add(1))
            .read_to_vec()
        {
            Ok(bytes) if bytes.len() as u64 > max_bytes => {
                Err(Attempt::Final(StorageError::TooLarge {
                    size: None,
                    limit: max_bytes,
                }))
            }
            Ok(bytes) => {
                if let Some(size) = length
                    && size != bytes.len() as u64
                {
                    return Err(Attempt::Retry(StorageError::Transport {
                        attempts: 1,
                        message: format!("body truncated: {} of {size} bytes", bytes.len()),
                    }));
                }
                Ok(bytes)
            }
            Err(ureq::Error::BodyExceedsLimit(_)) => Err(Attempt::Final(StorageError::TooLarge {
                size: None,
                limit: max_bytes,
            })),
            Err(e) => Err(transport(e)),
        }
    }
}

enum Attempt {
    Retry(StorageError),
    Final(StorageError),
}

/// A folder laid out as `{dir}/{bucket}/{path}` (development and the demo).
#[derive(Debug, Clone)]
pub struct LocalStorage {
    pub dir: PathBuf,
}

impl LocalStorage {
    fn download(&self, bucket: &str, path: &str, max_bytes: u64) -> Result<Vec<u8>, StorageError> {
        let bad = |reason| StorageError::BadPath {
            bucket: bucket.to_string(),
            path: path.to_string(),
            reason,
        };
        let mut full = self.dir.clone();
        for part in [bucket, path] {
            let p = Path::new(part);
            if part.is_empty() {
                return Err(bad("empty name"));
            }
            if !p.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(bad("only plain relative names are allowed"));
            }
            full.push(p);
        }
        let io = |source: std::io::Error| StorageError::Io {
            path: full.clone(),
            source,
        };
        let file = match std::fs::File::open(&full) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound {
                    bucket: bucket.to_string(),
                    path: path.to_string(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        let size = file.metadata().map_err(io)?.len();
        if size > max_bytes {
            return Err(StorageError::TooLarge {
                size: Some(size),
                limit: max_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > max_bytes {
            return Err(StorageError::TooLarge {
                size: None,
                limit: max_bytes,
            });
        }
        Ok(bytes)
    }
}

/// Percent-encode like Python's `urllib.parse.quote` (unreserved characters kept; `/` kept only
/// when `keep_slash`).
pub fn quote(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'.' | b'-' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_python() {
        assert_eq!(quote("my bucket/x", false), "my%20bucket%2Fx");
        assert_eq!(
            quote("ws/doc/résumé (1).pdf", true),
            "ws/doc/r%C3%A9sum%C3%A9%20%281%29.pdf"
        );
        assert_eq!(quote("a~b_c.d-e", true), "a~b_c.d-e");
    }

    #[test]
    fn object_url_shape() {
        let s = SupabaseStorage::new("http://h:1/", "k", Duration::from_secs(1), 0);
        assert_eq!(
            s.object_url("documents", "w/d/a b.pdf"),
            "http://h:1/storage/v1/object/documents/w/d/a%20b.pdf"
        );
    }

    #[test]
    fn local_refuses_escape_and_big_files() {
        let dir = std::env::temp_dir().join(format!("rqw-storage-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("b/f.pdf"), b"12345").unwrap();
        let l = LocalStorage { dir: dir.clone() };
        assert_eq!(l.download("b", "f.pdf", 5).unwrap(), b"12345");
        assert!(matches!(
            l.download("b", "f.pdf", 4),
            Err(StorageError::TooLarge { .. })
        ));
        assert!(matches!(
            l.download("b", "../b/f.pdf", 9),
            Err(StorageError::BadPath { .. })
        ));
        assert!(matches!(
            l.download("b", "/etc/passwd", 9),
            Err(StorageError::BadPath { .. })
        ));
        assert!(matches!(
            l.download("b", "nope.pdf", 9),
            Err(StorageError::NotFound { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
