"""Bearer tokens (gateway/frontdoor/access.py) on one gateway, through real clients: every protected REST route
and gRPC method with the right token, a wrong one, another scope's and none; health, readiness and
server metadata open; the repository API closed to the inference token; a 401 that says nothing
about models; a refused request's body never read; the settings' errors at start-up."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from openapi_spec_validator import validate
from tritonclient.utils import InferenceServerException

from gateway.frontdoor import access
from gateway.frontdoor.access import Access, Scope
from gateway.protocol.generated import health_pb2
from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from gateway.settings import ConfigError, ServerSettings

from .conftest import ROOT, assert_serves_large

INFERENCE = ["inference-token-old-0123456789", "inference-token-new-9876543210"]  # two at once: a rotation
REPOSITORY = "repository-token-abcdefghijkl"
METRICS = "metrics-token-mnopqrstuvwx"
TOKENS = {Scope.INFERENCE: INFERENCE[1], Scope.REPOSITORY: REPOSITORY, Scope.METRICS: METRICS}
WRONG = "not-a-token-of-any-scope-000000"
ECHO_INPUT = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def metadata(token: str) -> dict:
    """gRPC metadata keys are lower case."""
    return {"authorization": f"Bearer {token}"}


def write_model(repository, name: str, implementation: str = "tests.runtimes.Echo") -> None:
    (repository / name).mkdir()
    (repository / name / "model-settings.json").write_text(json.dumps({"name": name, "implementation": implementation}))


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    folder = tmp_path_factory.mktemp("access")
    repository = folder / "models"
    repository.mkdir()
    write_model(repository, "echo")
    write_model(repository, "spare")  # loaded and unloaded by the repository tests
    write_model(repository, "environment", "tests.runtimes.Environment")
    tokens = folder / "inference-tokens"
    tokens.write_text(f"# rotated on Monday\n{INFERENCE[0]}\n\n  {INFERENCE[1]}  \n")
    (folder / "metrics-tokens").write_text(METRICS + "\n")
    gateway = start_gateway(
        repository,
        inference_tokens_file=tokens,
        metrics_tokens_file=folder / "metrics-tokens",
        metrics_on_http=True,
        env={"GATEWAY_REPOSITORY_TOKENS": REPOSITORY},
    )
    return gateway.wait_ready()  # open: no token


# --- REST: (method, path, body, scope, status with the right token) ---

REST = [
    ("GET", "/v2/models", None, Scope.INFERENCE, 200),
    ("GET", "/v2/models/echo", None, Scope.INFERENCE, 200),
    ("GET", "/v2/models/echo/versions/1", None, Scope.INFERENCE, 404),  # echo has no version 1: found out only with a token
    ("GET", "/v2/models/echo/ready", None, Scope.INFERENCE, 200),
    ("GET", "/v2/models/echo/versions/1/ready", None, Scope.INFERENCE, 404),
    ("POST", "/v2/models/echo/infer", ECHO_INPUT, Scope.INFERENCE, 200),
    ("POST", "/v2/models/echo/versions/1/infer", ECHO_INPUT, Scope.INFERENCE, 404),
    ("POST", "/v2/models/echo/explain", ECHO_INPUT, Scope.INFERENCE, 501),
    ("POST", "/v2/models/echo/versions/1/explain", ECHO_INPUT, Scope.INFERENCE, 404),
    ("POST", "/v2/models/echo/infer_dict", {"inputs": [{"x": 1.0}]}, Scope.INFERENCE, 400),  # echo declares no inputs
    ("POST", "/v2/models/echo/versions/1/infer_dict", {"inputs": [{"x": 1.0}]}, Scope.INFERENCE, 404),
    ("POST", "/v2/models/echo/predict", ECHO_INPUT, Scope.INFERENCE, 200),  # MLRun's names
    ("POST", "/v2/models/echo/versions/1/predict", ECHO_INPUT, Scope.INFERENCE, 404),
    ("POST", "/v2/models/echo/predict_dict", {"inputs": [{"x": 1.0}]}, Scope.INFERENCE, 400),
    ("POST", "/v2/models/echo/versions/1/predict_dict", {"inputs": [{"x": 1.0}]}, Scope.INFERENCE, 404),
    ("POST", "/", {"model": "echo", **ECHO_INPUT}, Scope.INFERENCE, 200),  # MLRun: the model named in the body
    ("POST", "/v2/models/echo/generate", ECHO_INPUT, Scope.INFERENCE, 200),  # MLServer's names, and its streams
    ("POST", "/v2/models/echo/versions/1/generate", ECHO_INPUT, Scope.INFERENCE, 404),
    ("POST", "/v2/models/echo/infer_stream", ECHO_INPUT, Scope.INFERENCE, 200),
    ("POST", "/v2/models/echo/versions/1/infer_stream", ECHO_INPUT, Scope.INFERENCE, 404),
    ("POST", "/v2/models/echo/generate_stream", ECHO_INPUT, Scope.INFERENCE, 200),
    ("POST", "/v2/models/echo/versions/1/generate_stream", ECHO_INPUT, Scope.INFERENCE, 404),
    ("GET", "/v1/models", None, Scope.INFERENCE, 200),  # KServe V1
    ("GET", "/v1/models/echo", None, Scope.INFERENCE, 200),
    ("POST", "/v1/models/echo:predict", {"instances": [[1, 2]]}, Scope.INFERENCE, 400),  # echo speaks V2 only
    ("POST", "/v1/models/echo:explain", {"instances": [[1, 2]]}, Scope.INFERENCE, 501),
    ("POST", "/v2/repository/index", {}, Scope.REPOSITORY, 200),
    ("POST", "/v2/repository/models/spare/load", None, Scope.REPOSITORY, 200),
    ("POST", "/v2/repository/models/spare/unload", None, Scope.REPOSITORY, 200),
    ("GET", "/v2/models/stats", None, Scope.METRICS, 200),
    ("GET", "/v2/models/echo/stats", None, Scope.METRICS, 200),
    ("GET", "/v2/models/echo/versions/1/stats", None, Scope.METRICS, 404),
    ("GET", "/metrics", None, Scope.METRICS, 200),
]
OPEN_REST = ["/", "/v2", "/v2/health", "/v2/health/live", "/v2/health/ready", "/openapi.json"]  # GET


def call(gateway, method: str, path: str, body, headers: dict, url=None) -> requests.Response:
    return requests.request(method, f"{url or gateway.url}{path}", json=body, headers=headers, timeout=30)


def assert_refused(response: requests.Response, scope: Scope) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": f"this endpoint needs a valid {scope.value} token: send the header (gRPC: metadata) 'authorization: Bearer <token>'"}
    assert response.headers["www-authenticate"].startswith("Bearer")


def other_tokens(scope: Scope) -> list[str]:
    """What is not a token of the scope: garbage, and the tokens of the other scopes."""
    return [WRONG] + [token for other, token in TOKENS.items() if other is not scope]


@pytest.mark.parametrize("method, path, body, scope, status", REST, ids=[f"{m} {p}" for m, p, *_ in REST])
def test_rest_endpoint_needs_its_scopes_token(gateway, method, path, body, scope, status):
    assert_refused(call(gateway, method, path, body, {}), scope)
    for token in other_tokens(scope):
        assert_refused(call(gateway, method, path, body, bearer(token)), scope)
    for malformed in (f"Basic {TOKENS[scope]}", TOKENS[scope], f"Bearer {TOKENS[scope]}x", "Bearer", f"Bearer {TOKENS[scope]} extra"):
        assert_refused(call(gateway, method, path, body, {"Authorization": malformed}), scope)
    assert call(gateway, method, path, body, bearer(TOKENS[scope])).status_code == status


def test_every_rest_route_is_in_the_table(gateway):
    """The table above covers every protected route the gateway serves (its API document lists them)."""
    document = requests.get(f"{gateway.url}/openapi.json", timeout=10).json()
    validate(document)  # still a valid OpenAPI 3.1 document, with its security schemes
    operations = {(method.upper(), path): operation for path, methods in document["paths"].items() for method, operation in methods.items()}
    protected = {key for key, operation in operations.items() if "security" in operation}
    tested = {
        (method, path.replace("/echo", "/{model}").replace("/spare", "/{model}").replace("/versions/1", "/versions/{version}")) for method, path, *_ in REST
    }
    assert protected == tested
    assert set(operations) - protected == {("GET", path) for path in OPEN_REST}
    assert set(document["components"]["securitySchemes"]) == {"inferenceToken", "repositoryToken", "metricsToken"}
    assert document["paths"]["/v2/repository/index"]["post"]["security"] == [{"repositoryToken": []}]


def test_metrics_port_needs_the_metrics_token(gateway):
    url = f"http://127.0.0.1:{gateway.metrics_port}"
    assert_refused(call(gateway, "GET", "/metrics", None, {}, url), Scope.METRICS)
    assert_refused(call(gateway, "GET", "/metrics", None, bearer(INFERENCE[0]), url), Scope.METRICS)
    answer = call(gateway, "GET", "/metrics", None, bearer(METRICS), url)
    assert answer.status_code == 200 and "gateway_requests_total" in answer.text


@pytest.mark.parametrize("path", OPEN_REST)
def test_probes_and_server_metadata_are_open(gateway, path):
    assert requests.get(f"{gateway.url}{path}", timeout=10).status_code == 200
    assert requests.get(f"{gateway.url}{path}", headers=bearer(WRONG), timeout=10).status_code == 200  # a stale token does not hurt


def test_every_inference_token_of_the_file_is_taken(gateway):
    for token in INFERENCE:
        assert call(gateway, "POST", "/v2/models/echo/infer", ECHO_INPUT, bearer(token)).status_code == 200
    # the scheme in any case, spaces after it (RFC 7235)
    assert call(gateway, "POST", "/v2/models/echo/infer", ECHO_INPUT, {"authorization": f"bEaReR  {INFERENCE[0]}"}).status_code == 200


def test_the_repository_api_refuses_the_inference_token(gateway):
    for action in ("unload", "load"):
        assert_refused(call(gateway, "POST", f"/v2/repository/models/echo/{action}", None, bearer(INFERENCE[0])), Scope.REPOSITORY)
    # nothing happened: echo is still loaded, and the server ready
    assert requests.get(f"{gateway.url}/v2/health/ready", timeout=10).status_code == 200
    assert_serves_large(gateway, "echo", headers=bearer(INFERENCE[0]))


def test_a_refusal_says_nothing_about_models(gateway):
    refusals = [call(gateway, "POST", f"/v2/models/{model}/infer", ECHO_INPUT, bearer(WRONG)) for model in ("echo", "no-such-model")]
    refusals += [call(gateway, "GET", f"/v2/models/{model}", None, {}) for model in ("echo", "no-such-model")]
    refusals += [call(gateway, "POST", "/", {"model": model, **ECHO_INPUT}, {}) for model in ("echo", "no-such-model")]  # MLRun: named in the body
    assert len({(r.status_code, r.content) for r in refusals}) == 1 and refusals[0].status_code == 401
    assert b"echo" not in refusals[0].content and b"no-such-model" not in refusals[0].content
    # with the token, the difference shows
    assert call(gateway, "GET", "/v2/models/no-such-model", None, bearer(INFERENCE[0])).status_code == 404
    assert_serves_large(gateway, "echo", headers=bearer(INFERENCE[0]))


def test_a_refused_body_is_never_read(gateway):
    """The token is checked before the body is read: a client announcing 100 MiB without a token gets
    its 401 at once, not after sending them (nor a 408 for not sending them)."""
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert_serves_large(gateway, "echo", headers=bearer(INFERENCE[1]))


def test_tritonclient_http_with_and_without_the_token(gateway):
    client = httpclient.InferenceServerClient(gateway.address)
    try:
        assert client.is_server_ready()  # open
        with pytest.raises(InferenceServerException) as caught:
            client.get_model_metadata("echo")
        assert "401" in str(caught.value.status()) and "inference token" in str(caught.value)
        with pytest.raises(InferenceServerException):
            client.unload_model("echo", headers=bearer(INFERENCE[0]))
        assert client.get_model_metadata("echo", headers=bearer(INFERENCE[0]))["name"] == "echo"
    finally:
        client.close()
    assert_serves_large(gateway, "echo", headers=bearer(INFERENCE[0]))


# --- gRPC: every method of the service, with our stubs; then tritonclient ---

GRPC = [
    ("ModelReady", pb.ModelReadyRequest(name="echo"), Scope.INFERENCE),
    ("ModelMetadata", pb.ModelMetadataRequest(name="echo"), Scope.INFERENCE),
    ("ModelConfig", pb.ModelConfigRequest(name="echo"), Scope.INFERENCE),
    ("ModelInfer", None, Scope.INFERENCE),
    ("ModelStreamInfer", None, Scope.INFERENCE),
    ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest(), Scope.INFERENCE),
    ("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(name="r"), Scope.INFERENCE),
    ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest(name="r"), Scope.INFERENCE),
    ("RepositoryIndex", pb.RepositoryIndexRequest(), Scope.REPOSITORY),
    ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="spare"), Scope.REPOSITORY),
    ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="spare"), Scope.REPOSITORY),
    ("ModelStatistics", pb.ModelStatisticsRequest(name="echo"), Scope.METRICS),
]
OPEN_GRPC = [("ServerLive", pb.ServerLiveRequest()), ("ServerReady", pb.ServerReadyRequest()), ("ServerMetadata", pb.ServerMetadataRequest())]


def infer_request(model: str = "echo") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="a")
    request.inputs.add(name="x", datatype="FP32", shape=[2])
    request.raw_input_contents.append(np.array([1, 2], dtype=np.float32).tobytes())
    return request


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def grpc_call(stub, rpc: str, request, token: str | None):
    metadata = None if token is None else (("authorization", f"Bearer {token}"),)
    if rpc == "ModelStreamInfer":
        replies = list(stub.ModelStreamInfer(iter([infer_request()]), metadata=metadata, timeout=30))
        assert not replies[0].error_message
        return replies
    return getattr(stub, rpc)(request if request is not None else infer_request(), metadata=metadata, timeout=30)


def assert_unauthenticated(stub, rpc: str, request, token: str | None, scope: Scope) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_call(stub, rpc, request, token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, (rpc, caught.value)
    assert caught.value.details() == f"this endpoint needs a valid {scope.value} token: send the header (gRPC: metadata) 'authorization: Bearer <token>'"


@pytest.mark.parametrize("rpc, request_, scope", GRPC, ids=[rpc for rpc, *_ in GRPC])
def test_grpc_method_needs_its_scopes_token(gateway, stub, rpc, request_, scope):
    assert_unauthenticated(stub, rpc, request_, None, scope)
    for token in other_tokens(scope):
        assert_unauthenticated(stub, rpc, request_, token, scope)
    try:
        grpc_call(stub, rpc, request_, TOKENS[scope])
    except grpc.RpcError as exc:  # the shared-memory extension is not there: past the token, it says so
        assert rpc.startswith("SystemSharedMemory") and exc.code() == grpc.StatusCode.UNIMPLEMENTED, exc


def test_every_grpc_method_is_in_the_table():
    methods = {method.name for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
    assert methods == {rpc for rpc, *_ in GRPC} | {rpc for rpc, _ in OPEN_GRPC} == set(access.GRPC)


@pytest.mark.parametrize("rpc, request_", OPEN_GRPC, ids=[rpc for rpc, _ in OPEN_GRPC])
def test_grpc_health_is_open(stub, rpc, request_):
    answer = getattr(stub, rpc)(request_, timeout=10)
    assert getattr(answer, "live", True) and getattr(answer, "ready", True)


def test_grpc_refusal_says_nothing_about_models(stub, gateway):
    details = set()
    for model in ("echo", "no-such-model"):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(infer_request(model), metadata=(("authorization", f"Bearer {WRONG}"),), timeout=10)
        details.add((caught.value.code(), caught.value.details()))
    ((code, message),) = details
    assert code == grpc.StatusCode.UNAUTHENTICATED and "echo" not in message
    assert_serves_large(gateway, "echo", headers=bearer(INFERENCE[1]))


def test_tritonclient_grpc_with_and_without_the_token(gateway):
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        x = np.arange(16384, dtype=np.float32)  # 64 KiB: through shared memory
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as caught:
            client.infer("echo", [tensor])
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException) as caught:
            client.unload_model("echo", headers=metadata(INFERENCE[0]))
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        assert client.is_model_ready("echo", headers=metadata(INFERENCE[0]))
        np.testing.assert_array_equal(client.infer("echo", [tensor], headers=metadata(INFERENCE[0])).as_numpy("x"), x)
    finally:
        client.close()


def test_refusals_are_logged_and_counted(gateway):
    text = requests.get(f"{gateway.url}/metrics", headers=bearer(METRICS), timeout=10).text
    assert 'gateway_requests_total{model="echo",outcome="client_error",protocol="grpc",version=""}' in text
    assert "rest POST /v2/models/echo/infer 401" in gateway.log_text()
    assert "grpc ModelInfer /inference.GRPCInferenceService/ModelInfer UNAUTHENTICATED" in gateway.log_text()
    for token in (*INFERENCE, REPOSITORY, METRICS):
        assert token not in gateway.log_text()


# --- the settings, at start-up ---


def settings_of(tmp_path, **values) -> ServerSettings:
    return ServerSettings(model_repository=tmp_path, **values)


def test_tokens_file_rules(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# only a comment\n\n")
    with pytest.raises(ConfigError, match="no token in it"):
        Access(settings_of(tmp_path, inference_tokens_file=path))
    path.write_text("good-token\nhas a space\n")  # spaces separate tokens, as commas do
    assert len(Access(settings_of(tmp_path, inference_tokens_file=path)).digests[Scope.INFERENCE]) == 4
    path.write_text("tok\u00e9n\n")
    with pytest.raises(ConfigError, match="a token of 5 characters has characters a bearer token cannot carry") as caught:
        Access(settings_of(tmp_path, inference_tokens_file=path))
    assert "tok\u00e9n" not in str(caught.value)  # the token is never quoted
    with pytest.raises(ConfigError, match="metrics_tokens_file: cannot read"):
        Access(settings_of(tmp_path, metrics_tokens_file=tmp_path / "missing"))
    with pytest.raises(ValueError, match="repository tokens are given twice"):
        settings_of(tmp_path, repository_tokens="a,b", repository_tokens_file=path)
    several = Access(settings_of(tmp_path, repository_tokens="first-token, second-token"))
    for token in ("first-token", "second-token"):
        several.check(Scope.REPOSITORY, f"Bearer {token}")
    several.check(Scope.INFERENCE, None)  # no tokens: open


def start_and_fail(tmp_path, settings: dict, env: dict | None = None, args=()) -> str:
    """Run `gateway start` on a folder with this settings.json: it must exit 2 before serving; its output."""
    shutil.rmtree(tmp_path / "config", ignore_errors=True)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.json").write_text(json.dumps(settings))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "gateway", "start", str(tmp_path / "config"), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr


def test_a_token_in_settings_json_is_refused_and_says_where_to_put_it(tmp_path):
    message = start_and_fail(tmp_path, {"inference_tokens": "s3cret-token-value"})
    assert "inference_tokens: tokens are never read from settings.json" in message
    assert "inference_tokens_file" in message and "GATEWAY_INFERENCE_TOKENS" in message
    assert "s3cret-token-value" not in message


def test_an_unusable_tokens_file_stops_the_gateway(tmp_path):
    message = start_and_fail(tmp_path, {"http_port": 0, "grpc_port": 0, "metrics_port": 0}, args=["--repository-tokens-file", str(tmp_path / "nowhere")])
    assert f"repository_tokens_file: cannot read {tmp_path / 'nowhere'}" in message


def test_tokens_are_compared_in_constant_time(tmp_path, monkeypatch):
    """Through hmac.compare_digest, against every token of the scope whatever matches (so the time says
    neither whether nor which token matched), on digests of one length (so it says nothing of lengths)."""
    compared = []

    def spy(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    real = access.hmac.compare_digest
    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    checker = Access(settings_of(tmp_path, inference_tokens=",".join(["short", "a-much-longer-token-" * 5, "third-token"])))
    for presented in ("Bearer short", "Bearer third-token", "Bearer x", "Bearer " + "y" * 500):
        compared.clear()
        try:
            checker.check(Scope.INFERENCE, presented)
        except access.Unauthenticated:
            pass
        assert compared == [(32, 32)] * 3, presented


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


def test_a_rotated_tokens_file_is_read_again_while_serving(gateway):
    """Tokens rotate without a restart; a file emptied (or gone) by mistake changes nothing."""
    path = gateway.settings["inference_tokens_file"]
    before = path.read_text()
    new = "inference-token-rotated-00000000"

    def status(token: str) -> int:
        return call(gateway, "GET", "/v2/models/echo", None, bearer(token)).status_code

    try:
        replacement = path.with_name("inference-tokens.new")
        replacement.write_text(f"{new}\n")
        replacement.replace(path)  # as a Secret volume changes: a new file in place of the old
        wait_until(lambda: status(new) == 200)
        assert status(INFERENCE[0]) == 401 and status(INFERENCE[1]) == 401
        path.write_text("# nothing\n")  # a rotation gone wrong
        wait_until(lambda: "inference tokens read before stay in force" in gateway.log_text())
        assert status(new) == 200 and status(INFERENCE[0]) == 401
        path.unlink()
        wait_until(lambda: gateway.log_text().count("inference tokens read before stay in force") == 2)
        assert status(new) == 200
    finally:
        path.write_text(before)
    wait_until(lambda: status(INFERENCE[0]) == 200)
    assert status(new) == 401
    assert new not in gateway.log_text()
    assert_serves_large(gateway, "echo", headers=bearer(INFERENCE[0]))


def test_grpc_health_service_open_for_the_server_closed_for_models(gateway):
    """grpc.health.v1.Health: Kubernetes' gRPC probes ask for the whole server (""), without metadata; a
    model's status, an unknown name's and List would tell which models exist: they need the inference token."""
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest.SerializeToString, health_pb2.HealthCheckResponse.FromString)
        watch = channel.unary_stream("/grpc.health.v1.Health/Watch", health_pb2.HealthCheckRequest.SerializeToString, health_pb2.HealthCheckResponse.FromString)
        listing = channel.unary_unary("/grpc.health.v1.Health/List", health_pb2.HealthListRequest.SerializeToString, health_pb2.HealthListResponse.FromString)
        for service in ("", "inference.GRPCInferenceService"):
            assert check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        watching = watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watching).status == health_pb2.HealthCheckResponse.SERVING
        watching.cancel()
        refusals = set()
        for call_, request in [
            (check, health_pb2.HealthCheckRequest(service="echo")),
            (check, health_pb2.HealthCheckRequest(service="no-such-model")),
            (lambda r, **kw: next(watch(r, **kw)), health_pb2.HealthCheckRequest(service="echo")),
            (listing, health_pb2.HealthListRequest()),
        ]:
            for token in (None, WRONG, REPOSITORY):
                with pytest.raises(grpc.RpcError) as caught:
                    call_(request, timeout=10, metadata=None if token is None else (("authorization", f"Bearer {token}"),))
                refusals.add((caught.value.code(), caught.value.details()))
        ((code, message),) = refusals
        assert code == grpc.StatusCode.UNAUTHENTICATED and "echo" not in message
        with_token = (("authorization", f"Bearer {INFERENCE[0]}"),)
        assert check(health_pb2.HealthCheckRequest(service="echo"), timeout=10, metadata=with_token).status == health_pb2.HealthCheckResponse.SERVING
        assert "echo" in listing(health_pb2.HealthListRequest(), timeout=10, metadata=with_token).statuses
    assert_serves_large(gateway, "echo", headers=bearer(INFERENCE[0]))


def test_workers_do_not_inherit_the_token_variables(gateway):
    """A token given in the environment stays in the front door: a runtime's library that reports its
    environment (a crash reporter, a debug dump) cannot leak it."""
    answer = call(gateway, "POST", "/v2/models/environment/infer", ECHO_INPUT, bearer(INFERENCE[0]))
    seen = answer.json()["parameters"]["gateway_variables"].split(",")
    assert "GATEWAY_HTTP_PORT" in seen and "GATEWAY_INFERENCE_TOKENS_FILE" in seen  # the other settings are there
    assert "GATEWAY_REPOSITORY_TOKENS" not in seen
    assert_serves_large(gateway, "environment", headers=bearer(INFERENCE[0]))
