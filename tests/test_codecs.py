"""Unit tests of gateway.codecs: every codec both ways, lookup precedence, errors."""

import base64
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from gateway.codecs import (
    Base64Codec,
    InputCodec,
    NumpyCodec,
    NumpyRequestCodec,
    PandasCodec,
    StringCodec,
    StringRequestCodec,
    decode_inference_request,
    decode_request_input,
    encode_inference_response,
    encode_response_output,
    find_input_codec,
    find_request_codec,
    register_input_codec,
)
from gateway.codecs import base as codecs_base
from gateway.errors import BadRequest
from gateway.settings import ModelSettings
from gateway.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)


def tensor(name="x", shape=(3,), datatype="FP32", data=None, content_type=None):
    parameters = Parameters(content_type=content_type) if content_type else None
    return RequestInput(name=name, shape=list(shape), datatype=datatype, data=data, parameters=parameters)


def object_array(*items):
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


# --- NumpyCodec


def test_numpy_decodes_flat_list_to_declared_dtype_and_shape():
    out = NumpyCodec.decode_input(tensor(shape=[2, 2], datatype="INT32", data=[1, 2, 3, 4]))
    assert out.dtype == np.int32
    assert out.tolist() == [[1, 2], [3, 4]]


def test_numpy_decodes_nested_list():
    out = NumpyCodec.decode_input(tensor(shape=[2, 3], datatype="FP64", data=[[1, 2, 3], [4.5, 5, 6]]))
    assert out.dtype == np.float64
    assert out.tolist() == [[1, 2, 3], [4.5, 5, 6]]


def test_numpy_decodes_bool():
    out = NumpyCodec.decode_input(tensor(shape=[3], datatype="BOOL", data=[True, False, True]))
    assert out.dtype == np.bool_
    assert out.tolist() == [True, False, True]


def test_numpy_decodes_readonly_buffer_without_copy():
    raw = np.arange(12, dtype="<f4").tobytes()
    data = np.frombuffer(raw, dtype="<f4")  # what a worker holds: a read-only view
    assert not data.flags.writeable
    out = NumpyCodec.decode_input(tensor(shape=[3, 4], datatype="FP32", data=data))
    assert np.shares_memory(out, data)
    assert out.shape == (3, 4)
    assert out[2, 3] == 11.0


def test_numpy_converts_array_of_another_dtype_exactly():
    out = NumpyCodec.decode_input(tensor(shape=[3], datatype="FP32", data=np.array([1, 2, 3], dtype=np.int64)))
    assert out.dtype == np.float32
    assert out.tolist() == [1.0, 2.0, 3.0]


def test_numpy_refuses_lossy_array_conversion():
    with pytest.raises(BadRequest, match="input 'x'.*integers"):
        NumpyCodec.decode_input(tensor(shape=[2], datatype="INT32", data=np.array([1.5, 2.0])))


def test_numpy_decodes_bytes_object_array_without_copy():
    data = object_array(b"a", b"bc", b"\xff")
    out = NumpyCodec.decode_input(tensor(shape=[3, 1], datatype="BYTES", data=data))
    assert np.shares_memory(out, data)
    assert out.dtype == object
    assert out.ravel().tolist() == [b"a", b"bc", b"\xff"]


def test_numpy_decodes_bytes_from_strings():
    out = NumpyCodec.decode_input(tensor(shape=[2], datatype="BYTES", data=["hé", b"x"]))
    assert out.dtype == object
    assert out.tolist() == ["hé".encode(), b"x"]


def test_numpy_decodes_bytes_from_unicode_array():
    out = NumpyCodec.decode_input(tensor(shape=[2], datatype="BYTES", data=np.array(["a", "b"])))
    assert out.tolist() == [b"a", b"b"]


@pytest.mark.parametrize("data", [[1, 2], np.arange(2, dtype=np.float32), [[1, 2], [3, 4]]])
def test_numpy_wrong_element_count_is_bad_request(data):
    with pytest.raises(BadRequest, match="input 'x'"):
        NumpyCodec.decode_input(tensor(shape=[3], datatype="FP32", data=data))


def test_numpy_non_numbers_are_bad_request():
    with pytest.raises(BadRequest, match="input 'x'"):
        NumpyCodec.decode_input(tensor(shape=[2], datatype="FP32", data=["a", "b"]))


def test_numpy_encode_output_keeps_the_array():
    array = np.arange(6, dtype=np.int16).reshape(2, 3)
    out = NumpyCodec.encode_output("y", array)
    assert out.data is array
    assert out.datatype == Datatype.INT16
    assert out.shape == [2, 3]
    assert out.parameters.content_type == "np"
    np.testing.assert_array_equal(NumpyCodec.decode_output(out), array)


def test_numpy_encode_input_round_trip():
    array = np.array([[0.5, 1.5]], dtype=np.float16)
    request_input = NumpyCodec.encode_input("z", array)
    assert isinstance(request_input, RequestInput)
    assert (request_input.name, request_input.datatype, request_input.shape) == ("z", Datatype.FP16, [1, 2])
    assert request_input.parameters.content_type == "np"
    decoded = NumpyCodec.decode_input(request_input)
    assert decoded.dtype == np.float16
    np.testing.assert_array_equal(decoded, array)


def test_numpy_output_errors_name_the_output():
    output = ResponseOutput(name="y", shape=[2], datatype="INT8", data=[1])
    with pytest.raises(BadRequest, match="output 'y'"):
        NumpyCodec.decode_output(output)


# --- StringCodec


def test_string_decodes_list_and_nested_list():
    assert StringCodec.decode_input(tensor(shape=[2], datatype="BYTES", data=["a", "ü"])) == ["a", "ü"]
    assert StringCodec.decode_input(tensor(shape=[2, 1], datatype="BYTES", data=[["a"], ["b"]])) == ["a", "b"]


def test_string_decodes_bytes_object_array():
    data = object_array("hé".encode(), b"")
    assert StringCodec.decode_input(tensor(shape=[2], datatype="BYTES", data=data)) == ["hé", ""]


def test_string_encode_output():
    out = StringCodec.encode_output("s", ["a", "é"])
    assert out.datatype == Datatype.BYTES
    assert out.shape == [2]
    assert out.data == [b"a", "é".encode()]
    assert out.parameters.content_type == "str"
    assert StringCodec.decode_output(out) == ["a", "é"]
    assert StringCodec.decode_input(StringCodec.encode_input("s", ["q"])) == ["q"]


def test_string_invalid_utf8_is_bad_request():
    with pytest.raises(BadRequest, match="input 'x'.*UTF-8"):
        StringCodec.decode_input(tensor(shape=[1], datatype="BYTES", data=object_array(b"\xff\xfe")))


def test_string_needs_bytes_datatype():
    with pytest.raises(BadRequest, match="needs datatype BYTES"):
        StringCodec.decode_input(tensor(shape=[1], datatype="INT32", data=[1]))


def test_string_encode_refuses_non_strings():
    with pytest.raises(TypeError):
        StringCodec.encode_output("s", [1, 2])


# --- Base64Codec


def test_base64_round_trip():
    payload = [b"\x00\x01\xff", b"hello"]
    out = Base64Codec.encode_output("b", payload)
    assert out.datatype == Datatype.BYTES
    assert out.shape == [2]
    assert out.data == [base64.b64encode(item) for item in payload]
    assert out.parameters.content_type == "base64"
    assert Base64Codec.decode_output(out) == payload


def test_base64_decodes_json_strings_and_object_arrays():
    text = base64.b64encode(b"\x00abc").decode()
    assert Base64Codec.decode_input(tensor(shape=[1], datatype="BYTES", data=[text])) == [b"\x00abc"]
    data = object_array(text.encode())
    assert Base64Codec.decode_input(tensor(shape=[1], datatype="BYTES", data=data)) == [b"\x00abc"]


def test_base64_invalid_is_bad_request():
    with pytest.raises(BadRequest, match="input 'x': element 1 is not valid base64"):
        Base64Codec.decode_input(tensor(shape=[2], datatype="BYTES", data=["aGk=", "not base64!"]))


# --- registry


def test_find_input_codec_by_content_type_and_payload():
    assert find_input_codec("np") is NumpyCodec
    assert find_input_codec("str") is StringCodec
    assert find_input_codec("base64") is Base64Codec
    assert find_input_codec("nope") is None
    assert find_input_codec(payload=np.zeros(2)) is NumpyCodec
    assert find_input_codec(payload=["a"]) is StringCodec
    assert find_input_codec(payload=[b"a"]) is Base64Codec
    assert find_input_codec(payload=3.5) is None
    assert find_input_codec() is None


def test_find_request_codec_by_content_type_and_payload():
    assert find_request_codec("np") is NumpyRequestCodec
    assert find_request_codec("str") is StringRequestCodec
    assert find_request_codec("pd") is PandasCodec
    assert find_request_codec(payload=np.zeros(2)) is NumpyRequestCodec
    assert find_request_codec(payload=["a"]) is StringRequestCodec
    assert find_request_codec(payload=pd.DataFrame({"a": [1]})) is PandasCodec
    assert find_request_codec(payload={"a": 1}) is None


def test_register_input_codec_decorator(monkeypatch):
    # register into a copy, so the test codec does not outlive the test
    monkeypatch.setattr(codecs_base, "_input_codecs", dict(codecs_base._input_codecs))

    @register_input_codec
    class UpperCodec(InputCodec):
        ContentType = "test-upper"

        @classmethod
        def decode_input(cls, request_input):
            return [item.upper() for item in StringCodec.decode_input(request_input)]

    assert find_input_codec("test-upper") is UpperCodec
    request_input = tensor(shape=[1], datatype="BYTES", data=["ab"], content_type="test-upper")
    assert decode_request_input(request_input) == ["AB"]


# --- request codecs


def test_numpy_request_codec_round_trip():
    array = np.arange(4, dtype=np.uint8)
    request = NumpyRequestCodec.encode_request(array)
    assert request.parameters.content_type == "np"
    assert [i.name for i in request.inputs] == ["input-1"]
    np.testing.assert_array_equal(NumpyRequestCodec.decode_request(request), array)

    response = NumpyRequestCodec.encode_response("m", array, "v2")
    assert (response.model_name, response.model_version) == ("m", "v2")
    assert response.parameters.content_type == "np"
    assert response.outputs[0].name == "output-1"
    np.testing.assert_array_equal(NumpyRequestCodec.decode_response(response), array)


def test_string_request_codec_round_trip():
    request = StringRequestCodec.encode_request(["x", "y"])
    assert request.inputs[0].parameters.content_type == "str"
    assert StringRequestCodec.decode_request(request) == ["x", "y"]
    response = StringRequestCodec.encode_response("m", ["z"])
    assert StringRequestCodec.decode_response(response) == ["z"]


def test_single_input_request_codec_refuses_several_inputs():
    request = InferenceRequest(inputs=[tensor("a", data=[1, 2, 3]), tensor("b", data=[1, 2, 3])])
    with pytest.raises(BadRequest, match="exactly one tensor, got 2 inputs"):
        NumpyRequestCodec.decode_request(request)


# --- PandasCodec


def mixed_frame():
    return pd.DataFrame(
        {
            "ints": np.array([1, 2, 3], dtype=np.int64),
            "floats": np.array([0.5, 1.5, -2.0], dtype=np.float32),
            "flags": [True, False, True],
            "names": ["a", "bé", ""],
            "blobs": [b"\x00", b"\xff", b"xyz"],
        }
    )


def test_pandas_encode_response_column_tensors():
    response = PandasCodec.encode_response("m", mixed_frame(), "1")
    assert response.parameters.content_type == "pd"
    by_name = {o.name: o for o in response.outputs}
    assert [o.name for o in response.outputs] == ["ints", "floats", "flags", "names", "blobs"]
    assert (by_name["ints"].datatype, by_name["ints"].shape) == (Datatype.INT64, [3])
    assert by_name["floats"].datatype == Datatype.FP32
    assert by_name["flags"].datatype == Datatype.BOOL
    assert by_name["names"].datatype == Datatype.BYTES
    assert by_name["names"].parameters.content_type == "str"
    assert by_name["blobs"].parameters.content_type == "base64"


@pytest.mark.parametrize("direction", ["request", "response"])
def test_pandas_round_trip_mixed_columns(direction):
    frame = mixed_frame()
    if direction == "request":
        decoded = PandasCodec.decode_request(PandasCodec.encode_request(frame))
    else:
        decoded = PandasCodec.decode_response(PandasCodec.encode_response("m", frame))
    assert list(decoded.columns) == list(frame.columns)
    assert decoded["ints"].tolist() == [1, 2, 3]
    assert decoded["ints"].dtype == np.int64
    assert decoded["floats"].dtype == np.float32
    assert decoded["floats"].tolist() == [0.5, 1.5, -2.0]
    assert decoded["flags"].tolist() == [True, False, True]
    assert decoded["names"].tolist() == ["a", "bé", ""]
    assert decoded["blobs"].tolist() == [b"\x00", b"\xff", b"xyz"]


def test_pandas_nullable_integer_column():
    frame = pd.DataFrame({"n": pd.array([1, 2], dtype="Int64")})
    request = PandasCodec.encode_request(frame)
    assert request.inputs[0].datatype == Datatype.INT64
    assert PandasCodec.decode_request(request)["n"].tolist() == [1, 2]


def test_pandas_decode_honours_each_input_content_type():
    request = InferenceRequest(
        parameters=Parameters(content_type="pd"),
        inputs=[
            tensor("text", shape=[2, 1], datatype="BYTES", data=object_array(b"hi", b"yo"), content_type="str"),
            tensor("raw", shape=[2], datatype="BYTES", data=[b"p", b"q"]),
            tensor("wide", shape=[2, 2], datatype="INT32", data=np.arange(4, dtype=np.int32)),
            tensor("col", shape=[2, 1], datatype="FP64", data=[[1.0], [2.0]]),
        ],
    )
    frame = PandasCodec.decode_request(request)
    assert frame["text"].tolist() == ["hi", "yo"]
    assert frame["raw"].tolist() == [b"p", b"q"]  # no content type: left as bytes
    assert [row.tolist() for row in frame["wide"]] == [[0, 1], [2, 3]]
    assert frame["col"].tolist() == [1.0, 2.0]


def test_pandas_unequal_columns_are_bad_request():
    request = InferenceRequest(inputs=[tensor("a", shape=[2], data=[1, 2]), tensor("b", shape=[3], data=[1, 2, 3])])
    with pytest.raises(BadRequest, match="do not form a table"):
        PandasCodec.decode_request(request)


def test_pandas_refuses_unencodable_column():
    with pytest.raises(TypeError, match="column 'mixed'"):
        PandasCodec.encode_request(pd.DataFrame({"mixed": [1, "a"]}))


def test_codecs_import_without_pandas():
    script = """
import sys
sys.modules["pandas"] = None  # makes `import pandas` raise ImportError
import numpy as np
from gateway.codecs import PandasCodec, find_request_codec
from gateway.errors import NotSupported
from gateway.types import InferenceRequest
assert find_request_codec("pd") is PandasCodec
assert find_request_codec(payload=np.zeros(1)).ContentType == "np"
assert not PandasCodec.can_encode(object())
try:
    PandasCodec.decode_request(InferenceRequest(inputs=[]))
except NotSupported as exc:
    assert "pip install pandas" in str(exc), exc
else:
    raise AssertionError("PandasCodec worked without pandas")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- content-type driven helpers


def test_decode_request_input_precedence():
    metadata = {"x": MetadataTensor(name="x", datatype="BYTES", shape=[-1], parameters=Parameters(content_type="str"))}
    data = [base64.b64encode(b"hi").decode()]

    # the input's own content type beats the metadata and the default
    own = tensor(shape=[1], datatype="BYTES", data=data, content_type="base64")
    assert decode_request_input(own, metadata, default_codec=NumpyCodec) == [b"hi"]

    # then the metadata beats the default
    plain = tensor(shape=[1], datatype="BYTES", data=data)
    assert decode_request_input(plain, metadata, default_codec=Base64Codec) == data

    # then the default
    assert decode_request_input(plain, {}, default_codec=Base64Codec) == [b"hi"]

    # no codec: the raw data, untouched
    assert decode_request_input(plain) is data


def test_decode_request_input_unknown_content_type_counts_as_absent():
    metadata = {"x": MetadataTensor(name="x", datatype="BYTES", shape=[1], parameters=Parameters(content_type="str"))}
    request_input = tensor(shape=[1], datatype="BYTES", data=[b"ok"], content_type="no-such-codec")
    assert decode_request_input(request_input, metadata) == ["ok"]
    assert decode_request_input(request_input) == [b"ok"]


def test_decode_inference_request_precedence():
    settings = ModelSettings(name="m", implementation="x.Y", parameters={"content_type": "str"})
    request = InferenceRequest(inputs=[tensor(shape=[2], datatype="BYTES", data=[b"a", b"b"])])

    # model settings beat the default
    assert decode_inference_request(request, settings, default_codec=NumpyRequestCodec) == ["a", "b"]
    # the request's own content type beats model settings
    request.parameters = Parameters(content_type="np")
    assert decode_inference_request(request, settings).tolist() == [b"a", b"b"]
    # no content type and no default: nothing to decode
    untyped = InferenceRequest(inputs=[tensor(data=[1, 2, 3])])
    assert decode_inference_request(untyped) is None
    # then the default
    assert decode_inference_request(untyped, default_codec=NumpyRequestCodec).tolist() == [1, 2, 3]


def test_decode_inference_request_passes_metadata_content_types_to_pandas():
    metadata = {"name": MetadataTensor(name="name", datatype="BYTES", shape=[-1], parameters=Parameters(content_type="str"))}
    data = np.frombuffer(np.arange(2, dtype=np.int32).tobytes(), dtype=np.int32)
    request = InferenceRequest(
        parameters=Parameters(content_type="pd"),
        inputs=[
            tensor("name", shape=[2], datatype="BYTES", data=[b"a", b"b"]),
            tensor("n", shape=[2], datatype="INT32", data=data),
        ],
    )
    frame = decode_inference_request(request, metadata_inputs=metadata)
    assert frame["name"].tolist() == ["a", "b"]
    assert frame["n"].tolist() == [0, 1]
    assert request.inputs[0].parameters is None  # the caller's request is not modified


def test_encode_response_output_precedence():
    metadata = {"y": MetadataTensor(name="y", datatype="BYTES", shape=[-1], parameters=Parameters(content_type="base64"))}
    wanted = RequestOutput(name="y", parameters=Parameters(content_type="str"))

    assert encode_response_output(["a"], wanted, metadata).parameters.content_type == "str"
    plain = RequestOutput(name="y")
    out = encode_response_output([b"a"], plain, metadata)
    assert out.parameters.content_type == "base64"
    assert out.data == [b"YQ=="]
    # by payload, before the default
    out = encode_response_output(np.ones(2), plain, default_codec=StringCodec)
    assert out.parameters.content_type == "np"
    # nothing recognises the payload and there is no default
    assert encode_response_output({"a": 1}, plain) is None

    # then the default
    class DictCodec(InputCodec):
        ContentType = "dict"

        @classmethod
        def encode_output(cls, name, payload, **kwargs):
            return StringCodec.encode_output(name, sorted(payload))

    assert encode_response_output({"b": 1, "a": 2}, plain, default_codec=DictCodec).data == [b"a", b"b"]


def test_encode_inference_response():
    settings = ModelSettings(name="m", implementation="x.Y", parameters={"version": "v1"})
    response = encode_inference_response(np.array([1.5]), settings)
    assert isinstance(response, InferenceResponse)
    assert (response.model_name, response.model_version) == ("m", "v1")
    assert response.outputs[0].data.tolist() == [1.5]

    frame_response = encode_inference_response(pd.DataFrame({"a": ["x"]}))
    assert frame_response.parameters.content_type == "pd"
    assert frame_response.model_name == ""

    assert encode_inference_response(object()) is None
    assert encode_inference_response(np.zeros(1), default_codec=StringRequestCodec).parameters.content_type == "np"
