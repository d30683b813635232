"""The operations surface (issue 9): /metrics parsed with the official Prometheus text parser after a
known set of jobs, /healthz when a slot wedges or dies, /readyz when Redis goes away, `rq-worker
health`, JSON log lines with the job fields, and the platform's legacy command lines.

None of this depends on the rq client version, so it runs once, with the rq 2.x venv (which has
prometheus_client). rq-worker only: a Python `rq worker` has no such endpoints.
"""
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from rq import Retry

import harness
from harness import wait_for
from rqapi import status_of
from rq_worker import diag

pytestmark = [pytest.mark.rust_only, pytest.mark.rq_min(2, 0), pytest.mark.rq_max(2, 99)]


def get(port, path, timeout=10):
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_with_metrics(fleet, queues=("default",), **kw):
    port = harness.free_port()
    extra = list(kw.pop("extra", ())) + ["--metrics-addr", f"127.0.0.1:{port}"]
    proc = fleet.start(queues, extra=extra, **kw)
    wait_for(lambda: _ok(port, "/readyz"), timeout=60, what="/readyz to answer 200")
    return proc, port


def _ok(port, path):
    try:
        return get(port, path, timeout=2)[0] == 200
    except OSError:
        return False


def families(port):
    from prometheus_client.parser import text_string_to_metric_families
    status, body = get(port, "/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body)}


def sample(fams, family, name=None, **labels):
    """The value of the one sample of `family` (sample `name`) whose labels include `labels`."""
    f = fams.get(family)
    assert f is not None, f"no metric family {family}"
    values = [s.value for s in f.samples
              if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(values) <= 1, (family, labels, values)
    return values[0] if values else 0.0


def test_metrics_count_a_known_set_of_jobs(conn, queue, fleet):
    _proc, port = start_with_metrics(fleet, concurrency=2)
    ids = [queue.enqueue(diag.add, i, 1).id for i in range(5)]
    ids += [queue.enqueue(diag.fail, "boom").id for _ in range(2)]
    ids.append(queue.enqueue(diag.fail, "again", retry=Retry(max=1)).id)   # runs twice
    ids.append(queue.enqueue("nope.not_implemented", 1).id)                  # unknown function
    wait_for(lambda: all(status_of(conn, i) in ("finished", "failed") for i in ids), timeout=60,
             what="every job to end")
    # The metrics are updated after the outcome is written: wait until the last one is counted.
    def executions_counted():
        fams = families(port)
        return sum(s.value for s in fams["rq_worker_job_duration_seconds"].samples
                   if s.name.endswith("_count")) if "rq_worker_job_duration_seconds" in fams else 0
    wait_for(lambda: executions_counted() >= 10, timeout=30, what="all 10 executions to be counted")
    fams = families(port)
    add, fail = "rq_worker.diag.add", "rq_worker.diag.fail"
    # prometheus_client's parser strips `_total` from counter family names.
    assert sample(fams, "rq_worker_jobs_started", queue="default", func=add) == 5
    assert sample(fams, "rq_worker_jobs_started", queue="default", func=fail) == 4
    assert sample(fams, "rq_worker_jobs_started", queue="default", func="<unregistered>") == 1
    assert sample(fams, "rq_worker_jobs_finished", queue="default", func=add) == 5
    assert sample(fams, "rq_worker_jobs_failed", queue="default", func=fail) == 3
    assert sample(fams, "rq_worker_jobs_retried", queue="default", func=fail) == 1
    assert sample(fams, "rq_worker_jobs_failed", queue="default", func="<unregistered>") == 1
    assert sample(fams, "rq_worker_job_duration_seconds", "rq_worker_job_duration_seconds_count",
                  queue="default", func=add) == 5
    assert sample(fams, "rq_worker_jobs_in_flight") == 0
    assert sample(fams, "rq_worker_slots") == 2
    assert sample(fams, "rq_worker_maintenance_runs") >= 1
    assert sample(fams, "rq_worker_redis_command_duration_seconds",
                  "rq_worker_redis_command_duration_seconds_count", op="finish_and_start") >= 1
    assert sample(fams, "process_resident_memory_bytes") > 1_000_000
    assert sample(fams, "process_open_fds") > 0
    # Probes and the `health` subcommand agree.
    assert get(port, "/healthz")[0] == 200
    out = subprocess.run([harness.rust_worker_bin(), "health", "--ready", "--addr", f"0.0.0.0:{port}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "redis: ok" in out.stdout and "workers: ok" in out.stdout


@pytest.mark.parametrize("fault, word", [("slot-wedge-after-jobs=1", "wedged")])
def test_healthz_fails_when_a_slot_wedges(conn, queue, fleet, fault, word):
    # --worker-ttl 16: the dequeue timeout is 1 s, so a slot's bound between check-ins is 41 s.
    proc, port = start_with_metrics(fleet, concurrency=2, worker_ttl=16,
                                    env_extra={"RQ_WORKER_TEST_FAULTS": fault})
    assert get(port, "/healthz")[0] == 200
    job = queue.enqueue(diag.add, 2, 3)
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=60, what="the job to finish")
    wait_for(lambda: get(port, "/healthz")[0] == 503, timeout=120, what="/healthz to fail")
    status, body = get(port, "/healthz")
    assert word in body and "slot" in body, body
    out = subprocess.run([harness.rust_worker_bin(), "health", "--addr", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and word in out.stderr, out
    # The other slot keeps serving.
    job2 = queue.enqueue(diag.add, 4, 4)
    wait_for(lambda: status_of(conn, job2.id) == "finished", timeout=60, what="the other slot to serve")
    assert proc.alive()


def test_a_slot_that_panicked_recovers_and_healthz_holds(conn, queue, fleet):
    proc, port = start_with_metrics(fleet, concurrency=2,
                                    env_extra={"RQ_WORKER_TEST_FAULTS": "slot-panic-after-jobs=1"})
    job = queue.enqueue(diag.add, 2, 3)
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=60, what="the job to finish")
    wait_for(lambda: sample(families(port), "rq_worker_thread_panics") == 1,
             timeout=30, what="the panic to be counted")
    # A fresh loop took over: both slots serve, and liveness never counted the slot dead for long.
    jobs = [queue.enqueue(diag.add, i, i) for i in range(6)]
    for j in jobs:
        wait_for(lambda: status_of(conn, j.id) == "finished", timeout=60, what="jobs after the panic")
    wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=30, what="/healthz to hold")
    assert proc.alive()


def test_readyz_fails_while_redis_is_down_and_liveness_holds(conn, queue, fleet, redis_server):
    proc, port = start_with_metrics(fleet, concurrency=2)
    status, body = get(port, "/readyz")
    assert status == 200 and "redis: ok" in body and "workers: ok" in body
    redis_server.stop()
    wait_for(lambda: get(port, "/readyz")[0] == 503, timeout=30, what="/readyz to fail")
    status, body = get(port, "/readyz")
    assert "redis:" in body and "redis: ok" not in body, body
    # Reconnecting threads keep checking in: an outage is not a reason to restart the process.
    time.sleep(3)
    assert get(port, "/healthz")[0] == 200
    assert proc.alive()


def test_json_logs_carry_the_job_fields(conn, queue, fleet):
    ok = queue.enqueue(diag.add, 1, 2)
    bad = queue.enqueue(diag.fail, "kaboom")
    proc = fleet.burst(extra=["--log-format", "json"])
    lines = [json.loads(line) for line in proc.log().splitlines() if line.strip()]
    assert lines and all({"timestamp", "level", "target", "message"} <= set(l) for l in lines)
    by_job = {l["job_id"]: l for l in lines if "job_id" in l and "status" in l}
    good, failed = by_job[ok.id], by_job[bad.id]
    for line in (good, failed):
        assert line["queue"] == "default" and line["worker"] == proc.name
        assert isinstance(line["elapsed_ms"], int)
    assert good["status"] == "finished" and good["func"] == "rq_worker.diag.add"
    assert failed["status"] == "failed" and failed["exc_type"] == "RuntimeError"
    assert failed["exc_message"] == "kaboom"


def test_text_log_names_the_exception_of_a_failed_job(conn, queue, fleet):
    bad = queue.enqueue(diag.fail, "kaboom")
    proc = fleet.burst()
    line = next(l for l in proc.log().splitlines() if f"job_id={bad.id}" in l and "status=failed" in l)
    assert "exc_type=RuntimeError" in line and "exc_message=kaboom" in line, line


@pytest.mark.parametrize("form", ["worker.py", "worker.py+QUEUE_NAME", "rq worker"])
def test_legacy_command_lines(conn, fleet, tmp_path, form):
    from rq import Queue
    q = Queue("ingest_extract", connection=conn)
    job = q.enqueue(diag.add, 20, 22)
    env = fleet.env()
    env["REDIS_URL"] = fleet.redis_url
    binary = harness.rust_worker_bin()
    if form == "worker.py":
        cmd = [binary, "python", "worker.py", "ingest_extract"]
    elif form == "worker.py+QUEUE_NAME":
        # worker.py takes QUEUE_NAME before its argument.
        env["QUEUE_NAME"] = "ingest_extract"
        cmd = [binary, "python3", "/app/worker.py", "some_other_queue"]
    else:
        env.pop("REDIS_URL")
        cmd = [binary, "rq", "worker", "-u", fleet.redis_url, "-w", "rq.SimpleWorker", "--burst",
               "ingest_extract"]
    proc = harness.WorkerProc("rust", f"legacy-{form}", cmd, env, tmp_path / "legacy.log")
    fleet.procs.append(proc)
    wait_for(lambda: status_of(conn, job.id) == "finished", timeout=60, what="the job to finish")
    assert Queue("ingest_extract", connection=conn).fetch_job(job.id).return_value() == 42
    if form == "rq worker":
        assert proc.wait(60) == 0
    else:
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    log = proc.log()
    assert "mapped to" in log, log
