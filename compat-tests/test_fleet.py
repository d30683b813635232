"""Mixed fleet: a Python `rq worker` and rq-worker on one queue; every job processed exactly once."""
import signal

import pytest

import harness
from harness import wait_for
from rqapi import fetch, registry_ids, status, workers_by_name
from rq_worker import diag

N_JOBS = 200


@pytest.mark.parametrize("concurrency", [1, pytest.param(4, marks=pytest.mark.rust_only)])
def test_mixed_fleet_exactly_once(conn, queue, fleet, concurrency):
    py = fleet.start(kind="python", name="fleet-py")
    wait_for(lambda: getattr(workers_by_name(conn).get("fleet-py"), "state", None) == "idle", timeout=60,
             what="python worker idle")
    # the worker under test (a second Python one with --worker python); with --concurrency 4 its
    # threads register as fleet-ours-1..4
    ours = fleet.start(name="fleet-ours", concurrency=concurrency if concurrency > 1 else None)
    ours_names = ["fleet-ours"] if concurrency == 1 else [f"fleet-ours-{i}" for i in range(1, concurrency + 1)]
    wait_for(lambda: all(getattr(workers_by_name(conn).get(n), "state", None) == "idle" for n in ours_names),
             timeout=60, what="worker under test idle")

    jobs = []
    for i in range(N_JOBS):
        if i % 20 == 0:
            jobs.append((queue.enqueue(diag.sleep, 0.2), 0.2))
        else:
            jobs.append((queue.enqueue(diag.add, i, 1000), i + 1000))
    wait_for(lambda: queue.finished_job_registry.count == N_JOBS, timeout=300, interval=0.25,
             what=f"{N_JOBS} finished jobs")

    per_worker = dict.fromkeys(["fleet-py"] + ours_names, 0)
    for job, expected in jobs:
        j = fetch(conn, job.id)
        assert status(j) == "finished"
        assert j.return_value() == expected
        results = j.results()
        assert len(results) == 1, f"job {j.id} ran {len(results)} times"
        assert j.worker_name in per_worker
        per_worker[j.worker_name] += 1
    assert registry_ids(queue, "failed") == []
    assert registry_ids(queue, "started") == []
    assert queue.count == 0
    recs = workers_by_name(conn)
    for n, count in per_worker.items():
        assert recs[n].successful_job_count == count, (n, count)
    assert sum(per_worker.values()) == N_JOBS
    ours_total = sum(per_worker[n] for n in ours_names)
    assert per_worker["fleet-py"] > 0 and ours_total > 0, per_worker
    assert conn.llen("rq:queue:default:intermediate") == 0
    for w in (py, ours):
        w.signal(signal.SIGTERM)
    for w in (py, ours):
        assert w.wait(60) == 0
    assert workers_by_name(conn) == {}
