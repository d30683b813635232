#!/usr/bin/env python3
"""Chaos suite: thousands of RQ jobs through several worker processes while a seeded fault
schedule runs, then per-job invariants, printed as one table row per worker kind.

Run it with an rq venv's python (the venv's rq is the enqueuer and, for the `python` row, the
worker):

    .venvs/rq1.16/bin/python scripts/chaos.py --seed 1 --jobs 1000 --duration 60
    .venvs/rq1.16/bin/python scripts/chaos.py --seed 7 --jobs 5000 --duration 600 --workers rust

One row = one private redis-server (AOF, `appendfsync always`, restarted with the same directory
so that it reloads its data), `--procs` worker processes of one kind, the same job plan and the
same fault schedule (both derived from `--seed`):

* jobs: `rq_worker.diag.tally(value, seconds, fail)`, which rq-worker runs natively and
  python-fixtures/rq_worker/diag.py runs in Python; each execution appends `start`/`end` lines to
  a file outside Redis (`$RQ_WORKER_DIAG_TALLY_FILE`), which is how executions are counted.
  Kinds: ok (checkable value), sleep (in flight when faults hit), fail (RuntimeError), retry
  (always fails, Retry(max=2): three runs), retry_ok (succeeds, Retry(max=1)), timeout
  (sleeps past a 1 s job timeout).
* faults: kill -9 of a worker process (and its children) restarted after a pause; SIGTERM (warm
  shutdown) and restart once it exits; kill -9 of redis-server and restart on the same port and
  directory; CLIENT KILL of every normal and pubsub connection; DEBUG SLEEP 2.
* then: faults stop, workers run until every job is terminal and the queue, started registry and
  intermediate list are empty (bounded by --drain-timeout), a warm stop, one cleanup burst worker of
  the same kind (RQ's registry maintenance), and the checks.

Exit status 1 when `--check` is given and the rq-worker row breaks an invariant (the Python row is
the comparison and never fails the run).
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "compat-tests"))
sys.path.insert(0, str(REPO / "python-fixtures"))

import redis  # noqa: E402
import rq  # noqa: E402
from rq import Queue, Retry  # noqa: E402

import harness  # noqa: E402  (free_port, kill_tree, WorkerProc, wait_for)
from rqapi import NoSuchJobError, exc_text, fetch, status  # noqa: E402

QUEUE = "chaos"
WORKER_TTL = 30            # worker key TTL = 90 s, dequeue timeout 15 s (both kinds)
MONITORING_INTERVAL = 5    # heartbeat while a job runs: a killed job's entry lapses ~65 s later
MAINTENANCE_INTERVAL = 10  # registry cleaning (both kinds)
JOB_TIMEOUT = 30
KEEP = 86400               # result_ttl / failure_ttl: every result stays readable for the checks

# kind: (weight, retries)
JOB_KINDS = {"ok": (50, 0), "sleep": (15, 0), "fail": (8, 0), "retry": (7, 2), "retry_ok": (10, 1),
             "timeout": (10, 0)}
FAULT_KINDS = {"kill9": 30, "sigterm": 22, "client_kill": 28, "debug_sleep": 10, "redis_restart": 10}

# an invariant the rq-worker row must keep (the table's "violations" columns)
VIOLATIONS = ("lost", "duplicated", "reexec_unexplained", "wrong", "failed_without_running",
              "stuck", "stale", "panics", "crashes")


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# the plan: jobs and faults, from the seed only

def make_plan(seed, n_jobs, duration, faults_per_minute, fault_kinds=None):
    rng = random.Random(f"chaos-{seed}")
    kinds = list(JOB_KINDS)
    weights = [JOB_KINDS[k][0] for k in kinds]
    window = duration * 0.6
    jobs = []
    for i in range(n_jobs):
        kind = rng.choices(kinds, weights)[0]
        value = rng.choice([rng.randrange(-10**12, 10**12), f"v-{seed}-{i}-{rng.getrandbits(32):08x}",
                            [i, rng.random()], {"i": i, "s": str(rng.getrandbits(20))}])
        job = {"id": f"chaos-{seed}-{i:06d}", "kind": kind, "value": value, "at": window * i / max(1, n_jobs),
               "retries": JOB_KINDS[kind][1], "seconds": 0, "fail": None, "timeout": JOB_TIMEOUT}
        if kind == "sleep":
            job["seconds"] = round(rng.uniform(0.3, 2.5), 2)
        elif kind == "retry_ok":
            job["seconds"] = round(rng.uniform(0.1, 1.5), 2)
        elif kind in ("fail", "retry"):
            job["fail"] = f"chaos failure {i}"
        elif kind == "timeout":
            job["seconds"], job["timeout"] = 4, 1
        jobs.append(job)
    return jobs, fault_schedule(rng, duration, faults_per_minute, fault_kinds or FAULT_KINDS)


def fault_schedule(rng, duration, faults_per_minute, kinds):
    """Faults at exponential gaps (mean 60/faults_per_minute s) from 3 s to 85% of `duration`."""
    faults = []
    t = 3.0
    fkinds = list(kinds)
    fweights = [kinds[k] for k in fkinds]
    mean_gap = 60.0 / faults_per_minute
    while True:
        t += rng.expovariate(1.0 / mean_gap)
        if t > duration * 0.85:
            break
        faults.append({"at": round(t, 2), "kind": rng.choices(fkinds, fweights)[0],
                       "target": rng.random(), "pause": round(rng.uniform(0.5, 3.0), 2)})
    return faults


# ------------------------------------------------------------------------------------------------
# redis with AOF, restartable on the same port and directory

class ChaosRedis:
    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = harness.free_port()
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kw):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=kw.pop("socket_timeout", 15),
                           socket_connect_timeout=5, **kw)

    def start(self):
        self.starts += 1
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--enable-debug-command", "yes", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        c = self.client(socket_timeout=2)

        def ready():
            return self.proc.poll() is None and c.ping() and c.info("persistence").get("loading") == 0
        try:
            harness.wait_for(ready, timeout=60, what="redis-server up (AOF loaded)")
        except AssertionError:
            self.kill()   # never leave a server behind that the next start() would forget
            raise

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


# ------------------------------------------------------------------------------------------------
# one worker "replica": a process slot restarted after every exit (as a container would be)

class Replica:
    def __init__(self, row, index, queues=(QUEUE,)):
        self.row = row
        self.index = index
        self.queues = list(queues)
        self.gen = 0
        self.proc = None
        self.restart_at = None   # time.monotonic() of the planned restart while down
        self.term_deadline = None

    def start(self):
        self.gen += 1
        self.proc = self.row.spawn_worker(f"{self.row.kind[:2]}{self.row.seed}-{self.index}-{self.gen}", self.queues)
        self.restart_at = None
        self.term_deadline = None

    def alive(self):
        return self.proc is not None and self.proc.alive()


class Row:
    """One row of the table: one worker kind under the plan."""

    fault_kinds = FAULT_KINDS
    queues = (QUEUE,)

    def __init__(self, kind, args, jobs, faults, workdir):
        self.kind = kind
        self.args = args
        self.seed = args.seed
        self.jobs = jobs
        self.faults = faults
        self.dir = Path(workdir)
        shutil.rmtree(self.dir, ignore_errors=True)   # an old AOF would bring back an old run's jobs
        self.dir.mkdir(parents=True)
        self.tally_path = self.dir / "tally.log"
        self.redis = ChaosRedis(self.dir / "redis")
        self.procs = []            # every WorkerProc started
        self.exits = {}            # name -> "term" | "kill9" | "crash rc=N" | "clean"
        self.dead_pids = set()     # processes killed or crashed (their children's jobs may be abandoned)
        self.fault_counts = dict.fromkeys(self.fault_kinds, 0)
        self.fault_counts["sigterm_escalated"] = 0
        self.connections_killed = 0
        self.enqueue_retries = 0
        self.lock = threading.Lock()
        self.stop_faults = threading.Event()

    # --- processes
    def env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python-fixtures")]
                                            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        for k in ("REDIS_URL", "QUEUE_NAME", "WORKER_COUNT", "RQ_WORKER_METRICS_ADDR"):
            env.pop(k, None)
        env["RQ_WORKER_DIAG_TALLY_FILE"] = str(self.tally_path)
        env.setdefault("RUST_BACKTRACE", "1")
        return env

    def worker_cmd(self, name, queues, burst=False):
        common = ["--url", self.redis.url, "--name", name, "--worker-ttl", str(WORKER_TTL),
                  "--job-monitoring-interval", str(MONITORING_INTERVAL),
                  "--maintenance-interval", str(MAINTENANCE_INTERVAL)]
        if self.kind == "rust":
            cmd = [harness.rust_worker_bin(), *queues, *common, "--concurrency", str(self.args.concurrency),
                   "--logging-level", "INFO"]
        else:
            cmd = [str(harness.VENV_BIN / "rq"), "worker", *queues, *common]
        return cmd + (["--burst"] if burst else [])

    def spawn_worker(self, name, queues, burst=False):
        p = harness.WorkerProc(self.kind, name, self.worker_cmd(name, queues, burst), self.env(),
                               self.dir / f"worker-{name}.log")
        self.procs.append(p)
        return p

    def note_exit(self, proc, how):
        if proc.name in self.exits:
            return
        self.exits[proc.name] = how
        if how != "term":
            self.dead_pids.add(proc.pid)
            self.dead_pids.update(harness.descendants(proc.pid))

    # --- faults
    def pick(self, replicas, target):
        return replicas[min(len(replicas) - 1, int(target * len(replicas)))]

    def apply_fault(self, fault, replicas):
        kind = fault["kind"]
        if kind in ("kill9", "sigterm"):
            r = self.pick(replicas, fault["target"])
            if not r.alive() or r.term_deadline is not None:
                return False
            if kind == "kill9":
                self.dead_pids.update([r.proc.pid] + harness.descendants(r.proc.pid))
                harness.kill_tree(r.proc.pid)
                r.proc.proc.wait(30)
                self.note_exit(r.proc, "kill9")
                r.restart_at = time.monotonic() + fault["pause"]
            else:
                r.proc.signal(signal.SIGTERM)
                r.term_deadline = time.monotonic() + 60
            return True
        if not self.redis.alive():
            return False
        if kind == "redis_restart":
            self.redis.kill()
            self.redis_restart_at = time.monotonic() + fault["pause"]
            return True
        try:
            c = self.redis.client(socket_timeout=10)
            if kind == "client_kill":
                n = c.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                n += c.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                self.connections_killed += int(n)
            elif kind == "debug_sleep":
                threading.Thread(target=lambda: self._debug_sleep(c), daemon=True).start()
            return True
        except redis.exceptions.RedisError as e:
            log(f"{self.kind}: fault {kind} not applied: {e!r}")
            return False

    def _debug_sleep(self, c):
        try:
            c.execute_command("DEBUG", "SLEEP", "2")
        except redis.exceptions.RedisError as e:
            log(f"{self.kind}: DEBUG SLEEP: {e!r}")

    def supervise(self, replicas):
        """Restart what is down, escalate slow SIGTERMs, restart redis when due."""
        now = time.monotonic()
        if not self.redis.alive() and getattr(self, "redis_restart_at", 0) <= now:
            self.redis.start()
        for r in replicas:
            if r.proc is None:
                continue
            if r.alive():
                if r.term_deadline is not None and now > r.term_deadline:
                    log(f"{self.kind}: {r.proc.name} still running 60 s after SIGTERM: kill -9")
                    self.fault_counts["sigterm_escalated"] += 1
                    self.dead_pids.update([r.proc.pid] + harness.descendants(r.proc.pid))
                    harness.kill_tree(r.proc.pid)
                    r.proc.proc.wait(30)
                    self.note_exit(r.proc, "kill9")
                    r.term_deadline = None
                    r.restart_at = now + 0.5
                continue
            if r.proc.name not in self.exits:
                rc = r.proc.proc.returncode
                if r.term_deadline is not None:
                    # -SIGTERM: the signal came before the process had its handler (just started)
                    self.note_exit(r.proc, "term" if rc in (0, -signal.SIGTERM) else f"term rc={rc}")
                else:
                    self.note_exit(r.proc, f"crash rc={rc}")
                    log(f"{self.kind}: {r.proc.name} exited by itself (rc={rc})")
                harness.kill_tree(r.proc.pid)   # a crashed Python worker's horse goes with it
                r.term_deadline = None
                if r.restart_at is None:
                    r.restart_at = now + 0.5
            if r.restart_at is not None and now >= r.restart_at and self.redis.alive():
                r.start()

    # --- enqueuing
    def enqueue_all(self, t0):
        conn = self.redis.client()
        q = Queue(QUEUE, connection=conn)
        for job in self.jobs:
            delay = t0 + job["at"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            kw = {}
            if job["seconds"]:
                kw["seconds"] = job["seconds"]
            if job["fail"] is not None:
                kw["fail"] = job["fail"]
            extra = {"retry": Retry(max=job["retries"])} if job["retries"] else {}
            self.enqueue_once(conn, q, job["id"], "rq_worker.diag.tally", job["value"], job_timeout=job["timeout"],
                              result_ttl=KEEP, failure_ttl=KEEP, **kw, **extra)

    def enqueue_once(self, conn, q, job_id, func, *args, **kw):
        """Enqueue through Redis faults: retried until it succeeds, never twice (RQ's enqueue is one
        MULTI/EXEC, so a job hash that exists means an attempt whose reply was lost went through)."""
        while True:
            try:
                if not conn.exists(f"rq:job:{job_id}"):
                    q.enqueue(func, *args, job_id=job_id, **kw)
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError):
                self.enqueue_retries += 1
                time.sleep(0.2)

    # --- the run
    def run(self):
        """The row's result; every process it started is stopped, also on an error."""
        try:
            return self._run()
        finally:
            for p in self.procs:
                p.close()
            try:
                self.teardown()
            finally:
                self.redis.stop()

    def _run(self):
        a = self.args
        started = time.monotonic()
        self.redis.start()
        self.setup()
        replicas = self.replicas()
        n_procs = len(replicas)
        for r in replicas:
            r.start()
        log(f"{self.kind}: redis {self.redis.url}, {n_procs} worker processes, {len(self.jobs)} jobs, "
            f"{len(self.faults)} faults planned over {a.duration} s; logs in {self.dir}")
        t0 = time.monotonic()
        enq = threading.Thread(target=self.enqueue_all, args=(t0,), daemon=True)
        enq.start()
        pending = list(self.faults)
        while time.monotonic() - t0 < a.duration or enq.is_alive():
            now = time.monotonic() - t0
            while pending and pending[0]["at"] <= now:
                f = pending.pop(0)
                if self.apply_fault(f, replicas):
                    self.fault_counts[f["kind"]] += 1
            self.supervise(replicas)
            time.sleep(0.05)
        log(f"{self.kind}: fault phase over ({self.fault_counts}, {self.connections_killed} connections killed)")

        # drain: no more faults; everything restarted; wait for every job to be terminal
        drain_start = time.monotonic()
        conn = self.redis.client()
        ids = [j["id"] for j in self.jobs]
        while True:
            self.supervise(replicas)
            done = False
            try:
                done = self.quiescent(conn, ids)
            except redis.exceptions.RedisError:
                pass
            if done:
                break
            if time.monotonic() - drain_start > a.drain_timeout:
                log(f"{self.kind}: drain timeout ({a.drain_timeout} s) with jobs still pending")
                break
            time.sleep(1.0)
        drain_s = time.monotonic() - drain_start
        log(f"{self.kind}: drained in {drain_s:.0f} s; warm stop")
        for r in replicas:
            r.term_deadline = None
            if r.alive():
                r.proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for r in replicas:
            if r.proc is None:
                continue
            try:
                rc = r.proc.proc.wait(max(0.1, deadline - time.monotonic()))
                self.note_exit(r.proc, "term" if rc in (0, -signal.SIGTERM) else f"term rc={rc}")
            except subprocess.TimeoutExpired:
                harness.kill_tree(r.proc.pid)
                r.proc.proc.wait(30)
                self.note_exit(r.proc, "kill9 (warm stop hung)")
                log(f"{self.kind}: {r.proc.name} still running 30 s after the final SIGTERM: kill -9")
        # one cleanup burst of the same kind after the maintenance lock has lapsed
        time.sleep(MAINTENANCE_INTERVAL + 1)
        cleaner = self.spawn_worker(f"{self.kind[:2]}{self.seed}-cleanup", list(self.queues), burst=True)
        try:
            rc = cleaner.proc.wait(180)
        except subprocess.TimeoutExpired:
            harness.kill_tree(cleaner.pid)
            rc = "timeout"
        self.note_exit(cleaner, "term" if rc == 0 else f"cleanup rc={rc}")
        result = self.check(conn)
        result.update(seconds=round(time.monotonic() - started), drain_seconds=round(drain_s),
                      redis_starts=self.redis.starts, enqueue_retries=self.enqueue_retries)
        return result

    def setup(self):
        """Services beside Redis (none here)."""

    def teardown(self):
        """Stop what setup() started (also when it stopped half-way)."""

    def replicas(self):
        a = self.args
        n = a.procs if self.kind == "rust" else a.procs * a.concurrency
        return [Replica(self, i) for i in range(n)]

    def quiescent(self, conn, ids):
        for q in self.queues:
            if conn.llen(f"rq:queue:{q}") or conn.zcard(f"rq:wip:{q}") or conn.llen(f"rq:queue:{q}:intermediate"):
                return False
        pipe = conn.pipeline(transaction=False)
        for i in ids:
            pipe.hget(f"rq:job:{i}", "status")
        return all(s in (b"finished", b"failed") for s in pipe.execute())

    # --- the checks
    def check(self, conn):
        execs = {}
        for line in self.tally_path.read_text().splitlines() if self.tally_path.exists() else []:
            parts = line.split()
            e = execs.setdefault(parts[1], {"starts": [], "ok": 0, "fail": 0})
            if parts[0] == "start":
                e["starts"].append((int(parts[2]), int(parts[3])))
            else:
                e[parts[2]] += 1
        q = Queue(QUEUE, connection=conn)
        queued = set(q.job_ids)
        started_reg = {m.decode() for m in conn.zrange(f"rq:wip:{QUEUE}", 0, -1)}
        inter = {m.decode() for m in conn.lrange(f"rq:queue:{QUEUE}:intermediate", 0, -1)}
        finished_reg = set(q.finished_job_registry.get_job_ids())
        failed_reg = set(q.failed_job_registry.get_job_ids())
        others = set()
        for reg in ("scheduled_job_registry", "deferred_job_registry", "canceled_job_registry"):
            others |= set(getattr(q, reg).get_job_ids())

        counts = dict.fromkeys(("finished", "failed_expected", "abandoned", "reexecuted") + VIOLATIONS, 0)
        problems = []

        def flag(what, job, detail):
            counts[what] += 1
            e = execs.get(job["id"], {})
            problems.append(f"{what}: seed={self.seed} job={job['id']} kind={job['kind']}: {detail}; "
                            f"executions={e}")

        for job in self.jobs:
            jid, kind = job["id"], job["kind"]
            e = execs.get(jid, {"starts": [], "ok": 0, "fail": 0})
            starts = len(e["starts"])
            killed_exec = any(pid in self.dead_pids or ppid in self.dead_pids for pid, ppid in e["starts"])
            normal = 1 + job["retries"] if kind == "retry" else 1
            allowed = 1 + job["retries"]
            # RQ runs a job again only through its retries, and after a kill only when the killed
            # run is retried (a run may even have returned just before the kill took its result)
            excused = killed_exec and starts <= allowed
            if starts > normal:
                counts["reexecuted"] += 1
                if not excused:
                    flag("reexec_unexplained", job, f"{starts} executions, {allowed} allowed,"
                         f" executor killed: {killed_exec}")
            if (e["ok"] > 1 and not excused) or e["ok"] + e["fail"] > allowed:
                flag("duplicated", job, f"ran to completion {e['ok'] + e['fail']} times")
            try:
                j = fetch(conn, jid)
                st = status(j)
            except NoSuchJobError:
                flag("lost", job, "job hash gone")
                continue
            where = [n for n, s in (("queue", queued), ("started", started_reg), ("intermediate", inter),
                                    ("scheduled/deferred/canceled", others)) if jid in s]
            if st not in ("finished", "failed"):
                flag("stuck" if where else "lost", job, f"status {st}, in {where or 'nothing'}")
                continue
            if where:
                flag("stuck", job, f"status {st} but still in {where}")
            if (st == "finished") != (jid in finished_reg) or (st == "failed") != (jid in failed_reg):
                flag("wrong", job, f"status {st}; in finished registry {jid in finished_reg},"
                     f" failed registry {jid in failed_reg}")
            if st == "finished":
                counts["finished"] += 1
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = j.return_value()
                    ok_results = [r for r in j.results() if getattr(r.type, "name", str(r.type)) == "SUCCESSFUL"]
                if kind in ("fail", "retry", "timeout"):
                    flag("wrong", job, "finished, but it cannot succeed")
                elif value != job["value"]:
                    flag("wrong", job, f"return value {value!r}, expected {job['value']!r}")
                elif e["ok"] == 0:
                    flag("wrong", job, "finished without an execution that returned")
                if len(ok_results) > 1:
                    flag("duplicated", job, f"{len(ok_results)} successful result entries")
                continue
            text = exc_text(j)
            if starts == 0:
                # a worker killed between taking the job and its first line: abandoned, as RQ has it
                if "AbandonedJobError" in text and self.exit_of(j.worker_name or "").startswith(("kill9", "crash")):
                    counts["abandoned"] += 1
                else:
                    flag("failed_without_running", job, f"exc: {text.strip().splitlines()[-1:]},"
                         f" worker {j.worker_name} ({self.exit_of(j.worker_name or '') or 'running'})")
                continue
            if "AbandonedJobError" in text:
                if killed_exec:
                    counts["abandoned"] += 1
                else:
                    flag("wrong", job, "abandoned, but no process that ran it was killed")
                continue
            expect = {"fail": "RuntimeError", "retry": "RuntimeError", "timeout": "JobTimeoutException"}.get(kind)
            if expect and expect in text and (job["fail"] is None or job["fail"] in text):
                counts["failed_expected"] += 1
            else:
                flag("wrong", job, f"failed with: {text.strip().splitlines()[-1:]}")

        self.check_fleet(conn, counts, problems)
        return {"kind": self.kind, "jobs": len(self.jobs), "faults": dict(self.fault_counts),
                "connections_killed": self.connections_killed, "counts": counts, "problems": problems}

    def exit_of(self, worker_name):
        """How the process behind a worker name ended ("" if unknown); rq-worker names its slots
        <name>-1 ... <name>-N."""
        base = re.sub(r"-\d+$", "", worker_name) if self.kind == "rust" else worker_name
        return self.exits.get(worker_name) or self.exits.get(base) or ""

    def check_fleet(self, conn, counts, problems):
        """Stale worker keys, panics in the logs, exits nobody asked for."""
        # worker keys: everything is stopped now. A cleanly stopped worker leaves at most RQ's death
        # record (a key with a TTL <= 60 s, out of the worker sets), a killed one a key that expires
        # by itself (TTL <= worker_ttl + 60); the sets hold no member without a key.
        stale = []
        sets = ["rq:workers"] + [f"rq:workers:{q}" for q in self.queues]
        members = {m.decode() for s in sets for m in conn.smembers(s)}
        for key in conn.scan_iter("rq:worker:*"):
            k = key.decode()
            name = k[len("rq:worker:"):].split(":")[0]   # also rq:worker:<name>:executions
            how = self.exit_of(name) or None
            ttl = conn.ttl(key)
            clean = how is not None and how.startswith("term")
            if ttl == -1 or how is None or ttl > (65 if clean else WORKER_TTL + 65) or (clean and f"rq:worker:{name}" in members):
                stale.append(f"{k} ttl={ttl} exit={how} in worker set: {f'rq:worker:{name}' in members}")
        for m in sorted(members):
            # a killed worker's key expires by itself, and RQ drops the member at the next
            # maintenance run; any other member must have its key
            how = self.exit_of(m[len("rq:worker:"):])
            if not conn.exists(m) and not how.startswith(("kill9", "crash")):
                stale.append(f"worker set member {m} without a key (exit: {how or 'unknown'})")
        counts["stale"] = len(stale)
        problems += [f"stale: {x}" for x in stale]
        panics = 0
        for p in self.procs:
            panics += p.log().count("panicked at")
        counts["panics"] = panics
        # exits nobody asked for (a Python worker also exits rc=1 when SIGTERM lands mid-reconnect)
        bad_exit = ("crash", "cleanup") + (("term rc",) if self.kind == "rust" else ())
        crashes = [f"{n}: {h}" for n, h in self.exits.items() if h.startswith(bad_exit)]
        counts["crashes"] = len(crashes)
        problems += [f"crash: {x}" for x in crashes]


# ------------------------------------------------------------------------------------------------

def table(rows):
    head = ["worker", "jobs", "kill-9", "SIGTERM", "redis restart", "CLIENT KILL (conns)", "DEBUG SLEEP",
            "finished", "failed as expected", "abandoned (killed mid-job)", "re-executed", "lost",
            "duplicated", "re-exec unexplained", "wrong", "failed without running", "stuck", "stale",
            "panics", "crashes", "seconds"]
    lines = []
    for r in rows:
        f, c = r["faults"], r["counts"]
        name = "rq-worker" if r["kind"] == "rust" else f"Python rq worker {rq.__version__}"
        term = f"{f['sigterm']}" + (f" ({f['sigterm_escalated']} hung, then kill -9)" if f["sigterm_escalated"] else "")
        cells = [name, r["jobs"], f["kill9"], term, f["redis_restart"],
                 f"{f['client_kill']} ({r['connections_killed']})", f["debug_sleep"], c["finished"],
                 c["failed_expected"], c["abandoned"], c["reexecuted"], c["lost"], c["duplicated"],
                 c["reexec_unexplained"], c["wrong"], c["failed_without_running"], c["stuck"], c["stale"],
                 c["panics"] if r["kind"] == "rust" else "-", c["crashes"], r["seconds"]]
        lines.append(cells)
    return markdown(head, lines)


def markdown(head, rows):
    """A Markdown table."""
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(str(x) for x in cells) + " |" for cells in rows])


def run_rows(rows, title, table_fn, violations, args):
    """Run each row, log its first problems, print the table, write --json; the exit status."""
    results = [None] * len(rows)
    errors = []

    def one(i):
        try:
            results[i] = rows[i].run()
        except Exception:   # reported below; only an rq-worker row's error fails the run
            errors.append((rows[i].kind, traceback.format_exc()))
            log(f"{rows[i].kind}: the row stopped with an error:\n{errors[-1][1]}")
            return
        problems = results[i]["problems"]
        for p in problems[:25]:
            log(f"{rows[i].kind}: {p}")
        if len(problems) > 25:
            log(f"{rows[i].kind}: ... {len(problems) - 25} more problems (see --json)")

    if getattr(args, "parallel", False):   # each row has its own Redis, workers and directory
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(len(rows)):
            one(i)
    results = [r for r in results if r is not None]
    print()
    print(title)
    print(table_fn(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": results}, indent=1, default=str))
    bad = [r for r in results if r["kind"] == "rust" and any(r["counts"][v] for v in violations)]
    if bad:
        print("chaos: rq-worker broke an invariant: "
              + ", ".join(f"{v}={bad[0]['counts'][v]}" for v in violations if bad[0]["counts"][v]))
        return 1 if args.check else 0
    if any(kind == "rust" for kind, _ in errors):
        print("chaos: the rq-worker row did not finish (traceback above)")
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60, help="seconds of the fault phase (jobs are"
                    " enqueued over its first 60%%)")
    ap.add_argument("--faults-per-minute", type=float, default=30)
    ap.add_argument("--workers", default="rust,python", help="rows: rust, python or both (comma-separated)")
    ap.add_argument("--procs", type=int, default=2, help="rq-worker processes")
    ap.add_argument("--concurrency", type=int, default=4, help="rq-worker --concurrency; the Python row"
                    " runs procs x concurrency single-job processes")
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--workdir", default=str(REPO / "target" / "chaos"))
    ap.add_argument("--json", help="write the rows (with every problem found) to this file")
    ap.add_argument("--check", action="store_true", help="exit 1 if the rq-worker row breaks an invariant")
    ap.add_argument("--parallel", action="store_true", help="run the rows at the same time (each on its own Redis)")
    a = ap.parse_args()
    kinds = [k.strip() for k in a.workers.split(",") if k.strip()]
    if "rust" in kinds and not os.access(harness.rust_worker_bin(), os.X_OK):
        sys.exit(f"rq-worker binary not found at {harness.rust_worker_bin()} (cargo build, or RQ_WORKER_BIN)")
    jobs, faults = make_plan(a.seed, a.jobs, a.duration, a.faults_per_minute)
    per_kind = {k: sum(j["kind"] == k for j in jobs) for k in JOB_KINDS}
    log(f"seed {a.seed}: {len(jobs)} jobs {per_kind}, {len(faults)} faults planned")
    rows = [Row(kind, a, jobs, faults, Path(a.workdir) / f"{kind}-seed{a.seed}") for kind in kinds]
    title = (f"chaos seed={a.seed} jobs={a.jobs} duration={a.duration:g}s faults/min={a.faults_per_minute:g} "
             f"rq-worker procs={a.procs}x{a.concurrency}, python procs={a.procs * a.concurrency}, rq {rq.__version__}")
    return run_rows(rows, title, table, VIOLATIONS, a)


if __name__ == "__main__":
    sys.exit(main())
