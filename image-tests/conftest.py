"""Harness of the container image tests: podman (with scripts/image/containers.conf), the image built by
scripts/image.sh (RQ_WORKER_IMAGE, default localhost/rq-worker:test), a private redis-server per test on
a free loopback port, and containers on `--network host` that are removed (logs printed) after each test.

Nothing here skips: without podman or the image every test fails, saying what to run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("RQ_WORKER_IMAGE", "localhost/rq-worker:test")
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "scripts" / "image" / "containers.conf")}
UID = 10001


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    if shutil.which("podman") is None:
        raise RuntimeError("podman is not installed: run scripts/image.sh (it installs podman and builds the image)")
    proc = subprocess.run(["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.1):
    """Poll until `predicate()` is truthy (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # retried until the deadline
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


@pytest.fixture(scope="session")
def image() -> str:
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        raise AssertionError(f"image {IMAGE} not found: build it with scripts/image.sh")
    return IMAGE


class RedisServer:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="rqw-image-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = Redis.from_url(self.url)
        wait_for(self.client.ping, 10, "redis-server")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


class Containers:
    """Starts containers of the image on the host network; removes them (printing their logs) at teardown."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.names: list[str] = []

    def run(self, *args: str, env: dict[str, str] | None = None, podman_args: tuple[str, ...] = ()) -> str:
        name = f"rqw-test-{uuid.uuid4().hex[:10]}"
        # On the host network the image's default metrics address (0.0.0.0:9727) could be taken by
        # anything else on the machine, and a busy port stops the worker at start: an ephemeral port.
        env = {"RQ_WORKER_METRICS_ADDR": "127.0.0.1:0", **(env or {})}
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        podman("run", "-d", "--pull=never", "--name", name, "--network", "host", *env_args, *podman_args, self.image, *args)
        self.names.append(name)
        return name

    def logs(self, name: str) -> str:
        out = podman("logs", name, check=False)
        return out.stdout + out.stderr

    def inspect(self, name: str, fmt: str) -> str:
        return podman("inspect", "--format", fmt, name).stdout.strip()

    def close(self) -> None:
        for name in self.names:
            print(f"---- podman logs {name}\n{self.logs(name)}")
            podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture
def containers(image):
    c = Containers(image)
    yield c
    c.close()
