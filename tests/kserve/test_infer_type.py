"""gateway.kserve's infer types against hand-computed wire bytes and KServe 0.21's rules.

The gRPC messages marked "KServe's bytes" were produced by KServe 0.21's own `to_grpc`
(scripts/kserve_crosscheck.py compares the two SDKs on many more cases).
"""

import struct

import numpy as np
import orjson
import pytest

from gateway.errors import GatewayError
from gateway.kserve import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput
from gateway.kserve.errors import InferenceError, InvalidInput
from gateway.kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from gateway.kserve.protocol.infer_type import (
    deserialize_bytes_tensor,
    serialize_byte_tensor,
    to_grpc_parameters,
    to_http_parameters,
)
from gateway.types import InferenceRequest, Parameters, RequestInput, RequestOutput


def le32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def length_prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


# --- BYTES serialization


def test_serialize_byte_tensor_writes_little_endian_lengths_then_bytes_in_row_major_order():
    tensor = np.array([[b"cat", "d\u00f6g"], [b"", 3]], dtype=np.object_)
    serialized = serialize_byte_tensor(tensor)
    assert serialized.shape == () and serialized.dtype == np.object_
    assert serialized.item() == b"\x03\x00\x00\x00cat\x04\x00\x00\x00d\xc3\xb6g\x00\x00\x00\x00\x01\x00\x00\x003"
    assert serialize_byte_tensor(np.array([], dtype=np.object_)).shape == (0,)
    with pytest.raises(InferenceError):
        serialize_byte_tensor(np.array([1, 2], dtype=np.int32))


def test_deserialize_bytes_tensor_is_the_inverse_and_refuses_truncated_data():
    decoded = deserialize_bytes_tensor(length_prefixed(b"cat", b"", b"\x00\xff"))
    assert decoded.dtype == np.object_ and decoded.tolist() == [b"cat", b"", b"\x00\xff"]
    with pytest.raises(InvalidInput, match="overruns"):
        deserialize_bytes_tensor(b"\x05\x00\x00\x00abc")
    with pytest.raises(InvalidInput, match="length prefix"):
        deserialize_bytes_tensor(length_prefixed(b"ok") + b"\x01\x00")


# --- set_data_from_numpy, as_numpy


def test_set_data_from_numpy_binary_keeps_raw_bytes_and_sets_binary_data_size():
    tensor = InferInput("x", [2], "INT32", parameters={"note": "n"})
    tensor.set_data_from_numpy(np.array([1, -2], dtype=np.int32))
    assert tensor._raw_data == b"\x01\x00\x00\x00\xfe\xff\xff\xff"
    assert tensor.data is None
    assert tensor.parameters == {"note": "n", "binary_data_size": 8}
    assert tensor.as_numpy().tolist() == [1, -2]

    tensor.set_data_from_numpy(np.array([3, 4], dtype=np.int32), binary_data=False)
    assert tensor.data == [3, 4] and tensor._raw_data is None
    assert tensor.parameters == {"note": "n"}  # binary_data_size goes with the raw bytes


def test_fp16_raw_bytes_are_ieee_half_precision():
    tensor = InferOutput("h", [3], "FP16")
    tensor.set_data_from_numpy(np.array([1.0, -2.0, 65504.0], dtype=np.float16))
    assert tensor._raw_data == b"\x00\x3c\x00\xc0\xff\x7b"
    assert tensor.parameters == {"binary_data_size": 6}


def test_bytes_tensors_binary_and_json():
    tensor = InferInput("s", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"ab"], ["\u00e9"]], dtype=np.object_))
    assert tensor._raw_data == length_prefixed(b"ab", b"\xc3\xa9")
    assert tensor.as_numpy().tolist() == [[b"ab"], [b"\xc3\xa9"]]
    assert tensor.as_string() == ["ab", "\u00e9"]

    tensor.set_data_from_numpy(np.array([[b"ab"], ["\u00e9"]], dtype=np.object_), binary_data=False)
    assert tensor.data == ["ab", "\u00e9"]
    with pytest.raises(InferenceError, match="UTF-8"):
        tensor.set_data_from_numpy(np.array([[b"\xff"], [b"ok"]], dtype=np.object_), binary_data=False)


def test_set_data_from_numpy_checks_type_datatype_and_shape():
    tensor = InferInput("x", [2], "FP32")
    with pytest.raises(InferenceError, match="numpy array"):
        tensor.set_data_from_numpy([1.0, 2.0])
    with pytest.raises(InferenceError, match="datatype FP64 .* expected FP32"):
        tensor.set_data_from_numpy(np.zeros(2))
    with pytest.raises(InferenceError, match=r"shape \[3\], expected \[2\]"):
        tensor.set_data_from_numpy(np.zeros(3, dtype=np.float32))
    with pytest.raises(InferenceError, match="datatype None"):  # big-endian bytes would be read back wrong
        tensor.set_data_from_numpy(np.zeros(2, dtype=">f4"))


def test_as_numpy_refuses_data_that_does_not_fit_the_shape():
    with pytest.raises(InvalidInput, match="needs 12"):
        tensor = InferInput("x", [3], "INT32")
        tensor._raw_data = b"\x00" * 8
        tensor.as_numpy()
    with pytest.raises(InvalidInput, match="3 elements"):
        InferInput("x", [2, 2], "INT32", [1, 2, 3]).as_numpy()
    with pytest.raises(InvalidInput, match="invalid datatype"):
        InferInput("x", [1], "COMPLEX", [1]).as_numpy()


# --- REST


def test_request_to_rest_binary_body_is_json_then_raw_inputs_in_order():
    ints = InferInput("a", [2], "INT32", data=np.array([1, 2], dtype=np.int32), parameters={"k": "v"})
    text = InferInput("b", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=np.object_))
    half = InferInput("c", [1], "FP16")
    half.set_data_from_numpy(np.array([1.0], dtype=np.float16))
    request = InferRequest(
        "m",
        [ints, text, half],
        request_id="r1",
        parameters={"binary_data_output": True},
        request_outputs=[RequestedOutput("y", {"binary_data": True})],
    )
    body, json_length = request.to_rest()
    header = (
        b'{"id":"r1","model_name":"m","inputs":['
        b'{"name":"a","shape":[2],"datatype":"INT32","parameters":{"k":"v"},"data":[1,2]},'
        b'{"name":"b","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}},'
        b'{"name":"c","shape":[1],"datatype":"FP16","parameters":{"binary_data_size":2}}],'
        b'"outputs":[{"name":"y","parameters":{"binary_data":true}}],'
        b'"parameters":{"binary_data_output":true}}'
    )
    assert body == header + b"\x02\x00\x00\x00hi" + b"\x00\x3c"
    assert json_length == len(header)

    back = InferRequest.from_bytes(body, json_length, "m")
    assert [t.data for t in back.inputs] == [[1, 2], ["hi"], [1.0]]  # binary inputs become lists, as in KServe
    assert back.inputs[1].parameters == {}
    assert back.request_outputs == [RequestedOutput("y", {"binary_data": True})]
    assert back.use_binary_outputs is True


def test_request_to_rest_without_binary_inputs_is_a_dict():
    request = InferRequest("m", [InferInput("a", [2], "FP32", [1.5, 2.5]), InferInput("s", [1], "BYTES", ["x"])], request_id="r2")
    body, json_length = request.to_rest()
    assert json_length is None
    assert body == {
        "id": "r2",
        "model_name": "m",
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["x"]},
        ],
    }
    assert InferRequest("m", [InferInput("a", [1], "INT32", [1])]).to_rest()[0]["id"]  # a request needs an id: a new UUID


def test_fp16_never_travels_as_json():
    half = InferInput("h", [1], "FP16")
    half.set_data_from_numpy(np.array([1.0], dtype=np.float16), binary_data=False)
    with pytest.raises(InvalidInput, match="FP16"):
        InferRequest("m", [half], request_id="r").to_rest()
    body = b'{"inputs":[{"name":"h","shape":[1],"datatype":"FP16","data":[1.0]}]}'
    with pytest.raises(InvalidInput, match="FP16"):
        InferRequest.from_bytes(body, len(body), "m")
    output = InferOutput("h", [1], "FP16")
    output.set_data_from_numpy(np.array([1.0], dtype=np.float16))
    with pytest.raises(InvalidInput, match="FP16"):
        InferResponse("r", "m", [output], use_binary_outputs=False).to_rest()


BINARY_X = b'{"inputs":[{"name":"x","shape":[%d],"datatype":"INT32","parameters":{"binary_data_size":%s}}]}'


@pytest.mark.parametrize(
    "header, tail, message",
    [
        (b'{"inputs": [', b"", "Unrecognized request format"),
        (b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT32"}]}', b"", "'data' field is missing"),
        (BINARY_X % (2, b"8"), le32(1), "needs 8 bytes"),
        (BINARY_X % (1, b"4"), le32(1, 2), "4 bytes of binary data follow"),
        (BINARY_X % (2, b"4"), le32(1), "needs 8"),
        (BINARY_X % (1, b"-4"), le32(1), "non-negative integer"),
        (BINARY_X % (1, b"null"), b"", "not specified"),
        (b'{"inputs":[{"name":"x","shape":[1]}]}', b"", "needs a name, a shape and a datatype"),
        (b'{"id":"1"}', b"", "'inputs' must be a list"),
        (b"[1]", b"", "must be a JSON object"),
    ],
)
def test_from_bytes_refuses_malformed_bodies_with_invalid_input(header, tail, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        InferRequest.from_bytes(header + tail, len(header), "m")
    assert caught.value.http_status == 400
    with pytest.raises(InvalidInput, match="does not fit"):
        InferRequest.from_bytes(header, len(header) + 1, "m")


def outputs_for_precedence():
    return [
        InferOutput("y", [2], "FP32", np.array([1.0, 2.0], dtype=np.float32)),
        InferOutput("z", [1], "INT32", [7]),
    ]


def test_response_binary_outputs_follow_use_binary_outputs_when_no_output_is_requested():
    body, json_length = InferResponse("r", "m", outputs_for_precedence(), use_binary_outputs=True).to_rest()
    header = (
        b'{"id":"r","model_name":"m","model_version":null,"outputs":['
        b'{"name":"y","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},'
        b'{"name":"z","shape":[1],"datatype":"INT32","parameters":{"binary_data_size":4}}]}'
    )
    assert (body, json_length) == (header + struct.pack("<2f", 1.0, 2.0) + le32(7), len(header))

    document, json_length = InferResponse("r", "m", outputs_for_precedence()).to_rest()
    assert json_length is None
    assert [o["data"] for o in document["outputs"]] == [[1.0, 2.0], [7]]


def test_requested_outputs_binary_data_wins_over_use_binary_outputs_and_absent_means_json():
    requested = [RequestedOutput("z", {"binary_data": True}), RequestedOutput("y")]
    body, json_length = InferResponse("r", "m", outputs_for_precedence(), use_binary_outputs=True, requested_outputs=requested).to_rest()
    header = (
        b'{"id":"r","model_name":"m","model_version":null,"outputs":['
        b'{"name":"z","shape":[1],"datatype":"INT32","parameters":{"binary_data_size":4}},'
        b'{"name":"y","shape":[2],"datatype":"FP32","data":[1.0,2.0]}]}'
    )
    assert (body, json_length) == (header + le32(7), len(header))
    with pytest.raises(InvalidInput, match="Unexpected inference output 'w'"):
        InferResponse("r", "m", outputs_for_precedence(), requested_outputs=[RequestedOutput("w")]).to_rest()


def test_response_rest_round_trips():
    response = InferResponse(
        "r", "m", [InferOutput("y", [2], "FP64", [0.5, -1.0]), InferOutput("s", [1], "BYTES", ["t"])], model_version="2", parameters={"p": 1}
    )
    document, _ = response.to_rest()
    assert InferResponse.from_rest(orjson.loads(orjson.dumps(document))) == response

    binary = InferResponse("r", "m", [InferOutput("y", [2], "FP64", np.array([0.5, -1.0])), InferOutput("s", [1], "BYTES", ["t"])], use_binary_outputs=True)
    body, json_length = binary.to_rest()
    back = InferResponse.from_bytes(body, json_length)
    assert [(o.name, o.data) for o in back.outputs] == [("y", [0.5, -1.0]), ("s", ["t"])]
    with pytest.raises(InvalidInput, match="'data' field is missing"):
        InferResponse.from_rest({"model_name": "m", "outputs": [{"name": "y", "shape": [1], "datatype": "FP32"}]})


# --- gRPC


def test_request_to_grpc_with_lists_is_the_message_kserve_produces():
    request = InferRequest(
        "iris",
        [InferInput("x", [2, 2], "FP32", [1.5, -2.0, 0.25, 4.0]), InferInput("s", [2], "BYTES", ["a", "bc"])],
        request_id="r7",
        model_version="3",
        parameters={"tag": "t", "n": 2, "f": True},
        request_outputs=[RequestedOutput("y", {"binary_data": False})],
    )
    message = request.to_grpc()
    assert message.SerializeToString(deterministic=True) == (  # KServe's bytes
        b'\n\x04iris\x12\x013\x1a\x02r7"\x07\n\x01f\x12\x02\x08\x01"\x07\n\x01n\x12\x02\x10\x02"\n\n\x03tag\x12\x03\x1a\x01t'
        b"*!\n\x01x\x12\x04FP32\x1a\x02\x02\x02*\x122\x10\x00\x00\xc0?\x00\x00\x00\xc0\x00\x00\x80>\x00\x00\x80@"
        b"*\x16\n\x01s\x12\x05BYTES\x1a\x01\x02*\x07B\x01aB\x02bc"
        b"2\x16\n\x01y\x12\x11\n\x0bbinary_data\x12\x02\x08\x00"
    )
    back = InferRequest.from_grpc(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert back.from_grpc and back.model_version == "3" and not back.use_binary_outputs
    assert back.inputs == [InferInput("x", [2, 2], "FP32", [1.5, -2.0, 0.25, 4.0]), InferInput("s", [2], "BYTES", [b"a", b"bc"])]
    assert back.parameters == {"tag": pb.InferParameter(string_param="t"), "n": pb.InferParameter(int64_param=2), "f": pb.InferParameter(bool_param=True)}
    assert back.request_outputs == [RequestedOutput("y", {"binary_data": False})]


def test_request_to_grpc_with_arrays_sends_raw_contents_as_kserve():
    ints, half = InferInput("x", [2], "INT32"), InferInput("h", [2], "FP16")
    ints.set_data_from_numpy(np.array([1, -2], dtype=np.int32))
    half.set_data_from_numpy(np.array([1.0, -2.0], dtype=np.float16))
    message = InferRequest("m", [ints, half], request_id="r8").to_grpc()
    assert message.SerializeToString(deterministic=True) == (  # KServe's bytes
        b'\n\x01m\x1a\x02r8*%\n\x01x\x12\x05INT32\x1a\x01\x02"\x16\n\x10binary_data_size\x12\x02\x10\x08'
        b'*$\n\x01h\x12\x04FP16\x1a\x01\x02"\x16\n\x10binary_data_size\x12\x02\x10\x04'
        b":\x08\x01\x00\x00\x00\xfe\xff\xff\xff:\x04\x00<\x00\xc0"
    )


def test_raw_grpc_inputs_as_tritonclient_sends_them():
    message = pb.ModelInferRequest(
        model_name="m",
        id="t",
        inputs=[{"name": "x", "shape": [2], "datatype": "FP32"}, {"name": "s", "shape": [1], "datatype": "BYTES"}],
        raw_input_contents=[struct.pack("<2f", 0.5, 8.0), length_prefixed(b"q")],
    )
    request = InferRequest.from_grpc(message)
    assert request.use_binary_outputs  # raw in, raw out
    assert request.inputs[0].as_numpy().tolist() == [0.5, 8.0]
    assert request.inputs[1].as_numpy().tolist() == [b"q"]
    # forwarded over REST, each raw input says how long it is
    body, json_length = request.to_rest()
    assert orjson.loads(body[:json_length])["inputs"][0]["parameters"] == {"binary_data_size": 8}
    assert InferRequest.from_bytes(body, json_length, "m").inputs[1].data == ["q"]
    with pytest.raises(InvalidInput, match="does not match the number of raw input contents"):
        InferRequest.from_grpc(
            pb.ModelInferRequest(model_name="m", inputs=[{"name": "x", "shape": [1], "datatype": "FP32"}], raw_input_contents=[b"1234", b"5678"])
        )


def test_a_grpc_message_never_mixes_raw_and_typed_contents():
    request = InferRequest("m", [InferInput("a", [2], "INT32", [1, 2]), InferInput("b", [1], "FP32", np.array([1.5], dtype=np.float32))])
    message = request.to_grpc()
    assert list(message.raw_input_contents) == [le32(1, 2), struct.pack("<f", 1.5)]
    assert not any(tensor.HasField("contents") for tensor in message.inputs)


def test_response_to_grpc_with_lists_is_the_message_kserve_produces():
    response = InferResponse(
        "r9", "m", [InferOutput("y", [2], "INT64", [5, -6]), InferOutput("l", [1], "BYTES", ["ok"])], model_version="1", parameters={"p": "q"}
    )
    message = response.to_grpc()
    assert message.SerializeToString(deterministic=True) == (  # KServe's bytes
        b'\n\x01m\x12\x011\x1a\x02r9"\x08\n\x01p\x12\x03\x1a\x01q'
        b"*\x1c\n\x01y\x12\x05INT64\x1a\x01\x02*\r\x1a\x0b\x05\xfa\xff\xff\xff\xff\xff\xff\xff\xff\x01"
        b"*\x13\n\x01l\x12\x05BYTES\x1a\x01\x01*\x04B\x02ok"
    )
    back = InferResponse.from_grpc(message)
    assert back.from_grpc and back.get_output_by_name("y").data == [5, -6] and back.get_output_by_name("l").data == [b"ok"]
    assert back.get_output_by_name("nope") is None


def test_response_to_grpc_with_an_fp16_output_sends_every_output_raw_as_kserve():
    response = InferResponse("r10", "m", [InferOutput("y", [2], "INT32", [5, -6]), InferOutput("h", [1], "FP16", [1.0])])
    message = response.to_grpc()
    assert message.SerializeToString(deterministic=True) == (  # KServe's bytes
        b'\n\x01m\x1a\x03r10*%\n\x01y\x12\x05INT32\x1a\x01\x02"\x16\n\x10binary_data_size\x12\x02\x10\x08'
        b'*$\n\x01h\x12\x04FP16\x1a\x01\x01"\x16\n\x10binary_data_size\x12\x02\x10\x02'
        b"2\x08\x05\x00\x00\x00\xfa\xff\xff\xff2\x02\x00<"
    )
    back = InferResponse.from_grpc(message)
    assert back.outputs[1].as_numpy().tolist() == [1.0]
    # a response from gRPC (protobuf-map parameters) goes on over REST
    body, json_length = InferResponse(back.id, back.model_name, back.outputs, use_binary_outputs=True).to_rest()
    assert orjson.loads(body[:json_length])["outputs"][1]["parameters"] == {"binary_data_size": 2}


def test_parameters_convert_both_ways():
    converted = to_grpc_parameters({"s": "x", "b": False, "i": -3, "big": 2**63, "f": 0.5, "kept": pb.InferParameter(string_param="k")})
    assert converted == {
        "s": pb.InferParameter(string_param="x"),
        "b": pb.InferParameter(bool_param=False),
        "i": pb.InferParameter(int64_param=-3),
        "big": pb.InferParameter(uint64_param=2**63),
        "f": pb.InferParameter(double_param=0.5),
        "kept": pb.InferParameter(string_param="k"),
    }
    assert to_http_parameters(converted) == {"s": "x", "b": False, "i": -3, "big": 2**63, "f": 0.5, "kept": "k"}
    with pytest.raises(InvalidInput, match="invalid parameter value"):
        to_grpc_parameters({"l": [1, 2]})


# --- the gateway's pydantic request, DataFrames, equality


def test_from_inference_request_takes_the_gateway_pydantic_request():
    request = InferenceRequest(
        id="q1",
        parameters=Parameters(content_type="np", custom=1),
        inputs=[
            RequestInput(name="a", shape=[3], datatype="INT32", data=[1, 2, 3], parameters=Parameters(content_type="np")),
            RequestInput(name="b", shape=[2], datatype="FP16", data=np.array([1.0, 2.0], dtype=np.float16)),
        ],
        outputs=[RequestOutput(name="y", parameters=Parameters(binary_data=True))],
    )
    infer_request = InferRequest.from_inference_request(request, "m")
    assert infer_request.id == "q1" and infer_request.model_name == "m"
    assert infer_request.parameters == {"content_type": "np", "custom": 1}
    assert infer_request.inputs[0] == InferInput("a", [3], "INT32", [1, 2, 3], {"content_type": "np"})
    assert infer_request.inputs[1].parameters == {}
    assert infer_request.inputs[1].as_numpy().tolist() == [1.0, 2.0]  # an array (binary REST) is kept
    assert infer_request.request_outputs == [RequestedOutput("y", {"binary_data": True})]
    with pytest.raises(InvalidInput, match="FP16"):
        InferRequest.from_inference_request(InferenceRequest(inputs=[RequestInput(name="h", shape=[1], datatype="FP16", data=[1.0])]), "m")


def test_as_dataframe_decodes_bytes_columns():
    raw = InferInput("s", [2], "BYTES")
    raw.set_data_from_numpy(np.array([b"x", b"y"], dtype=np.object_))
    frame = InferRequest("m", [InferInput("a", [2], "INT64", [1, 2]), raw, InferInput("t", [2], "BYTES", [b"u", "v"])]).as_dataframe()
    assert list(frame.columns) == ["a", "s", "t"]
    assert frame.to_dict("list") == {"a": [1, 2], "s": ["x", "y"], "t": ["u", "v"]}


def test_data_may_be_an_array_or_grpc_contents_wherever_it_is_read():
    """KServe lets a tensor's data be a list, a numpy array or gRPC typed contents (InferTensorContents):
    as_string() of an array raised numpy's "truth value of an array is ambiguous"; contents made
    as_numpy() raise a TypeError, to_grpc() refuse them as "not a list" and as_dataframe() fail."""
    words = InferInput("w", [2, 1], "BYTES", np.array([[b"caf\xc3\xa9"], [b"tea"]], dtype=np.object_))
    assert words.as_string() == ["caf\u00e9", "tea"]

    contents = InferInput("c", [2], "FP32", pb.InferTensorContents(fp32_contents=[1.5, 2.5]))
    np.testing.assert_array_equal(contents.as_numpy(), np.array([1.5, 2.5], dtype=np.float32))
    text = InferInput("t", [2], "BYTES", pb.InferTensorContents(bytes_contents=[b"x", b"y"]))
    assert text.as_string() == ["x", "y"]
    message = InferRequest("m", [contents, text]).to_grpc()
    assert list(message.inputs[0].contents.fp32_contents) == [1.5, 2.5] and list(message.inputs[1].contents.bytes_contents) == [b"x", b"y"]
    frame = InferRequest("m", [InferInput("c", [2], "FP32", pb.InferTensorContents(fp32_contents=[1.5, 2.5])), text]).as_dataframe()
    assert frame.to_dict("list") == {"c": [1.5, 2.5], "t": ["x", "y"]}


def test_from_grpc_builds_on_the_class_and_tells_the_origin_on_an_instance():
    """KServe's one name for two things: `InferRequest.from_grpc(message)`, and `request.from_grpc`."""

    class Subclassed(InferRequest):
        pass

    message = InferRequest("m", [InferInput("a", [1], "INT32", [1])]).to_grpc()
    request = Subclassed.from_grpc(message)
    assert type(request) is Subclassed and request.from_grpc is True
    assert InferRequest("m", []).from_grpc is False
    response = InferResponse.from_grpc(InferResponse("1", "m", [InferOutput("y", [1], "FP32", [1.0])]).to_grpc())
    assert response.from_grpc is True and response.outputs[0].data == [1.0]
    response.from_grpc = False
    assert response.from_grpc is False and callable(InferResponse.from_grpc)


def test_equality_compares_what_kserve_compares():
    a = InferInput("a", [2], "INT32", [1, 2], {"p": 1})
    assert a == InferInput("a", [2], "INT32", [1, 2], {"p": 1})
    assert a != InferInput("a", [2], "INT32", [1, 3], {"p": 1})
    assert a != InferInput("a", [2], "INT64", [1, 2], {"p": 1})
    assert a != InferInput("a", [2], "INT32", [1, 2], None)
    assert a != InferOutput("a", [2], "INT32", [1, 2], {"p": 1})
    arrays = InferInput("a", [2], "INT32", np.array([1, 2], dtype=np.int32))
    assert arrays == InferInput("a", [2], "INT32", np.array([1, 2], dtype=np.int32))
    assert arrays != InferInput("a", [2], "INT32", np.array([1, 5], dtype=np.int32))
    binary = InferInput("a", [2], "INT32")
    binary.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    assert binary != a  # raw bytes and a list are different data

    request = InferRequest("m", [a], request_id="1", model_version="1")
    assert request == InferRequest("m", [InferInput("a", [2], "INT32", [1, 2], {"p": 1})], request_id="1", model_version="2")  # versions are not compared
    assert request != InferRequest("m", [a], request_id="2")
    assert request != InferRequest("m", [a], request_id="1", from_grpc=True)
    response = InferResponse("1", "m", [InferOutput("y", [1], "FP32", [1.0])], model_version="1")
    assert response == InferResponse("1", "m", [InferOutput("y", [1], "FP32", [1.0])], model_version="1")
    assert response != InferResponse("1", "m", [InferOutput("y", [1], "FP32", [1.0])], model_version="2")
    assert RequestedOutput("y", {"binary_data": True}) != RequestedOutput("y")
    for mutable in (a, request, response, RequestedOutput("y")):  # compared by value, so unhashable
        with pytest.raises(TypeError, match="unhashable"):
            hash(mutable)


def test_lookups_and_use_binary_outputs():
    request = InferRequest("m", [InferInput("a", [1], "INT32", [1]), InferInput("b", [1], "INT32", [2])], parameters={"binary_data_output": True})
    assert request.get_input_by_name("b").data == [2] and request.get_input_by_name("c") is None
    assert request.use_binary_outputs is True
    assert InferRequest("m", [], parameters={"binary_data_output": True}, from_grpc=True).use_binary_outputs is False
    assert RequestedOutput("y", {"binary_data": False}).binary_data is False and RequestedOutput("y").binary_data is None


def test_errors_are_the_gateways_too():
    assert isinstance(InvalidInput("x"), GatewayError) and isinstance(InvalidInput("x"), ValueError)
