//! Integration tests of the worker against a real redis-server it starts itself: the Redis state
//! left behind, hostile job hashes that must fail one job and never the worker, and the
//! round-trip budget of the happy path. Python-client compatibility is `compat-tests/`'s job.

mod common;

use std::collections::HashMap;

use std::process::Stdio;

use common::{
    TestRedis, burst, burst_ok, enqueue, exc_last_line, latest_result, spawn_worker, status,
    succeeded, wait_for,
};
use redis::Commands;
use rq_worker::rq::codec::{self, Serializer};
use rq_worker::rq::keys::Keys;
use rq_worker::value::PyValue;

/// Enqueue `rq_worker.diag.add(a, b)` on `queue`.
fn add(con: &mut redis::Connection, queue: &str, a: i64, b: i64) -> String {
    enqueue(
        con,
        queue,
        "rq_worker.diag.add",
        vec![PyValue::Int(a), PyValue::Int(b)],
    )
}

/// The return value in a results-stream entry.
fn return_value(result: &HashMap<String, String>) -> PyValue {
    codec::decode_return_value(&result["return_value"], Serializer::Pickle).expect("return value")
}

#[test]
fn success_writes_rq_state() {
    let (redis, mut con) = TestRedis::with_con();
    let id = add(&mut con, "default", 2, 3);
    burst_ok(&redis, &["--name", "w1"]);

    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"));
    let r = latest_result(&mut con, &id);
    assert_eq!(r.get("type").map(String::as_str), Some("1"));
    assert_eq!(r.get("worker_name").map(String::as_str), Some("w1"));
    let rv = return_value(&r);
    assert_eq!(rv, PyValue::Int(5));
    let score: Option<f64> = con.zscore("rq:finished:default", &id).unwrap();
    assert!(score.is_some(), "in the finished registry");
    let ttl: i64 = con.ttl(format!("rq:job:{id}")).unwrap();
    assert!(
        ttl > 400 && ttl <= 500,
        "job key expires after result_ttl, got {ttl}"
    );
    let wip: i64 = con.zcard("rq:wip:default").unwrap();
    assert_eq!(wip, 0, "nothing left started");
    let inter: i64 = con.llen("rq:queue:default:intermediate").unwrap();
    assert_eq!(inter, 0, "intermediate list empty");
    // The worker is dead and deregistered, with its counters.
    let members: Vec<String> = con.smembers("rq:workers").unwrap();
    assert!(members.is_empty(), "{members:?}");
    let w: HashMap<String, String> = con.hgetall("rq:worker:w1").unwrap();
    assert_eq!(w.get("successful_job_count").map(String::as_str), Some("1"));
    assert!(w.contains_key("death"));
    assert!(!w.contains_key("current_job"));
}

#[test]
fn hostile_job_hashes_fail_that_job_only() {
    let (redis, mut con) = TestRedis::with_con();
    let q = "hostile";
    let mut push = |id: &str, fields: &[(&str, &[u8])]| {
        let key = format!("rq:job:{id}");
        for (k, v) in fields {
            let _: () = con.hset(&key, *k, *v).unwrap();
        }
        let _: () = con.rpush(format!("rq:queue:{q}"), id).unwrap();
    };
    push(
        "garbage-data",
        &[
            ("data", b"\x00\x01not zlib nor pickle"),
            ("origin", b"hostile"),
            ("status", b"queued"),
        ],
    );
    push("no-data", &[("origin", b"hostile"), ("status", b"queued")]);
    push(
        "bad-timeout",
        &[
            ("data", b"x"),
            ("origin", b"hostile"),
            ("timeout", b"1h"),
            ("status", b"queued"),
        ],
    );
    let pickled_class = codec::zlib_compress(b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94.");
    push(
        "evil-pickle",
        &[
            ("data", &pickled_class),
            ("origin", b"hostile"),
            ("status", b"queued"),
        ],
    );
    let mut con = redis.con();
    let _: () = con.rpush(format!("rq:queue:{q}"), "dangling-id").unwrap();
    let good = enqueue(&mut con, q, "rq_worker.diag.noop", vec![]);

    burst_ok(&redis, &[q]);
    for id in ["garbage-data", "no-data", "bad-timeout", "evil-pickle"] {
        assert_eq!(status(&mut con, id).as_deref(), Some("failed"), "{id}");
        let score: Option<f64> = con.zscore(format!("rq:failed:{q}"), id).unwrap();
        assert!(score.is_some(), "{id} in the failed registry");
        assert!(
            !exc_last_line(&mut con, id).is_empty(),
            "{id} has a readable exc_string"
        );
    }
    assert!(
        exc_last_line(&mut con, "evil-pickle").contains("os"),
        "names the refused global"
    );
    assert_eq!(status(&mut con, &good).as_deref(), Some("finished"));
    let inter: i64 = con.llen(format!("rq:queue:{q}:intermediate")).unwrap();
    assert_eq!(
        inter, 0,
        "the dangling id was dropped from the intermediate list"
    );
}

#[test]
fn dependents_are_released_in_the_same_step() {
    let (redis, mut con) = TestRedis::with_con();
    let parent = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    // A deferred child written the way Python's enqueue(depends_on=...) writes it.
    let child = "child-1";
    let _: () = con
        .hset_multiple(
            format!("rq:job:{child}"),
            &[
                (
                    "data",
                    codec::zlib_compress(&rq_worker::rq::pickle::dumps(&PyValue::Tuple(vec![
                        PyValue::Str("rq_worker.diag.noop".into()),
                        PyValue::None,
                        PyValue::Tuple(vec![]),
                        PyValue::Dict(vec![]),
                    ]))),
                ),
                ("origin", b"default".to_vec()),
                ("status", b"deferred".to_vec()),
                ("dependency_id", parent.clone().into_bytes()),
                ("dependency_ids", format!("[\"{parent}\"]").into_bytes()),
            ],
        )
        .unwrap();
    let _: () = con
        .sadd(format!("rq:job:{parent}:dependents"), child)
        .unwrap();
    let _: () = con
        .sadd(format!("rq:job::{child}:dependencies"), &parent)
        .unwrap();
    let _: () = con.zadd("rq:deferred:default", child, 1).unwrap();

    burst_ok(&redis, &[]);
    assert_eq!(status(&mut con, &parent).as_deref(), Some("finished"));
    assert_eq!(status(&mut con, child).as_deref(), Some("finished"));
    let deferred: i64 = con.zcard("rq:deferred:default").unwrap();
    assert_eq!(deferred, 0);
}

#[test]
fn warm_shutdown_finishes_the_running_job() {
    let (redis, mut con) = TestRedis::with_con();
    let id = enqueue(
        &mut con,
        "default",
        "rq_worker.diag.sleep",
        vec![PyValue::Float(1.5)],
    );
    let mut child = spawn_worker(&redis.url(), &["--name", "warm"], Stdio::null());
    assert!(wait_for(20, || status(&mut con, &id).as_deref() == Some("started")));
    common::sigterm(&child);
    let code = child.wait().expect("wait");
    assert!(code.success());
    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"));
    let w: HashMap<String, String> = con.hgetall("rq:worker:warm").unwrap();
    assert!(
        w.contains_key("shutdown_requested_date") && w.contains_key("death"),
        "{w:?}"
    );
}

#[test]
fn an_idle_worker_on_several_queues_blocks_on_the_first() {
    // BLMOVE waits on one list: with several queues the idle worker blocks on the first (so it is
    // served at once) between atomic passes over all of them; a warm shutdown still wakes it.
    let (redis, mut con) = TestRedis::with_con();
    let mut child = spawn_worker(
        &redis.url(),
        &["high", "low", "--name", "two"],
        Stdio::null(),
    );
    let blocked = |con: &mut redis::Connection| {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(con).unwrap();
        list.lines().any(|l| {
            l.contains("cmd=blmove")
                && l.split(' ')
                    .any(|f| f.starts_with("flags=") && f.contains('b'))
        })
    };
    assert!(
        wait_for(20, || blocked(&mut con)),
        "no client blocked in BLMOVE"
    );
    let low = add(&mut con, "low", 1, 2);
    let high = add(&mut con, "high", 3, 4);
    assert!(wait_for(20, || status(&mut con, &low).as_deref()
        == Some("finished")
        && status(&mut con, &high).as_deref() == Some("finished")));
    assert!(
        wait_for(20, || blocked(&mut con)),
        "not blocked again once idle"
    );
    common::sigterm(&child);
    assert!(child.wait().expect("wait").success());
    let w: HashMap<String, String> = con.hgetall("rq:worker:two").unwrap();
    assert!(w.is_empty() || w.contains_key("death"), "{w:?}");
}

#[test]
fn an_rq_worker_command_line_keeps_working() {
    // The options of Python's `rq worker` are accepted: --pid writes the pid file, the Python-only
    // ones are reported at start and change nothing, --disable-job-desc-logging drops the function.
    let (redis, mut con) = TestRedis::with_con();
    let id = add(&mut con, "default", 2, 3);
    let dir = std::env::temp_dir().join(format!("rq-worker-pid-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("worker.pid");
    let stderr = burst_ok(
        &redis,
        &[
            "default",
            "--pid",
            pid_file.to_str().unwrap(),
            "-w",
            "rq.SimpleWorker",
            "--path",
            "/app",
            "--exception-handler",
            "app.handlers.report",
            "--log-format",
            "%(message)s",
            "--disable-job-desc-logging",
        ],
    );
    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    assert!(
        stderr.contains("--worker-class \"rq.SimpleWorker\" ignored"),
        "{stderr}"
    );
    assert!(stderr.contains("--exception-handler"), "{stderr}");
    assert!(stderr.contains(&format!("job_id={id}")), "{stderr}");
    assert!(!stderr.contains("func=rq_worker.diag.add"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rq_redis_url_is_read_when_redis_url_is_not_set() {
    // `rq worker` reads RQ_REDIS_URL; the platform's REDIS_URL (and --url) come first.
    let (redis, mut con) = TestRedis::with_con();
    let id = add(&mut con, "default", 1, 1);
    let out = std::process::Command::new(common::bin())
        .args(["--burst", "default"])
        .env_remove("REDIS_URL")
        .env_remove("QUEUE_NAME")
        .env_remove("WORKER_COUNT")
        .env("RQ_REDIS_URL", redis.url())
        .output()
        .expect("run rq-worker");
    succeeded(&out);
    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"));
}

#[test]
fn webhooks_are_posted_on_terminal_status() {
    use std::io::{Read, Write};
    let (redis, mut con) = TestRedis::with_con();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let id = enqueue(
        &mut con,
        "default",
        "rq_worker.diag.fail",
        vec![PyValue::Str("x".into())],
    );
    let hooks = format!(
        r#"[{{"url": "http://127.0.0.1:{port}/hook", "job_status": "failed", "method": "POST", "headers": {{"X-Token": "t"}}, "timeout": 5}}]"#
    );
    let _: () = con.hset(format!("rq:job:{id}"), "webhooks", hooks).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(h) = text.find("\r\n\r\n") {
                let len = text[..h]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if buf.len() >= h + 4 + len {
                    break;
                }
            }
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        String::from_utf8_lossy(&buf).into_owned()
    });
    burst_ok(&redis, &[]);
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /hook"), "{request}");
    assert!(request.to_ascii_lowercase().contains("x-token: t"));
    assert!(
        request.contains(&format!("\"job_id\":\"{id}\"")),
        "{request}"
    );
    assert!(request.contains("\"status\":\"failed\""));
    assert!(request.contains("RuntimeError: x"));
}

#[test]
fn redis_outage_mid_job_loses_nothing() {
    let (mut redis, mut con) = TestRedis::with_con();
    let id = enqueue(
        &mut con,
        "default",
        "rq_worker.diag.sleep",
        vec![PyValue::Float(2.0)],
    );
    let after = add(&mut con, "default", 1, 1);
    let mut child = spawn_worker(
        &redis.url(),
        &["--name", "outage", "--max-jobs", "2"],
        Stdio::null(),
    );
    assert!(wait_for(20, || status(&mut con, &id).as_deref() == Some("started")));
    redis.kill();
    std::thread::sleep(std::time::Duration::from_secs(3));
    redis.restart();
    let mut con = redis.con();
    assert!(
        wait_for(60, || status(&mut con, &after).as_deref()
            == Some("finished")),
        "the worker reconnected and went on"
    );
    assert_eq!(
        status(&mut con, &id).as_deref(),
        Some("finished"),
        "the outcome held during the outage was written"
    );
    let code = child.wait().expect("wait");
    assert!(code.success());
}

#[test]
fn maintenance_fails_abandoned_jobs_but_never_finished_ones() {
    let (redis, mut con) = TestRedis::with_con();
    let abandoned = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    let done = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    // Make both look like jobs of a dead worker: out of the queue, started, heartbeat lapsed.
    let _: () = con.del("rq:queue:default").unwrap();
    let _: () = con
        .hset(format!("rq:job:{abandoned}"), "status", "started")
        .unwrap();
    let _: () = con
        .hset(format!("rq:job:{done}"), "status", "finished")
        .unwrap();
    let _: () = con.zadd("rq:wip:default", &abandoned, 1).unwrap();
    let _: () = con
        .zadd(
            "rq:wip:default",
            format!("{done}:0123456789abcdef0123456789abcdef"),
            1,
        )
        .unwrap();

    burst_ok(&redis, &[]);
    assert_eq!(status(&mut con, &abandoned).as_deref(), Some("failed"));
    assert!(exc_last_line(&mut con, &abandoned).contains("AbandonedJobError"));
    let failed: Option<f64> = con.zscore("rq:failed:default", &abandoned).unwrap();
    assert!(failed.is_some());
    assert_eq!(
        status(&mut con, &done).as_deref(),
        Some("finished"),
        "a finished job is never failed"
    );
    let wip: i64 = con.zcard("rq:wip:default").unwrap();
    assert_eq!(wip, 0, "stale members removed");
}

/// A TCP proxy in front of Redis that, once, forwards a command containing both `needles` and
/// then closes that connection instead of returning the reply: the call ran, the caller never
/// learns its outcome (as when a connection dies at the wrong moment).
struct LostReplyProxy {
    port: u16,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LostReplyProxy {
    fn start(redis_port: u16, needles: [&'static [u8]; 2]) -> LostReplyProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let fired = Arc::new(AtomicBool::new(false));
        let armed = fired.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                let drop_reply = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (fired, flag) = (armed.clone(), drop_reply.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let chunk = &buf[..n];
                        let hit = needles
                            .iter()
                            .all(|nd| chunk.windows(nd.len()).any(|w| w == *nd));
                        if hit && !fired.swap(true, Ordering::SeqCst) {
                            flag.store(true, Ordering::SeqCst);
                        }
                        if s_out.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                let rearm = armed.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if drop_reply.load(Ordering::SeqCst) {
                            if buf[..n].starts_with(b"-NOSCRIPT") {
                                // EVALSHA before the script was loaded: it did not run; wait
                                // for the EVAL that follows.
                                drop_reply.store(false, Ordering::SeqCst);
                                rearm.store(false, Ordering::SeqCst);
                            } else {
                                break;
                            }
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                    let _ = s_in.shutdown(Shutdown::Both);
                });
            }
        });
        LostReplyProxy { port, fired }
    }
}

/// Run `rq-worker --burst --name NAME` through a [`LostReplyProxy`]; returns its log once it
/// exited successfully, having lost exactly one reply.
fn burst_through_lossy_proxy(redis: &TestRedis, needles: [&'static [u8]; 2], name: &str) -> String {
    let proxy = LostReplyProxy::start(redis.port, needles);
    let out = std::process::Command::new(common::bin())
        .args([
            "--url",
            &format!("redis://127.0.0.1:{}/0", proxy.port),
            "--burst",
            "--name",
            name,
        ])
        .env("RUST_LOG", "info")
        .output()
        .expect("run rq-worker");
    let log = succeeded(&out);
    assert!(
        proxy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy dropped a reply"
    );
    log
}

#[test]
fn a_lost_finish_reply_records_once_and_puts_back_the_next_job() {
    let (redis, mut con) = TestRedis::with_con();
    let first = add(&mut con, "default", 1, 2);
    let second = add(&mut con, "default", 3, 4);
    // The call that records `first` (and, fused, starts `second`) runs, and its reply is lost.
    let marker: &'static [u8] = Box::leak(first.clone().into_bytes().into_boxed_slice());
    let log = burst_through_lossy_proxy(&redis, [b"outcome", marker], "lossy");
    for id in [&first, &second] {
        assert_eq!(
            status(&mut con, id).as_deref(),
            Some("finished"),
            "{id}: {log}"
        );
        let entries: usize = con.xlen(format!("rq:results:{id}")).unwrap();
        assert_eq!(entries, 1, "{id}: one result entry, not one per attempt");
    }
    assert_eq!(latest_result(&mut con, &second)["worker_name"], "lossy");
    let started: usize = con.zcard("rq:wip:default").unwrap();
    assert_eq!(started, 0, "nothing left started: {log}");
    let failed: usize = con.zcard("rq:failed:default").unwrap();
    assert_eq!(failed, 0);
    assert!(
        log.contains("recorded before the connection dropped"),
        "{log}"
    );
}

#[test]
fn a_lost_start_reply_puts_the_job_back() {
    let (redis, mut con) = TestRedis::with_con();
    let id = add(&mut con, "default", 5, 6);
    // The first dequeue-and-start call runs, and its reply is lost.
    let log = burst_through_lossy_proxy(&redis, [b"check_suspended", b"EVALSHA"], "lossy-start");
    assert!(log.contains("put back at the front of its queue"), "{log}");
    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"), "{log}");
    let entries: usize = con.xlen(format!("rq:results:{id}")).unwrap();
    assert_eq!(entries, 1);
    let started: usize = con.zcard("rq:wip:default").unwrap();
    assert_eq!(started, 0, "{log}");
    let executions: usize = con.scard("rq:worker:lossy-start:executions").unwrap();
    assert_eq!(executions, 0);
}

/// A job a worker moved into the intermediate list and then never started (its dequeue reply was
/// lost with the connection, or it died) goes back to the front of its queue and runs once;
/// one whose status shows a worker got further than the move is failed, as RQ fails it.
#[test]
fn maintenance_puts_back_a_job_that_never_started() {
    let (redis, mut con) = TestRedis::with_con();
    let never_started = add(&mut con, "default", 2, 3);
    let got_further = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    let long_ago = (chrono::Utc::now().timestamp() - 120).to_string();
    for id in [&never_started, &got_further] {
        let moved: Option<String> = redis::cmd("LMOVE")
            .arg("rq:queue:default")
            .arg("rq:queue:default:intermediate")
            .arg("LEFT")
            .arg("RIGHT")
            .query(&mut con)
            .unwrap();
        assert_eq!(moved.as_deref(), Some(id.as_str()));
        let _: () = con
            .set(
                format!("rq:queue:default:intermediate:first_seen:{id}"),
                &long_ago,
            )
            .unwrap();
    }
    let _: () = con
        .hset(format!("rq:job:{got_further}"), "status", "started")
        .unwrap();

    let mut worker = spawn_worker(
        &redis.url(),
        &["default", "--worker-ttl", "20"],
        Stdio::null(),
    );
    let ended = wait_for(60, || {
        status(&mut con, &never_started).as_deref() == Some("finished")
            && status(&mut con, &got_further).as_deref() == Some("failed")
    });
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(
        ended,
        "never_started={:?} got_further={:?}",
        status(&mut con, &never_started),
        status(&mut con, &got_further)
    );
    let result = latest_result(&mut con, &never_started);
    assert_eq!(
        result.get("type").map(String::as_str),
        Some("1"),
        "{result:?}"
    );
    assert!(exc_last_line(&mut con, &got_further).contains("stuck in intermediate queue"));
    let failed: Option<f64> = con.zscore("rq:failed:default", &never_started).unwrap();
    assert!(failed.is_none(), "a job that never started is not failed");
    let inter: i64 = con.llen("rq:queue:default:intermediate").unwrap();
    assert_eq!(inter, 0);
}

/// Starting a job that BLMOVE moved checks that the id is still in the intermediate list: if
/// maintenance put it back in its queue meanwhile, it runs from there and is not started twice.
#[test]
fn a_moved_job_taken_back_by_maintenance_is_not_started() {
    use rq_worker::rq::scripts::{self, Layout, StartFrom, StartOutcome, StartRequest};
    let (_redis, mut con) = TestRedis::with_con();
    let id = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    // The id is in its queue (put back), not in the intermediate list.
    let r = scripts::start(
        &mut con,
        &Keys::new("rq"),
        StartRequest {
            from: StartFrom::Moved {
                queue: "default",
                job_id: &id,
            },
            worker: "w1",
            execution_id: "0123456789abcdef0123456789abcdef",
            interval_secs: 30,
            layout: Layout::Compat,
            check_suspended: false,
        },
    )
    .unwrap();
    assert!(matches!(r, StartOutcome::Empty), "{r:?}");
    assert_eq!(status(&mut con, &id).as_deref(), Some("queued"));
    let queued: Vec<String> = con.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(queued, [id]);
    let started: i64 = con.zcard("rq:wip:default").unwrap();
    assert_eq!(started, 0);
}

/// The chaos case of issue 13: an idle worker's BLMOVE moves a job into the intermediate list and
/// the reply is lost with the connection. The worker asks maintenance for an early look, and the
/// job goes back to its queue and runs (about a minute later), instead of being failed as
/// "stuck in intermediate queue" at a later maintenance run.
#[test]
fn a_lost_blmove_reply_puts_the_job_back_and_it_runs() {
    let (redis, mut con) = TestRedis::with_con();
    // RESP framing: the BLMOVE command itself, not a script whose text mentions it.
    let proxy = LostReplyProxy::start(redis.port, [b"\r\nBLMOVE\r\n", b"intermediate\r\n"]);
    let mut worker = spawn_worker(
        &format!("redis://127.0.0.1:{}/0", proxy.port),
        &[
            "default",
            "--worker-ttl",
            "20",
            "--name",
            "lossy-blmove",
            "-l",
            "INFO",
        ],
        Stdio::piped(),
    );
    // Wait until the worker is registered (and so about to block in BLMOVE), then enqueue.
    assert!(wait_for(30, || {
        con.exists::<_, bool>("rq:worker:lossy-blmove")
            .unwrap_or(false)
    }));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let id = add(&mut con, "default", 7, 8);
    let finished = wait_for(150, || status(&mut con, &id).as_deref() == Some("finished"));
    let _ = worker.kill();
    let out = worker.wait_with_output().expect("worker output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        proxy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy dropped the BLMOVE reply: {log}"
    );
    assert!(finished, "status {:?}: {log}", status(&mut con, &id));
    assert!(log.contains("requeued_never_started"), "{log}");
    let entries: usize = con.xlen(format!("rq:results:{id}")).unwrap();
    assert_eq!(entries, 1);
    let failed: usize = con.zcard("rq:failed:default").unwrap();
    assert_eq!(failed, 0, "{log}");
}

// ---- panics in the worker's own threads (issue 13, item 1) ------------------------------------

/// Every job of `ids` is finished with `a + b` of its arguments' index, except `failed`.
fn enqueue_adds(con: &mut redis::Connection, q: &str, n: i64) -> Vec<String> {
    (0..n).map(|i| add(con, q, i, 1)).collect()
}

/// How many jobs of `q` are (started, in the intermediate list, queued).
fn in_flight(con: &mut redis::Connection, q: &str) -> (i64, i64, i64) {
    let wip: i64 = con.zcard(format!("rq:wip:{q}")).unwrap();
    let inter: i64 = con.llen(format!("rq:queue:{q}:intermediate")).unwrap();
    let queued: i64 = con.llen(format!("rq:queue:{q}")).unwrap();
    (wip, inter, queued)
}

fn nothing_left_behind(con: &mut redis::Connection, q: &str) {
    let (wip, inter, queued) = in_flight(con, q);
    let workers: Vec<String> = con.smembers("rq:workers").unwrap();
    assert_eq!(
        (wip, inter, queued, workers.len()),
        (0, 0, 0, 0),
        "started, intermediate, queued, live workers"
    );
}

#[test]
fn a_slot_panic_between_jobs_puts_the_next_job_back_and_the_slot_carries_on() {
    let (redis, mut con) = TestRedis::with_con();
    let q = "panicky";
    let ids = enqueue_adds(&mut con, q, 8);
    // After the 3rd job the slot panics, holding the 4th (started by the 3rd's outcome call).
    let log = burst_ok(&redis, &[q, "--test-faults", "slot-panic-after-jobs=3"]);
    assert!(log.contains("the slot loop panicked"), "{log}");
    assert!(log.contains("back at the front of its queue"), "{log}");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(status(&mut con, id).as_deref(), Some("finished"), "job {i}");
        let rv = latest_result(&mut con, id);
        let v = return_value(&rv);
        assert_eq!(v, PyValue::count(i + 1));
        let entries: i64 = con.xlen(format!("rq:results:{id}")).unwrap();
        assert_eq!(entries, 1, "job {i} ran once");
    }
    nothing_left_behind(&mut con, q);
}

#[test]
fn a_slot_panic_while_a_job_is_held_fails_that_job_readably_and_only_it() {
    let (redis, mut con) = TestRedis::with_con();
    let q = "panicky";
    let ids = enqueue_adds(&mut con, q, 5);
    let log = burst_ok(&redis, &[q, "--test-faults", "slot-panic-before-record=2"]);
    for (i, id) in ids.iter().enumerate() {
        let want = if i == 1 { "failed" } else { "finished" };
        assert_eq!(
            status(&mut con, id).as_deref(),
            Some(want),
            "job {i}: {log}"
        );
    }
    assert_eq!(
        exc_last_line(&mut con, &ids[1]),
        "SystemError: the rq-worker slot running this job panicked: test fault injection: slot-panic-before-record"
    );
    let score: Option<f64> = con.zscore(format!("rq:failed:{q}"), &ids[1]).unwrap();
    assert!(score.is_some(), "in the failed registry");
    nothing_left_behind(&mut con, q);
}

#[test]
fn a_slot_that_keeps_panicking_gives_up_and_the_process_exits_non_zero() {
    let (redis, mut con) = TestRedis::with_con();
    let q = "panicky";
    let id = enqueue(&mut con, q, "rq_worker.diag.noop", vec![]);
    let out = burst(
        &redis,
        &[
            q,
            "--concurrency",
            "2",
            "--test-faults",
            "slot-panic-always",
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("without getting a job done") && log.contains("it stops"),
        "{log}"
    );
    // Never dequeued (the fault fires before the dequeue), so still queued and untouched.
    assert_eq!(status(&mut con, &id).as_deref(), Some("queued"));
    let queued: Vec<String> = con.lrange(format!("rq:queue:{q}"), 0, -1).unwrap();
    assert_eq!(queued, vec![id]);
    // Both slots deregistered.
    let workers: Vec<String> = con.smembers("rq:workers").unwrap();
    assert!(workers.is_empty(), "{workers:?}");
}

/// Every field a worker reads, holding what an enqueuer of another version or a person with
/// `redis-cli` could write: each job runs with a sane reading of it or fails with a readable
/// exc_info, the worker never panics, and nothing is left started or queued.
#[test]
fn odd_values_in_any_job_field_never_break_the_worker() {
    let (redis, mut con) = TestRedis::with_con();
    let q = "odd";
    let numbers: &[&str] = &[
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999",
        "1e400",
        "-1e400",
        "nan",
        "inf",
        "1.5",
        "-1",
        "0",
        "",
        "abc",
        "0x10",
        " 30 ",
        "1h",
        "\u{1F600}",
    ];
    let mut cases: Vec<(String, &str, String)> = Vec::new(); // (job id, func, what)
    let mut push = |con: &mut redis::Connection, func: &str, fields: &[(&str, &str)]| {
        let args = if func.ends_with("fail") {
            vec![PyValue::Str("as asked".into())]
        } else {
            vec![PyValue::Int(1), PyValue::Int(2)]
        };
        let id = enqueue(con, q, func, args);
        for (k, v) in fields {
            let _: () = con.hset(format!("rq:job:{id}"), *k, *v).unwrap();
        }
        cases.push((
            id,
            if func.ends_with("fail") {
                "fail"
            } else {
                "add"
            },
            format!("{fields:?}"),
        ));
    };
    for field in [
        "timeout",
        "result_ttl",
        "failure_ttl",
        "ttl",
        "retries_left",
    ] {
        for v in numbers {
            push(&mut con, "rq_worker.diag.add", &[(field, v)]);
            push(&mut con, "rq_worker.diag.fail", &[(field, v)]);
        }
    }
    for intervals in [
        "[1e400]", "[-5]", "not json", "[\"a\"]", "{}", "[[1]]", "[]", "[0.5]",
    ] {
        push(
            &mut con,
            "rq_worker.diag.fail",
            &[("retries_left", "1"), ("retry_intervals", intervals)],
        );
    }
    for (field, v) in [
        ("status", "garbage"),
        ("status", "finished"),
        ("meta", "\u{0}\u{1}not a pickle"),
        ("created_at", "yesterday"),
        ("enqueued_at", "9999-99-99T99:99:99"),
        ("started_at", ""),
        ("dependency_ids", "[not json"),
        ("description", "\u{FFFD}\u{0}"),
        ("origin", ""),
        ("group_id", ""),
        ("success_callback_name", "os.system"),
        ("rate_limit_key", "k"),
        ("rate_limit_concurrency", "nan"),
        ("enqueue_at_front_on_retry", "maybe"),
        ("worker_name", "\u{0}"),
        ("last_heartbeat", "-1e400"),
    ] {
        push(&mut con, "rq_worker.diag.add", &[(field, v)]);
    }
    let total = cases.len();
    let log = burst_ok(&redis, &[q, "--concurrency", "2"]);
    assert!(!log.contains("panicked"), "{log}");
    let mut finished = 0;
    for (id, func, what) in &cases {
        let st = status(&mut con, id);
        match st.as_deref() {
            Some("finished") if *func == "add" => finished += 1,
            Some("failed") => assert!(
                !exc_last_line(&mut con, id).is_empty(),
                "{what}: failed without a readable exc_info"
            ),
            // A retry far in the future (an interval capped at ten years) is a sane reading.
            Some("scheduled") if what.contains("retry_intervals") => {}
            // A TTL of 0 deletes the job once it ends, as RQ's Job.cleanup(0) does.
            None if what.contains("_ttl\", \"0\"") => {}
            other => panic!("{what} ({func}): status {other:?}\n{log}"),
        }
    }
    assert!(
        finished > total / 4,
        "most add jobs ran: {finished} of {total}"
    );
    assert_eq!(
        in_flight(&mut con, q),
        (0, 0, 0),
        "nothing left started or queued"
    );
}

#[test]
fn the_cleaning_lock_is_held_only_while_cleaning() {
    let (redis, mut con) = TestRedis::with_con();
    let q = "locks";
    enqueue(&mut con, q, "rq_worker.diag.noop", vec![]);
    burst_ok(&redis, &[q]);
    let exists: bool = con.exists(format!("rq:clean_registries:{q}")).unwrap();
    assert!(!exists, "released after the pass");
    // One held by someone else (an RQ worker holds it for 899 s) is respected and left alone.
    let _: () = redis::cmd("SET")
        .arg(format!("rq:clean_registries:{q}"))
        .arg("1")
        .arg("EX")
        .arg(899)
        .query(&mut con)
        .unwrap();
    let _: () = con
        .zadd(format!("rq:finished:{q}"), "expired-entry", 1)
        .unwrap();
    burst_ok(&redis, &[q]);
    let left: Option<f64> = con
        .zscore(format!("rq:finished:{q}"), "expired-entry")
        .unwrap();
    assert!(left.is_some(), "not cleaned under another worker's lock");
    let held: String = con.get(format!("rq:clean_registries:{q}")).unwrap();
    assert_eq!(held, "1");
}

/// The startup check accepts the Redis these tests run on (scripts/test.sh runs this file once on
/// Redis 6.2, the oldest it accepts) and logs its version; the other tests here cover every job
/// transition on it. With RQW_TEST_REDIS_VERSION set,
/// TestRedis::start has already checked that the server is that version.
#[test]
fn the_startup_check_accepts_this_redis_and_logs_its_version() {
    let redis = TestRedis::start();
    let version = redis.version();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(
        (major, minor) >= (6, 2),
        "tests need Redis 6.2+, got {version}"
    );
    // An empty queue: the burst worker starts (registers, runs maintenance) and stops.
    let stderr = burst_ok(&redis, &["--name", "w1"]);
    assert!(
        stderr.contains(&format!("Redis {version} (rq-worker needs 6.2 or later)")),
        "{stderr}"
    );
    assert!(!stderr.contains("too old"), "{stderr}");
}

/// Both steps of the intermediate-list check, called directly: the first sighting of an id that
/// no worker started only sets a marker (a day's TTL); a later pass, once the marker is older
/// than STUCK_AFTER_SECS, puts the job back at the front of its queue. Run on Redis 6.2 by
/// scripts/test.sh (the marker once used `SET ... NX GET`, which 6.2 refuses).
#[test]
fn the_intermediate_check_marks_then_puts_back() {
    use rq_worker::rq::maintenance::{self, Cleaned};
    let (_redis, mut con) = TestRedis::with_con();
    let keys = Keys::new("rq");
    let other = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    let id = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    // `id` is now last in the queue; move it (the right end) as a worker's BLMOVE would move
    // the left end: only which id sits in the intermediate list matters here.
    let moved: Option<String> = redis::cmd("LMOVE")
        .arg("rq:queue:default")
        .arg("rq:queue:default:intermediate")
        .arg("RIGHT")
        .arg("RIGHT")
        .query(&mut con)
        .unwrap();
    assert_eq!(moved.as_deref(), Some(id.as_str()));
    let marker = keys.intermediate_first_seen("default", &id);

    for pass in 0..2 {
        let mut out = Cleaned::default();
        maintenance::intermediate(&mut con, &keys, "default", 500, &mut out).unwrap();
        assert!(
            out.requeued.is_empty() && out.stuck.is_empty(),
            "pass {pass}: {out:?}"
        );
        let ttl: i64 = con.ttl(&marker).unwrap();
        assert!(
            ttl > 86_000 && ttl <= 86_400,
            "pass {pass}: marker ttl {ttl}"
        );
        let inter: Vec<String> = con.lrange("rq:queue:default:intermediate", 0, -1).unwrap();
        assert_eq!(inter, vec![id.clone()], "pass {pass}");
    }

    let long_ago = (chrono::Utc::now().timestamp() - 120).to_string();
    let _: () = con.set_ex(&marker, &long_ago, 86_400).unwrap();
    let mut out = Cleaned::default();
    maintenance::intermediate(&mut con, &keys, "default", 500, &mut out).unwrap();
    assert_eq!(out.requeued, vec![id.clone()], "{out:?}");
    let queue: Vec<String> = con.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(queue, vec![id.clone(), other], "put back at the front");
    let inter: i64 = con.llen("rq:queue:default:intermediate").unwrap();
    assert_eq!(inter, 0);
    let marker_left: bool = con.exists(&marker).unwrap();
    assert!(!marker_left, "the marker is removed once acted on");
    assert_eq!(status(&mut con, &id).as_deref(), Some("queued"));
}
