"""grpc.health.v1.Health and server reflection, end to end over a real channel to one gateway.

The health service's overall status ("") must agree with REST /v2/health/ready at every step
(start, a model unloaded on purpose, a model loading through the repository API, the drain on
SIGTERM); each model has a service of its own. Reflection is read with grpcio-reflection's
client (v1alpha, as grpcurl before 1.9) and with raw v1 calls, with tritonclient imported in
this process so that its copy of the `inference` names sits in protobuf's default pool."""

from __future__ import annotations

import queue
import signal
import threading
import time

import grpc
import pytest
import requests
import tritonclient.grpc  # noqa: F401  (registers Triton's own inference.* descriptors in the default pool)
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as alpha
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gateway.protocol.generated import health_pb2 as hpb
from gateway.protocol.generated import health_pb2_grpc as hpb_grpc
from gateway.protocol.generated import reflection_pb2 as rpb
from gateway.protocol.generated import reflection_pb2_grpc as rpb_grpc

from .conftest import assert_serves_large
from .test_worker_plane import write_repository

SERVING, NOT_SERVING, SERVICE_UNKNOWN = hpb.HealthCheckResponse.SERVING, hpb.HealthCheckResponse.NOT_SERVING, hpb.HealthCheckResponse.SERVICE_UNKNOWN
ECHO = {"implementation": "tests.runtimes.Echo"}
LOAD_SECONDS = 1.5  # long enough for the server's NOT_SERVING to be seen while "slow" loads
DRAIN_DELAY, GRACE = 3.0, 30.0


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(
        tmp_path_factory.mktemp("repository"),
        {
            "echo": ECHO,
            "slow": {"implementation": "tests.runtimes.SlowLoad", "parameters": {"extra": {"load_seconds": LOAD_SECONDS}}},
            "versioned-1": {"name": "versioned", "implementation": "tests.runtimes.Versioned", "parameters": {"version": "1"}},
            "versioned-2": {"name": "versioned", "implementation": "tests.runtimes.Versioned", "parameters": {"version": "2"}},
        },
    )
    return start_gateway(repository, drain_delay=DRAIN_DELAY, shutdown_grace=GRACE).wait_ready()


@pytest.fixture(scope="module")
def channel(gateway):
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        yield channel


@pytest.fixture(scope="module")
def health(channel):
    return hpb_grpc.HealthStub(channel)


def check(health, service: str) -> int:
    return health.Check(hpb.HealthCheckRequest(service=service), timeout=10).status


def rest_ready(gateway) -> bool:
    return requests.get(f"{gateway.url}/v2/health/ready", timeout=10).status_code == 200


class Watch:
    """A Watch call read on a thread of its own: its statuses arrive on `statuses`, then its end (an RpcError)."""

    def __init__(self, health, service: str):
        self.call = health.Watch(hpb.HealthCheckRequest(service=service), timeout=120)
        self.statuses: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.statuses.put(response.status)
        except grpc.RpcError as exc:
            self.statuses.put(exc)

    def next(self, timeout: float = 15.0):
        return self.statuses.get(timeout=timeout)

    def cancel(self) -> None:
        self.call.cancel()
        self.thread.join(10)


def test_the_server_is_serving_when_ready_under_both_of_its_names(gateway, health):
    assert rest_ready(gateway)
    assert check(health, "") == SERVING
    assert check(health, "inference.GRPCInferenceService") == SERVING


def test_each_model_and_model_version_has_a_service(health):
    for service in ("echo", "slow", "versioned", "versioned/1", "versioned/2"):
        assert check(health, service) == SERVING, service
    listed = {name: answer.status for name, answer in health.List(hpb.HealthListRequest(), timeout=10).statuses.items()}
    expected = ["", "inference.GRPCInferenceService", "echo", "slow", "versioned", "versioned/1", "versioned/2"]
    assert listed == dict.fromkeys(expected, SERVING)


@pytest.mark.parametrize("service", ["ghost", "versioned/3", "echo/1", "/1", "grpc.health.v1.Health.nope"])
def test_check_of_an_unknown_service_is_not_found(gateway, health, service):
    with pytest.raises(grpc.RpcError) as caught:
        check(health, service)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert repr(service) in caught.value.details()
    assert check(health, "") == SERVING
    assert_serves_large(gateway, "echo")


def test_a_malformed_check_is_invalid_argument(gateway, channel, health):
    raw_check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        raw_check(b"\x0a\x05ab", timeout=10)  # field 1, 5 bytes long, 2 given
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "grpc.health.v1.HealthCheckRequest" in caught.value.details()
    assert check(health, "") == SERVING
    assert_serves_large(gateway, "echo")


def test_unload_and_load_through_the_repository_api_are_checked_and_watched(gateway, health):
    server, slow, ghost = Watch(health, ""), Watch(health, "slow"), Watch(health, "ghost")
    try:
        assert (server.next(), slow.next(), ghost.next()) == (SERVING, SERVING, SERVICE_UNKNOWN)

        assert requests.post(f"{gateway.url}/v2/repository/models/slow/unload", timeout=60).status_code == 200
        assert check(health, "slow") == NOT_SERVING
        assert slow.next() == NOT_SERVING
        # a model unloaded on purpose is not expected: the server stays ready, over REST and here
        assert rest_ready(gateway) and check(health, "") == SERVING

        loading = threading.Thread(target=requests.post, args=(f"{gateway.url}/v2/repository/models/slow/load",), kwargs={"timeout": 60})
        loading.start()
        # while it loads, the server is not ready: REST 503 and NOT_SERVING, seen both by Check and by Watch
        deadline = time.monotonic() + 15
        while check(health, "") == SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert check(health, "slow") == NOT_SERVING
        assert not rest_ready(gateway)
        assert server.next() == NOT_SERVING
        loading.join(60)

        assert check(health, "") == SERVING and rest_ready(gateway)
        assert check(health, "slow") == SERVING
        assert server.next() == SERVING
        assert slow.next() == SERVING
        assert ghost.statuses.empty()  # nothing changed for it
    finally:
        for watch in (server, slow, ghost):
            watch.cancel()
    assert_serves_large(gateway, "echo")


def test_reflection_lists_the_services_and_resolves_their_descriptors(channel):
    database = ProtoReflectionDescriptorDatabase(channel)  # grpcio-reflection's client: the v1alpha service
    assert set(database.get_services()) == {"inference.GRPCInferenceService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"}
    pool = descriptor_pool.DescriptorPool(database)
    inference = pool.FindServiceByName("inference.GRPCInferenceService")
    infer = inference.methods_by_name["ModelInfer"]
    assert (infer.input_type.full_name, infer.output_type.full_name) == ("inference.ModelInferRequest", "inference.ModelInferResponse")
    # our descriptors, not those tritonclient registered in this process's default pool (grpc_service.proto)
    assert inference.file.name == "inference.proto"
    assert "raw_input_contents" in pool.FindMessageTypeByName("inference.ModelInferRequest").fields_by_name
    health = pool.FindServiceByName("grpc.health.v1.Health")
    assert set(health.methods_by_name) == {"Check", "Watch", "List"}
    assert health.methods_by_name["Watch"].server_streaming
    pool.FindServiceByName("grpc.reflection.v1.ServerReflection")


def test_reflection_v1_answers_each_request_on_one_stream_and_errors_do_not_end_it(channel):
    requests_ = [
        rpb.ServerReflectionRequest(host="h", list_services=""),
        rpb.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService.ModelInfer"),
        rpb.ServerReflectionRequest(file_containing_symbol="inference.NoSuchMessage"),
        rpb.ServerReflectionRequest(file_by_filename="health.proto"),
        rpb.ServerReflectionRequest(all_extension_numbers_of_type="inference.ModelInferRequest"),
        rpb.ServerReflectionRequest(file_containing_extension=rpb.ExtensionRequest(containing_type="inference.ModelInferRequest", extension_number=100)),
        rpb.ServerReflectionRequest(),
    ]
    answers = list(rpb_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter(requests_), timeout=30))
    assert len(answers) == len(requests_)
    assert [answer.original_request for answer in answers] == requests_
    assert answers[0].valid_host == "h"
    assert "grpc.health.v1.Health" in [s.name for s in answers[0].list_services_response.service]
    files = [descriptor_pb2.FileDescriptorProto.FromString(data) for data in answers[1].file_descriptor_response.file_descriptor_proto]
    assert [(f.name, f.package) for f in files] == [("inference.proto", "inference")]
    assert answers[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "inference.NoSuchMessage" in answers[2].error_response.error_message
    health_file = descriptor_pb2.FileDescriptorProto.FromString(answers[3].file_descriptor_response.file_descriptor_proto[0])
    assert [s.name for s in health_file.service] == ["Health"] and health_file.package == "grpc.health.v1"
    assert answers[4].all_extension_numbers_response.base_type_name == "inference.ModelInferRequest"
    assert list(answers[4].all_extension_numbers_response.extension_number) == []
    assert answers[5].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[6].error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_reflection_v1alpha_answers_raw_calls_too(channel):
    stub = alpha_grpc.ServerReflectionStub(channel)
    request = alpha.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health")
    (answer,) = stub.ServerReflectionInfo(iter([request]), timeout=30)
    (data,) = answer.file_descriptor_response.file_descriptor_proto
    assert descriptor_pb2.FileDescriptorProto.FromString(data).package == "grpc.health.v1"


# --- last: this stops the module's gateway


def test_on_sigterm_the_server_is_not_serving_while_it_drains_and_watches_end(gateway, health):
    watch = Watch(health, "")
    assert watch.next() == SERVING
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    assert watch.next() == NOT_SERVING
    # still answering while it drains: not ready, over REST and here; the models themselves are still served
    assert time.monotonic() - started < DRAIN_DELAY
    assert check(health, "") == NOT_SERVING and not rest_ready(gateway)
    assert check(health, "echo") == SERVING
    # the listeners close: the watch ends, and does not hold the shutdown grace up to its end
    end = watch.next(timeout=DRAIN_DELAY + 10)
    assert isinstance(end, grpc.RpcError) and end.code() == grpc.StatusCode.UNAVAILABLE, end
    assert gateway.process.wait(timeout=GRACE / 2) == 0
