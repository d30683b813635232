"""Small version-neutral helpers over the rq client API (1.16, 2.12 and 3.0 alike)."""
import time
import warnings

from rq import Queue, Worker
from rq.job import Job
from rq.results import Result

try:
    from rq.exceptions import NoSuchJobError
except ImportError:  # pragma: no cover
    from rq.job import NoSuchJobError  # type: ignore


def fetch(conn, job_id, **kw):
    return Job.fetch(job_id, connection=conn, **kw)


def status(job):
    s = job.get_status(refresh=True)
    return getattr(s, "value", s)


def status_of(conn, job_id):
    return status(fetch(conn, job_id))


def exc_text(job):
    """The failure text as a client reads it: job.exc_info, else the latest result's exc_string."""
    job.refresh()
    res = job.latest_result()
    text = res.exc_string if res is not None else None
    if not text:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            text = job.exc_info
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text or ""


def result_type_name(res):
    t = res.type
    return getattr(t, "name", str(t))


def workers_by_name(conn):
    return {w.name: w for w in Worker.all(connection=conn)}


def worker_hash(conn, name):
    return {k.decode(): v.decode() for k, v in conn.hgetall(f"rq:worker:{name}").items()}


def find_worker(conn, name):
    """Worker object for a worker key that still exists (dead workers keep their hash for 60 s)."""
    return Worker.find_by_key(f"rq:worker:{name}", connection=conn)


def registry_ids(queue, which):
    reg = getattr(queue, f"{which}_job_registry")
    return list(reg.get_job_ids())


def wip_members(conn, queue_name="default"):
    return [(m.decode(), s) for m, s in conn.zrange(f"rq:wip:{queue_name}", 0, -1, withscores=True)]


def make_started_entries_abandoned(conn, queue_name="default"):
    """Turn every started-registry entry into an expired one, as if its heartbeat stopped long ago."""
    members = conn.zrange(f"rq:wip:{queue_name}", 0, -1)
    for m in members:
        conn.zadd(f"rq:wip:{queue_name}", {m: 1}, xx=True)
    return [m.decode() for m in members]


def now():
    return time.time()


__all__ = ["Queue", "Worker", "Job", "Result", "NoSuchJobError", "fetch", "status", "status_of",
           "exc_text", "result_type_name", "workers_by_name", "worker_hash", "find_worker",
           "registry_ids", "wip_members", "make_started_entries_abandoned"]
