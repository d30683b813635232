"""Test harness for the compat suite: a private redis-server, the worker under test (rq-worker or
a Python `rq worker` of the venv's rq version), the `rq` CLI, and bounded polling.

Nothing here asserts wall-clock durations: every wait is a bounded poll with a generous timeout.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
import rq

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "python-fixtures"
VENV_BIN = Path(sys.executable).parent
RQ_VERSION = tuple(int(p) for p in rq.__version__.split(".")[:2])


def rust_worker_bin():
    return os.environ.get("RQ_WORKER_BIN") or str(REPO / "target" / "debug" / "rq-worker")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, interval=0.05, what="condition"):
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` expires (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a transient read error is retried until the deadline
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


class RedisServer:
    """A private redis-server on a free loopback port (never the machine's shared 6379).
    $RQW_TEST_REDIS_SERVER names another binary (e.g. the Redis 6.2 of scripts/redis-min.sh)."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = None
        self.proc = None

    def start(self):
        for _attempt in range(5):
            self.port = free_port()
            self.log = self.workdir / f"redis-{self.port}.log"
            self.proc = subprocess.Popen(
                [os.environ.get("RQW_TEST_REDIS_SERVER") or "redis-server",
                 "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                 "--logfile", str(self.log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = redis.Redis(host="127.0.0.1", port=self.port)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if client.ping():
                        return self
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError("could not start a private redis-server")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def descendants(pid):
    """Every live process below `pid` (a forking Python worker's horse leaves its process group)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid):
    """SIGKILL `pid`, its process group and every descendant (all started by this harness)."""
    victims = descendants(pid)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in [pid] + victims:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class WorkerProc:
    """One worker process (rq-worker or Python `rq worker`), in its own process group."""

    def __init__(self, kind, name, cmd, env, log_path):
        self.kind = kind
        self.name = name
        self.cmd = cmd
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(REPO))
        self.pid = self.proc.pid

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill9_group(self):
        """SIGKILL the worker and every process it started (a forking Python worker's horse too)."""
        if self.alive():
            kill_tree(self.pid)
        self.proc.wait(30)

    def wait(self, timeout=120):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.kind} worker {self.name} still running after {timeout}s;"
                                 f" log:\n{self.log()[-4000:]}")

    def close(self):
        if self.alive():
            kill_tree(self.pid)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._log.close()


class Fleet:
    """Starts workers for one test and tears them all down afterwards."""

    def __init__(self, redis_url, default_kind, tmp_path, python=False, python_mode=None):
        self.redis_url = redis_url
        self.default_kind = default_kind
        self.tmp_path = Path(tmp_path)
        self.procs = []
        # defaults of start()'s python/python_mode (test_python_jobs.py turns python on)
        self.python = python
        self.python_mode = python_mode

    def env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(FIXTURES)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.pop("REDIS_URL", None)
        env.pop("QUEUE_NAME", None)
        env.pop("WORKER_COUNT", None)
        env.setdefault("RUST_BACKTRACE", "1")
        return env

    def start(self, queues=("default",), *, kind=None, burst=False, name=None, scheduler=False,
              serializer=None, concurrency=None, worker_ttl=None, job_monitoring_interval=None,
              max_jobs=None, python_worker_class="rq.Worker", extra=(), env_extra=None,
              python=None, python_mode=None, python_extra=()):
        """python=True gives rq-worker `--python <this venv's interpreter>` (its rq version, and
        PYTHONPATH from env() has python-fixtures) plus `--python-mode` and `python_extra`; a Python
        `rq worker` runs Python jobs anyway and ignores the three. None means the Fleet's default."""
        kind = kind or self.default_kind
        python = self.python if python is None else python
        python_mode = python_mode or self.python_mode
        name = name or f"{kind[:2]}-{uuid.uuid4().hex[:8]}"
        if kind == "rust":
            cmd = [rust_worker_bin(), *queues, "--url", self.redis_url, "--name", name,
                   "--logging-level", "DEBUG"]
            if serializer:
                cmd += ["--serializer", serializer]
            if concurrency:
                cmd += ["--concurrency", str(concurrency)]
            if python:
                cmd += ["--python", sys.executable]
                if python_mode:
                    cmd += ["--python-mode", python_mode]
                cmd += list(python_extra)
        elif kind == "python":
            cmd = [str(VENV_BIN / "rq"), "worker", *queues, "--url", self.redis_url, "--name", name,
                   "-w", python_worker_class]
            if serializer:
                cmd += ["--serializer", {"json": "rq.serializers.JSONSerializer",
                                         "pickle": "rq.serializers.DefaultSerializer"}[serializer]]
            if concurrency and concurrency != 1:
                raise ValueError("a Python rq worker has no --concurrency")
        else:
            raise ValueError(kind)
        if burst:
            cmd.append("--burst")
        if scheduler:
            cmd.append("--with-scheduler")
        if worker_ttl is not None:
            cmd += ["--worker-ttl", str(worker_ttl)]
        if job_monitoring_interval is not None:
            cmd += ["--job-monitoring-interval", str(job_monitoring_interval)]
        if max_jobs is not None:
            cmd += ["--max-jobs", str(max_jobs)]
        cmd += list(extra)
        env = self.env()
        if env_extra:
            env.update(env_extra)
        log = self.tmp_path / f"worker-{name}.log"
        proc = WorkerProc(kind, name, cmd, env, log)
        self.procs.append(proc)
        return proc

    def burst(self, queues=("default",), timeout=120, **kw):
        """Run a burst worker to completion and require exit code 0."""
        proc = self.start(queues, burst=True, **kw)
        rc = proc.wait(timeout)
        assert rc == 0, f"{proc.kind} worker exited {rc}; log:\n{proc.log()[-4000:]}"
        return proc

    def logs(self):
        return "\n".join(f"----- {p.kind} worker {p.name} ({' '.join(p.cmd)})\n{p.log()[-6000:]}"
                         for p in self.procs)

    def close(self):
        for p in self.procs:
            p.close()


def rq_cli(redis_url, *args, timeout=60, check=True):
    """Run the venv's `rq` CLI; return (rc, stdout, stderr)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(FIXTURES)
    res = subprocess.run([str(VENV_BIN / "rq"), *args, "-u", redis_url], capture_output=True,
                         text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if check:
        assert res.returncode == 0, f"rq {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res.returncode, res.stdout, res.stderr
