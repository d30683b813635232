"""Python jobs (issue 10): ordinary Python functions (python-fixtures/pyjobs.py), enqueued with the
venv's rq and run by the worker under test. With `--worker rust` that is rq-worker `--python <this
venv's interpreter>` (the `fleet` fixture below turns the flag on for every rq-worker this module
starts); with `--worker python` it is the venv's own forking `rq worker`, which is what these tests
were validated against.

Parametrized over the executor mode where the mode matters: `pool` runs under both workers (a Python
`rq worker` ignores it), `fork` only under rq-worker. Tests of options a Python `rq worker` does not
have (`--python-max-rss`, `--python-max-jobs`, `--preload`) are rust_only.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import uuid

import pytest
from rq import Callback, Queue, Retry
from rq.command import send_kill_horse_command, send_stop_job_command
from rq.serializers import JSONSerializer

import harness
import pyjobs
from harness import wait_for
from rqapi import (Result, exc_text, fetch, find_worker, make_started_entries_abandoned, registry_ids,
                   status, status_of, wip_members, workers_by_name)

MODES = [pytest.param("pool", id="pool"), pytest.param("fork", id="fork", marks=pytest.mark.rust_only)]

TIMEOUT_TEXT = "rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value ({} seconds)"
HORSE_DIED_TEXT = "Work-horse terminated unexpectedly; waitpid returned 256; "   # os._exit(1)
KILLED_TEXT = "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); "   # SIGKILL
STOPPED_TEXT = "Job stopped by user, work-horse terminated."
ABANDONED_RE = {   # the cleaning Python worker's text for a job whose worker vanished
    (1, 16): r"Moved to FailedJobRegistry, due to AbandonedJobError, at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+",
    (2, 12): r"Moved to FailedJobRegistry, due to AbandonedJobError, at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00",
    (3, 0): r"Moved to FailedJobRegistry, due to AbandonedJobError, at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00",
}
# what the cleaning Python worker passes to a failure callback as the traceback of AbandonedJobError
ABANDONED_TB_TYPE = {(1, 16): "StackSummary", (2, 12): "StackSummary", (3, 0): "NoneType"}


@pytest.fixture
def fleet(fleet):
    """The suite's fleet, with `--python` on for every rq-worker started in this module."""
    fleet.python = True
    return fleet


@pytest.fixture(params=MODES)
def mode(request, fleet):
    fleet.python_mode = request.param
    return request.param


def callbacks(conn, job_id):
    """The records pyjobs' callbacks left for a job, in order, without the pid."""
    out = []
    for raw in conn.lrange(pyjobs.callback_key(job_id), 0, -1):
        rec = json.loads(raw)
        rec.pop("pid")
        out.append(rec)
    return out


def ok_cb():
    return dict(on_success=Callback(pyjobs.on_success), on_failure=Callback(pyjobs.on_failure))


def rq_info_queue_line(url):
    _, out, _ = harness.rq_cli(url, "info", "-r")
    m = re.search(r"^queue default .*$", out, re.M)
    assert m, out
    return m.group(0)


def local_traceback(func, *args, **kwargs):
    """The traceback text of calling func here, formatted as RQ formats a job's exception."""
    try:
        func(*args, **kwargs)
    except BaseException:   # SystemExit too
        return "".join(traceback.format_exception(*sys.exc_info()))
    raise AssertionError(f"{func.__name__} did not raise")


def canonical_paths(text):
    """File names of frames resolved through symlinks (a venv may be reached through a link)."""
    def real(m):
        path = m.group(1)
        return f'  File "{os.path.realpath(path) if os.path.exists(path) else path}"'
    return re.sub(r'^  File "([^"]+)"', real, text, flags=re.M)


def innermost_frame_and_exception(text):
    """From the last `  File "...` line to the end: the raising frame, its source line, the exception."""
    lines = text.splitlines(keepends=True)
    start = max(i for i, line in enumerate(lines) if line.startswith('  File "'))
    return "".join(lines[start:])


def assert_finished(conn, job_id, value, worker_name=None):
    j = fetch(conn, job_id)
    assert status(j) == "finished", (job_id, status(j), exc_text(j)[-2000:])
    got = j.return_value()
    assert got == value and type(got) is type(value), (job_id, got, value)
    res = j.latest_result()
    assert res.type == Result.Type.SUCCESSFUL and res.return_value == value
    assert len(j.results()) == 1
    assert j.exc_info is None
    if worker_name:
        assert j.worker_name == worker_name
    assert j.enqueued_at <= j.started_at <= j.ended_at
    assert conn.hget(f"rq:job:{job_id}", "status") == b"finished"
    assert 0 < conn.ttl(f"rq:job:{job_id}") <= 500
    return j


def assert_failed(conn, job_id, queue=None):
    """The job failed, with one FAILED result whose text the job's exc_info agrees with; returns the text."""
    j = fetch(conn, job_id)
    assert status(j) == "failed", (job_id, status(j))
    text = exc_text(j)
    res = j.latest_result()
    assert res.type == Result.Type.FAILED and res.exc_string == text
    assert j.return_value() is None
    assert j.ended_at is not None
    if queue is not None:
        assert job_id in registry_ids(queue, "failed")
    return text


# --- results ------------------------------------------------------------------------------------

def test_plain_kwargs_methods_async_and_custom_return(conn, queue, fleet, mode):
    jobs = {
        "add": (queue.enqueue(pyjobs.add, 2, 3), 5),
        "by-string": (queue.enqueue("pyjobs.add", 40, 2), 42),
        "kwargs": (queue.enqueue(pyjobs.greet, "ada", greeting="hi", punctuation="?", times=2), "hi, ada? hi, ada?"),
        "kw-defaults": (queue.enqueue(pyjobs.greet, name="bob"), "hello, bob!"),
        "typed-args": (queue.enqueue(pyjobs.describe_args, 1, 2.5, "s", b"b", (1, 2), {3}, None, flag=True,
                                     nested={"k": [1, {"x": ()}]}),
                       {"args": [1, 2.5, "s", b"b", (1, 2), {3}, None],
                        "kwargs": {"flag": True, "nested": {"k": [1, {"x": ()}]}},
                        "types": ["int", "float", "str", "bytes", "tuple", "set", "NoneType",
                                  "flag:bool", "nested:dict"]}),
        "async": (queue.enqueue(pyjobs.async_add, 20, 22), 42),
        "bound-1": (queue.enqueue(pyjobs.Counter(3).add, 4), 7),
        "bound-2": (queue.enqueue(pyjobs.Counter(3).add, 4), 7),   # the instance is not shared between jobs
        "classmethod": (queue.enqueue(pyjobs.Counter.describe, 5), "Counter/counter:5"),
        "staticmethod": (queue.enqueue(pyjobs.Counter.triple, 5), 15),
        "custom-class": (queue.enqueue(pyjobs.make_point, 1, [2]), pyjobs.Point(1, [2])),
        "list": (queue.enqueue(pyjobs.add, [1], [None]), [1, None]),
    }
    parent = jobs["add"][0]
    jobs["dependent"] = (queue.enqueue(pyjobs.add, 10, 1, depends_on=parent), 11)
    # how RQ names them in the payload (the bound method and the classmethod carry their instance/class)
    assert fetch(conn, jobs["bound-1"][0].id).func_name == "add"
    assert fetch(conn, jobs["classmethod"][0].id).func_name == "describe"
    assert fetch(conn, jobs["staticmethod"][0].id).func_name == "pyjobs.Counter.triple"

    w = fleet.burst()

    for name, (job, value) in jobs.items():
        j = assert_finished(conn, job.id, value, worker_name=w.name)
        assert j.func_name == fetch(conn, job.id).func_name
    point = fetch(conn, jobs["custom-class"][0].id).return_value()
    assert isinstance(point, pyjobs.Point) and type(point).__module__ == "pyjobs"
    assert sorted(registry_ids(queue, "finished")) == sorted(j.id for j, _ in jobs.values())
    assert registry_ids(queue, "failed") == [] and registry_ids(queue, "started") == []
    assert queue.count == 0 and wip_members(conn) == []
    dead = find_worker(conn, w.name)
    assert dead.successful_job_count == len(jobs) and dead.failed_job_count == 0
    assert rq_info_queue_line(fleet.redis_url) == f"queue default 0, 0 executing, {len(jobs)} finished, 0 failed"


def test_json_serializer(conn, fleet, mode):
    q = Queue("jsonq", connection=conn, serializer=JSONSerializer)
    ok = q.enqueue(pyjobs.describe_args, 1, "a", [1, 2], {"k": None}, flag=False)
    kw = q.enqueue(pyjobs.greet, "cy", greeting="yo")
    bad = q.enqueue(pyjobs.fail_plain, "json failure")
    fleet.burst(queues=("jsonq",), serializer="json")
    j = fetch(conn, ok.id, serializer=JSONSerializer)
    assert status(j) == "finished"
    assert j.return_value() == {"args": [1, "a", [1, 2], {"k": None}], "kwargs": {"flag": False},
                                "types": ["int", "str", "list", "dict", "flag:bool"]}
    assert fetch(conn, kw.id, serializer=JSONSerializer).return_value() == "yo, cy!"
    j = fetch(conn, bad.id, serializer=JSONSerializer)
    assert status(j) == "failed"
    assert exc_text(j).splitlines()[-1] == "ValueError: json failure"


def test_unserializable_return_value(conn, queue, fleet, mode):
    """A return value the job's serializer cannot store does not fail the job: RQ stores its
    placeholder text as the result (rq.defaults.UNSERIALIZABLE_RETURN_VALUE_PAYLOAD)."""
    from rq.defaults import UNSERIALIZABLE_RETURN_VALUE_PAYLOAD as PLACEHOLDER
    assert PLACEHOLDER == "Unserializable return value"
    pick = queue.enqueue(pyjobs.unpicklable, **ok_cb())
    jq = Queue("jsonq", connection=conn, serializer=JSONSerializer)
    js = jq.enqueue(pyjobs.make_point, 1, 2)
    fleet.burst()
    fleet.burst(queues=("jsonq",), serializer="json")
    j = fetch(conn, pick.id)
    assert status(j) == "finished" and j.return_value() == PLACEHOLDER
    assert j.latest_result().type == Result.Type.SUCCESSFUL
    recs = callbacks(conn, pick.id)
    assert len(recs) == 1 and recs[0]["kind"] == "success" and recs[0]["status"] == "started"
    assert recs[0]["result"].startswith("<function unpicklable.<locals>.local at 0x")
    j = fetch(conn, js.id, serializer=JSONSerializer)
    assert status(j) == "finished" and j.return_value() == PLACEHOLDER
    assert registry_ids(queue, "failed") == []


# --- failures and the traceback -----------------------------------------------------------------

def test_exception_gives_the_real_traceback(conn, queue, fleet, mode):
    chained = queue.enqueue(pyjobs.fail_chained, "outer x", "inner y", **ok_cb())
    plain = queue.enqueue(pyjobs.fail_plain, "plain <b>&</b> failure")
    after = queue.enqueue(pyjobs.add, 1, 1, **ok_cb())
    w = fleet.burst()

    text = assert_failed(conn, chained.id, queue)
    local = local_traceback(pyjobs.fail_chained, "outer x", "inner y")
    marker = "\nThe above exception was the direct cause of the following exception:\n\n"
    cause = local[:local.index(marker) + len(marker)]
    # the cause's traceback (frames of pyjobs only) is exactly Python's; then the outer traceback,
    # whose innermost frame and exception line are exactly Python's too (the frames between them
    # are the worker's own and differ between workers)
    assert text.startswith(cause + "Traceback (most recent call last):\n"), text
    assert text.endswith(innermost_frame_and_exception(local)), text
    assert text.splitlines()[-1] == "pyjobs.JobError: outer x"
    assert f'  File "{pyjobs.__file__}", line ' in text
    # every frame names a real file (rq-dashboard shows exc_info as HTML: `<string>` would vanish)
    frames = [line for line in text.splitlines() if line.startswith("  File ")]
    assert all(re.fullmatch(r'  File "[^"<>&]+", line \d+, in [^<>&]+', f) for f in frames), frames

    text = assert_failed(conn, plain.id, queue)
    local = local_traceback(pyjobs.fail_plain, "plain <b>&</b> failure")
    assert text.startswith("Traceback (most recent call last):\n")
    assert text.endswith(innermost_frame_and_exception(local)), text

    # failure callback: exc type, value and a real traceback object, before the worker's bookkeeping
    assert callbacks(conn, chained.id) == [{"kind": "failure", "exc_type": "JobError", "exc_value": "outer x",
                                            "tb_type": "traceback", "status": "started"}]
    assert callbacks(conn, after.id) == [{"kind": "success", "result": "2", "status": "started"}]
    assert_finished(conn, after.id, 2)
    dead = find_worker(conn, w.name)
    assert dead.failed_job_count == 2 and dead.successful_job_count == 1
    assert rq_info_queue_line(fleet.redis_url) == "queue default 0, 0 executing, 1 finished, 2 failed"
    assert registry_ids(queue, "started") == [] and wip_members(conn) == []


def test_unknown_module_fails_as_rq_reports_it(conn, queue, fleet, mode):
    job = queue.enqueue("pyjobs_no_such_module.func", 1)
    attr = queue.enqueue("pyjobs.no_such_function", 1)
    fleet.burst()
    assert assert_failed(conn, job.id, queue).splitlines()[-1] == \
        "ValueError: Invalid attribute name: pyjobs_no_such_module.func"
    assert assert_failed(conn, attr.id, queue).splitlines()[-1] == \
        "ValueError: Invalid attribute name: no_such_function"   # RQ's own wording, the same in 1.16, 2.12, 3.0


def test_path_option_extends_sys_path(conn, queue, fleet, tmp_path, mode):
    mod = f"pathmod_{uuid.uuid4().hex[:8]}"
    d = tmp_path / "jobsdir"
    d.mkdir()
    (d / f"{mod}.py").write_text("def hello(x):\n    return f'hello {x} from {__name__}'\n")
    job = queue.enqueue(f"{mod}.hello", "p")
    fleet.burst()
    assert assert_failed(conn, job.id, queue).splitlines()[-1] == f"ValueError: Invalid attribute name: {mod}.hello"
    queue.failed_job_registry.requeue(job.id)
    fleet.burst(extra=("-P", str(d)))
    j = fetch(conn, job.id)
    assert status(j) == "finished" and j.return_value() == f"hello p from {mod}"


# --- the job API inside the function ------------------------------------------------------------

def test_current_job_meta_and_connection(conn, queue, fleet, mode):
    info = queue.enqueue(pyjobs.job_info, 1, "two", flag=True, meta={"owner": "tests"}, description="custom words")
    meta = queue.enqueue(pyjobs.set_meta, "progress", "half", steps=3, meta={"owner": "tests"})
    incr = queue.enqueue(pyjobs.incr_key, "pyjobs:counter", by=5)
    fan = queue.enqueue(pyjobs.fan_out, 3)
    conn.set("pyjobs:counter", 10)
    fleet.burst()

    assert_finished(conn, info.id, {"id": info.id, "origin": "default", "func_name": "pyjobs.job_info",
                                    "args": [1, "two"], "kwargs": {"flag": True}, "description": "custom words", "meta": {"owner": "tests"}})
    j = assert_finished(conn, meta.id, meta.id)
    assert j.meta == {"owner": "tests", "progress": "half", "step": 3}
    assert_finished(conn, incr.id, 15)
    assert conn.get("pyjobs:counter") == b"15"
    children = fetch(conn, fan.id).return_value()
    assert len(children) == 3
    for i, cid in enumerate(children):   # enqueued from inside a job, run by the same burst worker
        c = assert_finished(conn, cid, i + 100)
        assert c.origin == "default" and c.func_name == "pyjobs.add"


# --- callbacks ----------------------------------------------------------------------------------

def test_success_callback_timeout_fails_the_job(conn, queue, fleet, mode):
    job = queue.enqueue(pyjobs.add, 1, 1, on_success=Callback(pyjobs.on_success_slow, timeout=1),
                        on_failure=Callback(pyjobs.on_failure))
    after = queue.enqueue(pyjobs.add, 2, 2)
    fleet.burst()
    text = assert_failed(conn, job.id, queue)
    assert text.startswith("Traceback (most recent call last):\n")
    assert ", in on_success_slow\n" in text, text
    assert text.splitlines()[-1] == TIMEOUT_TEXT.format(1)
    # the success callback starts, is cut at its 1 s timeout, then the failure callback runs
    assert callbacks(conn, job.id) == [
        {"kind": "success-slow-start", "result": "2", "status": "started"},
        {"kind": "failure", "exc_type": "JobTimeoutException",
         "exc_value": "Task exceeded maximum timeout value (1 seconds)", "tb_type": "traceback", "status": "started"}]
    assert_finished(conn, after.id, 4)


def test_retry_until_success_and_until_exhausted(conn, queue, fleet, mode):
    good = queue.enqueue(pyjobs.flaky, "flaky:good", 2, retry=Retry(max=3), **ok_cb())
    bad = queue.enqueue(pyjobs.flaky, "flaky:bad", 5, retry=Retry(max=2), **ok_cb())
    w = fleet.burst()
    j = assert_finished(conn, good.id, 3)
    assert j.retries_left == 1
    assert callbacks(conn, good.id) == [
        {"kind": "failure", "exc_type": "RuntimeError", "exc_value": "flaky attempt 1 of 2 failing",
         "tb_type": "traceback", "status": "started"},
        {"kind": "failure", "exc_type": "RuntimeError", "exc_value": "flaky attempt 2 of 2 failing",
         "tb_type": "traceback", "status": "started"},
        {"kind": "success", "result": "3", "status": "started"}]
    text = assert_failed(conn, bad.id, queue)
    assert text.splitlines()[-1] == "RuntimeError: flaky attempt 3 of 5 failing"
    jb = fetch(conn, bad.id)
    assert jb.retries_left == 0 and len(jb.results()) == 1   # retried attempts leave no result entry
    assert [c["exc_value"] for c in callbacks(conn, bad.id)] == [f"flaky attempt {n} of 5 failing" for n in (1, 2, 3)]
    assert conn.get("flaky:good") == b"3" and conn.get("flaky:bad") == b"3"
    dead = find_worker(conn, w.name)
    assert dead.successful_job_count == 1 and dead.failed_job_count == 5
    assert registry_ids(queue, "failed") == [bad.id] and queue.count == 0


# --- timeouts, dead processes, stop-job -----------------------------------------------------------

def test_timeout(conn, queue, fleet, mode):
    job = queue.enqueue(pyjobs.sleep_for, 60, job_timeout=1, on_failure=Callback(pyjobs.on_failure))
    after = queue.enqueue(pyjobs.add, 1, 1)
    w = fleet.burst(timeout=90)
    text = assert_failed(conn, job.id, queue)
    assert text.startswith("Traceback (most recent call last):\n"), text
    assert text.splitlines()[-1] == TIMEOUT_TEXT.format(1), text
    # RQ's death penalty interrupts the function: the job's frame and rq's raising frame end the text
    from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
    with UnixSignalDeathPenalty(1, JobTimeoutException, job_id="local"):
        local = local_traceback(pyjobs.sleep_for, 60)
    tail = local[local.index(f'  File "{pyjobs.__file__}"'):]
    assert canonical_paths(text).endswith(canonical_paths(tail)), text
    assert callbacks(conn, job.id) == [{"kind": "failure", "exc_type": "JobTimeoutException",
                                        "exc_value": "Task exceeded maximum timeout value (1 seconds)",
                                        "tb_type": "traceback", "status": "started"}]
    assert_finished(conn, after.id, 2)
    dead = find_worker(conn, w.name)
    assert dead.failed_job_count == 1 and dead.successful_job_count == 1
    assert registry_ids(queue, "started") == [] and wip_members(conn) == []


def test_process_dying_mid_job(conn, queue, fleet, mode):
    job = queue.enqueue(pyjobs.die, 1, on_failure=Callback(pyjobs.on_failure))
    after = queue.enqueue(pyjobs.add, 3, 3, **ok_cb())
    w = fleet.burst()
    assert assert_failed(conn, job.id, queue) == HORSE_DIED_TEXT
    assert callbacks(conn, job.id) == []   # RQ runs no failure callback for a work horse that died
    assert_finished(conn, after.id, 6)
    assert callbacks(conn, after.id) == [{"kind": "success", "result": "6", "status": "started"}]
    dead = find_worker(conn, w.name)
    assert dead.failed_job_count == 1 and dead.successful_job_count == 1
    assert registry_ids(queue, "started") == [] and wip_members(conn) == []
    assert rq_info_queue_line(fleet.redis_url) == "queue default 0, 0 executing, 1 finished, 1 failed"


def test_stop_job_command(conn, queue, fleet, mode):
    job = queue.enqueue(pyjobs.sleep_for, 120, on_stopped=Callback(pyjobs.on_stopped), **ok_cb())
    w = fleet.start(name="py-stop")
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    wait_for(lambda: getattr(workers_by_name(conn).get("py-stop"), "state", None) == "busy", timeout=30,
             what="busy")
    send_stop_job_command(conn, job.id)
    wait_for(lambda: status_of(conn, job.id) == "stopped", timeout=60, what="stopped")
    j = fetch(conn, job.id)
    assert exc_text(j) == STOPPED_TEXT
    assert j.latest_result().type == Result.Type.FAILED and len(j.results()) == 1
    assert registry_ids(queue, "failed") == [job.id] and registry_ids(queue, "started") == []
    # only the stopped callback runs, before the job is marked stopped
    assert callbacks(conn, job.id) == [{"kind": "stopped", "status": "started"}]
    nxt = queue.enqueue(pyjobs.add, 2, 2)
    wait_for(lambda: status_of(conn, nxt.id) == "finished", timeout=60, what="next job after the stop")
    assert fetch(conn, nxt.id).return_value() == 4
    assert w.alive()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    rec = find_worker(conn, "py-stop")
    assert rec.failed_job_count == 1 and rec.successful_job_count == 1
    assert status_of(conn, job.id) == "stopped"


def test_kill_horse_command(conn, queue, fleet, mode):
    job = queue.enqueue(pyjobs.sleep_for, 120, on_stopped=Callback(pyjobs.on_stopped), **ok_cb())
    w = fleet.start(name="py-kh")
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    wait_for(lambda: getattr(workers_by_name(conn).get("py-kh"), "state", None) == "busy", timeout=30,
             what="busy")
    send_kill_horse_command(conn, "py-kh")
    wait_for(lambda: status_of(conn, job.id) == "failed", timeout=60, what="failed after kill-horse")
    # SIGKILL of the process running the job: RQ's text for a work horse that died of signal 9
    assert assert_failed(conn, job.id, queue) == KILLED_TEXT
    assert callbacks(conn, job.id) == []
    assert registry_ids(queue, "started") == []
    nxt = queue.enqueue(pyjobs.add, 5, 5)
    wait_for(lambda: status_of(conn, nxt.id) == "finished", timeout=60, what="next job after kill-horse")
    assert w.alive()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0


def test_warm_shutdown_finishes_the_python_job(conn, queue, fleet, mode):
    job = queue.enqueue(pyjobs.sleep_for, 4, **ok_cb())
    w = fleet.start(name="py-warm")
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    waiting = queue.enqueue(pyjobs.add, 1, 1)
    w.signal(signal.SIGTERM)
    assert w.wait(120) == 0
    assert_finished(conn, job.id, 4)
    assert callbacks(conn, job.id) == [{"kind": "success", "result": "4", "status": "started"}]
    assert status_of(conn, waiting.id) == "queued" and queue.job_ids == [waiting.id]
    assert registry_ids(queue, "started") == []
    assert find_worker(conn, "py-warm").successful_job_count == 1


def test_cold_shutdown_with_a_python_job(conn, queue, fleet, mode, worker_kind):
    job = queue.enqueue(pyjobs.sleep_for, 120, on_failure=Callback(pyjobs.on_failure))
    w = fleet.start(name="py-cold")
    wait_for(lambda: status_of(conn, job.id) == "started", timeout=60, what="started")
    below = harness.descendants(w.pid)
    w.signal(signal.SIGTERM)
    time.sleep(1.5)  # RQ ignores a second signal within 1 s of the first
    w.signal(signal.SIGTERM)
    assert w.wait(60) is not None
    # nothing the worker started outlives it: the process running the job is gone too
    wait_for(lambda: all(_gone(p) for p in below), timeout=15, what="the worker's job process to exit")
    assert w.name not in workers_by_name(conn)
    if worker_kind == "python":
        # RQ leaves the job `started` for the abandoned-job cleanup (rq-wire.md §9.11)
        assert status_of(conn, job.id) == "started"
        make_started_entries_abandoned(conn)
        fleet.burst(kind="python")
    assert status_of(conn, job.id) == "failed"
    assert exc_text(fetch(conn, job.id))
    assert registry_ids(queue, "failed") == [job.id] and registry_ids(queue, "started") == []


# --- output -------------------------------------------------------------------------------------

def test_job_printing_a_lot(conn, queue, fleet, mode):
    n = 200_000
    job = queue.enqueue(pyjobs.chatter, n)
    after = queue.enqueue(pyjobs.add, 5, 5)
    w = fleet.burst(timeout=180)
    assert_finished(conn, job.id, n)
    assert_finished(conn, after.id, 10)
    log = w.log()
    for line in (f"chatter stdout {n - 1}\n", f"chatter stderr {n - 1}\n", "chatter stdout done\n",
                 "chatter stderr done\n", "chatter stdout 0\n", "chatter stderr 0\n"):
        assert line in log, line


def test_exit_stdin_raw_output_and_a_big_value(conn, queue, fleet, mode):
    """sys.exit() in a job is an exception like any other; a job reading stdin reads end-of-file;
    writes to file descriptors 1 and 2 and a child process's output reach the worker's log without
    disturbing it; a 20 MB return value is stored whole."""
    ex = queue.enqueue(pyjobs.exit_job, 3, on_failure=Callback(pyjobs.on_failure))
    stdin = queue.enqueue(pyjobs.read_stdin)
    raw = queue.enqueue(pyjobs.raw_output, "rawtag")
    big = queue.enqueue(pyjobs.blob, 20_000_000)
    after = queue.enqueue(pyjobs.add, 1, 2)
    w = fleet.burst(timeout=180)
    text = assert_failed(conn, ex.id, queue)
    assert text.endswith(innermost_frame_and_exception(local_traceback(pyjobs.exit_job, 3))), text
    assert callbacks(conn, ex.id) == [{"kind": "failure", "exc_type": "SystemExit", "exc_value": "3",
                                       "tb_type": "traceback", "status": "started"}]
    assert_finished(conn, stdin.id, "")
    assert_finished(conn, raw.id, "rawtag")
    log = w.log()
    for line in ("rawtag fd1", "rawtag fd2", "rawtag child stdout", "rawtag child stderr"):
        assert line + "\n" in log, line
    assert_finished(conn, big.id, b"\xab" * 20_000_000)
    assert_finished(conn, after.id, 3)


# --- the dashboard (rq-dashboard runs in the rq 2.12 venv only) ------------------------------------

def test_dashboard_view(conn, queue, fleet, redis_url, tmp_path, mode):
    pytest.importorskip("rq_dashboard", reason="rq-dashboard is installed with rq 2.12 only")
    from test_dashboard import Dashboard, check_invariant, listed, queue_entry

    dash = Dashboard(redis_url, tmp_path)
    try:
        w = fleet.start(name="py-dash")
        queue.enqueue(pyjobs.greet, "dash", greeting="hey", job_id="p-ok")
        queue.enqueue(pyjobs.fail_chained, "outer d", "inner d", job_id="p-fail")
        queue.enqueue(pyjobs.die, 1, job_id="p-died")
        wait_for(lambda: [status_of(conn, i) for i in ("p-ok", "p-fail", "p-died")] == ["finished", "failed", "failed"],
                 timeout=60, what="p-ok finished, p-fail and p-died failed")
        queue.enqueue(pyjobs.sleep_for, 25, job_id="p-slow")
        wait_for(lambda: status_of(conn, "p-slow") == "started", timeout=60, what="p-slow started")
        ids = ["p-ok", "p-fail", "p-died", "p-slow"]
        check_invariant(dash, redis_url, ids)
        rec = dash.ok("/0/data/workers.json")["workers"][0]
        assert rec["name"] == "py-dash" and rec["state"] == "busy"
        assert rec["current_job"]["job_id"] == "p-slow"
        assert rec["current_job"]["call_string"] == "pyjobs.sleep_for(25)"
        assert listed(dash, "started") == ["p-slow"]
        d = dash.ok("/0/data/job/p-ok.json")
        assert d["status"] == "finished" and d["result"] == "hey, dash!" and d["exc_info"] is None
        d = dash.ok("/0/data/job/p-fail.json")
        assert d["status"] == "failed" and d["result"] is None
        assert d["exc_info"] == exc_text(fetch(conn, "p-fail"))
        assert d["exc_info"].splitlines()[-1] == "pyjobs.JobError: outer d"
        from test_dashboard import rendered_as_html
        assert rendered_as_html(d["exc_info"]) == d["exc_info"], "the job page would not show exc_info as stored"
        assert dash.ok("/0/data/job/p-died.json")["exc_info"] == HORSE_DIED_TEXT
        failed = {j["id"]: j for j in dash.ok("/0/data/jobs/default/failed/100/asc/1.json")["jobs"]}
        assert sorted(failed) == ["p-died", "p-fail"]
        assert failed["p-fail"]["exc_info"] == d["exc_info"]
        q = queue_entry(dash)
        assert (q["finished_job_registry_count"], q["failed_job_registry_count"], q["started_job_registry_count"]) \
            == (1, 2, 1)
        send_stop_job_command(conn, "p-slow")
        wait_for(lambda: status_of(conn, "p-slow") == "stopped", timeout=60, what="p-slow stopped")
        assert dash.ok("/0/data/job/p-slow.json")["exc_info"] == STOPPED_TEXT
        wait_for(lambda: dash.ok("/0/data/workers.json")["workers"][0]["state"] == "idle", timeout=30,
                 what="idle on the dashboard")
        rec = dash.ok("/0/data/workers.json")["workers"][0]
        assert rec["successful_job_count"] == 1 and rec["failed_job_count"] == 3
        check_invariant(dash, redis_url, ids)
        w.signal(signal.SIGTERM)
        assert w.wait(60) == 0
        assert "Traceback" not in dash.log(), dash.log()[-3000:]
    finally:
        dash.close()


# --- fleets and crashes -------------------------------------------------------------------------

N_FLEET_JOBS = 200


@pytest.mark.parametrize("concurrency", [1, pytest.param(4, marks=pytest.mark.rust_only)])
def test_mixed_fleet_exactly_once(conn, queue, fleet, mode, concurrency):
    py = fleet.start(kind="python", name="pyfleet-py")
    ours = fleet.start(name="pyfleet-ours", concurrency=concurrency if concurrency > 1 else None)
    ours_names = ["pyfleet-ours"] if concurrency == 1 else [f"pyfleet-ours-{i}" for i in range(1, concurrency + 1)]
    wait_for(lambda: all(getattr(workers_by_name(conn).get(n), "state", None) == "idle"
                         for n in ["pyfleet-py"] + ours_names), timeout=60, what="all workers idle")
    jobs = []
    for i in range(N_FLEET_JOBS):
        if i % 20 == 0:
            jobs.append((queue.enqueue(pyjobs.sleep_for, 0.2), 0.2))
        elif i % 3 == 0:
            jobs.append((queue.enqueue(pyjobs.Counter(i).add, 1000), i + 1000))
        else:
            jobs.append((queue.enqueue(pyjobs.incr_key, f"fleet:{i}"), 1))
    wait_for(lambda: queue.finished_job_registry.count == N_FLEET_JOBS, timeout=300, interval=0.25,
             what=f"{N_FLEET_JOBS} finished jobs")
    per_worker = dict.fromkeys(["pyfleet-py"] + ours_names, 0)
    for job, expected in jobs:
        j = fetch(conn, job.id)
        assert status(j) == "finished" and j.return_value() == expected
        assert len(j.results()) == 1, f"job {j.id} ran {len(j.results())} times"
        per_worker[j.worker_name] += 1
    # every incr_key job ran exactly once: each key was incremented once
    for i in range(N_FLEET_JOBS):
        if i % 20 != 0 and i % 3 != 0:
            assert conn.get(f"fleet:{i}") == b"1", i
    assert registry_ids(queue, "failed") == [] and registry_ids(queue, "started") == [] and queue.count == 0
    recs = workers_by_name(conn)
    for n, count in per_worker.items():
        assert recs[n].successful_job_count == count, (n, count)
    assert per_worker["pyfleet-py"] > 0 and sum(per_worker[n] for n in ours_names) > 0, per_worker
    assert conn.llen("rq:queue:default:intermediate") == 0
    for w in (py, ours):
        w.signal(signal.SIGTERM)
    for w in (py, ours):
        assert w.wait(60) == 0
    assert workers_by_name(conn) == {}


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_kill9_while_python_jobs_run_then_python_worker_cleans_up(conn, queue, fleet, mode, worker_kind):
    plain = queue.enqueue(pyjobs.sleep_for, 120, on_failure=Callback(pyjobs.on_failure))
    retried = queue.enqueue(pyjobs.long_then_quick, "ltq", 120, retry=Retry(max=1), **ok_cb())
    meta = queue.enqueue(pyjobs.sleep_for, 120, meta={"keep": "me"})
    ids = [plain.id, retried.id, meta.id]
    if worker_kind == "rust":
        workers = [fleet.start(name="doomed", concurrency=3)]
    else:   # a Python rq worker runs one job at a time
        workers = [fleet.start(name=f"doomed-{i}") for i in range(3)]
    wait_for(lambda: all(status_of(conn, i) == "started" for i in ids), timeout=60, what="three jobs started")
    wait_for(lambda: sorted(registry_ids(queue, "started")) == sorted(ids), timeout=10, what="started registry")
    wait_for(lambda: conn.get("ltq") == b"1", timeout=30, what="long_then_quick running")

    if worker_kind == "rust":
        # kill -9 of rq-worker alone: its Python processes must not outlive it (nor go on running jobs)
        (w,) = workers
        below = harness.descendants(w.pid)
        assert below, "rq-worker --python has no child process while running Python jobs"
        os.kill(w.pid, signal.SIGKILL)
        w.proc.wait(30)
        try:
            wait_for(lambda: all(_gone(p) for p in below), timeout=15,
                     what="rq-worker's Python processes to exit after its kill -9")
        finally:
            for p in below:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    else:
        for w in workers:
            w.kill9_group()
    assert [status_of(conn, i) for i in ids] == ["started"] * 3

    # pretend the heartbeats expired long ago, then let a Python worker of this rq version clean up
    # (a Python 2.x/3.0 worker's members are `job_id:execution_id`)
    assert sorted(m.split(":")[0] for m in make_started_entries_abandoned(conn)) == sorted(ids)
    fleet.burst(kind="python")

    abandoned = re.compile(ABANDONED_RE[harness.RQ_VERSION])
    for jid in (plain.id, meta.id):
        j = fetch(conn, jid)
        assert status(j) == "failed"
        assert abandoned.fullmatch(exc_text(j)), exc_text(j)
        # 1.16 keeps the text in the job hash only; 2.x/3.0 add a FAILED result
        assert len(j.results()) == (0 if harness.RQ_VERSION < (2, 0) else 1)
    assert fetch(conn, meta.id).meta == {"keep": "me"}
    # the cleaning worker runs the failure callback of an abandoned job
    assert callbacks(conn, plain.id) == [{"kind": "failure", "exc_type": "AbandonedJobError", "exc_value": "",
                                          "tb_type": ABANDONED_TB_TYPE[harness.RQ_VERSION], "status": "started"}]
    # a job with a retry left is requeued and run again by the cleaning worker: the second run is quick
    j = assert_finished(conn, retried.id, 2)
    assert j.retries_left == 0
    assert callbacks(conn, retried.id) == [
        {"kind": "failure", "exc_type": "AbandonedJobError", "exc_value": "",
         "tb_type": ABANDONED_TB_TYPE[harness.RQ_VERSION], "status": "started"},
        {"kind": "success", "result": "2", "status": "started"}]
    assert sorted(registry_ids(queue, "failed")) == sorted([plain.id, meta.id])
    assert registry_ids(queue, "started") == [] and wip_members(conn) == []
    assert conn.get("ltq") == b"2"


# --- rq-worker's own executor options ---------------------------------------------------------------

@pytest.mark.rust_only
def test_max_rss_kills_and_replaces_the_process(conn, queue, fleet, mode):
    hog = queue.enqueue(pyjobs.hog, 600, job_timeout=120, on_failure=Callback(pyjobs.on_failure))
    after = queue.enqueue(pyjobs.add, 7, 7)
    fleet.burst(python_extra=("--python-max-rss", "200"), timeout=120)
    text = assert_failed(conn, hog.id, queue)
    assert text.startswith("Work-horse terminated unexpectedly"), text
    assert callbacks(conn, hog.id) == []
    assert_finished(conn, after.id, 14)


@pytest.mark.rust_only
def test_pool_process_is_reused_then_recycled(conn, queue, fleet):
    jobs = [queue.enqueue(pyjobs.whoami) for _ in range(3)]
    failing = queue.enqueue(pyjobs.fail_plain, "no recycle")
    last = queue.enqueue(pyjobs.whoami)
    fleet.burst(python_mode="pool", python_extra=("--python-max-jobs", "2"))
    got = [fetch(conn, j.id).return_value() for j in jobs]
    # jobs 1 and 2 share a process that imported pyjobs itself; job 3 runs in a fresh one
    assert got[0]["pid"] == got[1]["pid"] != got[2]["pid"], got
    assert [g["calls"] for g in got] == [1, 2, 1], got
    assert all(g["imported_by"] == g["pid"] for g in got), got
    assert status_of(conn, failing.id) == "failed"
    # a failed job counts as one of the process's jobs: job 3 and the failing job used up the second
    # process, so the last job runs in a third one
    final = fetch(conn, last.id).return_value()
    assert final["pid"] not in (got[0]["pid"], got[2]["pid"]) and final["calls"] == 1


@pytest.mark.rust_only
def test_pool_process_survives_an_exception_and_is_replaced_after_a_timeout(conn, queue, fleet):
    a = queue.enqueue(pyjobs.whoami)
    queue.enqueue(pyjobs.fail_plain, "keep the process")
    b = queue.enqueue(pyjobs.whoami)
    queue.enqueue(pyjobs.sleep_for, 60, job_timeout=1)
    c = queue.enqueue(pyjobs.whoami)
    fleet.burst(python_mode="pool", timeout=90)
    ra, rb, rc = (fetch(conn, j.id).return_value() for j in (a, b, c))
    assert ra["pid"] == rb["pid"] and (ra["calls"], rb["calls"]) == (1, 2), (ra, rb)
    assert rc["pid"] != rb["pid"] and rc["calls"] == 1, (rb, rc)


@pytest.mark.rust_only
def test_fork_mode_forks_each_job_from_a_preloaded_zygote(conn, queue, fleet):
    jobs = [queue.enqueue(pyjobs.whoami) for _ in range(3)]
    fleet.burst(python_mode="fork", python_extra=("--preload", "pyjobs"))
    got = [fetch(conn, j.id).return_value() for j in jobs]
    assert len({g["pid"] for g in got}) == 3, got
    assert [g["calls"] for g in got] == [1, 1, 1], got
    # the module was imported once, before forking, by the same (zygote) process
    assert len({g["imported_by"] for g in got}) == 1 and got[0]["imported_by"] not in {g["pid"] for g in got}, got


@pytest.mark.rust_only
def test_fork_mode_without_preload_isolates_jobs(conn, queue, fleet):
    jobs = [queue.enqueue(pyjobs.whoami) for _ in range(3)]
    fleet.burst(python_mode="fork")
    got = [fetch(conn, j.id).return_value() for j in jobs]
    assert len({g["pid"] for g in got}) == 3 and [g["calls"] for g in got] == [1, 1, 1], got


@pytest.mark.rust_only
def test_native_functions_stay_native(conn, queue, fleet):
    from rq_worker import diag
    native = queue.enqueue(diag.fail, "native failure")
    python = queue.enqueue(pyjobs.fail_plain, "python failure")
    fleet.burst()
    assert '  File "rq-worker:rq_worker.diag", line 0, in fail\n' in exc_text(fetch(conn, native.id))
    text = exc_text(fetch(conn, python.id))
    assert f'  File "{pyjobs.__file__}", line ' in text and "rq-worker:" not in text, text


@pytest.mark.rust_only
def test_job_output_goes_to_stderr(conn, queue, fleet, tmp_path):
    """rq-worker's stdout stays free of job output: prints of a Python job go to its stderr."""
    job = queue.enqueue(pyjobs.chatter, 1000)
    raw = queue.enqueue(pyjobs.raw_output, "rawtag")
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    cmd = [harness.rust_worker_bin(), "--url", fleet.redis_url, "--burst", "--python", sys.executable,
           "--name", "py-streams"]
    with open(out, "wb") as o, open(err, "wb") as e:
        rc = subprocess.run(cmd, env=fleet.env(), stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                            cwd=str(harness.REPO), timeout=120).returncode
    assert rc == 0, err.read_text(errors="replace")[-3000:]
    assert fetch(conn, job.id).return_value() == 1000
    stderr = err.read_text(errors="replace")
    assert "chatter stdout 999\n" in stderr and "chatter stderr 999\n" in stderr
    assert fetch(conn, raw.id).return_value() == "rawtag"
    for line in ("rawtag fd1", "rawtag fd2", "rawtag child stdout", "rawtag child stderr"):
        assert line + "\n" in stderr, line
    stdout = out.read_text(errors="replace")
    assert "chatter" not in stdout and "rawtag" not in stdout, stdout[-2000:]


@pytest.mark.rust_only
def test_a_job_the_death_penalty_cannot_reach_is_killed_after_the_grace(conn, queue, fleet, mode):
    """Python enforces the timeout first (RQ's SIGALRM death penalty); code that never returns to
    the interpreter is SIGKILLed by rq-worker 5 s later and the job fails with the same exception."""
    job = queue.enqueue(pyjobs.deaf_sleep, 3600, job_timeout=1)
    after = queue.enqueue(pyjobs.add, 2, 2)
    fleet.burst(timeout=300)   # an hour-long sleep: the burst ends only if the kill came
    text = assert_failed(conn, job.id, queue)
    assert text.splitlines()[-1] == TIMEOUT_TEXT.format(1), text
    assert_finished(conn, after.id, 4)
    assert registry_ids(queue, "started") == [] and wip_members(conn) == []
