"""Job groups (rq >= 2): registry maintenance drops the ids of jobs that are gone from their group,
and empty groups from the groups registry, as the Python worker's maintenance does."""
import pytest
from rq import Queue

from harness import wait_for
from rq_worker import diag


@pytest.mark.rq_min(2, 0)
def test_groups_forget_jobs_that_are_gone(conn, queue, fleet):
    from rq.group import Group

    kept = Group.create(connection=conn)
    kept_jobs = kept.enqueue_many(queue, [Queue.prepare_data(diag.add, (i, 1)) for i in range(2)])
    emptied = Group.create(connection=conn)
    emptied_jobs = emptied.enqueue_many(queue, [Queue.prepare_data(diag.add, (5, 5))])
    fleet.burst()
    # Expired since (their result TTL ran out): one job of the first group, every job of the second.
    conn.delete(f"rq:job:{kept_jobs[0].id}", f"rq:job:{emptied_jobs[0].id}")
    # rq 3.0 cleans groups once per maintenance interval (lock rq:clean_groups, taken by the first
    # worker's run above): let the interval pass.
    conn.delete("rq:clean_groups")

    fleet.start()
    wait_for(lambda: not conn.sismember("rq:groups", emptied.name), timeout=60,
             what="the empty group to leave the registry")
    assert conn.smembers(f"rq:group:{kept.name}") == {kept_jobs[1].id.encode()}
    assert conn.sismember("rq:groups", kept.name)
    assert [j.id for j in Group.fetch(kept.name, connection=conn).get_jobs()] == [kept_jobs[1].id]
