"""Fixtures of the compat suite.

The suite runs once per Python venv (rq 1.16, 2.12, 3.0): the venv's rq is the client under test.
The worker under test is rq-worker (`--worker rust`, the default; binary from RQ_WORKER_BIN, default
target/debug/rq-worker) or, to validate the tests themselves, a real Python `rq worker` of the same
version running the Python twins in python-fixtures/rq_worker (`--worker python`, or env
COMPAT_WORKER=python).
"""
import os
import sys
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python-fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--worker", choices=["rust", "python"],
                     default=os.environ.get("COMPAT_WORKER", "rust"),
                     help="worker under test: rq-worker (rust) or the venv's Python `rq worker`")


def pytest_configure(config):
    config.addinivalue_line("markers", "rust_only: rq-worker behaviour a Python rq worker does not have")
    config.addinivalue_line("markers", "rq_min(major, minor): needs at least this rq client version")
    config.addinivalue_line("markers", "rq_max(major, minor): needs at most this rq client version")


def pytest_report_header(config):
    kind = config.getoption("--worker")
    target = harness.rust_worker_bin() if kind == "rust" else f"python rq worker {harness.rq.__version__}"
    return [f"compat: rq client {harness.rq.__version__}, worker under test: {target}"]


def pytest_collection_modifyitems(config, items):
    kind = config.getoption("--worker")
    for item in items:
        if kind != "rust" and item.get_closest_marker("rust_only"):
            item.add_marker(pytest.mark.skip(reason="rq-worker only"))
        m = item.get_closest_marker("rq_min")
        if m and harness.RQ_VERSION < tuple(m.args):
            item.add_marker(pytest.mark.skip(reason=f"needs rq >= {m.args}"))
        m = item.get_closest_marker("rq_max")
        if m and harness.RQ_VERSION > tuple(m.args):
            item.add_marker(pytest.mark.skip(reason=f"needs rq <= {m.args}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    fleet = getattr(item, "funcargs", {}).get("fleet")
    if rep.failed and fleet is not None:
        rep.sections.append(("worker logs", fleet.logs()))


@pytest.fixture(scope="session")
def worker_kind(pytestconfig):
    kind = pytestconfig.getoption("--worker")
    if kind == "rust" and not os.access(harness.rust_worker_bin(), os.X_OK):
        pytest.exit(f"rq-worker binary not found at {harness.rust_worker_bin()} (set RQ_WORKER_BIN)", 2)
    return kind


@pytest.fixture
def redis_server(tmp_path_factory):
    """A private redis-server per test: nothing a test leaves running can touch the next test."""
    server = harness.RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url


@pytest.fixture
def conn(redis_server):
    """A redis-py connection to a freshly emptied private Redis."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    yield r
    r.close()


@pytest.fixture
def fleet(conn, redis_server, worker_kind, tmp_path):
    f = harness.Fleet(redis_server.url, worker_kind, tmp_path)
    yield f
    f.close()


@pytest.fixture
def queue(conn):
    from rq import Queue
    return Queue("default", connection=conn)
