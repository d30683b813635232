//! Helpers for the Rust integration tests: a private redis-server on a free loopback port (never
//! the shared one), and running the `rq-worker` binary against it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;
use rq_worker::rq::codec::{self, Serializer};
use rq_worker::rq::enqueue::{self, Enqueue};
use rq_worker::rq::keys::Keys;
use rq_worker::value::PyValue;

/// The redis-server binary the tests start: `RQW_TEST_REDIS_SERVER`, else `redis-server` from
/// PATH. scripts/test.sh sets it to a Redis 6.2 build (scripts/redis-min.sh), the oldest the
/// worker accepts, for one run of the worker tests.
pub fn server_bin() -> String {
    std::env::var("RQW_TEST_REDIS_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redis-server".to_string())
}

/// `RQW_TEST_REDIS_VERSION`: when set, every test server must report exactly this version, so a
/// run meant for the minimum Redis cannot silently test another one.
pub fn expected_version() -> Option<String> {
    std::env::var("RQW_TEST_REDIS_VERSION")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A redis-server owned by one test; killed on drop.
pub struct TestRedis {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl TestRedis {
    /// Start redis-server; panics (failing the test loudly) if it cannot.
    pub fn start() -> TestRedis {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("rqw-test-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Self::spawn(port, &dir);
        let r = TestRedis { port, child, dir };
        r.wait_ready();
        if let Some(want) = expected_version() {
            let got = r.version();
            assert_eq!(
                got,
                want,
                "RQW_TEST_REDIS_VERSION says the tests run on Redis {want}, but {} is {got}",
                server_bin()
            );
        }
        r
    }

    /// redis-server with an fsync-always append-only file, so it can be killed and restarted
    /// with its data (outage tests).
    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        Command::new(server_bin())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (the integration tests need a redis-server; \
                     RQW_TEST_REDIS_SERVER names another binary): {e}",
                    server_bin()
                )
            })
    }

    /// `redis_version` from the server's `INFO server`.
    pub fn version(&self) -> String {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut self.con())
            .expect("INFO server");
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_string())
            .expect("redis_version in INFO server")
    }

    /// Kill the server hard (SIGKILL), as an outage would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.dir);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = self.client().get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start redis-server and open a connection to it, as most tests begin.
    pub fn with_con() -> (TestRedis, redis::Connection) {
        let redis = TestRedis::start();
        let con = redis.con();
        (redis, con)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }

    pub fn con(&self) -> redis::Connection {
        self.client().get_connection().expect("connection")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rq-worker")
}

/// Run `rq-worker --burst` with `args` against `redis`; returns its output. A burst that has not
/// ended after five minutes is killed (its output then ends without a status of 0), so a worker
/// that loops forever fails the test instead of hanging the suite.
pub fn burst(redis: &TestRedis, args: &[&str]) -> Output {
    let mut child = Command::new(bin())
        .arg("--url")
        .arg(redis.url())
        .arg("--burst")
        .args(args)
        .env_remove("QUEUE_NAME")
        .env_remove("WORKER_COUNT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rq-worker");
    let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe(child.stdout.take().map(|p| Box::new(p) as _));
    let err = pipe(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for rq-worker") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait for rq-worker");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Assert that the run `out` exited successfully (its log in the failure message); returns the
/// log (stderr).
pub fn succeeded(out: &Output) -> String {
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

/// [`burst`], asserted successful; returns its log.
pub fn burst_ok(redis: &TestRedis, args: &[&str]) -> String {
    succeeded(&burst(redis, args))
}

/// Ask a running worker for a warm shutdown (SIGTERM), as `kill -TERM` would.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// Start a long-running `rq-worker --url URL ARGS...` (no burst); the caller stops it. The
/// platform's QUEUE_NAME/WORKER_COUNT are removed so a developer's environment cannot leak in.
pub fn spawn_worker(url: &str, args: &[&str], stderr: Stdio) -> Child {
    Command::new(bin())
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("QUEUE_NAME")
        .env_remove("WORKER_COUNT")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start rq-worker")
}

/// Poll `f` until it returns true or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Enqueue `func(*args)` on `queue` as Python RQ would (pickle, key prefix `rq`).
pub fn enqueue(con: &mut redis::Connection, queue: &str, func: &str, args: Vec<PyValue>) -> String {
    enqueue::enqueue(
        con,
        &Keys::new("rq"),
        Enqueue {
            queue,
            func_name: func,
            args,
            kwargs: vec![],
            timeout: None,
            result_ttl: None,
            failure_ttl: None,
            serializer: Serializer::Pickle,
        },
    )
    .expect("enqueue")
}

pub fn status(con: &mut redis::Connection, id: &str) -> Option<String> {
    con.hget(format!("rq:job:{id}"), "status").expect("hget")
}

/// The newest results-stream entry as field → value.
pub fn latest_result(con: &mut redis::Connection, id: &str) -> HashMap<String, String> {
    let reply: redis::Value = redis::cmd("XREVRANGE")
        .arg(format!("rq:results:{id}"))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)
        .expect("xrevrange");
    let mut out = HashMap::new();
    if let redis::Value::Array(entries) = reply
        && let Some(redis::Value::Array(entry)) = entries.first()
        && let Some(redis::Value::Array(fields)) = entry.get(1)
    {
        for pair in fields.chunks(2) {
            if let [redis::Value::BulkString(k), redis::Value::BulkString(v)] = pair {
                out.insert(
                    String::from_utf8_lossy(k).into(),
                    String::from_utf8_lossy(v).into(),
                );
            }
        }
    }
    out
}

pub fn exc_last_line(con: &mut redis::Connection, id: &str) -> String {
    let r = latest_result(con, id);
    let text = codec::decode_exc_string(r.get("exc_string").map(String::as_str).unwrap_or(""))
        .unwrap_or_default();
    text.lines().last().unwrap_or_default().to_string()
}
