"""Validation of deploy/: the Compose overrides and the Kubernetes manifests.

Offline: every schema comes from a package of python-fixtures/requirements-deploy.txt.
* Kubernetes objects: kubernetes-validate's strict schemas (unknown fields are errors), for the
  oldest and the newest Kubernetes version it ships that the manifests target.
* KEDA objects: the JSON schema of cloudcoil-models-keda's models, generated from KEDA's CRDs,
  tightened so that unknown fields are errors (the API server prunes or rejects them); plus a
  schema written here for the redis scaler's `metadata`, which the CRD leaves as a string map,
  from KEDA's documented parameters of the Redis Lists scaler.
* Compose files: the Compose specification's JSON schema shipped in check-jsonschema, for each
  override alone and for the model Compose would build by merging it over a stand-in of the
  platform's file (fixtures/), with the merge rules of the specification (including `!reset`
  and `!override`) implemented below. `docker compose config` runs too where the plugin exists.
* Then the rules the numbers must keep: grace period > --shutdown-timeout + margin, the timeout
  covering the platform's job timeout, probes on the metrics port, the security context, limits
  against the measured RSS, the KEDA list being the queue the Deployment serves.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
K8S = DEPLOY / "kubernetes"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Facts the numbers are checked against (README "Benchmark", "Ingestion benchmark";
# shared/spec/upstream.md).
EXTRACT_JOB_TIMEOUT = 180  # the API enqueues ingest_extract with RQ's default timeout
MIN_SHUTDOWN_MARGIN = 15  # cold phase: 2 s for handlers to stop, outcome writes, deregistration
METRICS_PORT = 9727
MEASURED_PEAK_BYTES = 87 * 10**6  # both worker processes together, ingestion benchmark
IDLE_RSS_BYTES = 9 * 10**6
PYTHON_LIMIT_BYTES = 2 * 2**30  # what the prod compose gave each Python worker
QUEUES = {"extract": "ingest_extract", "index": "ingest_index"}
BINARY = "/usr/local/bin/rq-worker"


# ------------------------------------------------------------------------------------------
# Compose: loading with !reset / !override, interpolation, merging


class _Reset:
    def __repr__(self) -> str:
        return "!reset"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self  # one marker, compared by identity


RESET = _Reset()


class Override:
    def __init__(self, value):
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """YAML loader that knows Compose's two merge tags; any other tag stays an error."""


def _construct_reset(loader, node):
    return RESET


def _construct_override(loader, node):
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


ComposeLoader.add_constructor("!reset", _construct_reset)
ComposeLoader.add_constructor("!override", _construct_override)


def load_compose(path: Path):
    with open(path) as f:
        return yaml.load(f, Loader=ComposeLoader)


class MissingVariable(Exception):
    pass


_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_EXPR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?|:\+|\+)(.*))?", re.S)


def interpolate(value, env: dict):
    """Compose's variable interpolation on every string value (not on keys)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, Override):
        return Override(interpolate(value.value, env))
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(1):
            return "$"
        if m.group(3):
            return env.get(m.group(3), "")
        expr = _EXPR.fullmatch(m.group(2))
        if not expr:
            raise ValueError(f"invalid interpolation ${{{m.group(2)}}}")
        name, op, arg = expr.groups()
        val = env.get(name)
        if op is None:
            return val or ""
        if op == ":-":
            return val if val else arg
        if op == "-":
            return val if val is not None else arg
        if op == ":?":
            if not val:
                raise MissingVariable(f"{name}: {arg}")
            return val
        if op == "?":
            if val is None:
                raise MissingVariable(f"{name}: {arg}")
            return val
        if op == ":+":
            return arg if val else ""
        return arg if val is not None else ""

    return _VAR.sub(sub, value)


def _strip_tags(value):
    """A value with no base to merge into: !override is its value, !reset keys disappear."""
    if isinstance(value, Override):
        return _strip_tags(value.value)
    if isinstance(value, dict):
        return {k: _strip_tags(v) for k, v in value.items() if v is not RESET}
    if isinstance(value, list):
        return [_strip_tags(v) for v in value]
    return value


def _normalize_service(svc: dict) -> dict:
    """Compose reads list-form environment and short depends_on as mappings before merging."""
    svc = dict(svc)
    env = svc.get("environment")
    if isinstance(env, list):
        svc["environment"] = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    deps = svc.get("depends_on")
    if isinstance(deps, list):
        svc["depends_on"] = {d: {"condition": "service_started"} for d in deps}
    return svc


def _merge(base, over, path):
    if isinstance(over, Override):
        return _strip_tags(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            if value is RESET:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value, path + (key,))
            else:
                out[key] = _strip_tags(value)
        return out
    if isinstance(base, list) and isinstance(over, list):
        if path[-1] in ("command", "entrypoint") or path[-2:] == ("healthcheck", "test"):
            return _strip_tags(over)
        return base + [v for v in _strip_tags(over) if v not in base]
    return _strip_tags(over)


def merge_compose(base: dict, override: dict) -> dict:
    """The merge rules of the Compose specification, for the attributes these files use."""
    base = copy.deepcopy(base)
    override = copy.deepcopy(override)
    for doc in (base, override):
        for name, svc in (doc.get("services") or {}).items():
            if isinstance(svc, dict):
                doc["services"][name] = _normalize_service(svc)
    return _merge(base, override, ())


def compose_schema() -> dict:
    ref = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(ref.read_text())


def compose_errors(doc) -> list[str]:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in cls(schema).iter_errors(json.loads(json.dumps(doc)))
    ]


COMPOSE_CASES = {
    # name: (override file, stand-in base, environment for interpolation)
    "dev": (DEPLOY / "docker-compose.rq-worker.yml", FIXTURES / "platform-compose.yml", {}),
    "prod": (
        DEPLOY / "docker-compose.rq-worker.prod.yml",
        FIXTURES / "platform-compose.prod.yml",
        {"RQ_WORKER_IMAGE": "registry.example/rq-worker:0.1.0"},
    ),
}
WORKER_SERVICES = ("worker-extract", "worker-index")


def compose_case(name):
    override_path, base_path, env = COMPOSE_CASES[name]
    override = interpolate(load_compose(override_path), env)
    base = interpolate(load_compose(base_path), env)
    return base, override, merge_compose(base, override)


def duration_seconds(text) -> float:
    if isinstance(text, (int, float)):
        return float(text)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    assert parts and "".join(a + b for a, b in parts) == str(text), f"bad duration {text!r}"
    return sum(float(a) * units[b] for a, b in parts)


def flag_value(argv: list[str], flag: str):
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def compose_bytes(text) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", str(text).strip().lower())
    assert m, f"bad byte value {text!r}"
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


# ------------------------------------------------------------------------------------------
# Compose tests


@pytest.mark.parametrize("case", COMPOSE_CASES)
def test_compose_override_alone_matches_the_compose_spec(case):
    _, override, _ = compose_case(case)
    assert compose_errors(_strip_tags(override)) == []


@pytest.mark.parametrize("case", COMPOSE_CASES)
def test_compose_merged_model_matches_the_compose_spec(case):
    _, _, merged = compose_case(case)
    assert compose_errors(merged) == []


@pytest.mark.parametrize("case", COMPOSE_CASES)
def test_compose_override_touches_only_the_worker_services(case):
    base, override, merged = compose_case(case)
    assert set(override["services"]) == set(WORKER_SERVICES)
    assert set(override) == {"services"}
    for name, svc in base["services"].items():
        if name not in WORKER_SERVICES:
            assert merged["services"][name] == _normalize_service(svc), name


@pytest.mark.parametrize("case", COMPOSE_CASES)
@pytest.mark.parametrize("service", WORKER_SERVICES)
def test_compose_worker_runs_the_image_not_the_python_build(case, service):
    _, override, merged = compose_case(case)
    svc = merged["services"][service]
    assert "build" not in svc, "the base file's build: must be reset, or Compose builds worker/"
    assert override["services"][service].get("build") is RESET
    assert re.fullmatch(r"(\S+/)?rq-worker(:[\w.-]+)?", svc["image"]), svc["image"]
    assert not svc.get("volumes"), "the Python source mounts must not reach the rq-worker container"
    assert svc["deploy"]["replicas"] >= 1


@pytest.mark.parametrize("case", COMPOSE_CASES)
@pytest.mark.parametrize("service", WORKER_SERVICES)
def test_compose_worker_serves_the_same_queue_with_threads(case, service):
    base, _, merged = compose_case(case)
    svc = merged["services"][service]
    base_env = _normalize_service(base["services"][service])["environment"]
    command = svc.get("command") or []
    assert isinstance(command, list) and "python" not in command
    positional = [a for a in command if not a.startswith("-")]
    flags_with_values = {flag_value(command, f) for f in ("--shutdown-timeout",)}
    queues = [a for a in positional if a not in flags_with_values]
    queue = queues[0] if queues else svc["environment"]["QUEUE_NAME"]
    assert queue == base_env["QUEUE_NAME"]
    assert int(svc["environment"]["WORKER_COUNT"]) >= 1
    # everything the jobs need reaches the container
    for key in ("DATABASE_URL", "REDIS_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "OPENAI_API_KEY"):
        assert key in svc["environment"], key


@pytest.mark.parametrize("case", COMPOSE_CASES)
@pytest.mark.parametrize("service", WORKER_SERVICES)
def test_compose_grace_period_covers_the_shutdown_timeout(case, service):
    _, _, merged = compose_case(case)
    svc = merged["services"][service]
    shutdown = float(flag_value(svc["command"], "--shutdown-timeout"))
    grace = duration_seconds(svc["stop_grace_period"])
    assert shutdown >= EXTRACT_JOB_TIMEOUT
    assert grace >= shutdown + MIN_SHUTDOWN_MARGIN, (grace, shutdown)
    assert svc.get("stop_signal", "SIGTERM") == "SIGTERM"


@pytest.mark.parametrize("case", COMPOSE_CASES)
@pytest.mark.parametrize("service", WORKER_SERVICES)
def test_compose_health_check_and_metrics_port(case, service):
    _, _, merged = compose_case(case)
    svc = merged["services"][service]
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == BINARY and test[2] == "health"
    addr = svc["environment"]["RQ_WORKER_METRICS_ADDR"]
    assert addr.rsplit(":", 1)[1] == str(METRICS_PORT)
    published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
    exposed = [str(p) for p in svc.get("expose", [])]
    assert str(METRICS_PORT) in published + exposed


@pytest.mark.parametrize("case", COMPOSE_CASES)
@pytest.mark.parametrize("service", WORKER_SERVICES)
def test_compose_limits_sized_from_measured_rss(case, service):
    _, _, merged = compose_case(case)
    res = merged["services"][service]["deploy"]["resources"]
    limit = compose_bytes(res["limits"]["memory"])
    reserved = compose_bytes(res["reservations"]["memory"])
    assert IDLE_RSS_BYTES <= reserved <= limit
    assert MEASURED_PEAK_BYTES <= limit < PYTHON_LIMIT_BYTES
    assert float(res["limits"]["cpus"]) > 0
    assert merged["services"][service].get("read_only") is True
    assert merged["services"][service].get("cap_drop") == ["ALL"]


def test_compose_dev_knobs_reach_the_workers():
    override_path, base_path, _ = COMPOSE_CASES["dev"]
    env = {"RQ_EXTRACT_CONCURRENCY": "8", "RQ_WORKER_LOG_FORMAT": "json", "RQ_WORKER_IMAGE": "r/rq-worker:9"}
    merged = merge_compose(
        interpolate(load_compose(base_path), env), interpolate(load_compose(override_path), env)
    )
    svc = merged["services"]["worker-extract"]
    assert svc["environment"]["WORKER_COUNT"] == "8"
    assert svc["environment"]["RQ_WORKER_LOG_FORMAT"] == "json"
    assert svc["image"] == "r/rq-worker:9"


def test_compose_prod_refuses_to_run_without_an_image():
    with pytest.raises(MissingVariable):
        interpolate(load_compose(COMPOSE_CASES["prod"][0]), {})


def test_compose_files_use_only_the_merge_tags():
    for path in (COMPOSE_CASES["dev"][0], COMPOSE_CASES["prod"][0]):
        tags = set(re.findall(r"(?<![\w'\"])!(\w+)", path.read_text()))
        assert tags <= {"reset", "override"}, (path.name, tags)


def _docker_compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        r = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="no `docker compose` plugin here")
@pytest.mark.parametrize("case", COMPOSE_CASES)
def test_docker_compose_config_accepts_the_override(case, tmp_path):
    override_path, base_path, env = COMPOSE_CASES[case]
    shutil.copy(base_path, tmp_path / "docker-compose.yml")
    (tmp_path / "deploy").mkdir()
    shutil.copy(override_path, tmp_path / "deploy" / override_path.name)
    for d in ("worker", "server"):
        (tmp_path / d).mkdir()
    r = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.yml", "-f", f"deploy/{override_path.name}",
         "config", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DATABASE_URL": "postgresql://x", **env},
    )
    assert r.returncode == 0, r.stderr
    model = json.loads(r.stdout)
    for service in WORKER_SERVICES:
        assert "build" not in model["services"][service]
        assert not model["services"][service].get("volumes")


# ------------------------------------------------------------------------------------------
# Kubernetes


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def all_objects() -> list[dict]:
    return [d for p in k8s_files() for d in k8s_docs(p)]


def objects(kind: str) -> list[dict]:
    return [d for d in all_objects() if d["kind"] == kind]


def by_name(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in objects(kind)}


def worker_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


K8S_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_objects_match_the_strict_api_schema(path, version):
    docs = k8s_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # the KEDA test below
        kubernetes_validate.validate(doc, version, strict=True)


def _tighten(node):
    """Structural CRD schemas drop unknown fields; make them errors here instead."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _tighten(value)
    elif isinstance(node, list):
        for value in node:
            _tighten(value)
    return node


def keda_schema(kind: str) -> dict:
    from cloudcoil.models.keda import v1alpha1

    model = getattr(v1alpha1, kind)
    return _tighten(model.model_json_schema(by_alias=True, mode="validation"))


def keda_errors(doc: dict) -> list[str]:
    schema = keda_schema(doc["kind"])
    cls = jsonschema.validators.validator_for(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in cls(schema).iter_errors(doc)]


# The Redis Lists scaler's metadata (`type: redis`), from KEDA's documentation of that scaler.
REDIS_SCALER_METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["listName", "listLength"],
    "properties": {
        "address": {"type": "string", "pattern": r"^[^:/\s]+:\d+$"},
        "addressFromEnv": {"type": "string"},
        "host": {"type": "string"},
        "hostFromEnv": {"type": "string"},
        "port": {"type": "string", "pattern": r"^\d+$"},
        "portFromEnv": {"type": "string"},
        "usernameFromEnv": {"type": "string"},
        "passwordFromEnv": {"type": "string"},
        "listName": {"type": "string", "minLength": 1},
        "listLength": {"type": "string", "pattern": r"^[1-9]\d*$"},
        "activationListLength": {"type": "string", "pattern": r"^\d+$"},
        "enableTLS": {"enum": ["true", "false"]},
        "unsafeSsl": {"enum": ["true", "false"]},
        "databaseIndex": {"type": "string", "pattern": r"^\d+$"},
    },
}
# Parameters a TriggerAuthentication may hand the redis scaler.
REDIS_AUTH_PARAMETERS = {"address", "host", "port", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}


@pytest.mark.parametrize(
    "path", [p for p in k8s_files() if "keda.sh/" in p.read_text()], ids=lambda p: str(p.relative_to(K8S))
)
def test_keda_objects_match_the_crd_schema(path):
    for doc in k8s_docs(path):
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        assert keda_errors(doc) == []
        kubernetes_validate.validate(  # metadata (names, labels) as any object's
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}, K8S_VERSIONS[-1], strict=True
        )


@pytest.mark.parametrize("name", sorted(by_name("ScaledObject")))
def test_keda_scales_each_deployment_on_its_own_queue(name):
    so = by_name("ScaledObject")[name]
    target = so["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    deployment = by_name("Deployment")[target["name"]]
    queue = worker_container(deployment)["args"][0]
    spec = so["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    jsonschema.Draft202012Validator(REDIS_SCALER_METADATA).validate(trigger["metadata"])
    assert trigger["metadata"]["listName"] == f"rq:queue:{queue}"  # RQ's default key prefix
    auth = by_name("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert params <= REDIS_AUTH_PARAMETERS
    assert "address" in params or {"host", "port"} <= params or "address" in trigger["metadata"]
    secret_keys = set(by_name("Secret")["rq-worker-secrets"]["stringData"])
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == "rq-worker-secrets" and ref["key"] in secret_keys
    # a scale-down is a warm shutdown: it must not come faster than the HPA's window
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert behavior["stabilizationWindowSeconds"] >= 60


def test_validators_reject_mistakes():
    """The validators above are not vacuous: one typo each is caught."""
    deployment = copy.deepcopy(by_name("Deployment")["rq-worker-extract"])
    worker_container(deployment)["livenesProbe"] = worker_container(deployment).pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)

    so = copy.deepcopy(by_name("ScaledObject")["rq-worker-extract"])
    so["spec"]["maxReplicas"] = so["spec"].pop("maxReplicaCount")
    assert keda_errors(so)
    so = copy.deepcopy(by_name("ScaledObject")["rq-worker-extract"])
    so["spec"]["triggers"][0]["metadata"]["listname"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(REDIS_SCALER_METADATA).validate(so["spec"]["triggers"][0]["metadata"])

    _, _, merged = compose_case("dev")
    merged["services"]["worker-extract"]["stop_grace_periode"] = "200s"
    assert compose_errors(merged)


QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$")
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text) -> float:
    m = QUANTITY.match(str(text))
    assert m, f"bad quantity {text!r}"
    return float(m.group(1)) * _SUFFIX[m.group(3) or ""]


@pytest.mark.parametrize("name", sorted(by_name("Deployment")))
def test_deployment_resources_sized_from_measured_rss(name):
    res = worker_container(by_name("Deployment")[name])["resources"]
    for kind in ("cpu", "memory"):
        assert quantity(res["requests"][kind]) <= quantity(res["limits"][kind])
    assert IDLE_RSS_BYTES <= quantity(res["requests"]["memory"])
    assert MEASURED_PEAK_BYTES <= quantity(res["limits"]["memory"]) < PYTHON_LIMIT_BYTES


@pytest.mark.parametrize("name", sorted(by_name("Deployment")))
def test_deployment_probes_use_the_metrics_endpoints(name):
    d = by_name("Deployment")[name]
    c = worker_container(d)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        port = c[probe]["httpGet"]["port"]
        assert ports.get(port, port) == METRICS_PORT
    config = by_name("ConfigMap")["rq-worker-config"]["data"]
    assert config["RQ_WORKER_METRICS_ADDR"].rsplit(":", 1)[1] == str(METRICS_PORT)
    ann = d["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(METRICS_PORT)
    service = by_name("Service")["rq-worker-metrics"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


@pytest.mark.parametrize("name", sorted(by_name("Deployment")))
def test_deployment_security_context(name):
    pod = by_name("Deployment")[name]["spec"]["template"]["spec"]
    c = worker_container(by_name("Deployment")[name])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsGroup"] == 10001
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert pod.get("automountServiceAccountToken") is False


@pytest.mark.parametrize("name", sorted(by_name("Deployment")))
def test_deployment_grace_period_and_queue(name):
    d = by_name("Deployment")[name]
    c = worker_container(d)
    component = d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert c["args"][0] == QUEUES[component]
    shutdown = float(flag_value(c["args"], "--shutdown-timeout"))
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert shutdown >= EXTRACT_JOB_TIMEOUT
    assert grace >= shutdown + MIN_SHUTDOWN_MARGIN
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    assert int(env["WORKER_COUNT"]) >= 1


@pytest.mark.parametrize("name", sorted(by_name("Deployment")))
def test_deployment_env_sources_exist(name):
    c = worker_container(by_name("Deployment")[name])
    refs = [(("configMapRef" in s) and "ConfigMap" or "Secret", (s.get("configMapRef") or s.get("secretRef"))["name"])
            for s in c["envFrom"]]
    assert ("ConfigMap", "rq-worker-config") in refs and ("Secret", "rq-worker-secrets") in refs
    secret = by_name("Secret")["rq-worker-secrets"]["stringData"]
    for key in ("REDIS_URL", "DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "OPENAI_API_KEY"):
        assert key in secret, key
    assert by_name("ConfigMap")["rq-worker-config"]["data"]["RQ_WORKER_LOG_FORMAT"] in ("json", "text")


KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(K8S)))
def test_kustomization_lists_existing_files(path):
    k = yaml.safe_load(path.read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    listed = set()
    for res in k["resources"]:
        target = (path.parent / res).resolve()
        assert target.exists(), res
        if target.is_dir():
            assert (target / "kustomization.yaml").exists(), res
        else:
            listed.add(target)
    here = {p.resolve() for p in path.parent.glob("*.yaml") if p.name != "kustomization.yaml"}
    # every manifest is applied, except the Secret example (it would overwrite real secrets)
    assert here - listed == {p for p in here if p.name == "secret.example.yaml"}
    deployments = set(by_name("Deployment"))
    for patch in k.get("patches", []):
        assert patch["target"]["name"] in deployments


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl (kustomize) here")
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(K8S)))
def test_kustomize_build_renders_valid_objects(path):
    r = subprocess.run(["kubectl", "kustomize", str(path.parent)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("Deployment") == 2
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            assert keda_errors(doc) == []
        else:
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "enterprise-rag"
    if "ScaledObject" in kinds:  # KEDA owns the replica count there
        assert all("replicas" not in d["spec"] for d in docs if d["kind"] == "Deployment")
    else:
        assert all(d["spec"]["replicas"] >= 1 for d in docs if d["kind"] == "Deployment")


# ------------------------------------------------------------------------------------------
# The flags the files pass exist in the binary (RQ_WORKER_BIN, exported by scripts/test.sh)


def _used_flags() -> set[str]:
    argvs = [worker_container(d)["args"] for d in objects("Deployment")]
    for case in COMPOSE_CASES:
        _, _, merged = compose_case(case)
        argvs += [merged["services"][s]["command"] for s in WORKER_SERVICES]
    return {a.split("=", 1)[0] for argv in argvs for a in argv if a.startswith("--")}


@pytest.mark.skipif(not os.environ.get("RQ_WORKER_BIN"), reason="RQ_WORKER_BIN not set (scripts/test.sh sets it)")
def test_flags_exist_in_the_binary():
    r = subprocess.run([os.environ["RQ_WORKER_BIN"], "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for flag in sorted(_used_flags()):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", r.stdout), f"{flag} not in rq-worker --help"


def _binary_help() -> str:
    r = subprocess.run([os.environ["RQ_WORKER_BIN"], "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not os.environ.get("RQ_WORKER_BIN"), reason="RQ_WORKER_BIN not set (scripts/test.sh sets it)")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server here")
def test_probes_answer_as_the_files_call_them(tmp_path):
    """The healthcheck of the Compose files (`rq-worker health` with the image's
    RQ_WORKER_METRICS_ADDR=0.0.0.0:PORT) and the Kubernetes probes (GET /healthz, /readyz on the
    metrics port) against a running worker; then SIGTERM is a clean warm shutdown."""
    import signal
    import time
    import urllib.error
    import urllib.request

    if "--metrics-addr" not in _binary_help():
        pytest.skip("this rq-worker build serves no /healthz yet")
    redis_port, metrics_port = _free_port(), _free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 20
    while True:  # redis-server accepting connections
        try:
            socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
            break
        except OSError:
            assert redis.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "RQ_WORKER_METRICS_ADDR": f"0.0.0.0:{metrics_port}",
        "RQ_WORKER_LOG_FORMAT": "json",
    }
    env.pop("QUEUE_NAME", None)
    worker = subprocess.Popen(
        [os.environ["RQ_WORKER_BIN"], "deploy_probe_queue", "--concurrency", "2", "--shutdown-timeout", "5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        health = [os.environ["RQ_WORKER_BIN"], "health"]
        deadline = time.monotonic() + 30
        while subprocess.run(health, env=env, capture_output=True, timeout=15).returncode != 0:
            if worker.poll() is not None:
                pytest.fail(f"worker exited {worker.returncode}: {worker.stdout.read()[-3000:]}")
            assert time.monotonic() < deadline, "rq-worker health never passed"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5) as r:
            assert r.status == 200
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5) as r:
                ready_status = r.status
        except urllib.error.HTTPError as e:
            ready_status = e.code
        assert ready_status in (200, 503)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            assert b"rq_worker_" in r.read()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        out = worker.stdout.read()
        json_lines = [line for line in out.splitlines() if line.startswith("{")]
        assert json_lines and all(isinstance(json.loads(line), dict) for line in json_lines), out[-2000:]
    finally:
        for p in (worker, redis):
            if p.poll() is None:
                p.kill()
                p.wait()
