//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! **Liveness** asks one question: is every thread that serves jobs still making progress? Each
//! watched thread (every slot loop, the heartbeat thread) holds a [`Beacon`] and, before each
//! step that may block, promises to check in again within that step's bound (a Redis call's read
//! timeout, a job's wait tick). A thread that misses its promise is *wedged*; one that ended by a
//! panic is *dead*; either fails liveness. A thread that ended normally (burst done, shutdown,
//! `--max-idle-time`) is not a failure. A Redis outage is not a liveness failure: threads that
//! retry keep checking in, and restarting the process would not bring Redis back.
//!
//! **Readiness** runs named probes (Redis reachable, workers registered, PostgreSQL reachable
//! when ingestion is configured); each answers `Ok` or a reason.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

const RUNNING: u8 = 0;
const EXITED: u8 = 1;
const DEAD: u8 = 2;

/// The check-in of one watched thread.
#[derive(Debug)]
pub struct Beacon {
    name: String,
    /// Milliseconds since [`EPOCH`] by which the thread promised to check in again.
    deadline_ms: AtomicU64,
    state: AtomicU8,
}

impl Beacon {
    /// Promise to check in again within `bound`.
    pub fn alive_for(&self, bound: Duration) {
        let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        self.deadline_ms
            .store(now_ms().saturating_add(bound_ms), Ordering::Relaxed);
    }

    /// The thread ended normally (a thread already counted dead stays dead).
    pub fn exited(&self) {
        let _ = self
            .state
            .compare_exchange(RUNNING, EXITED, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The thread ended by a panic, or gave up after panics it could not recover from.
    pub fn dead(&self) {
        self.state.store(DEAD, Ordering::SeqCst);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `None` when healthy, else why not.
    fn problem(&self, now: u64) -> Option<String> {
        match self.state.load(Ordering::SeqCst) {
            EXITED => None,
            DEAD => Some(format!("{}: thread died (panic)", self.name)),
            _ => {
                let deadline = self.deadline_ms.load(Ordering::Relaxed);
                (now > deadline).then(|| {
                    format!(
                        "{}: wedged (no progress for {:.1} s past its bound)",
                        self.name,
                        (now - deadline) as f64 / 1000.0
                    )
                })
            }
        }
    }
}

/// Marks its beacon exited when dropped normally and dead when dropped by a panic: hold one on
/// the stack of the watched thread.
pub struct BeaconGuard(pub Arc<Beacon>);

impl Drop for BeaconGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.dead();
        } else {
            self.0.exited();
        }
    }
}

/// The watched threads of the process.
#[derive(Debug, Default)]
pub struct Liveness {
    beacons: Mutex<Vec<Arc<Beacon>>>,
}

impl Liveness {
    /// Watch a thread, which promises to check in within `first_bound`. A thread restarted under
    /// the same name (after a panic it recovered from) takes over its old beacon, running again.
    pub fn watch(&self, name: impl Into<String>, first_bound: Duration) -> Arc<Beacon> {
        let name = name.into();
        let mut beacons = self.beacons.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = beacons.iter().find(|b| b.name == name) {
            b.state.store(RUNNING, Ordering::SeqCst);
            b.alive_for(first_bound);
            return b.clone();
        }
        let b = Arc::new(Beacon {
            name,
            deadline_ms: AtomicU64::new(0),
            state: AtomicU8::new(RUNNING),
        });
        b.alive_for(first_bound);
        beacons.push(b.clone());
        b
    }

    /// Every problem, or `Ok(n)` with the number of threads still running.
    pub fn check(&self) -> Result<usize, Vec<String>> {
        let now = now_ms();
        let beacons = self.beacons.lock().unwrap_or_else(|e| e.into_inner());
        let problems: Vec<String> = beacons.iter().filter_map(|b| b.problem(now)).collect();
        if problems.is_empty() {
            Ok(beacons
                .iter()
                .filter(|b| b.state.load(Ordering::SeqCst) == RUNNING)
                .count())
        } else {
            Err(problems)
        }
    }
}

/// How long all readiness probes together may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// A readiness probe: `Ok` or why the process is not ready.
pub type Probe = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Named readiness probes.
#[derive(Default)]
pub struct Readiness {
    probes: Mutex<Vec<(String, Arc<Probe>)>>,
}

impl Readiness {
    pub fn add(&self, name: impl Into<String>, probe: Probe) {
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.into(), Arc::new(probe)));
    }

    /// Run every probe (outside the lock); one line per probe.
    pub fn check(&self) -> Result<Vec<String>, Vec<String>> {
        let probes: Vec<(String, Arc<Probe>)> = self
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        // Each probe runs on a thread of its own and gets PROBE_TIMEOUT: a peer that accepts a
        // connection and then never answers must not hang the listener.
        let running: Vec<(String, crossbeam_channel::Receiver<Result<(), String>>)> = probes
            .into_iter()
            .map(|(name, p)| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let spawned = std::thread::Builder::new()
                    .name(format!("probe-{name}"))
                    .spawn(move || {
                        let _ = tx.send(p());
                    });
                if let Err(e) = spawned {
                    let (tx, rx2) = crossbeam_channel::bounded(1);
                    let _ = tx.send(Err(format!("cannot run the probe: {e}")));
                    return (name, rx2);
                }
                (name, rx)
            })
            .collect();
        let deadline = Instant::now() + PROBE_TIMEOUT;
        for (name, rx) in running {
            match rx.recv_deadline(deadline) {
                Ok(Ok(())) => ok.push(format!("{name}: ok")),
                Ok(Err(why)) => bad.push(format!("{name}: {why}")),
                Err(_) => bad.push(format!(
                    "{name}: no answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )),
            }
        }
        if bad.is_empty() { Ok(ok) } else { Err(bad) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wedged_dead_and_exited_threads() {
        let l = Liveness::default();
        let a = l.watch("slot-a", Duration::from_secs(60));
        let b = l.watch("slot-b", Duration::from_secs(60));
        assert_eq!(l.check(), Ok(2));
        b.exited();
        assert_eq!(l.check(), Ok(1));
        a.alive_for(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        let e = l.check().unwrap_err();
        assert!(e[0].starts_with("slot-a: wedged"), "{e:?}");
        a.alive_for(Duration::from_secs(5));
        assert_eq!(l.check(), Ok(1));
        let c = l.watch("slot-c", Duration::from_secs(60));
        let t = std::thread::spawn(move || {
            let _g = BeaconGuard(c);
            panic!("boom");
        });
        assert!(t.join().is_err());
        assert_eq!(l.check().unwrap_err(), ["slot-c: thread died (panic)"]);
        // Restarted under the same name: healthy again, with one beacon, not two.
        let c = l.watch("slot-c", Duration::from_secs(60));
        assert_eq!(l.check(), Ok(2));
        // A thread marked dead stays dead when its guard later drops normally.
        c.dead();
        drop(BeaconGuard(c));
        assert_eq!(l.check().unwrap_err(), ["slot-c: thread died (panic)"]);
    }

    #[test]
    fn readiness_lists_each_failing_probe() {
        let r = Readiness::default();
        r.add("redis", Box::new(|| Ok(())));
        r.add("postgres", Box::new(|| Err("connection refused".into())));
        assert_eq!(r.check().unwrap_err(), ["postgres: connection refused"]);
    }
}
