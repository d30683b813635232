//! `rediss://` end to end: rq-worker against a redis-server with TLS on and a certificate from a
//! test CA (made with the openssl CLI). The worker trusts the system's CA bundle, which a test
//! names with `SSL_CERT_FILE` (as a site mounts its bundle over the image's): verified with that
//! CA, refused readably with another, and `#insecure` connects without checking. HTTPS (ureq, as
//! Storage, embeddings and webhooks use it) trusts the same bundle. Uses the
//! `redis-server` on PATH (Debian's is built with TLS; the Redis 6.2 build of scripts/redis-min.sh
//! is not, so this lives outside tests/worker.rs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{bin, enqueue, free_port, status, wait_for};
use rq_worker::value::PyValue;

/// A redis-server with a plain port (for the test's own setup) and a TLS port (for the worker).
struct TlsRedis {
    port: u16,
    tls_port: u16,
    dir: PathBuf,
    child: Child,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the openssl CLI (scripts/test.sh installs Debian's openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` in `dir` (`name.pem`, `name.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=rq-worker test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// In `dir`: CAs `ca` and `other-ca`, and `server.pem`/`server.key` for localhost and 127.0.0.1
/// signed by `ca`.
fn make_certs(dir: &Path) {
    std::fs::create_dir_all(dir).expect("temp dir");
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write san.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

impl TlsRedis {
    fn start() -> TlsRedis {
        let (port, tls_port) = (free_port(), free_port());
        let dir =
            std::env::temp_dir().join(format!("rqw-tls-redis-{tls_port}-{}", std::process::id()));
        make_certs(&dir);
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--tls-port",
                &tls_port.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--tls-cert-file")
            .arg(dir.join("server.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.pem"))
            .args(["--tls-auth-clients", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start redis-server (the TLS tests need Debian's redis-server, built with TLS)",
            );
        let r = TlsRedis {
            port,
            tls_port,
            dir,
            child,
        };
        assert!(
            wait_for(10, || r.con_plain().is_some()),
            "redis-server with --tls-port did not start (is it built with TLS?)"
        );
        r
    }

    fn con_plain(&self) -> Option<redis::Connection> {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/0", self.port))
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    /// `rq-worker --burst` on `queue` over TLS, trusting only the CA bundle `trusted`.
    fn burst(&self, url: &str, trusted: &str, queue: &str) -> Output {
        Command::new(bin())
            .args(["--url", url, "--burst", queue])
            .env("SSL_CERT_FILE", self.dir.join(trusted))
            .env_remove("SSL_CERT_DIR")
            .env_remove("QUEUE_NAME")
            .env_remove("WORKER_COUNT")
            .output()
            .expect("run rq-worker")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn rediss_is_verified_against_the_trusted_bundle() {
    let r = TlsRedis::start();
    let mut con = r.con_plain().expect("plain connection");
    let url = format!("rediss://localhost:{}/0", r.tls_port);

    // Trusting another CA only: refused at start, with rustls's reason in the log.
    let id = enqueue(
        &mut con,
        "tls-q",
        "rq_worker.diag.add",
        vec![PyValue::Int(20), PyValue::Int(22)],
    );
    let out = r.burst(&url, "other-ca.pem", "tls-q");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert_eq!(status(&mut con, &id).as_deref(), Some("queued"));

    // Trusting the server's CA: the job runs over TLS.
    let out = r.burst(&url, "ca.pem", "tls-q");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"));

    // `#insecure` (the redis crate's URL fragment) encrypts without checking the certificate.
    let id = enqueue(
        &mut con,
        "tls-q",
        "rq_worker.diag.add",
        vec![PyValue::Int(1), PyValue::Int(2)],
    );
    let out = r.burst(&format!("{url}#insecure"), "other-ca.pem", "tls-q");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"));
}

#[test]
fn https_trusts_the_same_bundle() {
    // ureq (Storage, embeddings, webhooks) gets adapters::tls's provider and roots; without them
    // it would have no crypto provider and no root list at all. `openssl s_server -www` answers
    // any GET over TLS with a certificate from the test CA, which SSL_CERT_FILE names.
    let dir = std::env::temp_dir().join(format!("rqw-tls-https-{}", std::process::id()));
    make_certs(&dir);
    let port = free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
        .args(["-cert", "server.pem", "-key", "server.key"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    // SAFETY: set before anything in this process reads the trusted roots (they are read once);
    // the other test here passes SSL_CERT_FILE to child processes only.
    unsafe { std::env::set_var("SSL_CERT_FILE", dir.join("ca.pem")) };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(rq_worker::adapters::tls::ureq_tls())
        .build()
        .into();
    let url = format!("https://localhost:{port}/");
    let mut last = String::new();
    let ok = wait_for(10, || match agent.get(&url).call() {
        Ok(r) => r.status() == 200,
        Err(e) => {
            last = e.to_string();
            false
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "GET {url} over TLS failed: {last}");
}
