"""Ordinary Python job functions for the compat tests of the Python executor (issue 10).

Nothing here is implemented natively by rq-worker: with `--python` every function below runs in
a Python process, and under a Python `rq worker` in its work horse. The tests in
compat-tests/test_python_jobs.py enqueue them with the venv's rq and compare what either worker
leaves behind.

Side effects that a test has to observe go to Redis through the job's own connection
(`job.connection` or the `connection` argument of a callback), never to files.
"""
import asyncio
import json
import os
import sys
import time

# Where and when this module was imported: a pool process imports it once, a fork-mode zygote
# imports it before forking when it is preloaded, a forking `rq worker` imports it in each horse.
IMPORTED_BY_PID = os.getpid()
_calls_in_this_process = 0


def _current_job():
    from rq import get_current_job
    job = get_current_job()
    if job is None:
        raise RuntimeError("get_current_job() returned None inside a job")
    return job


# --- plain functions, keyword arguments, async --------------------------------------------------

def add(a, b):
    return a + b


def greet(name, greeting="hello", *, punctuation="!", times=1):
    """Keyword arguments with defaults, one keyword-only."""
    return " ".join([f"{greeting}, {name}{punctuation}"] * times)


def describe_args(*args, **kwargs):
    """The arguments as received, with their type names (checks what the deserialiser produced)."""
    return {"args": list(args), "kwargs": kwargs,
            "types": [type(a).__name__ for a in args] + sorted(f"{k}:{type(v).__name__}" for k, v in kwargs.items())}


async def async_add(a, b, delay=0.01):
    await asyncio.sleep(delay)
    return a + b


# --- classes ------------------------------------------------------------------------------------

class Counter:
    """Enqueued as a bound method of a pickled instance (`queue.enqueue(Counter(3).add, 4)`); the
    instance travels in the payload, so every job starts from the state it was enqueued with."""

    label = "counter"

    def __init__(self, start):
        self.total = start

    def add(self, n):
        self.total += n
        return self.total

    @classmethod
    def describe(cls, x):
        return f"{cls.__name__}/{cls.label}:{x}"

    @staticmethod
    def triple(x):
        return 3 * x


class Point:
    """A custom class as a return value (pickled by reference to this module)."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))

    def __repr__(self):
        return f"Point({self.x!r}, {self.y!r})"


def make_point(x, y):
    return Point(x, y)


# --- failures -----------------------------------------------------------------------------------

class JobError(Exception):
    """A user exception class defined in the job module."""


def fail_chained(outer="outer failure", inner="inner cause"):
    """Raise JobError(outer) chained (`from`) to a KeyError(inner)."""
    try:
        {}[inner]
    except KeyError as exc:
        raise JobError(outer) from exc


def fail_plain(message="plain failure"):
    raise ValueError(message)


def flaky(key, failures):
    """Fail the first `failures` executions (counted in Redis key `key`), then return the count."""
    n = _current_job().connection.incr(key)
    if n <= failures:
        raise RuntimeError(f"flaky attempt {n} of {failures} failing")
    return n


# --- the job API inside the function ------------------------------------------------------------

def job_info(*args, **kwargs):
    """What `get_current_job()` says about the running job (the arguments are only echoed by it)."""
    job = _current_job()
    return {"id": job.id, "origin": job.origin, "func_name": job.func_name, "args": list(job.args),
            "kwargs": job.kwargs, "description": job.description, "meta": dict(job.meta)}


def set_meta(key, value, steps=1):
    """Update job.meta `steps` times with save_meta() and return the job id."""
    job = _current_job()
    for i in range(1, steps + 1):
        job.meta[key] = value
        job.meta["step"] = i
        job.save_meta()
    return job.id


def incr_key(key, by=1):
    """INCRBY through job.connection; return the new value."""
    return _current_job().connection.incrby(key, by)


def fan_out(n):
    """Enqueue `n` add jobs on this job's queue through job.connection; return their ids."""
    from rq import Queue
    job = _current_job()
    q = Queue(job.origin, connection=job.connection)
    return [q.enqueue(add, i, 100).id for i in range(n)]


# --- time, death, memory, output ----------------------------------------------------------------

def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def long_then_quick(key, seconds):
    """The first execution (counted in Redis key `key`) sleeps `seconds`; later ones return at once.
    Returns the execution number."""
    n = _current_job().connection.incr(key)
    if n == 1:
        time.sleep(seconds)
    return n


def die(code=1):
    """Leave the process at once, without cleanup (as a crash in native code would)."""
    sys.stdout.flush()
    os._exit(code)


def hog(limit_mb=600, step_mb=8, pause=0.02, hold=30):
    """Allocate (and touch) `step_mb` MB every `pause` s up to `limit_mb`, hold it `hold` s, return MB."""
    chunks = []
    while len(chunks) * step_mb < limit_mb:
        chunks.append(b"\x01" * (step_mb * 1024 * 1024))
        time.sleep(pause)
    time.sleep(hold)
    return len(chunks) * step_mb


def chatter(lines):
    """Print `lines` lines to stdout and as many to stderr; return the count."""
    for i in range(lines):
        print(f"chatter stdout {i}")
        print(f"chatter stderr {i}", file=sys.stderr)
    print("chatter stdout done")
    print("chatter stderr done", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    return lines


def whoami():
    """(pid, pid that imported this module, calls of this function in this process)."""
    global _calls_in_this_process
    _calls_in_this_process += 1
    return {"pid": os.getpid(), "imported_by": IMPORTED_BY_PID, "calls": _calls_in_this_process}


# --- callbacks ----------------------------------------------------------------------------------
# Each appends one JSON record to the Redis list `cb:<job id>` through the connection it is given,
# with the job's status as stored in Redis at that moment (the callback order relative to the
# worker's own bookkeeping).

def callback_key(job_id):
    return f"cb:{job_id}"


def _record(job, connection, kind, **fields):
    status = connection.hget(job.key, "status")
    fields.update(kind=kind, status=status.decode() if status is not None else None, pid=os.getpid())
    connection.rpush(callback_key(job.id), json.dumps(fields, sort_keys=True))


def on_success(job, connection, result):
    _record(job, connection, "success", result=repr(result))


def on_failure(job, connection, exc_type, exc_value, tb):
    _record(job, connection, "failure", exc_type=getattr(exc_type, "__name__", repr(exc_type)),
            exc_value=str(exc_value), tb_type=type(tb).__name__)


def on_stopped(job, connection):
    _record(job, connection, "stopped")


def on_success_slow(job, connection, result):
    """A success callback that outlives a short callback timeout."""
    _record(job, connection, "success-slow-start", result=repr(result))
    time.sleep(30)
    _record(job, connection, "success-slow-end")


def unpicklable():
    """Return a value the pickle serializer cannot store (a local function)."""
    def local():
        return 1
    return local


def exit_job(code=3):
    """sys.exit() inside a job: SystemExit is an exception like any other to RQ's work horse."""
    sys.exit(code)


def read_stdin():
    """What the job reads from its standard input."""
    return sys.stdin.read() if sys.stdin is not None else None


def raw_output(tag="raw"):
    """Output that bypasses sys.stdout: straight to file descriptors 1 and 2, and from a child process
    that inherits them (as C extensions and subprocesses write)."""
    import subprocess
    os.write(1, f"{tag} fd1\n".encode())
    os.write(2, f"{tag} fd2\n".encode())
    subprocess.run(["sh", "-c", f"echo {tag} child stdout; echo {tag} child stderr >&2"], check=True)
    return tag


def blob(n):
    """Return n bytes."""
    return b"\xab" * n


def deaf_sleep(seconds):
    """Sleep with SIGALRM blocked, as code stuck in C would: RQ's death penalty cannot interrupt
    it, so only a kill from outside ends it."""
    import signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return seconds
