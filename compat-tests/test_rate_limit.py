"""rq 3.0 concurrency limits (`RateLimit`): rq-worker releases a finished job's slot and promotes
the waiting jobs, as rq 3.0's worker does, so rate-limited jobs never starve behind it."""
import time

import pytest

from rqapi import fetch, registry_ids, status
from rq_worker import diag


@pytest.mark.rq_min(3, 0)
def test_rate_limited_jobs_are_promoted_and_all_run(conn, queue, fleet):
    from rq.rate_limit import RateLimit

    jobs = [queue.enqueue(diag.add, i, 1, rate_limit=RateLimit("rl-test", 1)) for i in range(4)]
    assert [status(fetch(conn, j.id)) for j in jobs][1:] == ["rate_limited"] * 3

    fleet.burst()

    for i, j in enumerate(jobs):
        job = fetch(conn, j.id)
        assert status(job) == "finished", j.id
        assert job.return_value() == i + 1
    assert sorted(registry_ids(queue, "finished")) == sorted(j.id for j in jobs)
    # every slot released, nothing left waiting
    assert conn.zcard("rq:rl:rl-test:allowed") == 0
    assert conn.zcard("rq:rl:rl-test:rate_limited") == 0


@pytest.mark.rq_min(3, 0)
@pytest.mark.parametrize("leak", ["finished by an rq 2.x worker", "job deleted"])
def test_leaked_slots_are_freed_by_maintenance(conn, queue, fleet, leak):
    """A slot can leak: an rq 2.x worker in the fleet finishes a limited job without releasing it,
    or the job's hash disappears. Registry maintenance at worker start frees it (rq 3.0's
    RateLimitRegistry.cleanup), the waiting job runs, and a later pass forgets the empty limit."""
    from harness import wait_for
    from rqapi import status_of
    from rq.rate_limit import RateLimit

    first, second = [queue.enqueue(diag.add, i, 1, rate_limit=RateLimit("rl-leak", 1)) for i in range(2)]
    assert status_of(conn, second.id) == "rate_limited"
    # What the leak leaves: the first job off its queue and done, still holding the slot.
    conn.lrem("rq:queue:default", 0, first.id)
    if leak == "job deleted":
        conn.delete(f"rq:job:{first.id}")
    else:
        conn.hset(f"rq:job:{first.id}", "status", "finished")
    assert conn.zrange("rq:rl:rl-leak:allowed", 0, -1) == [first.id.encode()]

    fleet.start()
    wait_for(lambda: status_of(conn, second.id) == "finished", timeout=60, what="the waiting job to run")
    assert fetch(conn, second.id).return_value() == 2
    assert conn.zcard("rq:rl:rl-leak:allowed") == 0
    assert conn.zcard("rq:rl:rl-leak:rate_limited") == 0

    # Nothing allowed or waiting any more: the next maintenance pass forgets the limit.
    fleet.start()
    wait_for(lambda: not conn.sismember("rq:rl-keys", "rl-leak"), timeout=60, what="the limit forgotten")
    assert not conn.exists("rq:rl:rl-leak")


@pytest.mark.rq_min(3, 0)
def test_a_running_job_keeps_its_slot(conn, queue, fleet):
    """Maintenance frees only slots whose job neither waits nor runs: a job that is running keeps
    its slot even when its status was changed under it (canceled while its horse runs)."""
    from harness import wait_for
    from rqapi import status_of
    from rq.rate_limit import RateLimit

    slow, waiting = (queue.enqueue(diag.sleep, 3, rate_limit=RateLimit("rl-live", 1)),
                     queue.enqueue(diag.add, 1, 1, rate_limit=RateLimit("rl-live", 1)))
    fleet.start()
    wait_for(lambda: status_of(conn, slow.id) == "started", timeout=60, what="the slow job to start")
    conn.hset(f"rq:job:{slow.id}", "status", "canceled")
    fleet.start()  # its maintenance pass at start sees a canceled job with a live execution
    time.sleep(1.0)
    assert status_of(conn, waiting.id) == "rate_limited"
    assert conn.zrange("rq:rl:rl-live:allowed", 0, -1) == [slow.id.encode()]


@pytest.mark.rq_min(3, 0)
def test_a_limited_dependent_waits_for_a_slot(conn, queue, fleet):
    """A dependent under a concurrency limit is not queued past its limit when its parent finishes:
    it waits as `rate_limited` while another job holds the only slot, then runs (rq 3.0 routes it
    through its ready registry to the same end)."""
    from harness import wait_for
    from rqapi import status_of
    from rq.rate_limit import RateLimit

    blocker = queue.enqueue(diag.sleep, 6, rate_limit=RateLimit("rl-dep", 1))
    parent = queue.enqueue(diag.add, 1, 1)
    child = queue.enqueue(diag.add, 2, 2, depends_on=parent, rate_limit=RateLimit("rl-dep", 1))
    assert status_of(conn, child.id) == "deferred"
    fleet.start()
    fleet.start()
    wait_for(lambda: status_of(conn, parent.id) == "finished", timeout=60, what="the parent to finish")
    wait_for(lambda: status_of(conn, child.id) == "rate_limited", timeout=10, what="the child to wait")
    assert status_of(conn, blocker.id) == "started"  # the slot was taken all along
    assert conn.zrange("rq:rl:rl-dep:allowed", 0, -1) == [blocker.id.encode()]
    assert child.id.encode() not in conn.lrange("rq:queue:default", 0, -1)
    wait_for(lambda: status_of(conn, child.id) == "finished", timeout=60, what="the child to run")
    assert fetch(conn, child.id).return_value() == 4
    assert conn.zcard("rq:rl:rl-dep:allowed") == 0


@pytest.mark.rq_min(3, 0)
@pytest.mark.parametrize("limited", [False, True])
def test_dependents_left_in_the_ready_registry_are_enqueued(conn, queue, fleet, limited):
    """An rq 3.0 worker moves a finished job's dependents deferred -> ready_to_enqueue (zset
    rq:ready:<queue>) and enqueues them in a second transaction; if it died in between, registry
    maintenance at the next worker's start enqueues them (through their limit, if they have one)."""
    from harness import wait_for
    from rqapi import status_of
    from rq.rate_limit import RateLimit

    parent = queue.enqueue(diag.add, 1, 1)
    kw = {"rate_limit": RateLimit("rl-ready", 1)} if limited else {}
    child = queue.enqueue(diag.add, 2, 3, depends_on=parent, **kw)
    gone = queue.enqueue(diag.add, 0, 0, depends_on=parent)
    # What the dead rq 3.0 worker left: the parent done, its dependents in the ready registry
    # (one of them deleted since).
    conn.lrem("rq:queue:default", 0, parent.id)
    conn.hset(f"rq:job:{parent.id}", "status", "finished")
    for j in (child, gone):
        conn.zrem("rq:deferred:default", j.id)
        conn.hset(f"rq:job:{j.id}", "status", "ready_to_enqueue")
        conn.zadd("rq:ready:default", {j.id: time.time()})
    conn.delete(f"rq:job:{gone.id}")

    fleet.start()
    wait_for(lambda: status_of(conn, child.id) == "finished", timeout=60, what="the dependent to run")
    assert fetch(conn, child.id).return_value() == 5
    assert conn.zcard("rq:ready:default") == 0
    if limited:
        assert conn.zcard("rq:rl:rl-ready:allowed") == 0

