"""A worker's life as clients see it: idle and busy states, current job, heartbeats, pub/sub commands,
signals, crashes and their cleanup, suspension, concurrency."""
import re
import signal
import time

import pytest
from rq import Retry
from rq.command import send_stop_job_command

import harness
from harness import wait_for
from rqapi import (exc_text, fetch, find_worker, registry_ids, status, status_of, wip_members,
                   make_started_entries_abandoned, worker_hash, workers_by_name)
from rq_worker import diag


def wait_started(conn, job_id, timeout=60):
    wait_for(lambda: status_of(conn, job_id) == "started", timeout=timeout, what=f"job {job_id} to start")


def wait_registered(conn, name, state=None, timeout=60):
    def ok():
        w = workers_by_name(conn).get(name)
        return w is not None and (state is None or w.state == state)
    wait_for(ok, timeout=timeout, what=f"worker {name} registered" + (f" in state {state}" if state else ""))
    return workers_by_name(conn)[name]


def assert_worker_dead(conn, name):
    assert name not in workers_by_name(conn)
    key = f"rq:worker:{name}"
    assert not conn.sismember("rq:workers", key)
    assert not conn.sismember("rq:workers:default", key)
    if conn.exists(key):
        assert conn.hexists(key, "death")
        assert 0 < conn.ttl(key) <= 60


def test_idle_worker_record(conn, queue, fleet):
    w = fleet.start(name="idle-w")
    rec = wait_registered(conn, "idle-w", state="idle")
    assert rec.queue_names() == ["default"]
    assert rec.pid == w.pid
    assert rec.birth_date is not None and rec.last_heartbeat is not None
    assert rec.get_current_job_id() is None
    assert rec.successful_job_count == 0 and rec.failed_job_count == 0
    assert conn.sismember("rq:workers", "rq:worker:idle-w")
    assert conn.sismember("rq:workers:default", "rq:worker:idle-w")
    assert conn.ttl("rq:worker:idle-w") > 60
    _, out, _ = harness.rq_cli(fleet.redis_url, "info", "-W", "-r")
    assert re.search(r"^worker idle-w \(\S+ \S+ %d\) idle default\. jobs: 0 finished, 0 failed$" % w.pid,
                     out, re.M), out
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    assert_worker_dead(conn, "idle-w")
    _, out, _ = harness.rq_cli(fleet.redis_url, "info", "-W")
    assert "0 workers" in out


def test_mid_flight_state(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 12)   # outlives the probes below, even on a busy machine
    w = fleet.start(name="busy-w", job_monitoring_interval=1)
    wait_started(conn, job.id)
    # StartedJobRegistry lists the job; its expiry is in the future
    wait_for(lambda: registry_ids(queue, "started") == [job.id], timeout=10, what="started registry")
    assert queue.started_job_registry.count == 1
    members = wip_members(conn)
    assert len(members) == 1 and all(score > time.time() for _, score in members)
    # Worker.all shows the worker busy with this job
    rec = wait_registered(conn, "busy-w", state="busy")
    assert rec.get_current_job_id() == job.id
    j = fetch(conn, job.id)
    assert j.worker_name == "busy-w" and j.started_at is not None and j.ended_at is None
    _, out, _ = harness.rq_cli(fleet.redis_url, "info", "-r")
    assert re.search(r"^queue default 0, 1 executing, 0 finished, 0 failed$", out, re.M), out
    assert re.search(r"^worker busy-w \(.*\) busy default\.", out, re.M), out
    # `rq info` cleans registries: a live job must survive it
    assert status_of(conn, job.id) == "started" or status_of(conn, job.id) == "finished"
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=60, what="job to finish")
    wait_for(lambda: workers_by_name(conn)["busy-w"].state == "idle", timeout=10, what="idle again")
    rec = workers_by_name(conn)["busy-w"]
    assert rec.get_current_job_id() is None
    assert rec.successful_job_count == 1 and rec.total_working_time > 0
    assert fetch(conn, job.id).return_value() == 12
    assert registry_ids(queue, "started") == []
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    assert_worker_dead(conn, "busy-w")


def test_stop_job_command(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 120)
    w = fleet.start(name="stop-w")
    wait_started(conn, job.id)
    wait_registered(conn, "stop-w", state="busy")
    send_stop_job_command(conn, job.id)
    wait_for(lambda: status_of(conn, job.id) == "stopped", timeout=60, what="job stopped")
    assert job.id in registry_ids(queue, "failed")
    assert registry_ids(queue, "started") == []
    # the worker survives and takes the next job
    nxt = queue.enqueue(diag.add, 2, 2)
    wait_for(lambda: status_of(conn, nxt.id) == "finished", timeout=60, what="next job after stop")
    assert w.alive()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_warm_shutdown_finishes_the_job(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 6)
    w = fleet.start(name="warm-w")
    wait_started(conn, job.id)
    waiting = queue.enqueue(diag.add, 1, 1)
    w.signal(signal.SIGTERM)
    assert w.wait(120) == 0
    j = fetch(conn, job.id)
    assert status(j) == "finished" and j.return_value() == 6
    # nothing new was dequeued after the shutdown request
    assert status_of(conn, waiting.id) == "queued" and queue.job_ids == [waiting.id]
    assert registry_ids(queue, "started") == []
    assert_worker_dead(conn, "warm-w")
    assert find_worker(conn, "warm-w").successful_job_count == 1


def test_cold_shutdown(conn, queue, fleet, worker_kind):
    job = queue.enqueue(diag.sleep, 120)
    w = fleet.start(name="cold-w")
    wait_started(conn, job.id)
    w.signal(signal.SIGTERM)
    time.sleep(1.5)  # RQ ignores a second signal within 1 s of the first
    w.signal(signal.SIGTERM)
    assert w.wait(60) is not None
    assert_worker_dead(conn, "cold-w")
    if worker_kind == "python":
        # RQ leaves the job `started` for the abandoned-job cleanup (rq-wire.md §9.11)
        assert status_of(conn, job.id) == "started"
        make_started_entries_abandoned(conn)
        fleet.burst(kind="python")
    # rq-worker fails (or retries) the job itself; either way it never stays `started`
    assert status_of(conn, job.id) == "failed"
    assert job.id in registry_ids(queue, "failed")
    assert registry_ids(queue, "started") == []
    assert exc_text(fetch(conn, job.id))


@pytest.mark.rust_only
def test_cold_shutdown_retries_a_job_with_retries_left(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 120, retry=Retry(max=1))
    w = fleet.start(name="cold-r")
    wait_started(conn, job.id)
    w.signal(signal.SIGTERM)
    time.sleep(1.5)
    w.signal(signal.SIGTERM)
    assert w.wait(60) is not None
    j = fetch(conn, job.id)
    assert status(j) == "queued" and j.retries_left == 0
    assert queue.job_ids == [job.id]
    assert registry_ids(queue, "started") == []


def test_kill9_then_python_worker_cleans_up(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 120)
    w = fleet.start(name="doomed")
    wait_started(conn, job.id)
    wait_for(lambda: registry_ids(queue, "started") == [job.id], timeout=10, what="started registry")
    w.kill9_group()
    assert status_of(conn, job.id) == "started"
    # pretend the heartbeat expired long ago, then let a Python worker of this rq version clean up
    assert make_started_entries_abandoned(conn)
    fleet.burst(kind="python")
    j = fetch(conn, job.id)
    assert status(j) == "failed"
    assert "AbandonedJobError" in exc_text(j)
    assert registry_ids(queue, "failed") == [job.id]
    assert registry_ids(queue, "started") == []
    assert wip_members(conn) == []


def test_suspend_and_resume(conn, queue, fleet):
    w = fleet.start(name="susp-w")
    wait_registered(conn, "susp-w", state="idle")
    harness.rq_cli(fleet.redis_url, "suspend")
    # A Python worker blocked in its dequeue still runs the job that wakes it, then suspends;
    # a worker that checks while idle leaves it queued. Either is fine for `first`.
    first = queue.enqueue(diag.add, 1, 1)
    wait_registered(conn, "susp-w", state="suspended")
    job = queue.enqueue(diag.add, 3, 4)
    time.sleep(1.0)
    assert status_of(conn, job.id) == "queued" and job.id in queue.job_ids
    _, out, _ = harness.rq_cli(fleet.redis_url, "info", "-W", "-r")
    assert re.search(r"^worker susp-w \(.*\) suspended default\.", out, re.M), out
    # a burst worker started while suspended does not run anything (`rq worker` refuses to start)
    fleet.start(burst=True).wait(60)
    assert status_of(conn, job.id) == "queued"
    harness.rq_cli(fleet.redis_url, "resume")
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=60, what="job after resume")
    wait_for(lambda: status_of(conn, first.id) == "finished", timeout=60, what="first job after resume")
    assert fetch(conn, job.id).return_value() == 7
    wait_for(lambda: workers_by_name(conn)["susp-w"].state in ("idle", "busy"), timeout=30,
             what="state back to idle")
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_worker_ttl_and_heartbeat_fields(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 3)
    w = fleet.start(name="hb-w", job_monitoring_interval=1)
    wait_started(conn, job.id)
    wait_registered(conn, "hb-w", state="busy")
    h = worker_hash(conn, "hb-w")
    for field in ("birth", "last_heartbeat", "queues", "pid", "hostname", "version", "python_version", "state"):
        assert field in h, field
    assert h["current_job"] == job.id if "current_job" in h else True
    first = fetch(conn, job.id).last_heartbeat
    assert first is not None
    wait_for(lambda: fetch(conn, job.id).last_heartbeat != first or status_of(conn, job.id) == "finished",
             timeout=30, what="a heartbeat")
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


@pytest.mark.rust_only
def test_concurrency_four_threads_four_workers(conn, queue, fleet):
    w = fleet.start(name="cc", concurrency=4)
    wait_for(lambda: len([n for n in workers_by_name(conn) if n.startswith("cc-")]) == 4, timeout=60,
             what="four thread workers")
    names = sorted(n for n in workers_by_name(conn) if n.startswith("cc-"))
    for n in names:
        rec = workers_by_name(conn)[n]
        assert rec.queue_names() == ["default"] and rec.pid == w.pid
    jobs = [queue.enqueue(diag.sleep, 12) for _ in range(4)]
    for j in jobs:
        wait_started(conn, j.id)
    recs = workers_by_name(conn)
    busy = {n: recs[n].get_current_job_id() for n in names}
    assert all(recs[n].state == "busy" for n in names), {n: recs[n].state for n in names}
    assert sorted(busy.values()) == sorted(j.id for j in jobs)
    assert sorted(fetch(conn, j.id).worker_name for j in jobs) == names
    assert sorted(registry_ids(queue, "started")) == sorted(j.id for j in jobs)
    _, out, _ = harness.rq_cli(fleet.redis_url, "info", "-r")
    assert len(re.findall(r"^worker cc-\S+ \(.*\) busy default\.", out, re.M)) == 4, out
    for j in jobs:
        wait_for(lambda: status_of(conn, j.id) == "finished", timeout=60, what="jobs to finish")
    wait_for(lambda: sum(workers_by_name(conn)[n].successful_job_count for n in names) == 4, timeout=10,
             what="counters")
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    for n in names:
        assert_worker_dead(conn, n)
