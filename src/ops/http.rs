//! The operations HTTP listener (`--metrics-addr`): `GET /metrics` (Prometheus text format),
//! `GET /healthz` (liveness) and `GET /readyz` (readiness), served by one std thread with
//! tiny_http; and [`probe`], the client behind `rq-worker health` (a container HEALTHCHECK or
//! an exec probe that needs no curl in the image).
//!
//! Probe answers are `200 ok` with one line per check, or `503` with one line per problem, so
//! `kubectl describe` and `docker inspect` show why a probe failed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::ops::health::{Liveness, Readiness};
use crate::ops::metrics;

/// What the listener serves.
pub struct Endpoints {
    pub liveness: Arc<Liveness>,
    pub readiness: Arc<Readiness>,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on --metrics-addr {addr}: {reason}")]
pub struct BindError {
    addr: String,
    reason: String,
}

/// A bound listener, ready to be served on a thread of its own.
pub struct Listener {
    server: tiny_http::Server,
    pub local_addr: Option<SocketAddr>,
}

/// Bind `addr` (`HOST:PORT`; port 0 picks a free one) now, so a bad address fails at start.
pub fn bind(addr: &str) -> Result<Listener, BindError> {
    let err = |reason: String| BindError {
        addr: addr.to_string(),
        reason,
    };
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("the address resolves to nothing".into()))?;
    let server = tiny_http::Server::http(sock).map_err(|e| err(e.to_string()))?;
    let local_addr = server.server_addr().to_ip();
    Ok(Listener { server, local_addr })
}

impl Listener {
    /// Answer requests until `stop()` says so (checked every 200 ms).
    pub fn serve(self, endpoints: Endpoints, stop: &dyn Fn() -> bool) {
        if let Some(a) = self.local_addr {
            info!("serving /metrics, /healthz and /readyz on http://{a}");
        }
        while !stop() {
            let request = match self.server.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    warn!("metrics listener: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            let path = request.url().split('?').next().unwrap_or("").to_string();
            let (status, content_type, body) = match (request.method(), path.as_str()) {
                (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => (
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::get().map(|m| m.render()).unwrap_or_default(),
                ),
                (tiny_http::Method::Get | tiny_http::Method::Head, "/healthz") => {
                    match endpoints.liveness.check() {
                        Ok(n) => (
                            200,
                            "text/plain; charset=utf-8",
                            format!("ok: {n} thread(s) making progress\n").into_bytes(),
                        ),
                        Err(problems) => (
                            503,
                            "text/plain; charset=utf-8",
                            (problems.join("\n") + "\n").into_bytes(),
                        ),
                    }
                }
                (tiny_http::Method::Get | tiny_http::Method::Head, "/readyz") => {
                    match endpoints.readiness.check() {
                        Ok(lines) => (
                            200,
                            "text/plain; charset=utf-8",
                            (lines.join("\n") + "\n").into_bytes(),
                        ),
                        Err(problems) => (
                            503,
                            "text/plain; charset=utf-8",
                            (problems.join("\n") + "\n").into_bytes(),
                        ),
                    }
                }
                (_, "/metrics" | "/healthz" | "/readyz") => {
                    (405, "text/plain", b"only GET\n".to_vec())
                }
                _ => (
                    404,
                    "text/plain",
                    b"not found: try /metrics, /healthz or /readyz\n".to_vec(),
                ),
            };
            let mut response = tiny_http::Response::from_data(body).with_status_code(status);
            if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
                response = response.with_header(h);
            }
            if let Err(e) = request.respond(response) {
                log::debug!("metrics listener: answering {path}: {e}");
            }
        }
    }
}

/// The address a local probe should call for a listener bound to `addr`: an unspecified host
/// (`0.0.0.0`, `[::]`, empty) becomes the loopback address.
pub fn probe_address(addr: &str) -> String {
    let (host, port) = match addr.rsplit_once(':') {
        Some(hp) => hp,
        None => return addr.to_string(),
    };
    match host {
        "" | "0.0.0.0" => format!("127.0.0.1:{port}"),
        "[::]" | "::" => format!("[::1]:{port}"),
        _ => addr.to_string(),
    }
}

/// `GET path` on `addr` with a plain HTTP/1.0 request; `Ok(body)` on 200, else `Err(reason)`.
pub fn probe(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let target = probe_address(addr);
    let sock = target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target}: resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("{target}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{target}: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {target}\r\nUser-Agent: rq-worker-health\r\n\r\n"
    )
    .map_err(|e| format!("{target}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{target}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{target}: not an HTTP answer"))?;
    if status == 200 {
        Ok(body.to_string())
    } else {
        Err(format!("{path} answered {status}: {}", body.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_addresses() {
        assert_eq!(probe_address("0.0.0.0:9727"), "127.0.0.1:9727");
        assert_eq!(probe_address("[::]:9727"), "[::1]:9727");
        assert_eq!(probe_address(":9727"), "127.0.0.1:9727");
        assert_eq!(probe_address("10.1.2.3:80"), "10.1.2.3:80");
    }

    #[test]
    fn serves_probes_and_metrics() {
        metrics::enable();
        let liveness = Arc::new(Liveness::default());
        let beacon = liveness.watch("slot-x", Duration::from_secs(60));
        let readiness = Arc::new(Readiness::default());
        readiness.add("redis", Box::new(|| Ok(())));
        let listener = bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr.unwrap().to_string();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let l2 = liveness.clone();
        let t = std::thread::spawn(move || {
            listener.serve(
                Endpoints {
                    liveness: l2,
                    readiness,
                },
                &|| s2.load(std::sync::atomic::Ordering::SeqCst),
            )
        });
        let t1 = Duration::from_secs(5);
        assert!(probe(&addr, "/healthz", t1).unwrap().starts_with("ok"));
        assert_eq!(probe(&addr, "/readyz", t1).unwrap(), "redis: ok\n");
        assert!(
            probe(&addr, "/metrics", t1)
                .unwrap()
                .contains("rq_worker_jobs_in_flight")
        );
        beacon.dead();
        let e = probe(&addr, "/healthz", t1).unwrap_err();
        assert!(e.contains("503") && e.contains("slot-x"), "{e}");
        assert!(probe(&addr, "/nope", t1).unwrap_err().contains("404"));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        t.join().unwrap();
    }
}
