"""The container image as the platform runs it (issue 9): built by scripts/image.sh, run with podman on the
host network against a private redis-server, jobs enqueued with Python RQ 1.16 (the platform's pin).

Covered: the image's configuration (user, entrypoint, stop signal, healthcheck, port), no shell inside,
the non-root uid of the running worker, `--help`, the three ways the platform starts its worker
containers (dev compose `python worker.py QUEUE`, prod compose's default command with QUEUE_NAME and
WORKER_COUNT, an `rq worker ...` command line), the HEALTHCHECK going healthy, SIGTERM (`podman stop`)
as a warm shutdown, and hadolint on the Dockerfile. The ingestion run inside the container is
ingest-tests/ with RQ_WORKER_BIN=image-tests/podman-worker.sh (scripts/test.sh, step "image-ingest").
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.job import Job

from conftest import REPO, UID, free_port, podman, wait_for


def image_config(image: str) -> dict:
    """The image's Config; podman's inspect shows the healthcheck beside it, docker's inside it."""
    data = json.loads(podman("image", "inspect", image).stdout)[0]
    return {**data["Config"], "Healthcheck": data["Config"].get("Healthcheck") or data.get("Healthcheck")}


def workers(r) -> list[dict]:
    """The RQ worker hashes registered in Redis, decoded."""
    out = []
    for key in r.smembers("rq:workers"):
        h = r.hgetall(key)
        out.append({k.decode(): v.decode() for k, v in h.items()} | {"name": key.decode().split(":", 2)[2]})
    return out


def live_worker_keys(r) -> list[bytes]:
    """rq:worker:* keys of workers that did not deregister. As RQ's register_death does, a stopped
    worker leaves rq:workers and rq:workers:<queue>, and its hash stays 60 s with a `death` field."""
    live = []
    for key in r.scan_iter("rq:worker:*"):
        if r.type(key) == b"hash" and r.hget(key, "death") and 0 < r.ttl(key) <= 60:
            continue
        live.append(key)
    return live


def finished(job: Job, timeout: float = 30.0):
    wait_for(lambda: job.get_status(refresh=True) == "finished", timeout, f"job {job.id} finished "
             f"(status now {job.get_status(refresh=True)}, exc {job.exc_info!r})")
    return job.return_value()


def stop_and_check_warm(containers, name: str, r) -> None:
    """podman stop (the image's STOPSIGNAL, SIGTERM): exit code 0 and every RQ worker deregistered."""
    podman("stop", "-t", "60", name, timeout=90)
    assert containers.inspect(name, "{{.State.ExitCode}}") == "0", containers.logs(name)
    assert r.smembers("rq:workers") == set()
    assert list(r.scan_iter("rq:workers:*")) == []
    assert live_worker_keys(r) == []


# ---- the image itself -----------------------------------------------------------------------------

def test_image_configuration(image):
    cfg = image_config(image)
    assert cfg["User"] == f"{UID}:{UID}"
    assert cfg["Entrypoint"] == ["/usr/local/bin/rq-worker"]
    assert not cfg.get("Cmd")
    assert cfg["WorkingDir"] == "/app"
    assert cfg["StopSignal"] == "SIGTERM"
    assert "9727/tcp" in cfg["ExposedPorts"]
    assert "RQ_WORKER_METRICS_ADDR=0.0.0.0:9727" in cfg["Env"]
    # podman keeps HEALTHCHECK only in the docker format (scripts/image.sh builds with --format docker).
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/rq-worker", "health"]


def test_help_and_version(image):
    out = podman("run", "--rm", "--pull=never", image, "--help")
    assert "rq-worker" in out.stdout and "--concurrency" in out.stdout
    out = podman("run", "--rm", "--pull=never", image, "--version")
    assert out.stdout.startswith("rq-worker ")


def test_no_shell_or_package_manager_inside(image):
    for path in ("/bin/sh", "/bin/bash", "/usr/bin/apt-get", "/usr/bin/dpkg"):
        out = podman("run", "--rm", "--pull=never", "--entrypoint", path, image, "--version", check=False)
        assert out.returncode != 0, f"{path} exists in the image"


def test_files_the_runtime_needs(image, tmp_path):
    """CA bundle, passwd/group with the fixed user, /tmp sticky and world-writable, /app owned by the user."""
    name = podman("create", "--pull=never", image).stdout.strip()
    try:
        podman("cp", f"{name}:/etc/passwd", str(tmp_path / "passwd"))
        podman("cp", f"{name}:/etc/group", str(tmp_path / "group"))
        podman("cp", f"{name}:/etc/ssl/certs/ca-certificates.crt", str(tmp_path / "ca.crt"))
        mounted = podman("mount", name).stdout.strip()
        try:
            tmp = os.stat(os.path.join(mounted, "tmp"))
            app = os.stat(os.path.join(mounted, "app"))
        finally:
            podman("unmount", name, check=False)
    finally:
        podman("rm", "-f", name, check=False)
    assert f"rqworker:x:{UID}:{UID}:" in (tmp_path / "passwd").read_text()
    assert f"rqworker:x:{UID}:" in (tmp_path / "group").read_text()
    assert (tmp_path / "ca.crt").read_text().count("BEGIN CERTIFICATE") > 50
    assert oct(tmp.st_mode & 0o7777) == "0o1777"
    assert (app.st_uid, app.st_gid) == (UID, UID)


# ---- running workers ------------------------------------------------------------------------------

def test_runs_as_the_non_root_user(containers, redis_server):
    name = containers.run("q-uid", env={"REDIS_URL": redis_server.url})
    wait_for(lambda: workers(redis_server.client), 30, "the worker to register")
    pid = containers.inspect(name, "{{.State.Pid}}")
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    assert status["Uid"].split() == [str(UID)] * 4
    assert status["Gid"].split() == [str(UID)] * 4
    stop_and_check_warm(containers, name, redis_server.client)


QUEUE = "ingest_extract"
START_FORMS = {
    # docker-compose.yml (dev): `command: python worker.py ingest_extract`, QUEUE_NAME unset here so the
    # argument is what names the queue.
    "dev-compose-python-worker-py": (["python", "worker.py", QUEUE], {}, 1, ()),
    # The dev compose sets QUEUE_NAME too; as in the original worker.py, QUEUE_NAME wins over the argument.
    "dev-compose-queue-name-wins": (["python3", "/app/worker.py", "other_queue"], {"QUEUE_NAME": QUEUE}, 1, ()),
    # docker-compose.prod.yml: no command (the image's default), QUEUE_NAME (+ WORKER_COUNT); with the
    # read-only root filesystem and tmpfs /tmp that deploy/'s compose overrides and pods use.
    "prod-compose-default-command": ([], {"QUEUE_NAME": QUEUE, "WORKER_COUNT": "2"}, 2,
                                     ("--read-only", "--tmpfs", "/tmp")),
    # An `rq worker` command line as a Procfile or k8s manifest has it (Python-only options accepted).
    "rq-worker-command-line": (["rq", "worker", "--url", "{url}", "-w", "rq.worker.SimpleWorker",
                                "--name", "rqw-cli", QUEUE], {}, 1, ()),
}


@pytest.mark.parametrize("form", list(START_FORMS))
def test_start_forms_process_real_jobs(form, containers, redis_server):
    args, env, count, podman_args = START_FORMS[form]
    r = redis_server.client
    q = Queue(QUEUE, connection=r)
    jobs = [q.enqueue("rq_worker.diag.add", 2, 3),
            q.enqueue("rq_worker.diag.echo", "x", 1, key="v"),
            q.enqueue("rq_worker.diag.add", 40, 2)]
    env = {"REDIS_URL": redis_server.url, **env} if "--url" not in args else env
    name = containers.run(*[a.format(url=redis_server.url) for a in args], env=env, podman_args=podman_args)

    assert finished(jobs[0]) == 5
    assert finished(jobs[1]) == [["x", 1], {"key": "v"}]
    assert finished(jobs[2]) == 42
    registered = wait_for(lambda: len(workers(r)) == count and workers(r), 30, f"{count} registered workers")
    # The worker listens on exactly the platform's queue (not on "python", "worker.py" or "rq").
    assert [w["queues"] for w in registered] == [QUEUE] * count
    assert sorted(w.name for w in Worker.all(connection=r)) == sorted(w["name"] for w in registered)
    if form == "rq-worker-command-line":
        assert registered[0]["name"] == "rqw-cli"
    if form.startswith("dev-compose"):
        assert "worker.py" in containers.logs(name)  # the mapping is logged
    stop_and_check_warm(containers, name, r)


def test_healthcheck_goes_healthy(containers, redis_server):
    # 0.0.0.0 as in the image's default (on a free port: this is the host network); `rq-worker health`
    # probes it as 127.0.0.1.
    port = free_port()
    name = containers.run("q-health", env={"REDIS_URL": redis_server.url,
                                           "RQ_WORKER_METRICS_ADDR": f"0.0.0.0:{port}"})
    # The image's HEALTHCHECK, run by the engine inside the container (no shell, no curl).
    wait_for(lambda: podman("healthcheck", "run", name, check=False, timeout=20).returncode == 0, 30,
             "healthcheck to pass")
    health = json.loads(podman("inspect", name).stdout)[0]["State"]
    status = (health.get("Health") or health.get("Healthcheck"))["Status"]
    assert status == "healthy"
    assert podman("exec", name, "rq-worker", "health", "--ready").returncode == 0
    # Against an address nothing listens on, the same command fails.
    assert podman("exec", name, "rq-worker", "health", "--addr", f"127.0.0.1:{free_port()}",
                  check=False).returncode == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert b"# TYPE" in resp.read()
    stop_and_check_warm(containers, name, redis_server.client)


def test_sigterm_is_a_warm_shutdown(containers, redis_server):
    r = redis_server.client
    job = Queue("q-stop", connection=r).enqueue("rq_worker.diag.sleep", 4)
    name = containers.run("q-stop", env={"REDIS_URL": redis_server.url})
    wait_for(lambda: job.get_status(refresh=True) == "started", 30, "the sleep job to start")
    # podman stop sends the image's STOPSIGNAL (SIGTERM) and waits: the running job must finish.
    stop_and_check_warm(containers, name, r)
    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == 4


def test_tls_redis_verified_with_the_image_ca_bundle(containers, tmp_path):
    """rediss:// through the binary's rustls, verifying the server against /etc/ssl/certs/ca-certificates.crt
    (replaced by a test CA with a bind mount, as a site adds its private CA) and resolving `localhost`
    through /etc/hosts (the image's nsswitch.conf)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=rq-worker image test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    os.chmod(tmp_path / "ca.pem", 0o644)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--tls-cert-file", str(tmp_path / "server.pem"),
         "--tls-key-file", str(tmp_path / "server.key"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
         "--tls-auth-clients", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = Redis(host="localhost", port=port, ssl=True, ssl_ca_certs=str(tmp_path / "ca.pem"))
        wait_for(r.ping, 10, "redis-server with TLS")
        # With the image's own bundle (public CAs only) the test server's certificate is refused.
        url = f"rediss://localhost:{port}/0"
        out = podman("run", "--rm", "--pull=never", "--network", "host", "--no-healthcheck", "-e", f"REDIS_URL={url}",
                     containers.image, "--burst", "q-tls", check=False, timeout=60)
        assert out.returncode != 0 and "invalid peer certificate: UnknownIssuer" in out.stderr, out.stderr
        job = Queue("q-tls", connection=r).enqueue("rq_worker.diag.add", 20, 22)
        name = containers.run("q-tls", env={"REDIS_URL": url},
                              podman_args=("-v", f"{tmp_path / 'ca.pem'}:/etc/ssl/certs/ca-certificates.crt:ro"))
        assert finished(job) == 42
        stop_and_check_warm(containers, name, r)
    finally:
        server.terminate()
        server.wait(timeout=10)


# ---- the Dockerfile -------------------------------------------------------------------------------

def test_hadolint_passes():
    hadolint = REPO / ".venvs" / "image" / "bin" / "hadolint"
    assert hadolint.exists(), "hadolint missing: scripts/python-envs.sh image"
    out = subprocess.run([str(hadolint), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
