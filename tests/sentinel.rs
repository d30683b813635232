//! Redis Sentinel against real processes on free loopback ports: a master, a replica and three
//! `redis-sentinel`s (`redis-server --sentinel`). The master is killed mid-run; the worker must
//! follow the new master without a restart, and every job acknowledged before the failover
//! (enqueued and confirmed by the replica with WAIT) must end in exactly one terminal state.
//! Also a failover that demotes a live master, the URL form with passwords, a wrong master name
//! and a sentinel that names a replica.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, enqueue, exc_last_line, free_port, latest_result, status, wait_for};
use redis::Commands;
use rq_worker::rq::codec::{self, Serializer};
use rq_worker::value::PyValue;

const MASTER: &str = "mymaster";

fn redis_server(port: u16, dir: &Path, extra: &[String]) -> Child {
    std::fs::create_dir_all(dir).expect("server dir");
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args([
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed for the integration tests")
}

fn con_at(port: u16, password: Option<&str>) -> Option<redis::Connection> {
    use redis::IntoConnectionInfo;
    let mut settings = redis::RedisConnectionInfo::default();
    if let Some(p) = password {
        settings = settings.set_password(p);
    }
    let info = redis::ConnectionAddr::Tcp("127.0.0.1".into(), port)
        .into_connection_info()
        .ok()?
        .set_redis_settings(settings);
    let c = redis::Client::open(info).ok()?;
    let con = c.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    con.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    Some(con)
}

/// How to set up a test's Redis servers and sentinels.
#[derive(Clone, Copy)]
struct Spec {
    sentinels: usize,
    quorum: usize,
    /// The sentinels name the replica's address as the master's.
    watch_replica: bool,
    /// `requirepass` of the master and the replica (also their `masterauth`).
    master_password: Option<&'static str>,
    /// `requirepass` of the sentinels.
    sentinel_password: Option<&'static str>,
}

impl Spec {
    /// redis-server arguments: passwords, and `replicaof` for the replica.
    fn server_args(&self, replica_of: Option<u16>) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(pw) = self.master_password {
            args.extend(["--requirepass", pw, "--masterauth", pw].map(String::from));
        }
        if let Some(port) = replica_of {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
        }
        args
    }

    fn new(sentinels: usize, quorum: usize) -> Spec {
        Spec {
            sentinels,
            quorum,
            watch_replica: false,
            master_password: None,
            sentinel_password: None,
        }
    }
}

/// A master, a replica and sentinels watching the master (or, with `watch_replica`, the replica).
struct Ha {
    spec: Spec,
    dir: PathBuf,
    master_port: u16,
    replica_port: u16,
    sentinel_ports: Vec<u16>,
    master: Child,
    replica: Child,
    sentinels: Vec<Child>,
}

impl Ha {
    fn start(spec: Spec) -> Ha {
        let master_port = free_port();
        let replica_port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "rqw-test-sentinel-{master_port}-{}",
            std::process::id()
        ));
        let master = redis_server(master_port, &dir.join("master"), &spec.server_args(None));
        let replica = redis_server(
            replica_port,
            &dir.join("replica"),
            &spec.server_args(Some(master_port)),
        );
        let watched = if spec.watch_replica {
            replica_port
        } else {
            master_port
        };
        let mut sentinel_ports = Vec::new();
        let mut sentinels = Vec::new();
        for i in 0..spec.sentinels {
            let port = free_port();
            let sdir = dir.join(format!("sentinel{i}"));
            std::fs::create_dir_all(&sdir).expect("sentinel dir");
            let conf = sdir.join("sentinel.conf");
            let d = sdir.display();
            let quorum = spec.quorum;
            // Down after 2 s, a failover in a few seconds (the defaults take minutes); not less, so
            // that a loaded test machine does not fail over before the test kills the master.
            let down = if spec.watch_replica { 60_000 } else { 2000 };
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {d}\nlogfile {d}/sentinel.log\n\
                 sentinel monitor {MASTER} 127.0.0.1 {watched} {quorum}\n\
                 sentinel down-after-milliseconds {MASTER} {down}\n\
                 sentinel failover-timeout {MASTER} 4000\n\
                 sentinel parallel-syncs {MASTER} 1\n"
            );
            if let Some(pw) = spec.master_password {
                text += &format!("sentinel auth-pass {MASTER} {pw}\n");
            }
            if let Some(pw) = spec.sentinel_password {
                text += &format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n");
            }
            std::fs::write(&conf, text).expect("sentinel.conf");
            sentinels.push(
                Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server --sentinel"),
            );
            sentinel_ports.push(port);
        }
        let ha = Ha {
            spec,
            dir,
            master_port,
            replica_port,
            sentinel_ports,
            master,
            replica,
            sentinels,
        };
        assert!(
            wait_for(20, || ha.role(master_port).as_deref() == Some("master")
                && ha.server(replica_port).is_some_and(|mut c| {
                    let info: String = redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut c)
                        .unwrap_or_default();
                    info.contains("master_link_status:up")
                })),
            "master and replica did not come up"
        );
        assert!(
            wait_for(20, || ha.sentinel_ports.iter().all(|&p| ha
                .sentinel(p)
                .is_some_and(|mut c| redis::cmd("PING")
                    .query::<String>(&mut c)
                    .is_ok()))),
            "the sentinels did not come up"
        );
        ha
    }

    /// A connection to the master or the replica (with their password).
    fn server(&self, port: u16) -> Option<redis::Connection> {
        con_at(port, self.spec.master_password)
    }

    /// A connection to a sentinel (with its password).
    fn sentinel(&self, port: u16) -> Option<redis::Connection> {
        con_at(port, self.spec.sentinel_password)
    }

    /// The sentinels' logs, for a failure message.
    fn sentinel_logs(&self) -> String {
        (0..self.sentinel_ports.len())
            .map(|i| log_text(&self.dir.join(format!("sentinel{i}/sentinel.log"))))
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// What ROLE says of the server on `port`.
    fn role(&self, port: u16) -> Option<String> {
        let mut c = self.server(port)?;
        let v: redis::Value = redis::cmd("ROLE").query(&mut c).ok()?;
        match v {
            redis::Value::Array(items) => items
                .first()
                .and_then(|f| redis::from_redis_value_ref::<String>(f).ok()),
            _ => None,
        }
    }

    /// Wait until every sentinel knows the replica and the other sentinels (needed to agree on a
    /// failover).
    fn wait_sentinels_ready(&self) {
        let others = self.sentinel_ports.len() - 1;
        let ready = wait_for(30, || {
            self.sentinel_ports.iter().all(|&p| {
                let Some(mut c) = self.sentinel(p) else {
                    return false;
                };
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("replicas")
                    .arg(MASTER)
                    .query(&mut c)
                    .unwrap_or_default();
                let peers: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("sentinels")
                    .arg(MASTER)
                    .query(&mut c)
                    .unwrap_or_default();
                replicas.len() == 1 && peers.len() == others
            })
        });
        assert!(
            ready,
            "the sentinels did not discover the replica and each other"
        );
    }

    fn sentinel_list(&self) -> String {
        self.sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port as the first sentinel that answers names it.
    fn named_master(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|&p| {
            let mut c = self.sentinel(p)?;
            let r: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER)
                .query(&mut c)
                .ok()?;
            r.map(|(_, port)| port)
        })
    }

    /// A connection to the current master: named by a sentinel and confirmed by ROLE.
    fn master_con(&self) -> redis::Connection {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(p) = self.named_master()
                && self.role(p).as_deref() == Some("master")
                && let Some(c) = self.server(p)
            {
                return c;
            }
            assert!(Instant::now() < deadline, "no master reachable");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill_master(&mut self) {
        let _ = self.master.kill();
        let _ = self.master.wait();
    }

    /// The old master back on its port, empty (no persistence) and claiming to be a master
    /// until the sentinels make it a replica of the new one.
    fn restart_old_master(&mut self) {
        self.master = redis_server(
            self.master_port,
            &self.dir.join("master"),
            &self.spec.server_args(None),
        );
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        for c in self
            .sentinels
            .iter_mut()
            .chain([&mut self.master, &mut self.replica])
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// WAIT for one replica to have everything written so far on `con`.
fn replicated(con: &mut redis::Connection) -> bool {
    let n: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(con).unwrap_or(0);
    n >= 1
}

/// What an acknowledged job must end as.
enum Expect {
    /// Finished with this return value.
    Returns(PyValue),
    /// `diag.fail(msg)`: failed with `RuntimeError: msg`.
    Fails(String),
}

/// A worker process that is killed when the test ends, passed or not.
struct Worker(Child);

impl std::ops::Deref for Worker {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start rq-worker with `args` only (no setting from the environment), its log in `log`.
fn spawn(args: &[String], log: &Path) -> Worker {
    let child = Command::new(bin())
        .args(args)
        .env_remove("QUEUE_NAME")
        .env_remove("WORKER_COUNT")
        .env_remove("REDIS_URL")
        .env_remove("RQ_REDIS_URL")
        .env_remove("RQ_WORKER_SENTINEL")
        .env_remove("RQ_WORKER_SENTINEL_MASTER")
        .env_remove("RQ_WORKER_SENTINEL_PASSWORD")
        .env_remove("RQ_WORKER_SENTINEL_USERNAME")
        .env_remove("RQ_WORKER_SENTINEL_TLS")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start rq-worker");
    Worker(child)
}

/// Wait for a child to exit on its own, at most `secs`.
fn wait_exit(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_for(secs, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The long-running worker of the failover tests: two job threads, a maintenance pass every 5 s.
fn start_worker(connection: &[String], log: &Path) -> Worker {
    let rest = ["--concurrency", "2", "--maintenance-interval", "5"].map(String::from);
    spawn(&[connection, &rest].concat(), log)
}

/// Enqueue `n` jobs (failing ones, short sleeps, sums), each acknowledged by the replica.
fn enqueue_acknowledged(con: &mut redis::Connection, n: i64) -> Vec<(String, Expect)> {
    let mut expected = Vec::new();
    for i in 0..n {
        let (func, args, expect) = match i % 4 {
            0 => (
                "rq_worker.diag.fail",
                vec![PyValue::Str(format!("boom-{i}"))],
                Expect::Fails(format!("boom-{i}")),
            ),
            // A little work per job, so that a failover lands mid-run.
            1 => (
                "rq_worker.diag.sleep",
                vec![PyValue::Float(0.05)],
                Expect::Returns(PyValue::Float(0.05)),
            ),
            _ => (
                "rq_worker.diag.add",
                vec![PyValue::Int(i), PyValue::Int(1000)],
                Expect::Returns(PyValue::Int(i + 1000)),
            ),
        };
        let id = enqueue(con, "default", func, args);
        assert!(replicated(con), "the replica acknowledged job {i}");
        expected.push((id, expect));
    }
    expected
}

/// Enqueue `n` sums on the (new) master and wait until the worker has run them all.
fn run_after_failover(con: &mut redis::Connection, n: i64, log: &Path) -> Vec<(String, Expect)> {
    let mut after = Vec::new();
    for i in 0..n {
        let id = enqueue(
            con,
            "default",
            "rq_worker.diag.add",
            vec![PyValue::Int(i), PyValue::Int(2000)],
        );
        after.push((id, Expect::Returns(PyValue::Int(i + 2000))));
    }
    assert!(
        wait_for(120, || after
            .iter()
            .all(|(id, _)| status(con, id).as_deref() == Some("finished"))),
        "the worker followed the new master:\n{}",
        log_text(log)
    );
    after
}

fn is_terminal(con: &mut redis::Connection, id: &str) -> bool {
    matches!(status(con, id).as_deref(), Some("finished" | "failed"))
}

/// After the failover: every acknowledged job reaches a terminal state (a started one whose
/// outcome was lost with the old master is failed by the abandoned-job cleanup once its heartbeat
/// lapses); then the worker is stopped, a cleanup pass runs, and each job must have ended once,
/// as expected, with nothing left queued or started. Returns (abandoned, with several results).
fn check_every_job_ended_once(
    ha: &Ha,
    con: &mut redis::Connection,
    worker: &mut Child,
    expected: &[(String, Expect)],
    log: &Path,
) -> (usize, usize) {
    assert!(
        wait_for(180, || expected.iter().all(|(id, _)| is_terminal(con, id))),
        "every acknowledged job reached a terminal state: {:?}\n{}",
        expected
            .iter()
            .map(|(id, _)| (id.clone(), status(con, id)))
            .filter(|(_, st)| !matches!(st.as_deref(), Some("finished" | "failed")))
            .collect::<Vec<_>>(),
        log_text(log)
    );
    assert!(
        worker.try_wait().expect("try_wait").is_none(),
        "the worker was not restarted: it is the same process"
    );
    // Stop the worker (warm) and run one more cleanup pass, as a new worker would.
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let code = wait_exit(worker, 60).expect("the worker stopped on SIGTERM");
    assert!(code.success(), "{}", log_text(log));
    let cleanup_log = ha.dir.join("cleanup.log");
    let mut cleanup = spawn(
        &[
            "--url".into(),
            format!("redis+sentinel://{}/{MASTER}/0", ha.sentinel_list()),
            "--burst".into(),
        ],
        &cleanup_log,
    );
    let code = wait_exit(&mut cleanup, 60).expect("the cleanup worker finished");
    assert!(code.success(), "{}", log_text(&cleanup_log));

    let mut abandoned = 0;
    let mut recorded_twice = 0;
    for (id, expect) in expected {
        let entries: i64 = con.xlen(format!("rq:results:{id}")).unwrap_or(0);
        if entries > 1 {
            recorded_twice += 1;
        }
        let st = status(con, id);
        let in_finished: Option<f64> = con.zscore("rq:finished:default", id).unwrap();
        let in_failed: Option<f64> = con.zscore("rq:failed:default", id).unwrap();
        let r = latest_result(con, id);
        match st.as_deref() {
            Some("finished") => {
                assert!(in_finished.is_some() && in_failed.is_none(), "{id}");
                let rv = codec::decode_return_value(&r["return_value"], Serializer::Pickle)
                    .expect("return value");
                match expect {
                    Expect::Returns(v) => assert_eq!(&rv, v, "{id}"),
                    Expect::Fails(m) => panic!("{id} should have failed with {m}"),
                }
            }
            Some("failed") => {
                assert!(in_failed.is_some() && in_finished.is_none(), "{id}");
                let last = exc_last_line(con, id);
                match expect {
                    Expect::Fails(m) => assert_eq!(last, format!("RuntimeError: {m}"), "{id}"),
                    // Ran on the old master, outcome not replicated: failed by the cleanup.
                    Expect::Returns(_) => {
                        assert!(last.contains("AbandonedJobError"), "{id}: {last}");
                        abandoned += 1;
                    }
                }
            }
            other => panic!("{id} ended as {other:?}"),
        }
    }
    let queued: i64 = con.llen("rq:queue:default").unwrap();
    let intermediate: i64 = con.llen("rq:queue:default:intermediate").unwrap();
    let wip: i64 = con.zcard("rq:wip:default").unwrap();
    assert_eq!(
        (queued, intermediate, wip),
        (0, 0, 0),
        "nothing left queued or started"
    );
    (abandoned, recorded_twice)
}

#[test]
fn a_worker_follows_a_failover_and_keeps_every_acknowledged_job() {
    let mut ha = Ha::start(Spec::new(3, 2));
    ha.wait_sentinels_ready();
    let log = ha.dir.join("worker.log");
    // --url names no server here (port 1): with --sentinel only its db/password/TLS are used.
    let mut worker = start_worker(
        &[
            "--url".into(),
            "redis://127.0.0.1:1/0".into(),
            "--sentinel".into(),
            ha.sentinel_list(),
            "--sentinel-master".into(),
            MASTER.into(),
        ],
        &log,
    );

    // Phase A: jobs acknowledged by the replica before the failover; short sleeps keep some of
    // them queued and running when the master dies.
    let mut con = ha.master_con();
    let mut expected = enqueue_acknowledged(&mut con, 80);
    assert!(replicated(&mut con));
    assert!(
        wait_for(60, || expected
            .iter()
            .filter(|(id, _)| matches!(
                status(&mut con, id).as_deref(),
                Some("finished" | "failed")
            ))
            .count()
            >= 10),
        "the worker ran jobs on the first master:\n{}",
        log_text(&log)
    );
    let old_master = ha.master_port;
    let done_at_kill = expected
        .iter()
        .filter(|(id, _)| matches!(status(&mut con, id).as_deref(), Some("finished" | "failed")))
        .count();
    ha.kill_master();
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    drop(con);

    // The sentinels elect the replica; the old master comes back and is demoted by them.
    assert!(
        wait_for(60, || ha.named_master().is_some_and(|p| p != old_master)),
        "no failover"
    );
    let failover_took = killed.elapsed();
    ha.restart_old_master();
    let mut con = ha.master_con();
    assert_eq!(
        ha.named_master(),
        Some(ha.replica_port),
        "the replica is the new master"
    );

    // Phase B: jobs on the new master; the old master then becomes its replica.
    let after = run_after_failover(&mut con, 5, &log);
    let followed_after = killed.elapsed();
    assert!(
        wait_for(120, || ha.role(old_master).as_deref() == Some("slave")
            && replicated(&mut con)),
        "the sentinels made the old master a replica of the new one:\n{}",
        ha.sentinel_logs()
    );
    let n_acknowledged = expected.len();
    expected.extend(after);

    let (abandoned, recorded_twice) =
        check_every_job_ended_once(&ha, &mut con, &mut worker, &expected, &log);
    let text = log_text(&log);
    assert!(
        text.contains("following the failover"),
        "the worker logged the new master:\n{text}"
    );
    for line in text
        .lines()
        .filter(|l| l.contains("sentinel") || l.contains("reconnect"))
    {
        eprintln!("worker log: {line}");
    }
    // When the worker first reached the new master, from its log line's timestamp.
    let found_new_master = text
        .lines()
        .find(|l| l.contains("following the failover"))
        .and_then(|l| l.get(1..25))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (t.with_timezone(&chrono::Utc) - killed_at).num_milliseconds());
    eprintln!(
        "measured: {} acknowledged jobs, {done_at_kill} done when the master was killed; the \
         sentinels named the new master {failover_took:?} after the kill; the worker reached it \
         {found_new_master:?} ms after the kill and had finished the post-failover jobs \
         {followed_after:?} after it; {abandoned} failed as abandoned; {recorded_twice} with more \
         than one result",
        n_acknowledged
    );
}

#[test]
fn a_worker_follows_a_manual_failover_that_demotes_a_live_master() {
    // SENTINEL FAILOVER: the old master stays up and is turned into a replica under the worker's
    // connections (they are killed, a blocked BLMOVE is UNBLOCKED, writes get READONLY).
    let ha = Ha::start(Spec::new(3, 2));
    ha.wait_sentinels_ready();
    let log = ha.dir.join("worker.log");
    let mut worker = start_worker(
        &[
            "--url".into(),
            format!("redis+sentinel://{}/{MASTER}/0", ha.sentinel_list()),
        ],
        &log,
    );
    let mut con = ha.master_con();
    let mut expected = enqueue_acknowledged(&mut con, 20);
    // Every outcome written and replicated before the switch: a live demoted master loses the
    // writes it takes after the promotion (Redis's own split-brain window), which this test does
    // not measure; the first one does, with a dead master.
    assert!(wait_for(60, || expected
        .iter()
        .all(|(id, _)| is_terminal(&mut con, id))));
    assert!(replicated(&mut con));
    let old_master = ha.master_port;
    let mut s = ha.sentinel(ha.sentinel_ports[0]).expect("sentinel");
    let _: () = redis::cmd("SENTINEL")
        .arg("failover")
        .arg(MASTER)
        .query(&mut s)
        .expect("SENTINEL FAILOVER");
    let switched = Instant::now();
    assert!(
        wait_for(120, || ha.named_master() == Some(ha.replica_port)
            && ha.role(old_master).as_deref() == Some("slave")),
        "the replica was promoted and the old master demoted:\n{}",
        ha.sentinel_logs()
    );
    let mut con = ha.master_con();
    expected.extend(run_after_failover(&mut con, 5, &log));
    let followed_after = switched.elapsed();
    let (abandoned, _) = check_every_job_ended_once(&ha, &mut con, &mut worker, &expected, &log);
    assert_eq!(
        abandoned, 0,
        "every outcome was replicated before the switch"
    );
    let text = log_text(&log);
    assert!(text.contains("following the failover"), "{text}");
    for line in text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("sentinel:"))
    {
        eprintln!("worker log: {line}");
    }
    eprintln!(
        "measured: after SENTINEL FAILOVER the worker had finished the jobs enqueued on the new \
         master {followed_after:?} later"
    );
}

#[test]
fn the_url_form_with_passwords_skips_an_unreachable_sentinel() {
    // The master's password is in the URL (percent-encoded), the sentinels' is its own option.
    let ha = Ha::start(Spec {
        master_password: Some("m/pw%"),
        sentinel_password: Some("s-secret"),
        ..Spec::new(2, 1)
    });
    let mut con = ha.master_con();
    let id = enqueue(
        &mut con,
        "default",
        "rq_worker.diag.add",
        vec![PyValue::Int(2), PyValue::Int(3)],
    );
    let dead = free_port();
    let url = format!(
        "redis+sentinel://:m%2Fpw%25@127.0.0.1:{dead},{}/{MASTER}/0",
        ha.sentinel_list()
    );
    let log = ha.dir.join("worker.log");
    let run = |extra: &[&str]| {
        let mut args = vec!["--url".to_string(), url.clone(), "--burst".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut worker = spawn(&args, &log);
        let code = wait_exit(&mut worker, 60).expect("the burst worker exited");
        (code.success(), log_text(&log))
    };
    let (ok, text) = run(&[]);
    assert!(
        !ok,
        "the sentinels refuse a worker without their password: {text}"
    );
    assert!(text.contains("NOAUTH"), "{text}");
    assert_eq!(status(&mut con, &id).as_deref(), Some("queued"));
    let (ok, text) = run(&["--sentinel-password", "s-secret"]);
    assert!(ok, "{text}");
    assert_eq!(status(&mut con, &id).as_deref(), Some("finished"));
}

#[test]
fn a_wrong_master_name_is_a_readable_error() {
    let ha = Ha::start(Spec::new(1, 1));
    let log = ha.dir.join("worker.log");
    let mut worker = spawn(
        &[
            "--sentinel".into(),
            ha.sentinel_list(),
            "--sentinel-master".into(),
            "nosuchmaster".into(),
            "--burst".into(),
        ],
        &log,
    );
    let code = wait_exit(&mut worker, 60).expect("the worker exited");
    let text = log_text(&log);
    assert!(!code.success(), "{text}");
    assert!(
        text.contains("does not know master \"nosuchmaster\""),
        "{text}"
    );
}

#[test]
fn a_replica_is_never_written_to() {
    // A sentinel that (still) names the replica as the master, and a --url that points at the
    // replica: the worker must not use it (ROLE), and says why.
    let ha = Ha::start(Spec {
        watch_replica: true,
        ..Spec::new(1, 1)
    });
    let mut con = ha.server(ha.master_port).expect("master");
    let id = enqueue(&mut con, "default", "rq_worker.diag.noop", vec![]);
    assert!(replicated(&mut con));
    for (i, args) in [
        vec!["--sentinel".to_string(), ha.sentinel_list()],
        vec![
            "--url".to_string(),
            format!("redis://127.0.0.1:{}/0", ha.replica_port),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let log = ha.dir.join(format!("worker{i}.log"));
        let mut worker = spawn(&[args, vec!["--burst".into()]].concat(), &log);
        let code = wait_exit(&mut worker, 60).expect("the worker exited");
        let text = log_text(&log);
        assert!(!code.success(), "{text}");
        assert!(text.contains("ROLE says slave"), "{text}");
    }
    assert_eq!(status(&mut con, &id).as_deref(), Some("queued"));
}

#[test]
fn readonly_and_unblocked_replies_are_a_lost_connection_not_a_job_failure() {
    // No sentinel: the one server is turned into a replica (of nothing, so it keeps its data)
    // under a busy worker and back. The running job's outcome meets READONLY, the idle slot's
    // BLMOVE is UNBLOCKED, reconnects meet ROLE slave; all of it must wait, not fail the job.
    let redis = common::TestRedis::start();
    let mut con = redis.con();
    let id = enqueue(
        &mut con,
        "default",
        "rq_worker.diag.sleep",
        vec![PyValue::Float(1.5)],
    );
    let log = std::env::temp_dir().join(format!("rqw-test-readonly-{}.log", redis.port));
    let mut worker = spawn(
        &[
            "--url".into(),
            redis.url(),
            "--concurrency".into(),
            "2".into(),
        ],
        &log,
    );
    assert!(wait_for(30, || status(&mut con, &id).as_deref() == Some("started")));
    let nowhere = free_port();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(nowhere)
        .query(&mut con)
        .expect("REPLICAOF");
    // The job ends while the server refuses writes; give the worker time to meet the refusal.
    assert!(
        wait_for(30, || {
            let text = log_text(&log);
            text.contains("ROLE says slave") && text.contains("cannot record outcome")
        }),
        "{}",
        log_text(&log)
    );
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut con)
        .expect("REPLICAOF NO ONE");
    assert!(
        wait_for(60, || status(&mut con, &id).as_deref() == Some("finished")),
        "{}",
        log_text(&log)
    );
    let results: i64 = con.xlen(format!("rq:results:{id}")).unwrap();
    assert_eq!(results, 1, "recorded once");
    let next = enqueue(
        &mut con,
        "default",
        "rq_worker.diag.add",
        vec![PyValue::Int(1), PyValue::Int(2)],
    );
    assert!(
        wait_for(60, || status(&mut con, &next).as_deref()
            == Some("finished")),
        "{}",
        log_text(&log)
    );
    let text = log_text(&log);
    assert!(
        worker.try_wait().expect("try_wait").is_none(),
        "the worker kept running: {text}"
    );
    let _ = worker.kill();
    let _ = worker.wait();
    let _ = std::fs::remove_file(&log);
    for line in text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        eprintln!("worker log: {line}");
    }
}
