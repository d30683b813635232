"""Python twins of rq-worker's built-in diagnostic jobs.

The Rust worker implements the same six functions natively under the same dotted names
(`rq_worker.diag.noop` ...), so a job enqueued with one of these can be run by either worker and
must leave the same observable result.
"""
import os
import time

TALLY_FILE_ENV = "RQ_WORKER_DIAG_TALLY_FILE"


def noop():
    """Return None."""
    return None


def add(a, b):
    """Return a + b."""
    return a + b


def echo(*args, **kwargs):
    """Return `[list(args), kwargs]`."""
    return [list(args), kwargs]


def sleep(seconds):
    """Sleep `seconds` and return it (the worker's job timeout interrupts it)."""
    time.sleep(seconds)
    return seconds


def fail(message="diag.fail", cause=None):
    """Raise RuntimeError(message), chained to RuntimeError(cause) when a cause is given."""
    if cause is not None:
        try:
            raise RuntimeError(cause)
        except RuntimeError as exc:
            raise RuntimeError(message) from exc
    raise RuntimeError(message)


def _tally_line(path, line):
    # one write of one short line to an O_APPEND file: concurrent writers' lines stay whole
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def tally(value, seconds=0, fail=None):
    """Record this execution in the file named by $RQ_WORKER_DIAG_TALLY_FILE (chaos suite):
    `start <job id> <pid> <parent pid>`, sleep `seconds`, then `end <job id> ok` and return
    `value`, or `end <job id> fail` and raise RuntimeError(fail) when `fail` is given."""
    from rq import get_current_job

    path = os.environ.get(TALLY_FILE_ENV)
    if not path:
        raise RuntimeError(f"{TALLY_FILE_ENV} is not set")
    job_id = get_current_job().id
    _tally_line(path, f"start {job_id} {os.getpid()} {os.getppid()}\n")
    if seconds:
        time.sleep(seconds)
    if fail is not None:
        _tally_line(path, f"end {job_id} fail\n")
        raise RuntimeError(fail)
    _tally_line(path, f"end {job_id} ok\n")
    return value
