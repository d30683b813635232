"""Python twins of rq-worker's built-in diagnostic jobs.

The Rust worker implements the same five functions natively under the same dotted names
(`rq_worker.diag.noop` ...), so a job enqueued with one of these can be run by either worker and
must leave the same observable result.
"""
import time


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
