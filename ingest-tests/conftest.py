"""End-to-end harness of the ingestion jobs (issue 4): real Redis, PostgreSQL + pgvector, Storage and
embeddings stand-ins, Python RQ 1.16 as the platform's enqueuer, and the worker under test.

Session: a private redis-server on a free port, PostgreSQL from scripts/pg.sh (stopped when pytest
exits), tiktoken's cl100k_base table taken from the tiktoken-rs crate (no download), both stand-ins.
Per test: a fresh database with python-fixtures/schema.sql, a fresh Redis database number, a workspace.
The worker is `rq-worker` (RQ_WORKER_BIN, default target/debug/rq-worker) or, with
INGEST_WORKER=reference, Python `rq worker` running python-fixtures/reference_worker.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from redis import Redis
from rq import Queue

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "python-fixtures"
# Service-role keys are JWTs on real Supabase, and supabase-py's create_client (the reference worker's
# storage path) rejects keys that are not JWT-shaped. A test JWT (HS256 over a made-up secret; payload
# {"iss": "rq-worker-ingest-tests", "role": "service_role", ...}): the stand-in only compares it.
STORAGE_KEY = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJycS13b3JrZXItaW5nZXN0LXRlc3RzIiwicm9sZSI6InNlcnZpY2Vf"
               "cm9sZSIsImlhdCI6MTc2NzIyNTYwMCwiZXhwIjoyMDgyNzU4NDAwfQ.SINsna8r8Y2SaCaqpDs70D4l4wnyN9KLDPYJtTPzrhw")
OPENAI_KEY = "sk-test"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class StandIn:
    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FIXTURES / "stand_ins" / script), *args, "--parent-pid", str(os.getpid())],
            stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT="):
            raise RuntimeError(f"{script} did not start: {line!r}")
        self.port = int(line.strip().split("=", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def faults(self, rules: list[dict]) -> None:
        self._call("/__faults", {"rules": rules})

    def reset(self) -> None:
        self._call("/__reset", {})

    def stats(self) -> dict:
        return self._call("/__stats")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def tiktoken_cache() -> str:
    """A TIKTOKEN_CACHE_DIR holding cl100k_base, copied from the tiktoken-rs crate sources."""
    cache = Path(tempfile.gettempdir()) / "rqw-tiktoken-cache"
    target = cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not target.exists():
        cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
        found = sorted(glob.glob(f"{cargo_home}/registry/src/*/tiktoken-rs-*/assets/cl100k_base.tiktoken"))
        if not found:
            raise RuntimeError("cl100k_base.tiktoken not found in the cargo registry: run `cargo fetch` first")
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[-1], target)
    return str(cache)


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    yield from start_services(tmp_path_factory.mktemp("ingest-services"))


def start_services(base: Path):
    """Generator: yields the services dict, stops everything when resumed (also usable outside pytest)."""
    procs = []
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--databases", "512", "--dir", str(base)],
        stdout=subprocess.DEVNULL,
    )
    procs.append(redis_proc)
    try:
        yield from _more_services(base, redis_port)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def _more_services(base: Path, redis_port: int):
    wait_port(redis_port)

    # Not under pytest's private tmp: the non-root PostgreSQL user must be able to reach it.
    pg_dir = Path(tempfile.mkdtemp(prefix="rqw-ingest-pg-"))
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "pg.sh"), "start", str(pg_dir), "--watch", str(os.getpid())],
        capture_output=True, text=True, env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/pg.sh start failed:\n{out.stdout}\n{out.stderr}")
    pg = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)

    storage_root = base / "storage"
    storage_root.mkdir()
    storage = StandIn("storage_server.py", "--root", str(storage_root), "--key", STORAGE_KEY)
    embeddings = StandIn("embeddings_server.py", "--key", OPENAI_KEY)

    yield {
        "redis_port": redis_port,
        "pg_admin": f"postgresql://postgres@127.0.0.1:{pg['PGPORT']}",
        "pg_dir": pg_dir,
        "pg_bin": pg["PG_BIN"],
        "storage": storage,
        "embeddings": embeddings,
        "tiktoken_cache": tiktoken_cache(),
        "base": base,
    }
    storage.stop()
    embeddings.stop()
    subprocess.run(["bash", str(REPO / "scripts" / "pg.sh"), "stop", str(pg_dir)], check=False,
                   env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)})
    shutil.rmtree(pg_dir, ignore_errors=True)


_redis_db = itertools.count(1)


def worker_kind() -> str:
    return os.environ.get("INGEST_WORKER", "rq-worker")


def rq_worker_bin() -> str:
    path = os.environ.get("RQ_WORKER_BIN") or str(REPO / "target" / "debug" / "rq-worker")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not found: run `cargo build --bin rq-worker` first (or set RQ_WORKER_BIN)")
    return path


class World:
    """One test's database, Redis database, workspace and worker environment."""

    def __init__(self, services: dict, kind: str) -> None:
        self.services = services
        self.kind = kind
        self.dbname = f"ingest_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(services["pg_admin"] + "/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {self.dbname}")
        self.db_url = f"{services['pg_admin']}/{self.dbname}"
        self.conn = psycopg.connect(self.db_url, autocommit=True)
        self.conn.execute((FIXTURES / "schema.sql").read_text())
        self.workspace_id = str(uuid.uuid4())
        self.conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'e2e')", (self.workspace_id,))
        self.redis_url = f"redis://127.0.0.1:{services['redis_port']}/{next(_redis_db)}"
        self.redis = Redis.from_url(self.redis_url)
        self.storage: StandIn = services["storage"]
        self.embeddings: StandIn = services["embeddings"]
        self.storage.reset()
        self.embeddings.reset()
        self.env_overrides: dict[str, str] = {}

    # -- the platform's API, as far as the worker can see it -------------------------------------
    def upload(self, filename: str, data: bytes, bucket: str = "documents") -> tuple[str, str]:
        """upload-prepare + signed upload + upload-complete: row, object, status 'uploaded'."""
        document_id = str(uuid.uuid4())
        storage_path = f"{self.workspace_id}/{document_id}/{filename}"
        self.conn.execute(
            "INSERT INTO documents (id, workspace_id, filename, file_size_bytes, file_hash_sha256, storage_path, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'pending_upload')",
            (document_id, self.workspace_id, filename, max(1, len(data)), hashlib.sha256(data + document_id.encode()).hexdigest(),
             storage_path),
        )
        req = urllib.request.Request(
            f"{self.storage.url}/storage/v1/object/{bucket}/{urllib.request.quote(storage_path)}", data=data,
            method="POST", headers={"apikey": STORAGE_KEY, "Authorization": f"Bearer {STORAGE_KEY}",
                                    "Content-Type": "application/pdf"})
        urllib.request.urlopen(req, timeout=10).read()
        self.conn.execute("UPDATE documents SET status = 'uploaded', updated_at = now() WHERE id = %s", (document_id,))
        return document_id, storage_path

    def enqueue_extract(self, document_id: str, storage_path: str, bucket: str = "documents"):
        return Queue("ingest_extract", connection=self.redis).enqueue(
            "jobs.ingest_extract.ingest_extract",
            workspace_id=self.workspace_id, document_id=document_id, bucket=bucket, storage_path=storage_path,
        )

    def enqueue_index(self, document_id: str):
        return Queue("ingest_index", connection=self.redis).enqueue(
            "jobs.ingest_index.ingest_index", workspace_id=self.workspace_id, document_id=document_id)

    # -- running the worker ----------------------------------------------------------------------
    def env(self, kind: str | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RQ_", "SUPABASE_", "OPENAI_"))}
        env.update({
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "SUPABASE_URL": self.storage.url,
            "SUPABASE_SERVICE_ROLE_KEY": STORAGE_KEY,
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": f"{self.embeddings.url}/v1",
            "TIKTOKEN_CACHE_DIR": self.services["tiktoken_cache"],
            "EMBEDDING_MAX_RETRIES": "1",
            "STORAGE_MAX_RETRIES": "1",
        })
        env.update(self.env_overrides)
        return env

    def work(self, *queues: str, kind: str | None = None) -> subprocess.CompletedProcess:
        kind = kind or self.kind
        if kind == "reference":
            cmd = [str(Path(sys.executable).parent / "rq"), "worker", "--burst", "--url", self.redis_url, *queues]
            env = self.env(kind)
            env["PYTHONPATH"] = str(FIXTURES / "reference_worker")
        else:
            cmd = [rq_worker_bin(), "--burst", "--url", self.redis_url, *queues]
            env = self.env(kind)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def ingest(self, kind: str | None = None) -> None:
        self.work("ingest_extract", kind=kind)
        self.work("ingest_index", kind=kind)

    # -- reading the results ---------------------------------------------------------------------
    def document(self, document_id: str) -> dict:
        row = self.conn.execute(
            "SELECT status, error_message, page_count FROM documents WHERE id = %s", (document_id,)).fetchone()
        return {"status": row[0], "error_message": row[1], "page_count": row[2]}

    def count(self, table: str, document_id: str) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {table} WHERE document_id = %s", (document_id,)).fetchone()[0]

    def usage(self) -> tuple[int, int]:
        row = self.conn.execute(
            "SELECT tokens_used, tokens_reserved FROM workspace_daily_usage WHERE workspace_id = %s "
            "AND date = (now() AT TIME ZONE 'utc')::date", (self.workspace_id,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def chunks(self, document_id: str) -> list[tuple]:
        return self.conn.execute(
            "SELECT chunk_index, page_start, page_end, content, content_hash, token_count FROM chunks "
            "WHERE document_id = %s ORDER BY chunk_index", (document_id,)).fetchall()

    def close(self) -> None:
        self.conn.close()
        with psycopg.connect(self.services["pg_admin"] + "/postgres", autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)")


@pytest.fixture
def world(services):
    w = World(services, worker_kind())
    yield w
    w.close()


@pytest.fixture
def make_world(services):
    made = []

    def make(kind: str | None = None) -> World:
        w = World(services, kind or worker_kind())
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
