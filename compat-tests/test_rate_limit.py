"""rq 3.0 concurrency limits (`RateLimit`): rq-worker releases a finished job's slot and promotes
the waiting jobs, as rq 3.0's worker does, so rate-limited jobs never starve behind it."""
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
