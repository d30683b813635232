#!/usr/bin/env python3
"""Chaos suite, ingestion part: the platform's jobs (`jobs.ingest_extract.ingest_extract`, which
enqueues `jobs.ingest_index.ingest_index`) on real PDFs, with PostgreSQL + pgvector, the Storage and
embeddings stand-ins and Redis (AOF), while a seeded fault schedule runs: kill -9 and SIGTERM of
worker processes (restarted), PostgreSQL stopped and restarted on its port, the stand-ins answering
429 (Retry-After), 500/503, too slowly (past the client timeout) or with a body cut short and the
connection closed, CLIENT KILL of every Redis connection, Redis killed and restarted.

Run it with the ingest venv (psycopg, fpdf2, Python RQ 1.16, the reference worker's stack):

    .venvs/ingest/bin/python scripts/chaos_ingest.py --seed 1 --docs 30 --duration 60

Rows: `rust` (rq-worker ingest_extract --concurrency 3 + rq-worker ingest_index --concurrency 2) and
`python` (Python `rq worker` running python-fixtures/reference_worker, the platform's job logic:
3 ingest_extract + 2 ingest_index processes). The drain, warm stop and cleanup burst are the RQ
part's (scripts/chaos.py). Then per document: ready (pages = page_count, chunks, one embedding per
chunk, chunk indexes 0..n-1) or failed (error_message, no chunk, no embedding), never anything
half-written; a document left in `uploaded`/`indexing` counts as "left by a killed job" only when its
job was failed as abandoned (RQ runs a job at most once unless it has retries, and the platform
enqueues none), else as stuck. Per workspace: tokens_reserved back to 0 (only a job killed between
its reservation and its commit may leave some: then `jobs.maintenance.cleanup_stale_reservations` runs
through the row's worker with RESERVATION_TTL_SECONDS=0 and must bring it to 0); tokens_used equal to
the tokens of the ready documents' chunks. Per job: terminal, in no queue, started registry or
intermediate list. Exit 1 with `--check` when the rq-worker row breaks one of these.
"""
import argparse
import importlib.util
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "ingest-tests"))

import psycopg  # noqa: E402
from rq import Queue  # noqa: E402

import chaos  # noqa: E402
from pdfs import report  # noqa: E402
from rqapi import NoSuchJobError, exc_text, fetch, status  # noqa: E402

# ingest-tests' fixtures module (PostgreSQL and the stand-ins started, World), under its own name:
# compat-tests has a conftest too
_spec = importlib.util.spec_from_file_location("ingest_conftest", HERE.parent / "ingest-tests" / "conftest.py")
ingest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ingest)

FAULT_KINDS = {"kill9": 22, "sigterm": 13, "client_kill": 10, "redis_restart": 5, "pg_restart": 15,
               "storage_fault": 15, "embeddings_fault": 20}
STAND_IN_FAULTS = [
    {"status": 503}, {"status": 500}, {"status": 502},
    {"status": 429, "headers": {"Retry-After": "1"}},
    {"latency_ms": 4000},          # past the 2 s client timeouts set below
    {"truncate": True},            # half the body, then the connection closes
]
DOC_VIOLATIONS = ("lost", "wrong", "stuck", "half_written", "reserved_left", "usage_drift", "stale", "panics",
                  "crashes")


def make_plan(seed, n_docs, duration, faults_per_minute):
    rng = random.Random(f"chaos-ingest-{seed}")
    window = duration * 0.6
    docs = [{"i": i, "pages": rng.randint(1, 4), "pdf_seed": rng.randrange(10**6), "at": window * i / max(1, n_docs)}
            for i in range(n_docs)]
    faults = chaos.fault_schedule(rng, duration, faults_per_minute, FAULT_KINDS)
    for f in faults:
        f["rule"] = dict(rng.choice(STAND_IN_FAULTS), count=rng.randint(1, 4))
    return docs, faults


class IngestRow(chaos.Row):
    fault_kinds = FAULT_KINDS
    queues = ("ingest_extract", "ingest_index")

    def setup(self):
        base = self.dir / "services"
        base.mkdir()
        self._services = ingest._more_services(base, self.redis.port)
        self.services = next(self._services)
        self.world = ingest.World(self.services, "reference" if self.kind == "python" else "rq-worker")
        self.world.redis_url = self.redis.url
        self.world.redis = self.redis.client()
        self.world.env_overrides.update({
            "STORAGE_TIMEOUT_SECONDS": "2", "STORAGE_MAX_RETRIES": "3",
            "OPENAI_EMBEDDING_TIMEOUT_SECONDS": "2", "EMBEDDING_MAX_RETRIES": "4",
            "DAILY_TOKEN_LIMIT": str(10**9)})
        self.pg_port = int(self.services["pg_admin"].rsplit(":", 1)[1])
        self.pg_down = threading.Event()
        for d in self.jobs:
            d["doc"], d["path"] = self.world.upload(f"chaos-{d['i']}.pdf", report(d["pdf_seed"], d["pages"]))
            d["id"] = f"ingest-{self.seed}-{d['i']:05d}"

    def teardown(self):
        if getattr(self, "world", None) is not None:
            self.world.conn.close()
        if getattr(self, "_services", None) is not None:
            try:
                next(self._services)
            except StopIteration:
                pass

    def replicas(self):
        if self.kind == "rust":
            return [chaos.Replica(self, 0, ["ingest_extract"]), chaos.Replica(self, 1, ["ingest_index"])]
        return [chaos.Replica(self, i, ["ingest_extract"] if i < 3 else ["ingest_index"]) for i in range(5)]

    def env(self):
        # REDIS_URL is this row's Redis (the reference extract job enqueues the index job through it)
        env = self.world.env("reference" if self.kind == "python" else "rust")
        env["REDIS_URL"] = self.redis.url
        if self.kind == "python":
            env["PYTHONPATH"] = str(chaos.REPO / "python-fixtures" / "reference_worker")
        env.setdefault("RUST_BACKTRACE", "1")
        return env

    def worker_cmd(self, name, queues, burst=False):
        cmd = super().worker_cmd(name, queues, burst)
        if self.kind == "rust":
            i = cmd.index("--concurrency")
            cmd[i + 1] = "3" if queues == ["ingest_extract"] else "2" if queues == ["ingest_index"] else "1"
        return cmd

    # --- faults beside the RQ part's
    def pg_sh(self, *argv, port=None):
        env = {**os.environ, "PG_BIN": self.services["pg_bin"]}
        if port:
            env["PG_PORT"] = str(port)
        return subprocess.run(["bash", str(chaos.REPO / "scripts" / "pg.sh"), *argv, str(self.services["pg_dir"])],
                              capture_output=True, text=True, env=env)

    def _pg_restart(self, pause):
        try:
            out = self.pg_sh("stop")
            if out.returncode:
                chaos.log(f"{self.kind}: pg.sh stop: {out.stderr.strip()}")
            time.sleep(pause)
            for _ in range(10):
                out = self.pg_sh("start", port=self.pg_port)
                if out.returncode == 0:
                    return
                chaos.log(f"{self.kind}: pg.sh start: {out.stderr.strip()[-300:]}")
                time.sleep(1)
        finally:
            self.pg_down.clear()

    def apply_fault(self, fault, replicas):
        kind = fault["kind"]
        if kind == "pg_restart":
            if self.pg_down.is_set():
                return False
            self.pg_down.set()
            threading.Thread(target=self._pg_restart, args=(fault["pause"] + 1,), daemon=True).start()
            return True
        if kind in ("storage_fault", "embeddings_fault"):
            stand_in = self.world.storage if kind == "storage_fault" else self.world.embeddings
            try:
                stand_in.faults([fault["rule"]])
                return True
            except (OSError, urllib.error.URLError) as e:
                chaos.log(f"{self.kind}: {kind} not applied: {e!r}")
                return False
        return super().apply_fault(fault, replicas)

    def enqueue_all(self, t0):
        conn = self.redis.client()
        q = Queue("ingest_extract", connection=conn)
        for d in self.jobs:
            delay = t0 + d["at"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.enqueue_once(conn, q, d["id"], "jobs.ingest_extract.ingest_extract",
                              workspace_id=self.world.workspace_id, document_id=d["doc"], bucket="documents",
                              storage_path=d["path"])

    def quiescent(self, conn, ids):
        return not self.pg_down.is_set() and super().quiescent(conn, ids)

    def run(self):
        res = super().run()
        while self.pg_down.is_set():
            time.sleep(0.2)
        return res

    # --- the checks
    def check(self, conn):
        while self.pg_down.is_set():
            time.sleep(0.2)
        self.world.storage.reset()
        self.world.embeddings.reset()
        db = psycopg.connect(self.world.db_url, autocommit=True)
        counts = dict.fromkeys(("ready", "failed", "left_by_kill", "jobs_abandoned") + DOC_VIOLATIONS, 0)
        problems = []

        def flag(what, detail):
            counts[what] += 1
            problems.append(f"{what}: seed={self.seed} {detail}")

        # every job the run made: the extract jobs (known ids) and the index jobs they enqueued
        jobs_by_doc = {}
        in_flight = set()
        for q in self.queues:
            in_flight |= {m.decode() for m in conn.lrange(f"rq:queue:{q}", 0, -1)}
            in_flight |= {m.decode() for m in conn.zrange(f"rq:wip:{q}", 0, -1)}
            in_flight |= {m.decode() for m in conn.lrange(f"rq:queue:{q}:intermediate", 0, -1)}
        for key in conn.scan_iter("rq:job:*"):
            jid = key.decode()[len("rq:job:"):]
            if ":" in jid:
                continue
            try:
                j = fetch(conn, jid)
            except NoSuchJobError:
                continue
            doc = (j.kwargs or {}).get("document_id")
            st = status(j)
            text = exc_text(j) if st == "failed" else ""
            if "AbandonedJobError" in text and not self.exit_of(j.worker_name or "").startswith(("kill9", "crash")):
                flag("wrong", f"job={jid} abandoned, but its worker {j.worker_name} was not killed")
            jobs_by_doc.setdefault(doc, []).append((j.origin, jid, st, text))
            if st not in ("finished", "failed"):
                flag("stuck", f"job={jid} ({j.func_name}) status {st}")
            elif jid in in_flight:
                flag("stuck", f"job={jid} ({j.func_name}) {st} but still queued or started")
            if "AbandonedJobError" in text:
                counts["jobs_abandoned"] += 1
            if "intermediate" in text:
                flag("wrong", f"job={jid} failed without running: {text.strip()[-200:]}")
        for d in self.jobs:
            if not any(jid == d["id"] for _o, jid, _s, _t in jobs_by_doc.get(d["doc"], [])):
                flag("lost", f"doc={d['doc']} extract job {d['id']} gone")
        ready_tokens = 0
        for d in self.jobs:
            doc = d["doc"]
            row = db.execute("SELECT status, error_message, page_count FROM documents WHERE id = %s", (doc,)).fetchone()
            st, err, page_count = row
            pages = db.execute("SELECT count(*) FROM document_pages WHERE document_id = %s", (doc,)).fetchone()[0]
            chunks, cmin, cmax, tokens = db.execute(
                "SELECT count(*), min(chunk_index), max(chunk_index), coalesce(sum(token_count), 0) FROM chunks "
                "WHERE document_id = %s", (doc,)).fetchone()
            embs = db.execute("SELECT count(*) FROM chunk_embeddings WHERE document_id = %s", (doc,)).fetchone()[0]
            what = f"doc={doc} ({d['pages']} pages) status={st} pages={pages} chunks={chunks} embeddings={embs}"
            jobs = jobs_by_doc.get(doc, [])
            if st == "ready":
                counts["ready"] += 1
                ready_tokens += int(tokens)
                if not (page_count == d["pages"] == pages and chunks >= 1 and embs == chunks
                        and cmin == 0 and cmax == chunks - 1):
                    flag("half_written", what)
            elif st == "failed":
                counts["failed"] += 1
                if not err or chunks or embs:
                    flag("half_written", f"{what} error={err!r}")
            else:
                if chunks or embs:
                    flag("half_written", what)
                # the job of the stage the document is in: extract for uploaded/extracting, else index
                stage = "ingest_extract" if st in ("uploaded", "extracting") else "ingest_index"
                stage_jobs = [j for j in jobs if j[0] == stage]
                if stage_jobs and all("AbandonedJobError" in t for _o, _j, s, t in stage_jobs if s == "failed") \
                        and any(s == "failed" for _o, _j, s, _t in stage_jobs):
                    counts["left_by_kill"] += 1
                else:
                    flag("stuck", f"{what} jobs={[(o, j, s, t.strip()[-160:]) for o, j, s, t in jobs]}")
        used, reserved = db.execute(
            "SELECT coalesce(sum(tokens_used), 0), coalesce(sum(tokens_reserved), 0) FROM workspace_daily_usage "
            "WHERE workspace_id = %s", (self.world.workspace_id,)).fetchone()
        counts["reserved_tokens"] = int(reserved)
        counts["used_tokens"] = int(used)
        if reserved and not counts["jobs_abandoned"]:
            flag("reserved_left", f"{reserved} tokens reserved and no job was killed mid-run")
        counts["reserved_after_cleanup"] = int(reserved)
        if reserved:
            # what the platform runs for reservations a killed job left: the maintenance job, here
            # with RESERVATION_TTL_SECONDS=0, through a burst worker of this row's kind
            Queue("chaos_maint", connection=conn).enqueue("jobs.maintenance.cleanup_stale_reservations")
            self.world.env_overrides["RESERVATION_TTL_SECONDS"] = "0"
            w = self.spawn_worker(f"{self.kind[:2]}{self.seed}-reservations", ["chaos_maint"], burst=True)
            rc = w.proc.wait(120)
            self.note_exit(w, "term" if rc == 0 else f"cleanup rc={rc}")
            left = db.execute("SELECT coalesce(sum(tokens_reserved), 0) FROM workspace_daily_usage "
                              "WHERE workspace_id = %s", (self.world.workspace_id,)).fetchone()[0]
            counts["reserved_after_cleanup"] = int(left)
            if left:
                flag("reserved_left", f"{left} tokens still reserved after cleanup_stale_reservations")
        if used != ready_tokens:
            counts["usage_drift"] = 1
            problems.append(f"usage_drift: seed={self.seed} tokens_used={used}, ready documents' chunks hold"
                            f" {ready_tokens}")
        db.close()
        self.check_fleet(conn, counts, problems)
        return {"kind": self.kind, "jobs": len(self.jobs), "faults": dict(self.fault_counts),
                "connections_killed": self.connections_killed, "counts": counts, "problems": problems}


def table(rows):
    head = ["worker", "documents", "kill-9", "SIGTERM", "PostgreSQL restart", "storage faults", "embeddings faults",
            "redis restart", "CLIENT KILL (conns)", "ready", "failed", "left by a killed job", "stuck",
            "half-written", "lost", "wrong", "tokens reserved at end (after cleanup_stale_reservations)", "usage drift", "stale", "panics", "crashes",
            "seconds"]
    lines = []
    for r in rows:
        f, c = r["faults"], r["counts"]
        name = "rq-worker" if r["kind"] == "rust" else "Python rq worker (reference jobs)"
        cells = [name, r["jobs"], f["kill9"], f["sigterm"], f["pg_restart"], f["storage_fault"], f["embeddings_fault"],
                 f["redis_restart"], f"{f['client_kill']} ({r['connections_killed']})", c["ready"], c["failed"],
                 c["left_by_kill"], c["stuck"], c["half_written"], c["lost"], c["wrong"], f"{c['reserved_tokens']} ({c['reserved_after_cleanup']})",
                 c["usage_drift"], c["stale"], c["panics"] if r["kind"] == "rust" else "-", c["crashes"],
                 r["seconds"]]
        lines.append(cells)
    return chaos.markdown(head, lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--docs", type=int, default=30)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--faults-per-minute", type=float, default=30)
    ap.add_argument("--workers", default="rust,python")
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--workdir", default=str(chaos.REPO / "target" / "chaos"))
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--parallel", action="store_true", help="run the rows at the same time (each on its own services)")
    a = ap.parse_args()
    a.procs, a.concurrency = 2, 1   # the RQ part's knobs, unused here (replicas() decides)
    docs, faults = make_plan(a.seed, a.docs, a.duration, a.faults_per_minute)
    chaos.log(f"ingest seed {a.seed}: {len(docs)} documents, {len(faults)} faults planned")
    rows = [IngestRow(kind, a, [dict(d) for d in docs], faults, Path(a.workdir) / f"ingest-{kind}-seed{a.seed}")
            for kind in [k.strip() for k in a.workers.split(",") if k.strip()]]
    title = f"chaos ingest seed={a.seed} documents={a.docs} duration={a.duration:g}s faults/min={a.faults_per_minute:g}"
    return chaos.run_rows(rows, title, table, DOC_VIOLATIONS, a)


if __name__ == "__main__":
    sys.exit(main())
