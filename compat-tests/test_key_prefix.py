"""rq 3.0's key prefix (`RQ_KEY_PREFIX`): rq-worker takes it from the same environment variable."""
import pytest


@pytest.mark.rq_min(3, 0)
def test_rq_key_prefix(conn, redis_server, fleet):
    """rq 3.0's RQ_KEY_PREFIX: an enqueuer and a worker that share the prefix meet under it, and
    nothing is written under `rq:`."""
    import subprocess
    import sys

    from harness import wait_for

    env = dict(fleet.env(), RQ_KEY_PREFIX="tenant-a")

    def py(code):
        out = subprocess.run([sys.executable, "-c", code, redis_server.url], env=env, check=True,
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip()

    job_id = py("import sys, redis; from rq import Queue; from rq_worker import diag; "
                "q = Queue('default', connection=redis.Redis.from_url(sys.argv[1])); "
                "print(q.enqueue(diag.add, 2, 5).id)")
    assert conn.hget(f"tenant-a:job:{job_id}", "status") == b"queued"
    fleet.start(env_extra={"RQ_KEY_PREFIX": "tenant-a"})
    wait_for(lambda: conn.hget(f"tenant-a:job:{job_id}", "status") == b"finished", timeout=60,
             what="the job under the prefix to finish")
    assert py("import sys, redis; from rq.job import Job; "
              f"print(Job.fetch('{job_id}', connection=redis.Redis.from_url(sys.argv[1])).return_value())") == "7"
    assert conn.keys("rq:*") == []
    assert conn.zscore("tenant-a:finished:default", job_id) is not None
