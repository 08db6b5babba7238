"""Properties, checked with hypothesis against a real echo model: every tensor (every datatype, shapes
of rank 0-5 with zero-size ones among them, the edge values of each datatype) comes back bit for bit
over REST JSON, REST binary, gRPC raw and gRPC typed contents.

What JSON cannot carry (NaN, infinities, BYTES that are not UTF-8) travels in as binary data; asked
for as JSON it is refused with a 400 that names binary output, and asked for as binary it comes back
exact. The number of examples is fixed and the generation derandomized: the same cases every run,
in bounded time."""

from __future__ import annotations

import json
import struct

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from tests.conftest import assert_serves_large
from tests.fuzzing import CONTENTS, DATATYPES, NUMPY
from tests.test_worker_plane import write_repository

ENCODINGS = ["rest-json", "rest-binary", "grpc-raw", "grpc-typed"]
EXAMPLES = 200  # per encoding, besides the named cases
HEADER_LENGTH = "Inference-Header-Content-Length"

FLOAT_EDGES = [0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, np.nan]


def _edges(datatype: str) -> list:
    dtype = np.dtype(NUMPY[datatype])
    if datatype == "BOOL":
        return [False, True]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return [int(info.min), int(info.max), 0, 1, int(info.max) - 1]
    info = np.finfo(dtype)
    return FLOAT_EDGES + [float(info.max), -float(info.max), float(info.tiny), float(info.smallest_subnormal)]


def _elements(datatype: str) -> st.SearchStrategy:
    if datatype == "BYTES":
        return st.sampled_from([b"", b"\xff\xfe", b"\x00", "é€".encode()]) | st.binary(max_size=12) | st.text(max_size=6).map(str.encode)
    dtype = np.dtype(NUMPY[datatype])
    edges = st.sampled_from(_edges(datatype))
    if datatype == "BOOL":
        return edges
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return edges | st.integers(int(info.min), int(info.max))
    return edges | st.floats(width=dtype.itemsize * 8)


@st.composite
def tensors(draw) -> list[tuple[str, str, np.ndarray]]:
    """One to three tensors (name, datatype, array) for one request."""
    drawn = []
    for name in ("a", "b", "c")[: draw(st.integers(1, 3))]:
        datatype = draw(st.sampled_from(DATATYPES))
        shape = draw(st.lists(st.integers(0, 3), max_size=5))
        count = int(np.prod(shape, dtype=np.int64))
        values = draw(st.lists(_elements(datatype), min_size=count, max_size=count))
        dtype = object if datatype == "BYTES" else NUMPY[datatype]
        array = np.empty(count, dtype=dtype)
        array[:] = values
        drawn.append((name, datatype, array.reshape(shape)))
    return drawn


def one(datatype: str, values: list, shape: list[int] | None = None) -> list[tuple[str, str, np.ndarray]]:
    array = np.array(values, dtype=object if datatype == "BYTES" else NUMPY[datatype])
    return [("a", datatype, array.reshape(shape if shape is not None else [len(values)]))]


# the cases the issue names, whatever else hypothesis draws
NAMED_CASES = [
    one("FP16", [np.nan, -0.0, 65504.0, -np.inf]),
    one("FP32", [-0.0, np.nan, 3.4028235e38, 1e-45]),
    one("FP64", [-0.0, np.inf, 5e-324]),
    one("UINT64", [2**64 - 1, 0]),
    one("INT64", [-(2**63), 2**63 - 1]),
    one("BYTES", [b"", b"\xff\xfe\x00", "é".encode()]),
    one("BYTES", [], [0, 3]),
    one("FP32", [], [2, 0, 3]),
    one("UINT8", [255], []),
]


# --- the four encodings: each sends the tensors to the echo model and returns what came back


def json_can_carry(array: np.ndarray) -> bool:
    if array.dtype == object:
        try:
            [bytes(item).decode() for item in array.ravel()]
        except UnicodeDecodeError:
            return False
        return True
    return array.dtype.kind != "f" or bool(np.isfinite(array).all())


def _json_values(array: np.ndarray) -> list:
    return [bytes(item).decode() for item in array.ravel()] if array.dtype == object else array.ravel().tolist()


def _raw(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(item)) + bytes(item) for item in array.ravel())
    return np.ascontiguousarray(array).tobytes()


def _from_raw(datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    if datatype != "BYTES":
        return np.frombuffer(raw, dtype=NUMPY[datatype]).reshape(shape)
    items, pos = [], 0
    while pos < len(raw):
        (length,) = struct.unpack_from("<I", raw, pos)
        items.append(raw[pos + 4 : pos + 4 + length])
        pos += 4 + length
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def rest_echo(url: str, drawn, binary_inputs: bool, binary_outputs: bool) -> requests.Response:
    inputs, chunks = [], []
    for name, datatype, array in drawn:
        item = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary_inputs or not json_can_carry(array):
            raw = _raw(datatype, array)
            item["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            item["data"] = _json_values(array)
        inputs.append(item)
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": binary_outputs}}).encode()
    headers = {HEADER_LENGTH: str(len(header))} if chunks else {}
    return requests.post(f"{url}/v2/models/echo/infer", data=header + b"".join(chunks), headers=headers, timeout=30)


def rest_outputs(response: requests.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    length = int(response.headers.get(HEADER_LENGTH, len(response.content)))
    document, rest = json.loads(response.content[:length]), response.content[length:]
    outputs, offset = {}, 0
    for output in document["outputs"]:
        datatype, shape = output["datatype"], output["shape"]
        if "data" in output:
            values = [v.encode() for v in output["data"]] if datatype == "BYTES" else output["data"]
            array = np.empty(len(values), dtype=object if datatype == "BYTES" else NUMPY[datatype])
            array[:] = values
            outputs[output["name"]] = array.reshape(shape)
        else:
            size = output["parameters"]["binary_data_size"]
            outputs[output["name"]] = _from_raw(datatype, shape, rest[offset : offset + size])
            offset += size
    return outputs


def grpc_echo(stub, drawn, typed: bool) -> dict[str, np.ndarray]:
    message = pb.ModelInferRequest(model_name="echo")
    for name, datatype, array in drawn:
        item = message.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if typed and array.size:
            values = [bytes(v) for v in array.ravel()] if datatype == "BYTES" else array.ravel().tolist()
            getattr(item.contents, CONTENTS[datatype]).extend(values)
        elif not typed:
            message.raw_input_contents.append(_raw(datatype, array))
    response = stub.ModelInfer(message, timeout=30)
    return {o.name: _from_raw(o.datatype, list(o.shape), raw) for o, raw in zip(response.outputs, response.raw_output_contents)}


def assert_bit_exact(answers: dict[str, np.ndarray], drawn) -> None:
    assert list(answers) == [name for name, _, _ in drawn]
    for name, datatype, array in drawn:
        answer = answers[name]
        assert answer.shape == array.shape, (name, datatype)
        if datatype == "BYTES":
            assert [bytes(x) for x in answer.ravel()] == [bytes(x) for x in array.ravel()], name
        else:
            assert answer.dtype == array.dtype and answer.tobytes() == array.tobytes(), (name, datatype, answer, array)


# --- the gateway and the property


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("properties"), {"echo": {"implementation": "tests.runtimes.Echo"}})
    return start_gateway(repository).wait_ready()


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _property(encoding: str):
    def check(gateway, stub, drawn) -> None:
        if encoding == "grpc-typed":
            assume(all(datatype != "FP16" or not array.size for _, datatype, array in drawn))  # FP16 has no typed field
        if encoding == "grpc-raw" or encoding == "grpc-typed":
            assert_bit_exact(grpc_echo(stub, drawn, typed=encoding == "grpc-typed"), drawn)
        elif encoding == "rest-binary":
            assert_bit_exact(rest_outputs(rest_echo(gateway.url, drawn, binary_inputs=True, binary_outputs=True)), drawn)
        elif all(json_can_carry(array) for _, _, array in drawn):
            assert_bit_exact(rest_outputs(rest_echo(gateway.url, drawn, binary_inputs=False, binary_outputs=False)), drawn)
        else:
            refused = rest_echo(gateway.url, drawn, binary_inputs=False, binary_outputs=False)
            assert refused.status_code == 400, refused.text
            assert "which JSON cannot carry; request it as binary data" in refused.json()["error"]
            assert_bit_exact(rest_outputs(rest_echo(gateway.url, drawn, binary_inputs=False, binary_outputs=True)), drawn)

    for case in NAMED_CASES:
        check = example(drawn=case)(check)
    return settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])(given(drawn=tensors())(check))  # fmt: skip


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_tensor_comes_back_bit_for_bit(gateway, stub, encoding):
    _property(encoding)(gateway, stub)
    assert_serves_large(gateway, "echo")
