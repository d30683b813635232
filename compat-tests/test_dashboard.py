"""rq-dashboard 0.9.0 (with rq 2.12) reads the worker's state: shared/spec/rq-dashboard.md §6.

The dashboard runs headless (its own CLI, bound to 127.0.0.1 on a free port) against the private
Redis; every JSON route must answer 200 in every phase and its log must stay free of tracebacks.
"""
import html.parser
import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime

import pytest

import harness
from harness import wait_for
from rqapi import status_of, workers_by_name
from rq_worker import diag

rq_dashboard = pytest.importorskip("rq_dashboard", reason="rq-dashboard is installed with rq 2.12 only")

REGISTRIES = ("queued", "started", "finished", "failed", "deferred", "scheduled", "canceled")


class Dashboard:
    def __init__(self, redis_url, tmp_path):
        self.port = harness.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "dashboard.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(harness.VENV_BIN / "rq-dashboard"), "-b", "127.0.0.1", "-p", str(self.port), "-u", redis_url],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: self.get("/0/data/queues.json")[0] == 200, timeout=60, interval=0.2,
                 what="rq-dashboard to answer")

    def request(self, path, method="GET"):
        req = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None

    def get(self, path):
        return self.request(path)

    def ok(self, path, method="GET"):
        code, body = self.request(path, method)
        assert code == 200, f"{method} {path} -> {code}; dashboard log:\n{self.log()[-3000:]}"
        return body

    def log(self):
        return self.log_path.read_text(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture
def dash(conn, redis_url, tmp_path):
    d = Dashboard(redis_url, tmp_path)
    yield d
    d.close()


def rq_info(url, *flags):
    rc, out, err = harness.rq_cli(url, "info", *flags)
    return out


def check_invariant(dash, url, job_ids):
    """Every JSON route answers 200 and every `rq info` variant exits 0 (rq-dashboard.md §6)."""
    dash.ok("/0/data/queues.json")
    dash.ok("/0/data/workers.json")
    for reg in REGISTRIES:
        dash.ok(f"/0/data/jobs/default/{reg}/100/asc/1.json")
    for jid in job_ids:
        dash.ok(f"/0/data/job/{jid}.json")
    for flags in ((), ("-W",), ("-R",), ("-r",)):
        rq_info(url, *flags)


def queue_entry(dash):
    queues = {q["name"]: q for q in dash.ok("/0/data/queues.json")["queues"]}
    return queues["default"]


def listed(dash, registry):
    return [j["id"] for j in dash.ok(f"/0/data/jobs/default/{registry}/100/asc/1.json")["jobs"]]


def test_dashboard_sees_worker_jobs_and_registries(conn, queue, fleet, dash, redis_url, worker_kind):
    url = redis_url
    w = fleet.start(name="W")
    wait_for(lambda: getattr(workers_by_name(conn).get("W"), "state", None) == "idle", timeout=60,
             what="worker W idle")
    check_invariant(dash, url, [])

    # 1. idle worker
    workers = dash.ok("/0/data/workers.json")["workers"]
    assert [x["name"] for x in workers] == ["W"]
    rec = workers[0]
    h = {k.decode(): v.decode() for k, v in conn.hgetall("rq:worker:W").items()}
    assert rec["state"] == "idle" and rec["current_job"] == "idle"
    assert rec["queues"] == ["default"] and rec["pid"] == w.pid
    for field in ("birth_date", "last_heartbeat"):
        stamp = parsedate_to_datetime(rec[field]).timestamp()
        assert abs(stamp - time.time()) < 600, (field, rec[field])
    assert rec["version"] == h["version"] and rec["python_version"] == h["python_version"]
    # The workers page's tooltip reads "RQ {version} / Python {python_version}" (issue 13).
    if worker_kind == "rust":
        assert re.fullmatch(r"1\.16\.0\+rq-worker\.\d+\.\d+\.\d+", rec["version"]), rec["version"]
        assert re.fullmatch(r"n/a \(Rust rq-worker \d+\.\d+\.\d+, compat layout\)", rec["python_version"])
        from packaging.version import Version   # a tool comparing versions can parse it
        assert Version(rec["version"]).release == (1, 16, 0)
    # 2. rq info -W -r
    assert re.search(r"^worker W \(\S+ \S+ %d\) idle default\. jobs: 0 finished, 0 failed$" % w.pid,
                     rq_info(url, "-W", "-r"), re.M)

    # successful and failed jobs
    queue.enqueue(diag.echo, doubled=42, job_id="t-ok")
    queue.enqueue(diag.fail, "kaboom", job_id="t-fail")
    wait_for(lambda: status_of(conn, "t-ok") == "finished" and status_of(conn, "t-fail") == "failed",
             timeout=60, what="t-ok finished and t-fail failed")
    ids = ["t-ok", "t-fail"]
    check_invariant(dash, url, ids)
    # 3.
    q = queue_entry(dash)
    assert q["finished_job_registry_count"] == 1 and q["started_job_registry_count"] == 0
    assert q["count"] == queue.count == 0
    # 4.
    fin = {j["id"]: j for j in dash.ok("/0/data/jobs/default/finished/100/asc/1.json")["jobs"]}
    assert fin["t-ok"]["started_at"] and fin["t-ok"]["ended_at"]
    assert fin["t-ok"]["started_at"] <= fin["t-ok"]["ended_at"] and fin["t-ok"]["exc_info"] is None
    # 5.
    d = dash.ok("/0/data/job/t-ok.json")
    assert d["status"] == "finished" and d["result"] == [[], {"doubled": 42}]
    assert d["origin"] == "default" and d["exc_info"] is None
    assert d["enqueued_at"] <= d["started_at"] <= d["ended_at"]
    # 6.
    assert queue_entry(dash)["failed_job_registry_count"] == 1
    failed = {j["id"]: j for j in dash.ok("/0/data/jobs/default/failed/100/asc/1.json")["jobs"]}
    assert "RuntimeError" in failed["t-fail"]["exc_info"] and "kaboom" in failed["t-fail"]["exc_info"]
    # 7.
    d = dash.ok("/0/data/job/t-fail.json")
    assert d["status"] == "failed" and d["result"] is None and d["exc_info"]
    # 8. requeue through the dashboard; the worker runs it again and it fails again
    assert dash.ok("/job/t-fail/requeue", method="POST") == {"status": "OK"}
    wait_for(lambda: status_of(conn, "t-fail") == "failed" and len(listed(dash, "failed")) == 1, timeout=60,
             what="requeued t-fail to fail again")
    assert len(queue.fetch_job("t-fail").results()) == 2

    # long-running job, sampled while it runs
    queue.enqueue(diag.sleep, 25, job_id="t-slow")   # long enough for the probes below, even on a busy machine
    wait_for(lambda: status_of(conn, "t-slow") == "started", timeout=60, what="t-slow started")
    ids.append("t-slow")
    check_invariant(dash, url, ids)
    # 9.
    rec = dash.ok("/0/data/workers.json")["workers"][0]
    assert rec["state"] == "busy"
    assert rec["current_job"]["job_id"] == "t-slow"
    assert rec["current_job"]["call_string"] == "rq_worker.diag.sleep(25)"
    assert rec["current_job"]["description"] == "rq_worker.diag.sleep(25)"
    # 10.
    assert queue_entry(dash)["started_job_registry_count"] == 1
    assert listed(dash, "started") == ["t-slow"]
    d = dash.ok("/0/data/job/t-slow.json")
    assert d["status"] == "started" and d["started_at"] and d["ended_at"] is None
    # 11. rq info cleans registries: a live job survives it
    out = rq_info(url, "-r")
    assert re.search(r"^queue default 0, 1 executing, ", out, re.M), out
    assert re.search(r"^worker W \(.*\) busy default\. ", out, re.M), out
    d = dash.ok("/0/data/job/t-slow.json")
    if d["status"] != "finished":
        assert d["status"] == "started" and queue_entry(dash)["started_job_registry_count"] == 1

    # 12. counters, idle again
    wait_for(lambda: status_of(conn, "t-slow") == "finished", timeout=60, what="t-slow finished")
    wait_for(lambda: dash.ok("/0/data/workers.json")["workers"][0]["state"] == "idle", timeout=30,
             what="idle on the dashboard")
    check_invariant(dash, url, ids)
    rec = dash.ok("/0/data/workers.json")["workers"][0]
    assert rec["successful_job_count"] == 2 and rec["failed_job_count"] == 2
    assert rec["total_working_time"] > 0 and rec["current_job"] == "idle"
    assert re.search(r"^worker W \(.*\) idle default\. jobs: 2 finished, 2 failed$", rq_info(url, "-r"), re.M)

    # 13. suspension
    harness.rq_cli(url, "suspend")
    queue.enqueue(diag.noop, job_id="t-wake")     # wakes a worker blocked in its dequeue
    wait_for(lambda: dash.ok("/0/data/workers.json")["workers"][0]["state"] == "suspended", timeout=60,
             what="suspended on the dashboard")
    queue.enqueue(diag.add, 1, 2, job_id="t-held")
    time.sleep(1.0)
    assert status_of(conn, "t-held") == "queued"
    assert "t-held" in listed(dash, "queued")
    check_invariant(dash, url, ids + ["t-held"])
    harness.rq_cli(url, "resume")
    wait_for(lambda: status_of(conn, "t-held") == "finished", timeout=60, what="t-held after resume")
    wait_for(lambda: dash.ok("/0/data/workers.json")["workers"][0]["state"] in ("idle", "busy"), timeout=30,
             what="not suspended any more")

    # 14. shutdown
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    check_invariant(dash, url, ids)
    assert dash.ok("/0/data/workers.json")["workers"] == []
    assert re.search(r"^0 workers, 1 queues$", rq_info(url, "-W"), re.M)
    assert re.search(r"^default: –$", rq_info(url, "-R"), re.M), rq_info(url, "-R")
    # 15.
    assert conn.hexists("rq:worker:W", "death") and 0 < conn.ttl("rq:worker:W") <= 60
    assert not conn.sismember("rq:workers", "rq:worker:W")
    assert not conn.sismember("rq:workers:default", "rq:worker:W")
    assert conn.zcard("rq:wip:default") == 0

    assert "Traceback" not in dash.log(), dash.log()[-3000:]


def test_dashboard_cold_shutdown_leaves_nothing_started_forever(conn, queue, fleet, dash, redis_url,
                                                                 worker_kind):
    w = fleet.start(name="W2")
    queue.enqueue(diag.sleep, 120, job_id="t-cut")
    wait_for(lambda: status_of(conn, "t-cut") == "started", timeout=60, what="t-cut started")
    assert listed(dash, "started") == ["t-cut"]
    w.signal(signal.SIGTERM)
    time.sleep(1.5)
    w.signal(signal.SIGTERM)
    w.wait(60)
    if worker_kind == "python":   # RQ itself leaves it to the abandoned-job cleanup
        from rqapi import make_started_entries_abandoned
        make_started_entries_abandoned(conn)
        fleet.burst(kind="python")
    check_invariant(dash, redis_url, ["t-cut"])
    assert dash.ok("/0/data/job/t-cut.json")["status"] == "failed"
    assert listed(dash, "started") == [] and "t-cut" in listed(dash, "failed")
    assert dash.ok("/0/data/workers.json")["workers"] == []
    assert "Traceback" not in dash.log(), dash.log()[-3000:]


class _PreText(html.parser.HTMLParser):
    """The text a browser shows for markup: tags dropped, entities decoded."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def rendered_as_html(text):
    """What rq-dashboard 0.9's job page shows for exc_info: its template inserts the text into a
    <pre> as HTML, unescaped (rq-dashboard.md §6)."""
    p = _PreText()
    p.feed(f"<pre class=\"exc_info\">{text}</pre>")
    p.close()
    return "".join(p.parts)


def test_dashboard_job_page_shows_exc_info_frames_intact(conn, queue, fleet, dash, worker_kind):
    """Issue 13: the failed-job page renders exc_info as HTML, so a frame like `File "<rq-worker>"`
    showed as `File ""`. Every frame line must read the same once rendered, and the chain must show."""
    fleet.start(name="W3")
    queue.enqueue(diag.fail, "kaboom", job_id="t-plain")
    queue.enqueue(diag.fail, "outer failure", "inner cause", job_id="t-chain")
    for jid in ("t-plain", "t-chain"):
        wait_for(lambda: status_of(conn, jid) == "failed", timeout=60, what=f"{jid} failed")
    for jid, last in (("t-plain", "RuntimeError: kaboom"), ("t-chain", "RuntimeError: outer failure")):
        for text in (dash.ok(f"/0/data/job/{jid}.json")["exc_info"],
                     {j["id"]: j for j in dash.ok("/0/data/jobs/default/failed/100/asc/1.json")["jobs"]}
                     [jid]["exc_info"]):
            assert text.startswith("Traceback (most recent call last):"), text
            assert text.rstrip("\n").splitlines()[-1] == last, text
            shown = rendered_as_html(text)
            assert shown == text, f"the job page would show\n{shown}\ninstead of\n{text}"
            frames = [line for line in text.splitlines() if line.startswith("  File ")]
            assert frames and all(re.fullmatch(r'  File "[^"<>&]+", line \d+, in [^<>&]+', f) for f in frames), frames
            # The job function's frame says where it failed.
            assert any(f.endswith(", in fail") for f in frames), frames
    chain = dash.ok("/0/data/job/t-chain.json")["exc_info"]
    assert "inner cause" in chain and "The above exception was the direct cause of the following exception" in chain
    assert chain.index("inner cause") < chain.index("outer failure")
    if worker_kind == "rust":
        assert '  File "rq-worker:rq_worker.diag", line 0, in fail' in chain, chain
    assert "Traceback" not in dash.log(), dash.log()[-3000:]


def test_dashboard_delete_of_a_running_job(conn, queue, fleet, dash, redis_url, worker_kind):
    """Issue 13: deleting a running job from the dashboard (rq 2.x's Job.delete(), which removes only
    `job_id:execution_id` members) left the started count one too high until the job ended."""
    w = fleet.start(name="W4")
    queue.enqueue(diag.sleep, 15, job_id="t-del")   # ends well after the bound below
    wait_for(lambda: status_of(conn, "t-del") == "started", timeout=60, what="t-del started")
    assert queue_entry(dash)["started_job_registry_count"] == 1 and listed(dash, "started") == ["t-del"]
    dash.ok("/job/t-del/delete", method="POST")
    wait_for(lambda: queue_entry(dash)["started_job_registry_count"] == 0, timeout=8,
             what="started count 0 on the dashboard after the delete")
    assert listed(dash, "started") == []
    assert re.search(r"^queue default 0, 0 executing, ", rq_info(redis_url, "-r"), re.M)
    if worker_kind == "rust":
        # The worker no longer names a job that cannot be fetched (the workers page would fail).
        wait_for(lambda: dash.get("/0/data/workers.json")[0] == 200, timeout=5, what="workers page")
        rec = dash.ok("/0/data/workers.json")["workers"][0]
        assert rec["state"] == "busy" and rec["current_job"] == "idle"
        check_invariant(dash, redis_url, [])
    queue.enqueue(diag.noop, job_id="t-after")
    wait_for(lambda: status_of(conn, "t-after") == "finished", timeout=60, what="t-after finished")
    assert queue_entry(dash)["started_job_registry_count"] == 0
    if worker_kind == "rust":
        check_invariant(dash, redis_url, ["t-after"])
        assert "Traceback" not in dash.log(), dash.log()[-3000:]
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
