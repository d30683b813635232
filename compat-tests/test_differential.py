"""Differential checks: the same scenario run by this venv's Python `rq worker` and by the worker
under test must leave Redis state that clients cannot tell apart (the worker under test may write
more: the compat layout is a superset)."""
import re
import signal

import pytest
from rq import Queue, Retry

import harness
from harness import wait_for
from rqapi import fetch, status_of, workers_by_name
from rq_worker import diag

WORKER = "diffw"


def scenario(conn):
    q = Queue("default", connection=conn)
    q.enqueue(diag.add, 2, 3, job_id="d-ok")
    q.enqueue(diag.fail, "boom", job_id="d-fail")
    q.enqueue(diag.fail, "again", retry=Retry(max=1), job_id="d-retry")
    q.enqueue(diag.add, 1, 1, result_ttl=-1, job_id="d-keep")
    q.enqueue(diag.add, 1, 1, result_ttl=0, job_id="d-gone")
    q.enqueue(diag.echo, "x", failure_ttl=300, job_id="d-echo")
    parent = q.enqueue(diag.add, 4, 4, job_id="d-parent")
    q.enqueue(diag.add, 5, 5, depends_on=parent, job_id="d-child")


def ttl_class(t):
    if t == -1:
        return "persistent"
    if t == -2:
        return "missing"
    return "expiring"


def snapshot(conn):
    """Normalized keyspace: key -> (type, ttl class, field names / members / entry fields)."""
    snap = {}
    for raw in conn.keys("*"):
        key = raw.decode()
        if key.startswith(("rq:clean_registries:", "rq:scheduler", "rq:execution:", "rq:executions:",
                           "rq:last_cleaned", "rq:cron", "rq:clean_groups")):
            continue   # locks, scheduler bookkeeping and 2.x execution records (checked elsewhere)
        typ = conn.type(raw).decode()
        ttl = ttl_class(conn.ttl(raw))
        if typ == "hash":
            content = frozenset(k.decode() for k in conn.hkeys(raw))
        elif typ in ("set",):
            content = frozenset(m.decode().split(":")[0] if key.endswith(":executions") else m.decode()
                                for m in conn.smembers(raw))
        elif typ == "zset":
            content = frozenset(m.decode().split(":")[0] if key.startswith("rq:wip:") else m.decode()
                                for m in conn.zrange(raw, 0, -1))
        elif typ == "list":
            content = tuple(m.decode() for m in conn.lrange(raw, 0, -1))
        elif typ == "stream":
            content = tuple((e[1].get(b"type", b"").decode(),
                             frozenset(k.decode() for k in e[1]))
                            for e in conn.xrange(raw))
        else:
            content = conn.get(raw)
        snap[key] = (typ, ttl, content)
    return snap


OPTIONAL_JOB_FIELDS = {"exc_info", "last_heartbeat", "worker_name", "result", "meta", "retry_intervals"}


def compare(ref, got):
    """Everything a client reads in `ref` (Python worker) must be in `got` (worker under test)."""
    problems = []
    for key, (typ, ttl, content) in sorted(ref.items()):
        if key not in got:
            problems.append(f"missing key {key}")
            continue
        gtyp, gttl, gcontent = got[key]
        if gtyp != typ:
            problems.append(f"{key}: type {gtyp}, expected {typ}")
            continue
        if gttl != ttl:
            problems.append(f"{key}: ttl {gttl}, expected {ttl}")
        if typ == "hash":
            missing = set(content) - set(gcontent)
            if key.startswith("rq:job:"):
                missing -= OPTIONAL_JOB_FIELDS
            if missing:
                problems.append(f"{key}: missing fields {sorted(missing)}")
        elif typ == "stream":
            if [t for t, _ in content] != [t for t, _ in gcontent]:
                problems.append(f"{key}: entry types {[t for t, _ in gcontent]}, expected {[t for t, _ in content]}")
            for (t, fields), (gt, gfields) in zip(content, gcontent):
                if not fields <= gfields:
                    problems.append(f"{key}: entry fields {sorted(gfields)} lack {sorted(fields - gfields)}")
        elif key.startswith("rq:workers") or typ == "set":
            if set(content) != set(gcontent):
                problems.append(f"{key}: members {sorted(gcontent)}, expected {sorted(content)}")
        elif content != gcontent:
            problems.append(f"{key}: {gcontent!r:.200}, expected {content!r:.200}")
    return problems


def job_fields(conn, job_id, fields):
    return {f: conn.hget(f"rq:job:{job_id}", f) for f in fields}


def test_burst_state_matches_python_worker(conn, fleet):
    scenario(conn)
    fleet.burst(kind="python", name=WORKER)
    ref = snapshot(conn)
    ref_fields = {jid: job_fields(conn, jid, ("status", "retries_left", "origin", "result_ttl", "failure_ttl",
                                              "dependency_id", "timeout", "description"))
                  for jid in ("d-ok", "d-fail", "d-retry", "d-keep", "d-echo", "d-parent", "d-child")}
    conn.flushall()
    scenario(conn)
    fleet.burst(name=WORKER)
    got = snapshot(conn)
    problems = compare(ref, got)
    assert len(ref) >= 15, sorted(ref)   # the scenario left real state to compare
    for jid, expected in ref_fields.items():
        actual = job_fields(conn, jid, expected)
        if actual != expected:
            problems.append(f"rq:job:{jid}: {actual} expected {expected}")
    assert not problems, "\n".join(problems)


def test_mid_flight_state_matches_python_worker(conn, fleet):
    def run(kind):
        q = Queue("default", connection=conn)
        q.enqueue(diag.sleep, 30, job_id="d-slow")
        w = fleet.start(kind=kind, name=WORKER)
        wait_for(lambda: status_of(conn, "d-slow") == "started"
                 and getattr(workers_by_name(conn).get(WORKER), "state", None) == "busy"
                 and conn.zcard("rq:wip:default") == 1, timeout=60, what="mid-flight")
        snap = snapshot(conn)
        w.kill9_group()
        return snap

    ref = run("python")
    conn.flushall()
    got = run(None)
    problems = compare(ref, got)
    assert "rq:job:d-slow" in ref and "rq:worker:%s" % WORKER in ref
    assert not problems, "\n".join(problems)
