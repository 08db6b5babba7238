"""The front doors' converters, without a server: the per-input builder both call, gRPC messages
<-> the internal form, REST bodies <-> the internal form. Both protocols must read the same request
into the same WireRequest."""

from __future__ import annotations

import asyncio
import json
import struct

import numpy as np
import pytest

from gateway.errors import BadRequest
from gateway.frontdoor.grpc import convert
from gateway.frontdoor.inputs import RequestInputs
from gateway.frontdoor.rest import body
from gateway.protocol.generated import inference_pb2 as pb
from gateway.wire.packed import PackedBytes, unpack_bytes
from gateway.wire.request import Tensor, WireRequest, WireResponse

LIMIT = 1 << 20


def test_an_input_is_refused_on_what_it_declares_before_its_data_is_read():
    inputs = RequestInputs(max_tensor_bytes=400)
    with pytest.raises(BadRequest, match="over the limit"):
        inputs.declare("x", "FP32", [101])  # 404 bytes: refused whatever data follows
    with pytest.raises(BadRequest, match="unknown datatype"):
        inputs.declare("x", "FLOAT", [1])
    raw = bytearray(8)
    tensor = inputs.from_raw(inputs.declare("x", "INT32", [2]), memoryview(raw), {"p": 1})
    assert np.shares_memory(tensor.data, np.frombuffer(raw, np.uint8)) and tensor.parameters == {"p": 1}  # a view, no copy
    assert inputs.later(inputs.declare("y", "FP32", [1]), {}).data is None
    inputs.from_json(inputs.declare("x", "FP32", [1]), [1.5], {})
    with pytest.raises(BadRequest, match="unique"):
        inputs.finish()


def grpc_request(raw: bool) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m", model_version="2", id="r1")
    message.parameters["q"].int64_param = 3
    a = message.inputs.add(name="a", datatype="INT32", shape=[2, 2])
    s = message.inputs.add(name="s", datatype="BYTES", shape=[2])
    s.parameters["content_type"].string_param = "str"
    if raw:
        message.raw_input_contents.extend([np.array([1, 2, 3, 4], "<i4").tobytes(), b"\2\0\0\0hi\0\0\0\0"])
    else:
        a.contents.int_contents.extend([1, 2, 3, 4])
        s.contents.bytes_contents.extend([b"hi", b""])
    message.outputs.add(name="y").parameters["binary_data"].bool_param = True
    return message


def rest_request(binary: bool) -> tuple[bytes, int | None]:
    document = {
        "id": "r1",
        "parameters": {"q": 3},
        "inputs": [
            {"name": "a", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
            {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"content_type": "str"}, "data": ["hi", ""]},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    if not binary:
        return json.dumps(document).encode(), None
    tail = np.array([1, 2, 3, 4], "<i4").tobytes()
    del document["inputs"][0]["data"]
    document["inputs"][0]["parameters"] = {"binary_data_size": len(tail)}
    header = json.dumps(document).encode()
    return header + tail, len(header)


async def read_rest(data: bytes, header_length: int | None) -> WireRequest:
    return await body.build_infer_request(await body.read_json_body(data, header_length), "m", "2", LIMIT, lambda request: None)


def described(request: WireRequest) -> tuple:
    def data(t: Tensor):
        return list(unpack_bytes(t.data, t.name)) if type(t.data) is PackedBytes else t.data.tolist()

    return (
        request.model_name,
        request.id,
        request.parameters,
        [(t.name, t.datatype, t.shape, t.parameters, data(t)) for t in request.inputs],
        [(o.name, o.parameters) for o in request.outputs or ()],
    )


@pytest.mark.parametrize("grpc_raw", [True, False], ids=["grpc-raw", "grpc-typed"])
@pytest.mark.parametrize("rest_binary", [True, False], ids=["rest-binary", "rest-json"])
def test_both_front_doors_read_one_request_into_one_internal_form(grpc_raw, rest_binary):
    from_grpc, pending = convert.parse_infer_request(grpc_request(grpc_raw), LIMIT)
    rest_body, header_length = rest_request(rest_binary)
    from_rest = asyncio.run(read_rest(rest_body, header_length))
    assert pending == [] and from_grpc.model_version == from_rest.model_version == "2"
    assert described(from_grpc) == described(from_rest)
    assert described(from_grpc)[3][0][4] == [[1, 2], [3, 4]]


def test_grpc_raw_contents_are_one_per_input_in_order():
    message = grpc_request(raw=True)
    del message.raw_input_contents[1]
    with pytest.raises(BadRequest, match="1 entries for 2 inputs"):
        convert.parse_infer_request(message, LIMIT)


def test_grpc_many_typed_contents_are_left_for_conversion_in_steps():
    message = pb.ModelInferRequest(model_name="m")
    item = message.inputs.add(name="x", datatype="INT64", shape=[convert.CONTENTS_STEP + 1])
    item.contents.int64_contents.extend(range(convert.CONTENTS_STEP + 1))
    request, pending = convert.parse_infer_request(message, LIMIT)
    assert pending == request.inputs and request.inputs[0].data is None
    asyncio.run(convert.convert_contents(message, pending, LIMIT))
    assert request.inputs[0].data[-1] == convert.CONTENTS_STEP


def test_a_grpc_answer_is_a_model_infer_response_with_raw_outputs():
    outputs = [Tensor("y", "FP32", [2], np.array([1.5, -2], np.float32), {"k": 1}), Tensor("s", "BYTES", [1], PackedBytes(b"\3\0\0\0abc", 1))]
    serialized = convert.render_infer_response(WireResponse("m", "2", "r1", outputs, {"big": 2**64 - 1, "f": 0.5}))
    answer = pb.ModelInferResponse.FromString(serialized)
    assert (answer.model_name, answer.model_version, answer.id) == ("m", "2", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [("y", "FP32", [2]), ("s", "BYTES", [1])]
    assert np.frombuffer(answer.raw_output_contents[0], "<f4").tolist() == [1.5, -2] and answer.raw_output_contents[1] == b"\3\0\0\0abc"
    assert convert.parameters_from_pb(answer.parameters) == {"big": 2**64 - 1, "f": 0.5}
    assert convert.parameters_from_pb(answer.outputs[0].parameters) == {"k": 1}


def test_a_rest_answer_in_json_and_in_binary():
    request = WireRequest("m", None, "r1", [], {}, None)
    outputs = [Tensor("y", "INT8", [2], np.array([1, -1], np.int8)), Tensor("s", "BYTES", [1], PackedBytes(b"\2\0\0\0hi", 1))]
    rendered = asyncio.run(body.render_infer_response(WireResponse("m", None, "r1", outputs, {}), request))
    assert rendered.json_length is None and json.loads(rendered.body)["outputs"][1]["data"] == ["hi"]
    request.parameters = {"binary_data_output": True}
    rendered = asyncio.run(body.render_infer_response(WireResponse("m", None, "r1", outputs, {}), request))
    document = json.loads(rendered.body[: rendered.json_length])
    assert [o["parameters"]["binary_data_size"] for o in document["outputs"]] == [2, 6]
    assert rendered.body[rendered.json_length :] == struct.pack("<2b", 1, -1) + b"\2\0\0\0hi"
    outputs[0] = Tensor("y", "FP32", [1], np.array([np.nan], np.float32))
    request.parameters = {}
    with pytest.raises(BadRequest, match="NaN or infinity"):
        asyncio.run(body.render_infer_response(WireResponse("m", None, "r1", outputs, {}), request))
