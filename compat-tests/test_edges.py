"""Edge cases: typed values through the codec, several queues, limits, pub/sub commands, the
scheduler role, heartbeats, configuration from the environment, the v2 layout."""
import datetime as dt
import decimal
import os
import signal
import time
import uuid

import pytest
from rq import Queue, Retry

import harness
from harness import wait_for
from rqapi import (exc_text, fetch, find_worker, registry_ids, status, status_of, wip_members,
                   make_started_entries_abandoned, workers_by_name)
from rq_worker import diag

try:
    from rq.command import send_kill_horse_command, send_shutdown_command
except ImportError:  # pragma: no cover
    send_kill_horse_command = send_shutdown_command = None


def same(a, b):
    """Equal *and* of the same types all the way down (1 == 1.0 == True in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (len(a) == len(b) and all(same(k1, k2) and same(a[k1], b[k2])
                                         for k1, k2 in zip(sorted(a, key=repr), sorted(b, key=repr))))
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.utcoffset() == b.utcoffset()
    return a == b


VALUES = {
    "int-small": 7, "int-neg": -300, "int-32": 2 ** 31 + 5, "int-64-neg": -(2 ** 63), "int-big": 2 ** 70,
    "int-big-neg": -(2 ** 100) + 1, "float": 1.5, "float-neg-zero": -0.0, "float-inf": float("inf"),
    "float-tiny": 5e-324, "bool-true": True, "bool-false": False, "none": None, "str-empty": "",
    "str-unicode": "zażółć gęślą jaźń ✓ 𝄞", "str-long": "x" * 70000, "bytes": b"\x00\xffbin",
    "bytes-empty": b"", "list": [1, "a", None], "tuple": (1, (2, 3)), "tuple-empty": (), "tuple-1": ("one",),
    "set": {1, 2, 3}, "frozenset": frozenset({"a"}), "dict-int-keys": {1: "a", 2: "b"},
    "dict-nested": {"a": {"b": [1, {"c": ()}]}}, "list-1500": list(range(1500)),
    "datetime-naive": dt.datetime(2026, 11, 28, 21, 56, 4, 99056),
    "datetime-utc": dt.datetime(2026, 11, 28, 21, 56, 4, 99056, tzinfo=dt.timezone.utc),
    "datetime-offset": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    "date": dt.date(2026, 2, 28), "timedelta": dt.timedelta(days=1, seconds=2, microseconds=3),
    "decimal": decimal.Decimal("1.10"), "decimal-neg-exp": decimal.Decimal("-12.5E+3"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


def test_typed_values_round_trip_through_echo(conn, queue, fleet):
    """Every value goes in as a pickled argument and must come back as the very same Python value."""
    jobs = {name: queue.enqueue(diag.echo, value, kw=value) for name, value in VALUES.items()}
    fleet.burst()
    problems = {}
    for name, job in jobs.items():
        value = VALUES[name]
        expected = diag.echo(value, kw=value)
        j = fetch(conn, job.id)
        if status(j) != "finished":
            problems[name] = f"status {status(j)}: {exc_text(j)[-300:]}"
            continue
        got = j.return_value()
        if not same(got, expected):
            problems[name] = f"got {got!r:.200} expected {expected!r:.200}"
    assert not problems, problems


def test_several_queues_in_priority_order(conn, fleet):
    high, low = Queue("high", connection=conn), Queue("low", connection=conn)
    lows = [low.enqueue(diag.add, i, 0) for i in range(3)]
    highs = [high.enqueue(diag.add, i, 100) for i in range(3)]
    w = fleet.burst(queues=("high", "low"))
    for j in lows + highs:
        assert status_of(conn, j.id) == "finished"
    last_high = max(fetch(conn, j.id).ended_at for j in highs)
    first_low = min(fetch(conn, j.id).started_at for j in lows)
    assert last_high <= first_low
    assert fetch(conn, lows[0].id).origin == "low" and fetch(conn, highs[0].id).origin == "high"
    assert registry_ids(high, "finished") and registry_ids(low, "finished")
    assert find_worker(conn, w.name).queue_names() == ["high", "low"]
    assert conn.llen("rq:queue:high:intermediate") == 0 and conn.llen("rq:queue:low:intermediate") == 0


def test_idle_worker_on_two_queues(conn, fleet):
    a, b = Queue("qa", connection=conn), Queue("qb", connection=conn)
    w = fleet.start(queues=("qa", "qb"), name="two-q")
    wait_for(lambda: getattr(workers_by_name(conn).get("two-q"), "state", None) == "idle", timeout=60,
             what="idle")
    jb = b.enqueue(diag.add, 1, 2)
    wait_for(lambda: status_of(conn, jb.id) == "finished", timeout=60, what="job on the second queue")
    ja = a.enqueue(diag.add, 3, 4)
    wait_for(lambda: status_of(conn, ja.id) == "finished", timeout=60, what="job on the first queue")
    assert conn.sismember("rq:workers:qa", "rq:worker:two-q") and conn.sismember("rq:workers:qb", "rq:worker:two-q")
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    assert not conn.sismember("rq:workers:qa", "rq:worker:two-q")
    assert not conn.sismember("rq:workers:qb", "rq:worker:two-q")


def test_max_jobs(conn, queue, fleet):
    jobs = [queue.enqueue(diag.add, i, i) for i in range(5)]
    w = fleet.start(max_jobs=2)
    assert w.wait(60) == 0
    assert [status_of(conn, j.id) for j in jobs] == ["finished"] * 2 + ["queued"] * 3
    assert queue.count == 3


def test_job_fields_preserved(conn, queue, fleet):
    job = queue.enqueue(diag.add, 1, 2, meta={"owner": "tests", "n": 1}, description="custom description",
                        job_timeout=77)
    before = fetch(conn, job.id)
    fleet.burst()
    j = fetch(conn, job.id)
    assert status(j) == "finished"
    assert j.meta == {"owner": "tests", "n": 1}
    assert j.description == "custom description"
    assert j.origin == "default" and j.timeout == 77
    assert j.enqueued_at == before.enqueued_at and j.created_at == before.created_at
    assert j.func_name == "rq_worker.diag.add" and j.args == (1, 2) or list(j.args) == [1, 2]


def test_no_timeout(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 0.5, job_timeout=-1)
    fleet.burst()
    assert fetch(conn, job.id).return_value() == 0.5


def test_job_id_missing_hash_is_skipped(conn, queue, fleet, worker_kind):
    conn.rpush("rq:queue:default", "ghost-job")
    conn.sadd("rq:queues", "rq:queue:default")
    job = queue.enqueue(diag.add, 2, 2)
    fleet.burst()
    assert fetch(conn, job.id).return_value() == 4
    assert queue.count == 0
    if worker_kind == "rust":
        assert conn.llen("rq:queue:default:intermediate") == 0


def test_duplicate_worker_name_refused(conn, queue, fleet):
    first = fleet.start(name="dup-w")
    wait_for(lambda: "dup-w" in workers_by_name(conn), timeout=60, what="first worker")
    second = fleet.start(name="dup-w")
    assert second.wait(60) != 0
    assert first.alive()
    job = queue.enqueue(diag.add, 1, 1)
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=60, what="job by the first worker")
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0


def test_shutdown_command(conn, queue, fleet):
    w = fleet.start(name="sd-w")
    wait_for(lambda: getattr(workers_by_name(conn).get("sd-w"), "state", None) == "idle", timeout=60,
             what="idle")
    send_shutdown_command(conn, "sd-w")
    assert w.wait(60) == 0
    assert "sd-w" not in workers_by_name(conn)


def test_kill_horse_command(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 120)
    w = fleet.start(name="kh-w")
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    wait_for(lambda: getattr(workers_by_name(conn).get("kh-w"), "state", None) == "busy", timeout=30,
             what="busy")
    send_kill_horse_command(conn, "kh-w")
    wait_for(lambda: status_of(conn, job.id) == "failed", timeout=60, what="job failed after kill-horse")
    assert job.id in registry_ids(queue, "failed") and registry_ids(queue, "started") == []
    nxt = queue.enqueue(diag.add, 5, 5)
    wait_for(lambda: status_of(conn, nxt.id) == "finished", timeout=60, what="next job")
    assert w.alive()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_enqueue_in_runs_with_scheduler(conn, queue, fleet):
    job = queue.enqueue_in(dt.timedelta(seconds=1), diag.add, 20, 1)
    assert status_of(conn, job.id) == "scheduled"
    assert registry_ids(queue, "scheduled") == [job.id]
    w = fleet.start(scheduler=True)
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=90, what="scheduled job to run")
    assert fetch(conn, job.id).return_value() == 21
    assert registry_ids(queue, "scheduled") == []
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_started_registry_score_is_refreshed(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 6)
    w = fleet.start(job_monitoring_interval=1)
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    wait_for(lambda: wip_members(conn), timeout=10, what="started entry")
    first = wip_members(conn)[0][1]
    wait_for(lambda: status_of(conn, job.id) == "finished" or (wip_members(conn) and wip_members(conn)[0][1] > first),
             timeout=30, what="a refreshed started-registry score")
    if status_of(conn, job.id) != "finished":
        assert wip_members(conn)[0][1] > time.time()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_dependents_of_a_parent_with_result_ttl_zero(conn, queue, fleet):
    parent = queue.enqueue(diag.add, 1, 1, result_ttl=0)
    child = queue.enqueue(diag.add, 2, 2, depends_on=parent)
    fleet.burst()
    assert fetch(conn, child.id).return_value() == 4


def _kill_redis_clients(conn):
    for kind in ("normal", "pubsub"):
        try:
            conn.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
        except Exception:
            pass


@pytest.mark.rust_only
def test_reconnects_after_connections_are_killed(conn, queue, fleet):
    w = fleet.start(name="rc-w")
    wait_for(lambda: getattr(workers_by_name(conn).get("rc-w"), "state", None) == "idle", timeout=60,
             what="idle")
    _kill_redis_clients(conn)
    job = queue.enqueue(diag.add, 1, 41)
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=90, what="job after reconnect")
    slow = queue.enqueue(diag.sleep, 2)
    wait_for(lambda: status_of(conn, slow.id) == "started", timeout=60, what="started")
    _kill_redis_clients(conn)
    wait_for(lambda: status_of(conn, slow.id) == "finished", timeout=90, what="job across a reconnect")
    assert fetch(conn, slow.id).return_value() == 2
    assert w.alive()
    # pub/sub resubscribed: a stop-job command still reaches the worker
    from rq.command import send_stop_job_command
    long = queue.enqueue(diag.sleep, 120)
    wait_for(lambda: status_of(conn, long.id) == "started", timeout=60, what="started")
    wait_for(lambda: conn.pubsub_numsub("rq:pubsub:rc-w")[0][1] >= 1, timeout=60, what="resubscribed")
    send_stop_job_command(conn, long.id)
    wait_for(lambda: status_of(conn, long.id) == "stopped", timeout=60, what="stopped after resubscribe")
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


@pytest.mark.rust_only
def test_configuration_from_environment(conn, fleet):
    qa, qb = Queue("env-a", connection=conn), Queue("env-b", connection=conn)
    cmd = [harness.rust_worker_bin(), "--name", "envw", "--burst"]
    env = fleet.env()
    env.update({"REDIS_URL": fleet.redis_url, "QUEUE_NAME": "env-a,env-b", "WORKER_COUNT": "2"})
    ja, jb = qa.enqueue(diag.add, 1, 1), qb.enqueue(diag.add, 2, 2)
    proc = harness.WorkerProc("rust", "envw", cmd, env, fleet.tmp_path / "envw.log")
    fleet.procs.append(proc)
    assert proc.wait(60) == 0, proc.log()[-3000:]
    assert fetch(conn, ja.id).return_value() == 2 and fetch(conn, jb.id).return_value() == 4
    names = {fetch(conn, ja.id).worker_name, fetch(conn, jb.id).worker_name}
    assert names <= {"envw-1", "envw-2"}, names
    for n in ("envw-1", "envw-2"):
        assert find_worker(conn, n).queue_names() == ["env-a", "env-b"]


@pytest.mark.rust_only
@pytest.mark.rq_min(2, 0)
def test_v2_layout(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 3)
    w = fleet.start(name="v2-w", extra=("--rq-version", "v2"))
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    members = wait_for(lambda: wip_members(conn), timeout=10, what="started entry")
    member = members[0][0]
    assert member.startswith(job.id + ":") and len(member.split(":")[-1]) >= 16
    assert registry_ids(queue, "started") == [job.id]
    wait_for(lambda: workers_by_name(conn)["v2-w"].get_current_job_id() == job.id, timeout=10, what="current job")
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=60, what="finished")
    res = fetch(conn, job.id).latest_result()
    assert res.return_value == 3 and getattr(res, "execution_id", None) == member.split(":")[-1]
    # kill -9 in v2 mode; a Python worker of this version cleans the composite member up
    doomed = queue.enqueue(diag.sleep, 120)
    wait_for(lambda: status_of(conn, doomed.id) == "started", timeout=60, what="started")
    w.kill9_group()
    make_started_entries_abandoned(conn)
    fleet.burst(kind="python")
    assert status_of(conn, doomed.id) == "failed"
    assert wip_members(conn) == []


@pytest.mark.rust_only
@pytest.mark.rq_max(1, 16)
def test_v2_refuses_to_start_beside_a_1x_worker(conn, queue, fleet):
    py = fleet.start(kind="python", name="old-py")
    wait_for(lambda: "old-py" in workers_by_name(conn), timeout=60, what="python 1.16 worker")
    ours = fleet.start(name="v2-refuse", extra=("--rq-version", "v2"))
    assert ours.wait(60) != 0
    py.signal(signal.SIGTERM)
    assert py.wait(60) == 0


@pytest.mark.rust_only
@pytest.mark.rq_max(1, 16)
def test_v2_fails_colon_ids_visibly(conn, queue, fleet):
    job = queue.enqueue(diag.add, 1, 2, job_id="col:on")
    fleet.burst(extra=("--rq-version", "v2"))
    assert status_of(conn, "col:on") == "failed"
    assert exc_text(fetch(conn, "col:on"))
    assert registry_ids(queue, "started") == []


def test_round_robin_dequeue_order(conn, fleet):
    qa, qb = Queue("rr-a", connection=conn), Queue("rr-b", connection=conn)
    ja = [qa.enqueue(diag.add, i, 0) for i in range(3)]
    jb = [qb.enqueue(diag.add, i, 0) for i in range(3)]
    fleet.burst(queues=("rr-a", "rr-b"), extra=("--dequeue-strategy", "round_robin"))
    order = sorted(ja + jb, key=lambda j: fetch(conn, j.id).started_at)
    assert [fetch(conn, j.id).origin for j in order] == ["rr-a", "rr-b"] * 3


def test_max_idle_time(conn, queue, fleet):
    job = queue.enqueue(diag.add, 1, 2)
    w = fleet.start(extra=("--max-idle-time", "2"))
    assert w.wait(120) == 0
    assert fetch(conn, job.id).return_value() == 3
    assert w.name not in workers_by_name(conn)


def test_canceled_job_is_not_run(conn, queue, fleet):
    from rq.job import JobStatus
    job = queue.enqueue(diag.add, 1, 2)
    keep = queue.enqueue(diag.add, 3, 4)
    j = fetch(conn, job.id)
    j.cancel()
    fleet.burst()
    assert status_of(conn, job.id) == JobStatus.CANCELED
    assert fetch(conn, keep.id).return_value() == 7


def test_job_deleted_while_running_does_not_kill_the_worker(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 2)
    w = fleet.start(name="del-w")
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    fetch(conn, job.id).delete()
    nxt = queue.enqueue(diag.add, 1, 1)
    wait_for(lambda: status_of(conn, nxt.id) == "finished", timeout=60, what="next job")
    assert w.alive()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def started_counts(conn, url):
    """The started count as this rq version's clients see it: the registry API and `rq info`."""
    from rq.registry import StartedJobRegistry
    n = StartedJobRegistry("default", connection=conn).count
    rc, out, err = harness.rq_cli(url, "info", "-R")
    return n, out


def test_deleting_a_running_job_frees_its_started_count(conn, queue, fleet, redis_url, worker_kind):
    """Issue 13: with rq 2.x/3.0 clients, whose Job.delete() removes only `job_id:execution_id`
    members, the compat layout's plain member kept the started count one too high until the job
    ended. rq 1.16 clients remove the plain id themselves; for 2.x/3.0 rq-worker notices within
    about a second (README, "Deleting a running job")."""
    from rq.registry import StartedJobRegistry
    reg = StartedJobRegistry("default", connection=conn)
    w = fleet.start(name="del-count")
    job = queue.enqueue(diag.sleep, 15)
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    assert reg.count == 1 and reg.get_job_ids() == [job.id]
    fetch(conn, job.id).delete()
    # Python workers of the client's own version are right at once, rq-worker within about a second:
    # well before the job ends (the bound only has to tell the two apart).
    wait_for(lambda: reg.count == 0, timeout=8, interval=0.05, what="started count 0 after the delete")
    assert reg.get_job_ids() == []
    n, out = started_counts(conn, redis_url)
    assert n == 0 and f"{job.id}" not in out, out
    # A 1.16/2.x client's worker view must not point at the deleted job (Job.fetch would fail).
    if worker_kind == "rust":
        wait_for(lambda: workers_by_name(conn)["del-count"].get_current_job_id() is None, timeout=8,
                 what="the worker no longer naming the deleted job")
    # The job runs to its end; nothing is left started or recorded for it afterwards.
    nxt = queue.enqueue(diag.add, 1, 1)
    wait_for(lambda: status_of(conn, nxt.id) == "finished", timeout=60, what="next job after the deleted one")
    assert reg.count == 0 and conn.zcard("rq:wip:default") == 0
    assert started_counts(conn, redis_url)[0] == 0
    assert queue.failed_job_registry.count == 0
    if worker_kind == "rust":   # a Python worker saves the job again when it ends, as finished
        assert job.id not in queue.finished_job_registry.get_job_ids()
        assert not conn.exists(f"rq:job:{job.id}")
        assert not conn.keys(f"rq:execution:{job.id}:*") and not conn.exists(f"rq:executions:{job.id}")
        assert not conn.smembers(f"rq:worker:{w.name}:executions")
    assert w.alive()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_cancelling_a_running_job_frees_its_started_count(conn, queue, fleet, redis_url):
    """Job.cancel() on a running job takes it out of the started registry as Job.delete() does
    (rq 2.x/3.0 remove only composite members); the job runs to its end."""
    from rq.registry import StartedJobRegistry
    reg = StartedJobRegistry("default", connection=conn)
    w = fleet.start(name="cancel-count")
    job = queue.enqueue(diag.sleep, 15)
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    fetch(conn, job.id).cancel()
    wait_for(lambda: reg.count == 0, timeout=8, interval=0.05, what="started count 0 after the cancel")
    assert started_counts(conn, redis_url)[0] == 0
    nxt = queue.enqueue(diag.add, 1, 1)
    wait_for(lambda: status_of(conn, nxt.id) == "finished", timeout=60, what="next job after the cancelled one")
    assert reg.count == 0 and conn.zcard("rq:wip:default") == 0
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_stopped_job_is_not_retried(conn, queue, fleet):
    from rq.command import send_stop_job_command
    job = queue.enqueue(diag.sleep, 120, retry=Retry(max=2))
    w = fleet.start(name="stopr-w")
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    wait_for(lambda: getattr(workers_by_name(conn).get("stopr-w"), "state", None) == "busy", timeout=30,
             what="busy")
    send_stop_job_command(conn, job.id)
    wait_for(lambda: status_of(conn, job.id) == "stopped", timeout=60, what="stopped")
    j = fetch(conn, job.id)
    assert j.retries_left == 2
    assert registry_ids(queue, "failed") == [job.id] and queue.count == 0
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    assert status_of(conn, job.id) == "stopped"


def test_timeout_is_retried(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 60, job_timeout=1, retry=Retry(max=1))
    w = fleet.burst(timeout=120)
    j = fetch(conn, job.id)
    assert status(j) == "failed" and j.retries_left == 0
    assert "JobTimeoutException" in exc_text(j)
    assert find_worker(conn, w.name).failed_job_count == 2


def test_an_rq_worker_command_line(conn, fleet, tmp_path):
    """The same `rq worker` option spellings start either worker: --logging_level, -ds, -S with a
    serializer class path, --pid, --disable-job-desc-logging."""
    from rq.serializers import JSONSerializer

    q = Queue("cli", connection=conn, serializer=JSONSerializer)
    job = q.enqueue(diag.add, 2, 3)
    pid = tmp_path / "worker.pid"
    fleet.burst(queues=("cli",), extra=["--logging_level", "DEBUG", "-ds", "round_robin",
                                        "-S", "rq.serializers.JSONSerializer", "--pid", str(pid),
                                        "--disable-job-desc-logging"])
    assert status_of(conn, job.id) == "finished"
    assert fetch(conn, job.id, serializer=JSONSerializer).return_value() == 5
    assert pid.read_text().strip().isdigit()
