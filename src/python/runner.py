"""rq-worker's Python side: runs RQ job functions for the Rust worker (`rq-worker --python`).

The Rust worker owns Redis (dequeue, registries, results, heartbeats, timeouts, shutdown); this
program only runs the user's function, with the user's own `rq` installed next to it, so that the
job is decoded by RQ's own serializer and `get_current_job()`, `job.meta`, `job.connection` and
callbacks behave as in `rq worker`. It ships inside the binary and runs as `python -c`.

Protocol: frames on the process's original stdin (requests) and stdout (replies). A frame is a
big-endian u32 item count followed by that many items, each a big-endian u32 length and bytes.
File descriptors 0 and 1 are then pointed at /dev/null and stderr, so a job that prints (even from
C code) cannot corrupt the protocol: job output goes to the worker's stderr.

Requests:  [b"job", job_id, key1, value1, ...]       the job hash as the start script read it
           [b"stopped", job_id, key1, value1, ...]   run the job's on_stopped callback
Replies:   [b"ready", pid, rq_version]                 once, after start-up
           [b"fatal", text]                             start-up failed (then exit 1)
           [b"deadline", seconds]                       a callback starts; it may take this long
           [b"finished", serialized_return_value, has_value(b"1"|b"0"), recycle(b"1"|b"0")]
           [b"failed", exc_string, recycle]
           [b"forked", pid]                             fork mode: the child running the job
           [b"died", wait_status]                       fork mode: the child ended without a reply
           [b"done"]                                    a stopped request was handled

Environment: RQ_WORKER_MODE (pool|fork), RQ_WORKER_REDIS_URL, RQ_WORKER_SERIALIZER
(pickle|json), RQ_WORKER_PATH (os.pathsep-separated sys.path entries), RQ_WORKER_PRELOAD
(comma-separated modules).
"""
import os
import struct
import sys

_U32 = struct.Struct(">I")


def _read_exact(f, n):
    data = f.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


def read_frame(f):
    (count,) = _U32.unpack(_read_exact(f, 4))
    items = []
    for _ in range(count):
        (n,) = _U32.unpack(_read_exact(f, 4))
        items.append(_read_exact(f, n) if n else b"")
    return items


def encode_frame(items):
    parts = [_U32.pack(len(items))]
    for item in items:
        if isinstance(item, str):
            item = item.encode("utf-8", "surrogateescape")
        parts.append(_U32.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


class Channel:
    """The protocol pipes, moved off fds 0 and 1."""

    def __init__(self):
        self.rx = os.fdopen(os.dup(0), "rb")
        self.tx_fd = os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        os.set_inheritable(self.tx_fd, False)

    def send(self, items):
        write_all(self.tx_fd, encode_frame(items))

    def close(self):
        self.rx.close()
        os.close(self.tx_fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Runner:
    """Runs one job the way RQ's work-horse does (`Worker.perform_job`), minus the Redis writes
    that the Rust worker makes itself."""

    def __init__(self, send):
        import rq
        from rq.job import Job
        from rq.serializers import JSONSerializer, resolve_serializer
        from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

        self.send = send
        self.rq = rq
        self.Job = Job
        self.JobTimeoutException = JobTimeoutException
        self.death_penalty = UnixSignalDeathPenalty
        kind = os.environ.get("RQ_WORKER_SERIALIZER", "pickle")
        self.serializer = resolve_serializer(JSONSerializer if kind == "json" else None)
        self.url = os.environ.get("RQ_WORKER_REDIS_URL", "redis://localhost:6379/0")
        self._connection = None
        self._lib_version = None
        try:  # rq >= 3.0: module functions
            from rq import callbacks as cb
            self.on_success = cb.execute_success_callback
            self.on_failure = cb.execute_failure_callback
            self.on_stopped = cb.execute_stopped_callback
        except (ImportError, AttributeError):  # rq 1.x / 2.x: Job methods
            self.on_success = lambda job, dp, rv: job.execute_success_callback(dp, rv)
            self.on_failure = lambda job, dp, *exc: job.execute_failure_callback(dp, *exc)
            self.on_stopped = lambda job, dp: job.execute_stopped_callback(dp)

    def connection(self):
        if self._connection is None:
            import redis
            if self._lib_version is None:
                try:  # redis-py >= 5 names itself to the server (CLIENT SETINFO); ask it once
                    from redis.utils import get_lib_version
                    self._lib_version = get_lib_version()
                except Exception:
                    self._lib_version = False
            if self._lib_version:
                self._connection = redis.Redis.from_url(self.url, lib_version=self._lib_version)
            else:
                self._connection = redis.Redis.from_url(self.url)
        return self._connection

    def forget_connection(self):
        """After fork: the child must not share the parent's sockets."""
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
        self._connection = None

    def job(self, items):
        job_id = items[1].decode("utf-8", "surrogateescape")
        fields = dict(zip(items[2::2], items[3::2]))
        job = self.Job(job_id, connection=self.connection(), serializer=self.serializer)
        job.restore(fields)
        return job

    def run(self, items):
        """Perform the job in `items`; the reply frame."""
        import traceback
        timed_out = False
        job = None
        try:
            job = self.job(items)
            timeout = job.timeout or self.rq.Queue.DEFAULT_TIMEOUT
            with self.death_penalty(timeout, self.JobTimeoutException, job_id=job.id):
                rv = job.perform()
            job._result = rv
            if job.success_callback is not None:
                self.send([b"deadline", str(job.success_callback_timeout)])
                self.on_success(job, self.death_penalty, rv)
            # Serialised here, inside the try, so a value the serializer refuses fails the job
            # (as in RQ, where the result is written in the same try).
            payload = self.serializer.dumps(rv) if rv is not None else b""
            return [b"finished", payload, b"0" if rv is None else b"1", b"0"]
        except BaseException:
            exc_info = sys.exc_info()
            timed_out = isinstance(exc_info[1], self.JobTimeoutException)
            exc_string = "".join(traceback.format_exception(*exc_info))
            if job is not None and getattr(job, "failure_callback", None) is not None:
                try:
                    self.send([b"deadline", str(job.failure_callback_timeout)])
                    self.on_failure(job, self.death_penalty, *exc_info)
                except BaseException:
                    exc_string = "".join(traceback.format_exception(*sys.exc_info()))
            # A job interrupted by its timeout may have left its process in any state: replace it.
            return [b"failed", exc_string, b"1" if timed_out else b"0"]

    def stopped(self, items):
        try:
            job = self.job(items)
            if job.stopped_callback is not None:
                self.send([b"deadline", str(job.stopped_callback_timeout)])
                self.on_stopped(job, self.death_penalty)
        except BaseException:
            import traceback
            sys.stderr.write("rq-worker: the on_stopped callback failed:\n" + traceback.format_exc())
        return [b"done"]


def child_setup():
    """In a forked job child: die with the zygote, reset signals and the random state."""
    import random
    import signal
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    random.seed()


_LIBC = []


def _die_with_parent():
    """PR_SET_PDEATHSIG(SIGKILL): the kernel kills this process when its parent dies. (The
    handle to libc is opened once, in the first process, and inherited by fork children.)"""
    try:
        if not _LIBC:
            import ctypes
            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        _LIBC[0].prctl(1, 9)
    except Exception:
        pass


def serve_pool(channel, runner):
    while True:
        try:
            req = read_frame(channel.rx)
        except EOFError:
            return
        if req[0] == b"job":
            channel.send(runner.run(req))
        elif req[0] == b"stopped":
            channel.send(runner.stopped(req))


def warm_up(runner):
    """Do once in the zygote what every job child would otherwise do for itself: the imports
    that RQ, redis-py and the traceback module make on first use, and a first connection (redis-py
    reads its own version from package metadata when it connects). Then freeze what exists, so
    that the children's garbage collector does not copy the zygote's pages."""
    import gc
    import traceback
    try:
        conn = runner.connection()
        conn.ping()
        job = runner.Job.create(func=len, args=([],), connection=conn, serializer=runner.serializer)
        job.perform()
        fields = job.to_dict()
        fields.setdefault("started_at", fields.get("created_at", ""))
        fields.setdefault("enqueued_at", fields.get("created_at", ""))
        runner.Job(job.id, connection=conn, serializer=runner.serializer).restore(
            {k.encode(): v if isinstance(v, bytes) else str(getattr(v, "value", v)).encode()
             for k, v in fields.items()})
        runner.serializer.loads(runner.serializer.dumps(job.args))
        try:
            raise ValueError("warm-up")
        except ValueError:
            traceback.format_exception(*sys.exc_info())
    except Exception as exc:  # a cold child is slower, not wrong
        sys.stderr.write(f"rq-worker: Python zygote warm-up incomplete ({exc!r})\n")
    finally:
        runner.forget_connection()
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()


def serve_fork(channel, runner):
    warm_up(runner)
    while True:
        try:
            req = read_frame(channel.rx)
        except EOFError:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            channel.rx.close()
            os.close(channel.tx_fd)
            child_setup()
            runner.forget_connection()
            runner.send = lambda items: write_all(w, encode_frame(items))
            try:
                reply = runner.run(req) if req[0] == b"job" else runner.stopped(req)
                write_all(w, encode_frame(reply))
            finally:
                os._exit(0)
        os.close(w)
        channel.send([b"forked", str(pid)])
        # Relay what the child says (deadline frames, then its reply) until it closes the pipe.
        reader = os.fdopen(r, "rb")
        replied = False
        while True:
            try:
                frame = read_frame(reader)
            except (EOFError, struct.error):
                break
            channel.send(frame)
            if frame[0] in (b"finished", b"failed", b"done"):
                replied = True
        reader.close()
        _, status = os.waitpid(pid, 0)
        if not replied:
            channel.send([b"died", str(status)])


def main():
    import signal
    channel = Channel()
    # Ctrl+C in a terminal reaches the whole process group; the Rust worker decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    try:
        paths = [p for p in os.environ.get("RQ_WORKER_PATH", "").split(os.pathsep) if p]
        sys.path[:0] = [os.path.abspath(p) for p in paths]
        runner = Runner(channel.send)
        import importlib
        for module in filter(None, os.environ.get("RQ_WORKER_PRELOAD", "").split(",")):
            importlib.import_module(module.strip())
    except BaseException:
        import traceback
        channel.send([b"fatal", traceback.format_exc()])
        sys.exit(1)
    channel.send([b"ready", str(os.getpid()), getattr(runner.rq, "__version__", "?")])
    if os.environ.get("RQ_WORKER_MODE") == "fork":
        serve_fork(channel, runner)
    else:
        serve_pool(channel, runner)


if __name__ == "__main__":
    main()
