"""Job outcomes: enqueue with the venv's rq, process with a burst worker, read back with that rq."""
import math
import re
import time

import pytest
from rq import Queue, Retry
from rq.serializers import JSONSerializer

import harness
from rqapi import (NoSuchJobError, Result, exc_text, fetch, find_worker, registry_ids,
                   result_type_name, status, status_of, workers_by_name)
from rq_worker import diag


def names_arg(text, arg):
    """The failure text names argument `arg` in quotes, as Python's TypeError does ('b')."""
    return re.search(r"""['"`]%s['"`]""" % re.escape(arg), text) is not None


def test_success_return_values(conn, queue, fleet):
    j_add = queue.enqueue(diag.add, 2, 3)
    j_float = queue.enqueue(diag.add, 1.5, 2)
    j_echo = queue.enqueue(diag.echo, 1, "two", [3], x={"y": None}, s="é")
    j_noop = queue.enqueue("rq_worker.diag.noop")          # enqueued by dotted string
    j_sleep = queue.enqueue(diag.sleep, 0.1)
    ids = [j.id for j in (j_add, j_float, j_echo, j_noop, j_sleep)]
    assert status_of(conn, j_add.id) == "queued"

    w = fleet.burst()

    expected = {j_add.id: 5, j_float.id: 3.5, j_echo.id: [[1, "two", [3]], {"x": {"y": None}, "s": "é"}],
                j_noop.id: None, j_sleep.id: 0.1}
    for jid, value in expected.items():
        job = fetch(conn, jid)
        assert status(job) == "finished", jid
        assert job.return_value() == value
        res = job.latest_result()
        assert res is not None and res.type == Result.Type.SUCCESSFUL
        assert res.return_value == value
        assert job.worker_name == w.name
        assert job.enqueued_at <= job.started_at <= job.ended_at
        assert job.exc_info is None
    assert sorted(registry_ids(queue, "finished")) == sorted(ids)
    assert registry_ids(queue, "failed") == []
    assert registry_ids(queue, "started") == []
    assert queue.count == 0
    # the burst worker has registered its death: gone from Worker.all, hash marked dead
    assert w.name not in workers_by_name(conn)
    dead = find_worker(conn, w.name)
    assert dead is not None and dead.successful_job_count == 5 and dead.failed_job_count == 0
    assert conn.hexists(f"rq:worker:{w.name}", "death")
    assert 0 < conn.ttl(f"rq:worker:{w.name}") <= 60
    _, out, _ = harness.rq_cli(fleet.redis_url, "info", "-r")
    assert re.search(r"^queue default 0, 0 executing, 5 finished, 0 failed$", out, re.M), out


def test_failure_exc_info_and_requeue(conn, queue, fleet):
    job = queue.enqueue(diag.fail, "kaboom")
    w = fleet.burst()
    job = fetch(conn, job.id)
    assert status(job) == "failed"
    text = exc_text(job)
    assert "RuntimeError" in text and "kaboom" in text
    res = job.latest_result()
    assert res.type == Result.Type.FAILED and "kaboom" in res.exc_string
    assert job.return_value() is None
    assert registry_ids(queue, "failed") == [job.id]
    assert registry_ids(queue, "finished") == [] and registry_ids(queue, "started") == []
    assert job.worker_name == w.name
    dead = find_worker(conn, w.name)
    assert dead.failed_job_count == 1 and dead.successful_job_count == 0
    _, out, _ = harness.rq_cli(fleet.redis_url, "info", "-r")
    assert re.search(r"^queue default 0, 0 executing, 0 finished, 1 failed$", out, re.M), out

    # requeue through the registry API: the job runs again and fails again
    queue.failed_job_registry.requeue(job.id)
    assert status_of(conn, job.id) == "queued"
    assert registry_ids(queue, "failed") == []
    assert queue.job_ids == [job.id]
    fleet.burst()
    job = fetch(conn, job.id)
    assert status(job) == "failed" and "kaboom" in exc_text(job)
    assert len(job.results()) == 2

    # requeue through the CLI
    _, out, _ = harness.rq_cli(fleet.redis_url, "requeue", "--queue", "default", "--all")
    assert "Requeueing 1 jobs from failed queue" in out
    assert status_of(conn, job.id) == "queued"
    fleet.burst()
    job = fetch(conn, job.id)
    assert status(job) == "failed" and len(job.results()) == 3
    assert registry_ids(queue, "failed") == [job.id]


def test_unknown_function_fails_and_worker_goes_on(conn, queue, fleet):
    j_attr = queue.enqueue("rq_worker.diag.does_not_exist", 1)
    j_mod = queue.enqueue("no_such_module_xyz.func", a=1)
    j_ok = queue.enqueue(diag.add, 20, 22)
    fleet.burst()
    for job_id, needle in ((j_attr.id, "does_not_exist"), (j_mod.id, "no_such_module_xyz")):
        job = fetch(conn, job_id)
        assert status(job) == "failed"
        assert needle in exc_text(job)
        assert job.latest_result().type == Result.Type.FAILED
    assert fetch(conn, j_ok.id).return_value() == 42
    assert sorted(registry_ids(queue, "failed")) == sorted([j_attr.id, j_mod.id])


@pytest.mark.rust_only
def test_unknown_function_names_it_fully(conn, queue, fleet):
    job = queue.enqueue("rq_worker.diag.does_not_exist", 1)
    fleet.burst()
    assert "rq_worker.diag.does_not_exist" in exc_text(fetch(conn, job.id))


def test_bad_arguments_fail_naming_the_argument(conn, queue, fleet):
    j_missing = queue.enqueue(diag.add, 1)
    j_extra_kw = queue.enqueue(diag.add, 1, 2, c=3)
    j_extra_pos = queue.enqueue(diag.add, 1, 2, 3)
    j_ok = queue.enqueue(diag.noop)
    fleet.burst()
    t = exc_text(fetch(conn, j_missing.id))
    assert status_of(conn, j_missing.id) == "failed" and names_arg(t, "b"), t
    t = exc_text(fetch(conn, j_extra_kw.id))
    assert status_of(conn, j_extra_kw.id) == "failed" and names_arg(t, "c"), t
    assert status_of(conn, j_extra_pos.id) == "failed"
    assert exc_text(fetch(conn, j_extra_pos.id))
    assert status_of(conn, j_ok.id) == "finished"


@pytest.mark.rust_only
def test_wrong_argument_type_names_the_argument(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, "abc")
    job2 = queue.enqueue(diag.add, "x", 1)
    fleet.burst()
    t = exc_text(fetch(conn, job.id))
    assert status_of(conn, job.id) == "failed" and names_arg(t, "seconds"), t
    t = exc_text(fetch(conn, job2.id))
    assert status_of(conn, job2.id) == "failed" and names_arg(t, "a"), t


def test_timeout(conn, queue, fleet):
    job = queue.enqueue(diag.sleep, 60, job_timeout=2)
    after = queue.enqueue(diag.add, 1, 1)
    fleet.burst(timeout=90)
    job = fetch(conn, job.id)
    assert status(job) == "failed"
    text = exc_text(job)
    assert "JobTimeoutException" in text, text
    assert registry_ids(queue, "failed") == [job.id]
    assert registry_ids(queue, "started") == []
    assert fetch(conn, after.id).return_value() == 2


def test_retry_immediate(conn, queue, fleet):
    job = queue.enqueue(diag.fail, "again", retry=Retry(max=2))
    w = fleet.burst()
    job = fetch(conn, job.id)
    assert status(job) == "failed"
    assert job.retries_left == 0
    assert registry_ids(queue, "failed") == [job.id]
    assert "again" in exc_text(job)
    # three executions: the first run and two retries
    assert find_worker(conn, w.name).failed_job_count == 3


def test_retry_with_interval_needs_scheduler(conn, queue, fleet):
    job = queue.enqueue(diag.fail, "later", retry=Retry(max=2, interval=[1, 1]))
    w = fleet.start(scheduler=True)
    harness.wait_for(lambda: status_of(conn, job.id) == "failed", timeout=90,
                     what="the job to fail after its interval retries")
    job = fetch(conn, job.id)
    assert job.retries_left == 0
    assert registry_ids(queue, "failed") == [job.id]
    assert registry_ids(queue, "scheduled") == []
    assert workers_by_name(conn)[w.name].failed_job_count == 3
    w.signal(15)
    assert w.wait(60) == 0


def test_result_ttl_zero_deletes_the_job(conn, queue, fleet):
    job = queue.enqueue(diag.add, 1, 2, result_ttl=0)
    fleet.burst()
    with pytest.raises(NoSuchJobError):
        fetch(conn, job.id)
    assert conn.exists(f"rq:job:{job.id}") == 0
    assert registry_ids(queue, "finished") == []
    assert registry_ids(queue, "failed") == []


def test_result_ttl_minus_one_keeps_forever(conn, queue, fleet):
    job = queue.enqueue(diag.add, 1, 2, result_ttl=-1)
    job_n = queue.enqueue(diag.add, 2, 2, result_ttl=100)
    fleet.burst()
    job = fetch(conn, job.id)
    assert status(job) == "finished" and job.return_value() == 3
    assert conn.ttl(f"rq:job:{job.id}") == -1
    assert conn.ttl(f"rq:results:{job.id}") == -1
    assert math.isinf(conn.zscore("rq:finished:default", job.id))
    assert job.id in registry_ids(queue, "finished")
    assert 0 < conn.ttl(f"rq:job:{job_n.id}") <= 100
    assert conn.zscore("rq:finished:default", job_n.id) <= time.time() + 101
    assert fetch(conn, job_n.id).return_value() == 4


def test_failure_ttl(conn, queue, fleet):
    job = queue.enqueue(diag.fail, "x", failure_ttl=100)
    fleet.burst()
    assert status_of(conn, job.id) == "failed"
    assert 0 < conn.ttl(f"rq:job:{job.id}") <= 100
    assert conn.zscore("rq:failed:default", job.id) <= time.time() + 101


def test_dependents(conn, queue, fleet):
    parent = queue.enqueue(diag.add, 1, 2)
    child = queue.enqueue(diag.add, 3, 4, depends_on=parent)
    grandchild = queue.enqueue(diag.echo, "gc", depends_on=child)
    assert status_of(conn, child.id) == "deferred"
    assert child.id in registry_ids(queue, "deferred")
    bad_parent = queue.enqueue(diag.fail, "parent failed")
    blocked = queue.enqueue(diag.add, 5, 5, depends_on=bad_parent)
    fleet.burst()
    for jid, value in ((parent.id, 3), (child.id, 7), (grandchild.id, [["gc"], {}])):
        job = fetch(conn, jid)
        assert status(job) == "finished" and job.return_value() == value
    assert fetch(conn, parent.id).ended_at <= fetch(conn, child.id).started_at
    assert status_of(conn, bad_parent.id) == "failed"
    # a failed parent never satisfies its dependent
    assert status_of(conn, blocked.id) == "deferred"
    assert registry_ids(queue, "deferred") == [blocked.id]


def test_dependent_allowing_failure(conn, queue, fleet):
    from rq.job import Dependency
    bad_parent = queue.enqueue(diag.fail, "parent failed")
    child = queue.enqueue(diag.add, 5, 5, depends_on=Dependency(jobs=[bad_parent], allow_failure=True))
    assert status_of(conn, child.id) == "deferred"
    fleet.burst()
    assert status_of(conn, bad_parent.id) == "failed"
    assert fetch(conn, child.id).return_value() == 10


def test_json_serializer(conn, fleet):
    q = Queue("default", connection=conn, serializer=JSONSerializer)
    job = q.enqueue("rq_worker.diag.add", 2, 3)
    job2 = q.enqueue("rq_worker.diag.echo", 1, [2, "x"], k={"a": None})
    job3 = q.enqueue("rq_worker.diag.fail", "json boom")
    fleet.burst(serializer="json")
    j = fetch(conn, job.id, serializer=JSONSerializer)
    assert status(j) == "finished" and j.return_value() == 5
    assert fetch(conn, job2.id, serializer=JSONSerializer).return_value() == [[1, [2, "x"]], {"k": {"a": None}}]
    j3 = fetch(conn, job3.id, serializer=JSONSerializer)
    assert status(j3) == "failed" and "json boom" in exc_text(j3)


@pytest.mark.rq_max(1, 16)
def test_job_id_with_colon(conn, queue, fleet):
    job = queue.enqueue(diag.add, 1, 2, job_id="col:on")
    job2 = queue.enqueue(diag.fail, "colon", job_id="a:b:c")
    fleet.burst()
    assert fetch(conn, "col:on").return_value() == 3
    assert status_of(conn, "col:on") == "finished"
    assert "col:on" in registry_ids(queue, "finished")
    assert status_of(conn, "a:b:c") == "failed"
    assert registry_ids(queue, "failed") == ["a:b:c"]
    assert registry_ids(queue, "started") == []


def test_tally_records_each_execution(conn, queue, fleet, tmp_path):
    """diag.tally (the chaos suite's job): the same lines, value and failure from either worker."""
    tally = tmp_path / "tally.log"
    ok = queue.enqueue(diag.tally, {"v": [1, "x"]}, seconds=0.05)
    bad = queue.enqueue(diag.tally, 7, fail="tally failure")
    fleet.burst(env_extra={"RQ_WORKER_DIAG_TALLY_FILE": str(tally)})
    assert fetch(conn, ok.id).return_value() == {"v": [1, "x"]}
    assert status_of(conn, bad.id) == "failed"
    assert "RuntimeError: tally failure" in exc_text(fetch(conn, bad.id))
    lines = [line.split() for line in tally.read_text().splitlines()]
    assert [(w[0], w[1]) for w in lines] == [("start", ok.id), ("end", ok.id), ("start", bad.id), ("end", bad.id)]
    assert lines[1][2] == "ok" and lines[3][2] == "fail"
    assert all(w[2].isdigit() and w[3].isdigit() for w in lines if w[0] == "start")
    # without the variable it refuses to run (a production worker writes no file a payload names)
    refused = queue.enqueue(diag.tally, 1)
    fleet.burst()
    assert "RQ_WORKER_DIAG_TALLY_FILE is not set" in exc_text(fetch(conn, refused.id))
