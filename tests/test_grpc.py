"""The V2 gRPC front door, end to end: tritonclient (sync and asyncio) and our own generated stubs
(for typed contents, which tritonclient never sends) against one gateway on tests/repository."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tca
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor, serialize_byte_tensor

from gateway.frontdoor.grpc.convert import parameters_from_pb, parameters_to_pb
from gateway.frontdoor.grpc.server import SERVICE
from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from gateway.settings import MIB, ServerSettings

from .conftest import ROOT, assert_serves_large
from .test_observability import labels, metrics_of
from .test_rest import assert_serves_sleepy

# small enough to test cheaply, large enough for a 64 MiB tensor plus its message
LIMIT = 80 * MIB
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}  # fmt: skip
CONTENTS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def sample(datatype: str) -> np.ndarray:
    """A [2, 3] tensor with the datatype's edge values."""
    dtype = NUMPY[datatype]
    if datatype == "BOOL":
        values = [True, False, True, False, False, True]
    elif datatype == "BYTES":
        values = [b"", b"a", b"\x00\xff\xfe", "é€".encode(), b"x" * 1000, b"end"]
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        values = [int(info.min), 0, 1, int(info.max), int(info.max) - 1, 7]
    else:
        info = np.finfo(dtype)
        values = [0.0, -0.0, 1.5, float(info.max), -np.inf, np.nan]
    return np.array(values, dtype=dtype).reshape(2, 3)


def assert_exact(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if expected.dtype == object:
        assert [bytes(x) for x in actual.ravel()] == list(expected.ravel())
    else:  # bit for bit: -0.0, NaN and extreme values included
        assert actual.tobytes() == expected.tobytes()


def decode(response: pb.ModelInferResponse, index: int) -> np.ndarray:
    """An output of our raw stub's response, decoded with tritonclient's helpers (not the gateway's)."""
    output, raw = response.outputs[index], response.raw_output_contents[index]
    if output.datatype == "BYTES":
        return deserialize_bytes_tensor(raw).reshape(list(output.shape))
    return np.frombuffer(raw, dtype=NUMPY[output.datatype]).reshape(list(output.shape))


def code_of(exc: grpc.RpcError | InferenceServerException):
    return exc.code() if isinstance(exc, grpc.RpcError) else exc.status()


@pytest.fixture(scope="module")
def gateway(start_gateway):
    return start_gateway(ROOT / "tests/repository", grpc_max_message_bytes=LIMIT).wait_ready()


@pytest.fixture(scope="module")
def client(gateway):
    with tc.InferenceServerClient(gateway.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_url, options=CHANNEL_OPTIONS) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def fp32_input(name: str, array: np.ndarray) -> tc.InferInput:
    tensor = tc.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


# --- health, metadata, config ---------------------------------------------------------


def test_health_and_metadata(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready("echo") is True
    assert client.is_model_ready("versioned", "2") is True
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "inference-gateway" and "binary_tensor_data" in metadata["extensions"]
    sleepy = client.get_model_metadata("sleepy")
    assert sleepy.name == "sleepy"
    assert [(t.name, t.datatype, list(t.shape)) for t in sleepy.inputs] == [("seconds", "FP32", [-1])]
    assert ("pid", "INT64", [1]) in [(t.name, t.datatype, list(t.shape)) for t in sleepy.outputs]


def test_model_config(client, stub):
    config = client.get_model_config("sleepy").config
    assert (config.name, config.platform, config.max_batch_size) == ("sleepy", "asyncio", 0)
    assert client.get_model_metadata("sleepy").platform == "asyncio"
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("seconds", tc.model_config_pb2.TYPE_FP32, [-1])]
    assert ("pid", tc.model_config_pb2.TYPE_INT64, [1]) in [(o.name, o.data_type, list(o.dims)) for o in config.output]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelConfig(pb.ModelConfigRequest(name="no-such-model"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_unknown_model_is_not_found(client, stub, gateway):
    for call in (lambda: client.is_model_ready("no-such-model"), lambda: client.get_model_metadata("no-such-model")):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.NOT_FOUND"
        assert "no-such-model" in caught.value.message()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelReady(pb.ModelReadyRequest(name="versioned", version="9"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.ModelReady(pb.ModelReadyRequest(name="versioned", version="1")).ready is True
    assert_serves_large(gateway, "versioned", version="1", expect=lambda inputs: {"version": np.array([b"1"], dtype=object)})


def test_statistics_of_a_version_without_a_model_name_are_every_models(client, stub, gateway):
    """As Triton answers it (a version names nothing without its model's name); it was NOT_FOUND "model None not found"."""
    every = sorted((s.name, s.version) for s in client.get_inference_statistics().model_stats)
    assert ("echo", "") in every and ("versioned", "1") in every and ("versioned", "2") in every
    answer = stub.ModelStatistics(pb.ModelStatisticsRequest(name="", version="1"))
    assert sorted((s.name, s.version) for s in answer.model_stats) == every
    assert [s.version for s in client.get_inference_statistics("versioned", "1").model_stats] == ["1"]
    assert_serves_large(gateway, "echo")


# --- inference: raw (tritonclient) and typed contents (our stubs) ----------------------


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_raw_through_tritonclient(client, datatype):
    array = sample(datatype)
    tensor = tc.InferInput("x", [2, 3], datatype)
    tensor.set_data_from_numpy(array)
    result = client.infer("echo", [tensor], request_id=f"raw-{datatype}")
    assert result.get_response().id == f"raw-{datatype}"
    output = result.get_output("x")
    assert output.datatype == datatype and list(output.shape) == [2, 3]
    assert_exact(result.as_numpy("x"), array)


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "FP16"])
def test_every_datatype_typed_contents(stub, datatype):
    array = sample(datatype)
    request = pb.ModelInferRequest(model_name="echo", id=f"typed-{datatype}")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[2, 3])
    getattr(tensor.contents, CONTENTS[datatype]).extend(array.ravel().tolist())
    response = stub.ModelInfer(request)
    assert response.model_name == "echo" and response.id == f"typed-{datatype}"
    # answers come back raw, whatever the request used
    assert len(response.raw_output_contents) == 1 and not response.outputs[0].HasField("contents")
    assert_exact(decode(response, 0), array)


def test_the_answer_names_the_version_that_answered(stub):
    for asked, answered in (("", "2"), ("1", "1")):  # without a version, the newest answers
        request = pb.ModelInferRequest(model_name="versioned", model_version=asked)
        request.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(0)
        response = stub.ModelInfer(request)
        assert (response.model_name, response.model_version) == ("versioned", answered)
        assert decode(response, 0).tolist() == [answered.encode()]


def test_several_inputs_raw_in_order(stub):
    a, b, c = sample("INT16"), sample("BYTES"), sample("FP16")
    request = pb.ModelInferRequest(model_name="echo")
    for name, array, datatype in (("a", a, "INT16"), ("b", b, "BYTES"), ("c", c, "FP16")):
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
    request.raw_input_contents.extend([a.tobytes(), serialize_byte_tensor(b).item(), c.tobytes()])
    response = stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["a", "b", "c"]
    assert response.id  # the gateway names requests that come without an id
    assert_exact(decode(response, 0), a)
    assert_exact(decode(response, 1), b)
    assert_exact(decode(response, 2), c)


def test_parameters_round_trip(stub, client):
    request = pb.ModelInferRequest(model_name="echo", id="params")
    request.parameters["request_flag"].bool_param = True
    tensor = request.inputs.add(name="x", datatype="INT32", shape=[1])
    tensor.contents.int_contents.append(5)
    values = {"b": True, "i": -(2**62), "s": "text é", "d": 0.25, "u": 2**64 - 1}
    tensor.parameters["b"].bool_param = values["b"]
    tensor.parameters["i"].int64_param = values["i"]
    tensor.parameters["s"].string_param = values["s"]
    tensor.parameters["d"].double_param = values["d"]
    tensor.parameters["u"].uint64_param = values["u"]
    response = stub.ModelInfer(request)
    # the echo model returns each input's parameters on its output, and {"echoed": number of inputs}
    assert parameters_from_pb(response.outputs[0].parameters) == values
    assert response.outputs[0].parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert response.outputs[0].parameters["d"].WhichOneof("parameter_choice") == "double_param"
    assert response.parameters["echoed"].int64_param == 1
    # tritonclient's request parameters are accepted too
    result = client.infer("echo", [fp32_input("x", np.ones((1, 2), np.float32))], parameters={"k": "v", "n": 3, "f": False})
    assert result.get_response().parameters["echoed"].int64_param == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("place", ["request", "input", "output"])
def test_a_double_parameter_that_json_cannot_carry_is_refused(stub, gateway, place, value):
    """Parameters travel to the model as JSON, which has no NaN or infinity: such a double_param is
    refused, naming it (the model was given none: the parameter vanished without a word)."""
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(5)
    target = {"request": request, "input": request.inputs[0], "output": request.outputs.add(name="x")}[place]
    target.parameters["threshold"].double_param = value
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    where = {"request": "the request", "input": "input 'x'", "output": "output 'x'"}[place]
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"parameter 'threshold' of {where} must be a finite number, got {value} (parameters reach the model as JSON, which has no NaN or infinity)",
    )
    assert_serves_large(gateway, "echo")


def test_classification_is_refused_not_ignored(client, gateway):
    """tritonclient's class_count asks for Triton's classification extension (the top classes as BYTES
    "score:index"), which the gateway does not implement: UNIMPLEMENTED / 501 saying so, over gRPC and
    REST, where the whole tensor came back as if it had not been asked for."""
    import tritonclient.http as httpclient

    message = "output 'x' asks for classification (class_count 2), Triton's classification extension, which this gateway does not support"
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", [fp32_input("x", np.ones((1, 4), np.float32))], outputs=[tc.InferRequestedOutput("x", class_count=2)])
    assert (caught.value.status(), caught.value.message()) == ("StatusCode.UNIMPLEMENTED", message)
    with httpclient.InferenceServerClient(gateway.address) as rest:
        tensor = httpclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
        with pytest.raises(InferenceServerException) as caught:
            rest.infer("echo", [tensor], outputs=[httpclient.InferRequestedOutput("x", class_count=2)])
        assert (caught.value.status(), caught.value.message()) == ("501", message)
    # class_count 0 (tritonclient's default) asks for the tensor itself
    result = client.infer("echo", [fp32_input("x", np.ones((1, 4), np.float32))], outputs=[tc.InferRequestedOutput("x", class_count=0)])
    assert result.as_numpy("x").tolist() == [[1.0] * 4]
    assert_serves_large(gateway, "echo")


def test_parameter_conversion():
    message = pb.ModelInferResponse()
    parameters_to_pb(message.parameters, {"none": None, "big": 2**64 - 1, "np": np.int8(-3), "list": [1, "a"], "f": np.float32(0.5)})
    assert "none" not in message.parameters
    assert parameters_from_pb(message.parameters) == {"big": 2**64 - 1, "np": -3, "list": '[1,"a"]', "f": 0.5}


# --- errors ------------------------------------------------------------------------------


def test_unknown_model_infer_is_not_found(client, stub, gateway):
    with pytest.raises(InferenceServerException) as caught:
        client.infer("no-such-model", [fp32_input("x", np.zeros((1, 1), np.float32))])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert caught.value.message() == "model 'no-such-model' not found"
    # the model is looked up before the inputs, as over REST: a malformed input does not hide it
    for model, version, message in [
        ("no-such-model", "", "model 'no-such-model' not found"),
        ("versioned", "9", "model 'versioned' has no version '9'; it has ['1', '2']"),
    ]:
        request = pb.ModelInferRequest(model_name=model, model_version=version)
        request.inputs.add(name="x", datatype="FP33", shape=[-1])
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.NOT_FOUND, message)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP33")]))
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "model_name is required")
    assert_serves_large(gateway, "versioned", version="2", expect=lambda inputs: {"version": np.array([b"2"], dtype=object)})


def test_bad_shape_is_invalid_argument(client, stub, gateway):
    # the model declares seconds: FP32 [-1]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("sleepy", [fp32_input("seconds", np.zeros((2, 2), np.float32))])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape" in caught.value.message() and "[2, 2]" in caught.value.message()
    # raw bytes that do not fill the declared shape
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="FP32", shape=[3])
    request.raw_input_contents.append(np.zeros(2, np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "8 bytes" in caught.value.details() and "12" in caught.value.details()
    assert_serves_sleepy(gateway)
    assert_serves_large(gateway, "echo")


@pytest.mark.parametrize(
    "build, message",
    [
        # typed contents: count, range, wrong field, FP16 not typed
        (lambda r: r.inputs.add(name="x", datatype="INT32", shape=[3]).contents.int_contents.extend([1, 2]), "needs 3"),
        (lambda r: r.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(300), "out of range"),
        (lambda r: r.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int_contents.append(1), "int64_contents"),
        (lambda r: r.inputs.add(name="x", datatype="FP16", shape=[1]).contents.fp32_contents.append(1.0), "raw_input_contents"),
        (lambda r: r.inputs.add(name="x", datatype="FP32", shape=[2]), "no data"),
        (lambda r: r.inputs.add(name="x", datatype="BF16", shape=[1]), "BF16"),
        (lambda r: r.inputs.add(name="x", datatype="fp32", shape=[1]), "unknown datatype"),
        (lambda r: r.inputs.add(name="x", datatype="FP32", shape=[-1]), "non-negative"),
        # raw: one entry per input, and never mixed with contents
        (lambda r: (r.inputs.add(name="x", datatype="UINT8", shape=[1]), r.inputs.add(name="y", datatype="UINT8", shape=[1]),
                    r.raw_input_contents.append(b"\x01")), "one per input"),
        (lambda r: (r.inputs.add(name="x", datatype="UINT8", shape=[1]).contents.uint_contents.append(1),
                    r.inputs.add(name="y", datatype="UINT8", shape=[1]), r.raw_input_contents.extend([b"\x01", b"\x02"])),
         "one or the other"),
        (lambda r: (r.inputs.add(name="x", datatype="BYTES", shape=[1]), r.raw_input_contents.append(b"\x09\x00\x00\x00ab")),
         "overruns"),
        (lambda r: (r.inputs.add(name="x", datatype="UINT8", shape=[1]), r.inputs.add(name="x", datatype="UINT8", shape=[1]),
                    r.raw_input_contents.extend([b"\x01", b"\x02"])), "unique"),
        (lambda r: None, "inputs"),
        # known parameters of another type
        (lambda r: (r.inputs.add(name="x", datatype="UINT8", shape=[1]).contents.uint_contents.append(1),
                    r.parameters["content_type"].CopyFrom(pb.InferParameter(int64_param=5))),
         "parameter 'content_type' of the request must be a string, got 5"),
        (lambda r: r.inputs.add(name="x", datatype="UINT8", shape=[1],
                                parameters={"content_type": pb.InferParameter(bool_param=True)}).contents.uint_contents.append(1),
         "parameter 'content_type' of input 'x' must be a string, got True"),
        (lambda r: (r.inputs.add(name="x", datatype="UINT8", shape=[1]).contents.uint_contents.append(1),
                    r.outputs.add(name="x", parameters={"binary_data": pb.InferParameter(string_param="yes")})),
         "parameter 'binary_data' of output 'x' must be true or false, got 'yes'"),
    ],
)  # fmt: skip
def test_bad_requests_are_invalid_argument(stub, gateway, build, message):
    request = pb.ModelInferRequest(model_name="echo")
    build(request)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert_serves_large(gateway, "echo")


def raw_method(channel: grpc.Channel, rpc: str):
    """An RPC of the service that sends bytes as they are: no serializer of ours, so anything can be sent."""
    return channel.unary_unary(f"/inference.GRPCInferenceService/{rpc}", request_serializer=None, response_deserializer=None)


@pytest.mark.parametrize(
    "rpc, message_type",
    [
        ("ModelInfer", "ModelInferRequest"),
        ("ModelMetadata", "ModelMetadataRequest"),
        ("ServerReady", "ServerReadyRequest"),
        ("RepositoryIndex", "RepositoryIndexRequest"),
    ],
)
def test_bytes_that_are_no_message_are_invalid_argument(gateway, rpc, message_type):
    # 0xff starts a field of wire type 7, which does not exist; grpcio's own deserializer answered UNKNOWN
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            raw_method(channel, rpc)(b"\xff\xff\xff\xff garbage", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"the request is not a valid inference.{message_type} message: Error parsing message")
    assert_serves_large(gateway, "echo")


def test_a_message_that_does_not_parse_is_answered_in_its_stream_and_the_stream_goes_on(gateway):
    def valid(request_id: str) -> bytes:
        request = pb.ModelInferRequest(model_name="echo", id=request_id)
        request.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int64_contents.append(1)
        return request.SerializeToString()

    with grpc.insecure_channel(gateway.grpc_url) as channel:
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer", request_serializer=None,
                                       response_deserializer=pb.ModelStreamInferResponse.FromString)  # fmt: skip
        replies = list(stream(iter([valid("before"), b"\xff\xff garbage", valid("after")]), timeout=30))
    assert sorted(r.infer_response.id for r in replies if not r.error_message) == ["after", "before"]
    (refused,) = [r for r in replies if r.error_message]
    assert refused.error_message.startswith("the request is not a valid inference.ModelInferRequest message")
    assert_serves_large(gateway, "echo")


@pytest.mark.parametrize("name", ["n" * 10_000, "é" * 10_000], ids=["ascii", "two-byte"])
def test_a_long_name_is_quoted_short_in_the_status(stub, gateway, name):
    # echoed whole, the status message outgrew the 8 KiB trailer clients accept: they saw RESOURCE_EXHAUSTED
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name=name, datatype="FP33", shape=[1])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == f"input {name[:100]!r}... (10000 characters): unknown datatype 'FP33'; expected one of {', '.join(sorted(DATATYPES))}"
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(pb.ModelInferRequest(model_name=name))
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.NOT_FOUND, f"model {name[:100]!r}... (10000 characters) not found")
    assert_serves_large(gateway, "echo")


def test_status_messages_are_cut_to_fit_their_trailer():
    from gateway.frontdoor.grpc.server import STATUS_MESSAGE_BYTES, _status_message

    assert _status_message("short é") == "short é"
    cut = _status_message("é" * 5000)  # a runtime's own message may be that long
    assert cut == "é" * (STATUS_MESSAGE_BYTES // 2) + "... (10000 bytes in all)"


def test_huge_declared_shapes_are_invalid_argument_before_allocating(stub, gateway):
    """Shapes over max_tensor_bytes (a BYTES element counts 64 bytes and its length), or that their data
    cannot fill, are refused before anything is allocated for them: the front door's peak memory does not move."""
    peak = gateway.peak_memory()
    tiny = b"\x01\x00\x00\x00a"  # one BYTES element, "a"
    cases = [
        ("FP32", [2**40, 2**40], b"", "(4835703278458516698824704 bytes), over the limit"),
        ("BYTES", [10**9], tiny, "1000000000 BYTES elements count as 64000000000 bytes (64 bytes an element plus its length), over the limit"),
        ("BYTES", [5 * 10**6], tiny, "5000000 BYTES elements count as 320000000 bytes"),
        ("BYTES", [10**6], tiny, "5 bytes of BYTES data cannot hold the 1000000 elements"),
        ("BYTES", [10**6], None, "data holds 1 elements, shape [1000000] needs 1000000"),  # typed contents
    ]
    for datatype, shape, raw, message in cases:
        request = pb.ModelInferRequest(model_name="echo")
        tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
        if raw is None:
            tensor.contents.bytes_contents.append(b"a")
        else:
            request.raw_input_contents.append(raw)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in caught.value.details()
    assert gateway.peak_memory() - peak < 50 * MIB
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"still here")
    assert decode(stub.ModelInfer(request), 0).tolist() == [b"still here"]
    assert_serves_large(gateway, "echo")


def test_failing_model_is_internal_with_its_message(client, gateway):
    with pytest.raises(InferenceServerException) as caught:
        client.infer("failing", [fp32_input("x", np.zeros((1, 1), np.float32))])
    assert caught.value.status() == "StatusCode.INTERNAL"
    assert "this model always fails: bad luck" in caught.value.message()
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def test_unimplemented_extensions_say_so(client):
    for call, what in (
        (client.get_system_shared_memory_status, "SystemSharedMemoryStatus"),
        (lambda: client.register_system_shared_memory("r", "/k", 16), "SystemSharedMemoryRegister"),
        (client.unregister_system_shared_memory, "SystemSharedMemoryUnregister"),
    ):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.UNIMPLEMENTED"
        assert what in caught.value.message() and "not supported" in caught.value.message()


# --- streaming and concurrency --------------------------------------------------------------


def test_stream_of_100_matched_by_id(client):
    replies: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    try:
        for k in range(100):
            client.async_stream_infer("echo", [fp32_input("x", np.full((1, 4), k, np.float32))], request_id=f"s{k}")
        got = {}
        for _ in range(100):
            result, error = replies.get(timeout=30)
            assert error is None
            got[result.get_response().id] = result.as_numpy("x")
    finally:
        client.stop_stream()
    assert sorted(got) == sorted(f"s{k}" for k in range(100))
    for k in range(100):
        np.testing.assert_array_equal(got[f"s{k}"], np.full((1, 4), k, np.float32))


def test_a_stream_request_asking_for_an_empty_final_response_gets_one_after_its_answer(client):
    """tritonclient's enable_empty_final_response (what clients of Triton's decoupled models loop on,
    until a response says triton_final_response): the request's answer, marked false, then an empty
    response of its id, marked true. A request that does not ask gets its answer alone, unmarked; a
    failing one that asks, its error (the last response of it)."""
    replies: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    x = np.arange(64 * 256, dtype=np.float32).reshape(64, 256)  # 64 KiB: through shared memory
    try:
        client.async_stream_infer("echo", [fp32_input("x", x)], request_id="asked", enable_empty_final_response=True)
        first, second = replies.get(timeout=30), replies.get(timeout=30)
        client.async_stream_infer("echo", [fp32_input("x", x + 1)], request_id="plain")
        plain = replies.get(timeout=30)
        client.async_stream_infer("failing", [fp32_input("x", x)], request_id="failed", enable_empty_final_response=True)
        failed = replies.get(timeout=30)
        client.async_stream_infer("echo", [fp32_input("x", x + 2)], request_id="last")
        last = replies.get(timeout=30)  # nothing came between: no final response for "plain" nor after the error
    finally:
        client.stop_stream()
    assert first[1] is None and second[1] is None and plain[1] is None and last[1] is None
    answer, final = first[0].get_response(), second[0].get_response()
    assert answer.id == "asked" and answer.parameters["triton_final_response"].WhichOneof("parameter_choice") == "bool_param"
    assert not answer.parameters["triton_final_response"].bool_param
    np.testing.assert_array_equal(first[0].as_numpy("x"), x)
    assert (final.id, final.parameters["triton_final_response"].bool_param, list(final.outputs)) == ("asked", True, [])
    assert plain[0].get_response().id == "plain" and "triton_final_response" not in plain[0].get_response().parameters
    np.testing.assert_array_equal(plain[0].as_numpy("x"), x + 1)
    assert failed[0] is None and "always fails" in str(failed[1])
    assert last[0].get_response().id == "last"
    np.testing.assert_array_equal(last[0].as_numpy("x"), x + 2)


def test_stream_error_answers_in_the_stream_and_the_stream_goes_on(stub, gateway):
    def requests():
        for k, model in enumerate(["echo", "failing", "no-such-model", "echo"]):
            request = pb.ModelInferRequest(model_name=model, id=f"e{k}")
            request.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int64_contents.append(k)
            yield request

    replies = {r.infer_response.id: r for r in stub.ModelStreamInfer(requests(), timeout=30)}
    assert sorted(replies) == ["e0", "e1", "e2", "e3"]
    assert replies["e0"].error_message == "" and decode(replies["e0"].infer_response, 0).tolist() == [0]
    assert replies["e3"].error_message == "" and decode(replies["e3"].infer_response, 0).tolist() == [3]
    assert "this model always fails: bad luck" in replies["e1"].error_message
    assert replies["e2"].error_message == "model 'no-such-model' not found"
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def test_a_stream_whose_replies_are_not_read_stops_being_read(gateway):
    """Triton-style streams answer up to STREAM_IN_FLIGHT requests at once: an answer waiting for the
    client to take it counts too, so a client that sends fast and reads nothing cannot make the gateway
    hold every answer (it read them all: 300 answers of 1 MiB held, and more for a longer stream)."""
    from gateway.frontdoor.grpc.server import STREAM_IN_FLIGHT

    count, elements = 300, 256 * 1024  # requests of 1 MiB
    pulled: list[int] = []
    settled = threading.Event()

    def requests():
        for k in range(count):
            request = pb.ModelInferRequest(model_name="echo", id=f"r{k}")
            request.inputs.add(name="x", datatype="FP32", shape=[elements])
            request.raw_input_contents.append(np.full(elements, k, np.float32).tobytes())
            pulled.append(k)
            yield request
        settled.wait(30)

    with grpc.insecure_channel(gateway.grpc_url) as channel:
        replies = pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(requests(), timeout=60)
        first = next(replies)
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while not (len(seen) > 25 and len(set(seen[-25:])) == 1) and time.monotonic() < deadline:
            seen.append(len(pulled))
            time.sleep(0.02)
        # the answers in flight, and what grpc buffers on either side (a few MiB; 74-79 requests read in all, measured)
        assert len(pulled) < 2 * STREAM_IN_FLIGHT, f"the gateway read {len(pulled)} requests of 1 MiB whose answers nobody read"
        settled.set()
        answers = {reply.infer_response.id: reply for reply in [first, *replies]}  # and then every request is answered
    assert sorted(answers) == sorted(f"r{k}" for k in range(count))
    for k in (0, count // 2, count - 1):
        assert answers[f"r{k}"].error_message == ""
        assert (decode(answers[f"r{k}"].infer_response, 0) == k).all()
    assert_serves_large(gateway, "echo")


# what a request of a Triton-style stream may be: answered, or refused in its error_message for each reason
STREAM_KINDS = ["small", "shared-memory", "bad-shape", "unknown-model", "failing", "not-a-message", "bad-datatype", "nan-parameter", "sleepy"]


def stream_message(kind: str, k: int) -> bytes:
    """Request `k` of a stream, of that kind, serialized (a message that does not parse: bytes that are none)."""
    if kind == "not-a-message":
        return b"\xff\xff garbage"
    request = pb.ModelInferRequest(model_name="echo", id=f"q{k}")
    if kind == "shared-memory":  # 32 KiB: through the worker's arenas
        request.inputs.add(name="x", datatype="INT64", shape=[4096])
        request.raw_input_contents.append(np.full(4096, k, np.int64).tobytes())
    elif kind == "bad-datatype":
        request.inputs.add(name="x", datatype="FP33", shape=[1])
    elif kind == "sleepy":
        request.model_name = "sleepy"
        request.inputs.add(name="seconds", datatype="FP32", shape=[1]).contents.fp32_contents.append(0.01)
    else:
        request.model_name = {"unknown-model": "no-such-model", "failing": "failing"}.get(kind, "echo")
        request.inputs.add(name="x", datatype="INT64", shape=[2 if kind == "bad-shape" else 1]).contents.int64_contents.append(k)
        if kind == "nan-parameter":
            request.parameters["threshold"].double_param = float("nan")
    return request.SerializeToString()


def test_every_request_of_a_stream_is_answered_once_whatever_its_neighbours(gateway):
    """Property: in a stream to models without predict_stream, any mix of good and bad requests gets one
    reply per request, matched by id: the answer (its data exact), or its own error in error_message."""

    @settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(kinds=st.lists(st.sampled_from(STREAM_KINDS), min_size=1, max_size=24))
    def check(kinds: list[str]) -> None:
        replies = list(stream(iter([stream_message(kind, k) for k, kind in enumerate(kinds)]), timeout=30))
        assert len(replies) == len(kinds)
        by_id: dict[str, list] = {}
        for reply in replies:
            by_id.setdefault(reply.infer_response.id, []).append(reply)
        for k, kind in enumerate(kinds):
            if kind == "not-a-message":  # it has no id to echo
                continue
            (reply,) = by_id.pop(f"q{k}")
            if kind in ("small", "shared-memory", "sleepy"):
                assert reply.error_message == ""
                if kind != "sleepy":
                    assert (decode(reply.infer_response, 0) == k).all()
            else:
                assert reply.error_message and not reply.infer_response.raw_output_contents, kind
        unparsed = by_id.pop("", [])
        assert len(unparsed) == kinds.count("not-a-message") and not by_id
        assert all(r.error_message.startswith("the request is not a valid inference.ModelInferRequest message") for r in unparsed)

    with grpc.insecure_channel(gateway.grpc_url) as channel:
        stream = channel.stream_stream(f"/{SERVICE}/ModelStreamInfer", request_serializer=None, response_deserializer=pb.ModelStreamInferResponse.FromString)
        check()
    assert_serves_large(gateway, "echo")
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def test_aio_client_rpcs_stream_and_64_concurrent_calls(gateway):
    async def main():
        async with tca.InferenceServerClient(gateway.grpc_url) as client:
            assert await client.is_server_live() and await client.is_server_ready()
            assert await client.is_model_ready("echo")
            assert (await client.get_server_metadata()).name == "inference-gateway"
            assert (await client.get_model_metadata("sleepy")).inputs[0].name == "seconds"
            assert (await client.get_model_config("sleepy")).config.name == "sleepy"
            with pytest.raises(InferenceServerException) as caught:
                await client.is_model_ready("no-such-model")
            assert caught.value.status() == "StatusCode.NOT_FOUND"
            with pytest.raises(InferenceServerException) as caught:
                await client.infer("failing", [fp32_input("x", np.zeros((1, 1), np.float32))])
            assert caught.value.status() == "StatusCode.INTERNAL" and "bad luck" in caught.value.message()

            # every datatype, raw
            for datatype in DATATYPES:
                tensor = tca.InferInput("x", [2, 3], datatype)
                tensor.set_data_from_numpy(sample(datatype))
                assert_exact((await client.infer("echo", [tensor])).as_numpy("x"), sample(datatype))

            # 64 concurrent calls, each answered with its own data
            async def one(k: int):
                result = await client.infer("echo", [fp32_input("x", np.full((1, 16), k, np.float32))], request_id=f"c{k}")
                return k, result

            for k, result in await asyncio.gather(*(one(k) for k in range(64))):
                assert result.get_response().id == f"c{k}"
                np.testing.assert_array_equal(result.as_numpy("x"), np.full((1, 16), k, np.float32))

            # a stream of 100 through the asyncio client
            async def requests():
                for k in range(100):
                    yield {"model_name": "echo", "inputs": [fp32_input("x", np.full((2,), k, np.float32))], "request_id": f"a{k}"}

            got = {}
            async for result, error in client.stream_infer(requests()):
                assert error is None
                got[result.get_response().id] = result.as_numpy("x")
            assert sorted(got) == sorted(f"a{k}" for k in range(100))
            for k in range(100):
                np.testing.assert_array_equal(got[f"a{k}"], np.full((2,), k, np.float32))

    asyncio.run(asyncio.wait_for(main(), 120))
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def test_client_deadline_and_cancelled_stream_leave_the_server_serving(stub, client, gateway):
    def sleepy(seconds: float, request_id: str) -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name="sleepy", id=request_id)
        request.inputs.add(name="seconds", datatype="FP32", shape=[1]).contents.fp32_contents.append(seconds)
        return request

    def sleepy_metrics() -> tuple[float, float, float]:
        """(in flight, gRPC requests counted as a success, as past their deadline or cancelled) for model sleepy"""
        samples = metrics_of(gateway)

        def count(outcome: str) -> float:
            return samples["gateway_requests_total"][labels(model="sleepy", version="", protocol="grpc", outcome=outcome)]

        given_up = count("deadline_exceeded") + count("cancelled")  # the gateway's timer or grpc's cancellation: whichever comes first
        return samples["gateway_inflight_requests"][labels(model="sleepy", version="")], count("success"), given_up

    def failed() -> int:
        return client.get_inference_statistics("sleepy").model_stats[0].inference_stats.fail.count

    _, successes, given_up = sleepy_metrics()
    failures = failed()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(sleepy(1.0, "late"), timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the server lets the call go at its deadline, not when predict ends 0.8 s later: nothing in flight,
    # counted as failed and as given up, never as a success
    deadline = time.monotonic() + 0.5
    while sleepy_metrics()[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sleepy_metrics() == (0, successes, given_up + 1)
    assert failed() == failures + 1

    stream = stub.ModelStreamInfer(iter([sleepy(0.0, "quick"), sleepy(1.0, "slow")]))
    assert next(stream).infer_response.id == "quick"
    stream.cancel()
    with pytest.raises(grpc.RpcError) as caught:
        next(stream)
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    # each request of the stream is counted: the one answered, and the one its client gave up on
    deadline = time.monotonic() + 5
    while sleepy_metrics() != (0, successes + 1, given_up + 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sleepy_metrics() == (0, successes + 1, given_up + 2)

    assert decode(stub.ModelInfer(sleepy(0.0, "after")), 0).shape == (1,)
    assert client.is_model_ready("sleepy") and gateway.process.poll() is None
    assert_serves_sleepy(gateway)


# --- message size ------------------------------------------------------------------------------


def test_default_limit_carries_a_64_mib_tensor():
    assert ServerSettings.model_fields["grpc_max_message_bytes"].default >= 64 * MIB + MIB


def test_64_mib_tensor_then_over_the_limit_is_resource_exhausted(client, gateway):
    big = np.arange(16 * MIB, dtype=np.float32)  # 64 MiB
    result = client.infer("echo", [fp32_input("x", big)])
    assert result.as_numpy("x").tobytes() == big.tobytes()
    del result

    too_big = np.zeros(LIMIT // 4 + 1, dtype=np.float32)  # one element over the limit, before any overhead
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", [fp32_input("x", too_big)])
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    # and the server goes on serving
    assert client.is_server_live()
    small = client.infer("echo", [fp32_input("x", np.ones((1, 3), np.float32))])
    np.testing.assert_array_equal(small.as_numpy("x"), np.ones((1, 3), np.float32))
    assert gateway.process.poll() is None
    assert_serves_large(gateway, "echo")


def test_an_answer_over_the_limit_is_that_requests_error(stub, gateway):
    """An echo of a request just under grpc_max_message_bytes answers a little over it: RESOURCE_EXHAUSTED
    with a message that names the setting, counted as a failure; in a Triton-style stream, that request's
    error_message, the stream going on. (grpc refused the answer itself: the call counted a success, an
    ERROR with grpc's traceback in the log, and a stream ended with all of its other requests.)"""

    def near_the_limit() -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name="echo", id="big")
        tensor = request.inputs.add(name="x", datatype="UINT8", shape=[LIMIT])
        request.raw_input_contents.append(b"")
        tensor.shape[0] = size = LIMIT - request.ByteSize() - 16
        request.raw_input_contents[0] = bytes(size)
        assert LIMIT - 16 <= request.ByteSize() <= LIMIT
        return request

    def small(request_id: str) -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name="echo", id=request_id)
        request.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int64_contents.append(7)
        return request

    def server_errors() -> float:
        return metrics_of(gateway)["gateway_requests_total"][labels(model="echo", version="", protocol="grpc", outcome="server_error")]

    errors = server_errors()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(near_the_limit(), timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details().endswith(f"bytes, over the limit of {LIMIT} bytes (setting grpc_max_message_bytes)")

    replies = {reply.infer_response.id: reply for reply in stub.ModelStreamInfer(iter([small("a"), near_the_limit(), small("b")]), timeout=60)}
    assert sorted(replies) == ["a", "b", "big"]
    assert "over the limit of" in replies["big"].error_message and not replies["big"].infer_response.raw_output_contents
    assert [decode(replies[k].infer_response, 0).tolist() for k in "ab"] == [[7], [7]]
    assert server_errors() == errors + 2
    assert "ExecuteBatchError" not in gateway.log_text()
    assert_serves_large(gateway, "echo")


# --- model repository (runs last: it unloads and reloads a model) --------------------------------


def test_repository_index_unload_and_load(client, gateway):
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "echo", "state": "READY"}.items() <= next(m for m in index if m["name"] == "echo").items()
    assert sorted(m["version"] for m in index if m["name"] == "versioned") == ["1", "2"]

    client.unload_model("failing")
    assert client.is_model_ready("failing") is False
    with pytest.raises(InferenceServerException) as caught:
        client.infer("failing", [fp32_input("x", np.zeros((1, 1), np.float32))])
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    assert caught.value.message() == "model 'failing' is not ready (UNAVAILABLE: unloaded)"
    ready = [m["name"] for m in client.get_model_repository_index(as_json=True)["models"] if m.get("state") == "READY"]
    assert "failing" not in ready and "echo" in ready
    with pytest.raises(InferenceServerException) as caught:
        client.unload_model("no-such-model")
    assert caught.value.status() == "StatusCode.NOT_FOUND"

    with pytest.raises(InferenceServerException) as caught:
        client.load_model("failing", config='{"max_batch_size": 8}')
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "config" in caught.value.message()
    assert client.is_model_ready("failing") is False

    client.load_model("failing")
    assert client.is_model_ready("failing") is True
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def test_gateway_log_has_no_unexpected_errors(gateway):
    log = gateway.log_text()
    assert "gRPC on 127.0.0.1:" in log
    assert "unexpected error" not in log and "fork_posix" not in log and "Task exception was never retrieved" not in log
