"""Tensors with no elements, and scalars: every datatype at ranks 0-5, in and out of a real echo
model, over REST JSON, REST binary, gRPC raw and gRPC typed contents; a batch of 0 rows."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from tests.test_grpc import CONTENTS, NUMPY, assert_exact, decode
from tests.test_worker_plane import write_repository

DATATYPES = sorted(NUMPY)
# rank 0 (a scalar: one element) and ranks 1-5 with a zero somewhere; no elements, but 2**40 rows
# (nothing may walk the rows of an empty tensor: a runtime's ResponseOutput once did, without end)
SHAPES = [[], [0], [0, 16], [2, 0, 3], [1, 3, 0, 2], [2, 1, 1, 1, 0], [2**40, 0]]
ENCODINGS = ["rest-json", "rest-binary", "grpc-raw", "grpc-typed"]
LARGE = 64 * 1024  # FP32 elements: 256 KiB, through the shared-memory arenas

MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo"},
    "probe": {"implementation": "tests.runtimes.BatchProbe", "max_batch_size": 8},
}


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    return start_gateway(write_repository(tmp_path_factory.mktemp("zero-size"), MODELS), request_timeout=20).wait_ready()


@pytest.fixture(scope="module")
def http_client(gateway):
    client = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(gateway):
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def tensor(datatype: str, shape: list[int]) -> np.ndarray:
    count = int(np.prod(shape))  # 1 for a scalar
    if datatype == "BYTES":
        return np.array([b"scalar"] * count, dtype=object).reshape(shape)
    return np.ones(count, dtype=NUMPY[datatype]).reshape(shape)


def echo(encoding: str, array: np.ndarray, datatype: str, gateway, http_client, grpc_client, stub) -> np.ndarray:
    shape = list(array.shape)
    if encoding == "rest-json":
        data = [x.decode() for x in array.ravel()] if datatype == "BYTES" else array.ravel().tolist()
        body = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
        response = requests.post(f"{gateway.url}/v2/models/echo/infer", data=json.dumps(body), timeout=30)
        assert response.status_code == 200, response.text
        output = response.json()["outputs"][0]
        assert output["shape"] == shape and output["datatype"] == datatype
        values = [x.encode() for x in output["data"]] if datatype == "BYTES" else output["data"]
        return np.array(values, dtype=NUMPY[datatype]).reshape(shape)
    if encoding == "rest-binary":
        tensor_in = httpclient.InferInput("x", shape, datatype)
        tensor_in.set_data_from_numpy(array, binary_data=True)
        result = http_client.infer("echo", [tensor_in], outputs=[httpclient.InferRequestedOutput("x", binary_data=True)])
        output = result.get_output("x")
        assert output["shape"] == shape and output["datatype"] == datatype
        if not array.size:  # tritonclient reads any empty binary output as float64 [0]: check what was sent
            assert output["parameters"]["binary_data_size"] == 0
            return np.empty(shape, dtype=NUMPY[datatype])
        return result.as_numpy("x")
    if encoding == "grpc-raw":
        tensor_in = grpcclient.InferInput("x", shape, datatype)
        tensor_in.set_data_from_numpy(array)
        return grpc_client.infer("echo", [tensor_in]).as_numpy("x")
    message = pb.ModelInferRequest(model_name="echo")
    item = message.inputs.add(name="x", datatype=datatype, shape=shape)
    if array.size:  # a scalar; zero elements need no contents at all (FP16 has no typed field)
        if datatype == "FP16":
            message.raw_input_contents.append(array.tobytes())
        else:
            getattr(item.contents, CONTENTS[datatype]).extend(array.ravel().tolist())
    response = stub.ModelInfer(message, timeout=30)
    assert list(response.outputs[0].shape) == shape
    return decode(response, 0)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
@pytest.mark.parametrize("datatype", DATATYPES)
def test_zero_size_and_scalar_tensors_round_trip(gateway, http_client, grpc_client, stub, datatype, shape, encoding):
    array = tensor(datatype, shape)
    assert_exact(echo(encoding, array, datatype, gateway, http_client, grpc_client, stub), array)


def test_the_model_answers_promptly_after_zero_size_requests(gateway, grpc_client):
    # before the fix, each zero-size request left the worker marked busy until request_timeout
    array = np.arange(LARGE, dtype=np.float32).reshape(1, LARGE)
    tensor_in = grpcclient.InferInput("x", [1, LARGE], "FP32")
    tensor_in.set_data_from_numpy(array)
    result = grpc_client.infer("echo", [tensor_in], client_timeout=10)
    assert_exact(result.as_numpy("x"), array)


def test_a_request_of_zero_rows_is_answered_with_zero_rows(gateway):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 4], "data": []}]}
    response = requests.post(f"{gateway.url}/v2/models/probe/infer", data=json.dumps(body), timeout=30)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["y"]["shape"] == [0, 4] and outputs["y"]["data"] == []
    assert outputs["rows"]["shape"] == [0] and outputs["rows"]["data"] == []
