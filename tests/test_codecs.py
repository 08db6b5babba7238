"""gateway.codecs against MLServer 1.7's codecs, value by value.

Expected values are written out by hand from MLServer's documentation
(docs/user-guide/content-type.md) and the behaviour of its code; where we
deliberately differ, the test says so (docs/MLSERVER.md lists every difference).
Inputs come in both forms a codec meets: lists (a client, or a request built in
Python) and read-only numpy arrays (what a runtime holds inside a worker).
"""

import base64
import datetime
import subprocess
import sys
from typing import List

import numpy as np
import pandas as pd
import pytest

from gateway.codecs import (
    Base64Codec,
    CodecError,
    DatetimeCodec,
    DecodedParameterName,
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
    get_decoded,
    get_decoded_or_raw,
    has_decoded,
    register_input_codec,
)
from gateway.codecs import base as codecs_base
from gateway.codecs.base import (
    find_input_codec,
    find_input_codec_by_payload,
    find_request_codec,
    find_request_codec_by_payload,
    find_request_codec_by_type_hint,
)
from gateway.codecs.json import decode_json_input_or_output, encode_to_json, encode_to_json_bytes
from gateway.codecs.numpy import to_datatype
from gateway.codecs.utils import inject_batch_dimension
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
from tests.conftest import slots


def tensor(name="x", shape=(3,), datatype="FP32", data=None, content_type=None):
    parameters = Parameters(content_type=content_type) if content_type else None
    return RequestInput(name=name, shape=list(shape), datatype=datatype, data=data, parameters=parameters)


def worker_input(name, datatype, array, content_type=None):
    """A RequestInput as a worker builds it: data is a read-only array, no validation."""
    parameters = Parameters(content_type=content_type) if content_type else None
    array.flags.writeable = False
    return RequestInput.model_construct(name=name, shape=list(array.shape), datatype=Datatype(datatype), parameters=parameters, data=array)


def object_array(*items):
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


def np_output(name, shape, datatype, data):
    return ResponseOutput(name=name, shape=shape, datatype=datatype, data=data, parameters=Parameters(content_type="np"))


# --- NumpyCodec: encoding


@pytest.mark.parametrize(
    "payload, expected",
    [
        (np.array([1, 2, 3]), np_output("foo", [3, 1], "INT64", [1, 2, 3])),
        (np.array([[1, 2], [3, 4]]), np_output("foo", [2, 2], "INT64", [1, 2, 3, 4])),
        (np.array([[1, 2], [3, 4]], dtype=np.int32), np_output("foo", [2, 2], "INT32", [1, 2, 3, 4])),
        (np.array([1.0, 2.0]), np_output("foo", [2, 1], "FP64", [1, 2])),
        (np.array([0.1], dtype=np.float32), np_output("foo", [1, 1], "FP32", [0.10000000149011612])),
        (np.array([2.3, 3.4, np.nan]), np_output("foo", [3, 1], "FP64", [2.3, 3.4, None])),
        (np.array([[np.nan, 1]], dtype=np.float16), np_output("foo", [1, 2], "FP16", [None, 1.0])),
        (np.array([True, False]), np_output("foo", [2, 1], "BOOL", [True, False])),
        (np.array([2**64 - 1], dtype=np.uint64), np_output("foo", [1, 1], "UINT64", [18446744073709551615])),
        (np.array(5.0), np_output("foo", [1], "FP64", [5.0])),
        (np.array(["foo", "bär"], dtype=str), np_output("foo", [2, 1], "BYTES", [b"foo", "bär".encode()])),
        (np.array([None, "bar"]), np_output("foo", [2, 1], "BYTES", [None, "bar"])),
        # deliberate difference: MLServer packs an "S" array into one element, b"\x01\x02"
        (np.array([[b"\x01"], [b"\x02"]], dtype=bytes), np_output("foo", [2, 1], "BYTES", [b"\x01", b"\x02"])),
    ],
)
def test_numpy_encode_output_equals_mlserver(payload, expected):
    output = NumpyCodec.encode_output(name="foo", payload=payload)
    assert output == expected
    assert output.model_dump() == expected.model_dump()
    assert output.data.root == expected.data.root
    assert NumpyCodec.encode_input(name="foo", payload=payload) == RequestInput(**expected.model_dump())


@pytest.mark.parametrize("name", ["y", np.str_("y")])  # np.str_: validation makes it a str
@pytest.mark.parametrize("payload", [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True]), np.array(5.0), np.zeros((0, 3)), np.array(["a"])])
def test_numpy_encode_output_is_the_output_validation_builds(payload, name):
    # encode_output skips validation where it would change nothing: the result is the same, slot by slot
    output = NumpyCodec.encode_output(name, payload)
    validated = ResponseOutput(name=name, shape=output.shape, datatype=output.datatype, parameters=Parameters(content_type="np"), data=output.data)
    assert slots(output) == slots(validated)


def test_numpy_encode_output_defers_the_list_of_a_numeric_array():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    output = NumpyCodec.encode_output("y", array)
    # what the worker sends: the array itself, no list and no copy (deliberate: MLServer's list is a
    # snapshot, so a runtime that changes the array after encoding it sends the change here)
    assert output.data.deferred_array() is array
    assert list(output.data) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # once read, the list is the data: a change to it is what gets sent
    assert output.data.deferred_array() is None
    output.data.root[0] = -1.0
    assert output.data[0] == -1.0 and len(output.data) == 6


def test_numpy_decode_output_of_a_1d_encode_is_a_column():
    # MLServer: decode(encode(x)) != x for 1-D x, because [N] is sent as [N, 1]
    decoded = NumpyCodec.decode_output(NumpyCodec.encode_output("foo", np.array([1, 2, 3])))
    assert decoded.tolist() == [[1], [2], [3]] and decoded.dtype == np.int64


@pytest.mark.parametrize(
    "dtype, datatype",
    [
        (np.bool_, "BOOL"),
        (np.uint8, "UINT8"),
        (np.uint16, "UINT16"),
        (np.uint32, "UINT32"),
        (np.uint64, "UINT64"),
        (np.int8, "INT8"),
        (np.int16, "INT16"),
        (np.int32, "INT32"),
        (np.int64, "INT64"),
        (np.float16, "FP16"),
        (np.float32, "FP32"),
        (np.float64, "FP64"),
        (np.byte, "INT8"),
        (bytes, "BYTES"),
        (str, "BYTES"),
        (object, "BYTES"),
        (">f4", "FP32"),
    ],
)
def test_to_datatype(dtype, datatype):
    assert to_datatype(np.dtype(dtype)) == datatype


def test_to_datatype_refuses_what_v2_cannot_carry():
    with pytest.raises(TypeError, match="numpy dtype complex128 has no V2 datatype"):
        NumpyCodec.encode_output("y", np.array([1j]))


# --- NumpyCodec: decoding


@pytest.mark.parametrize(
    "request_input, expected",
    [
        (tensor(shape=[3], data=[1, 2, 3], datatype="INT32"), np.array([1, 2, 3], dtype=np.int32)),
        (tensor(shape=[2, 2], data=[1, 2, 3, 4], datatype="INT32"), np.array([[1, 2], [3, 4]], dtype=np.int32)),
        (tensor(shape=[2, 2], data=[[1, 2], [3, 4]], datatype="INT32"), np.array([[1, 2], [3, 4]], dtype=np.int32)),
        (tensor(shape=[2], data=[1, 2], datatype="FP32"), np.array([1.0, 2.0], dtype=np.float32)),
        # MLServer's documented NaN support: null in FP data is NaN
        (tensor(shape=[3], data=[1, 2, None], datatype="FP16"), np.array([1, 2, np.nan], dtype=np.float16)),
        (tensor(shape=[2, 2], data=[1.2, 2.3, None, 4.5], datatype="FP64"), np.array([[1.2, 2.3], [np.nan, 4.5]])),
        (tensor(shape=[1], data=7, datatype="INT64"), np.array([7])),
        # JSON strings decode to a str array, as in MLServer
        (tensor(shape=[2], data=["foo", "bar"], datatype="BYTES"), np.array(["foo", "bar"], dtype=str)),
    ],
)
def test_numpy_decode_input_equals_mlserver(request_input, expected):
    decoded = NumpyCodec.decode_input(request_input)
    np.testing.assert_array_equal(decoded, expected)
    assert decoded.dtype == expected.dtype


def test_numpy_decodes_bytes_to_an_object_array():
    # deliberate difference: MLServer gives a fixed-width "S" array (equal values), which needs every
    # element to be shape[-1] bytes long; an object array holds any lengths
    decoded = NumpyCodec.decode_input(tensor(shape=[2, 1], data=[b"\x01", b"\x02"], datatype="BYTES"))
    assert decoded.dtype == object and decoded.tolist() == [[b"\x01"], [b"\x02"]]
    np.testing.assert_array_equal(decoded, np.array([[b"\x01"], [b"\x02"]], dtype=bytes))
    mixed = NumpyCodec.decode_input(tensor(shape=[3], data=[b"ab", "é", None], datatype="BYTES"))
    assert mixed.tolist() == [b"ab", "é".encode(), None]


def test_numpy_decodes_a_worker_view_without_copy():
    view = np.frombuffer(np.arange(12, dtype="<f4").tobytes(), dtype="<f4").reshape(3, 4)
    decoded = NumpyCodec.decode_input(worker_input("x", "FP32", view))
    assert np.shares_memory(decoded, view) and decoded.shape == (3, 4) and decoded[2, 3] == 11.0
    texts = object_array(b"a", b"bc", b"\xff").reshape(3, 1)
    decoded = NumpyCodec.decode_input(worker_input("t", "BYTES", texts))
    assert np.shares_memory(decoded, texts) and decoded.ravel().tolist() == [b"a", b"bc", b"\xff"]


def test_numpy_decodes_its_own_encoding_from_the_array():
    array = np.arange(4, dtype=np.int16)
    request_input = NumpyCodec.encode_input("z", array)
    decoded = NumpyCodec.decode_input(request_input)
    assert decoded.tolist() == [[0], [1], [2], [3]] and decoded.dtype == np.int16
    assert request_input.data.deferred_array() is not None  # no list was made on the way


@pytest.mark.parametrize("data", [[1, 2], np.arange(2, dtype=np.float32), [[1, 2], [3, 4]]])
def test_numpy_data_that_does_not_fill_the_shape_is_a_codec_error(data):
    # MLServer fails too (numpy's reshape ValueError); ours names the input
    with pytest.raises(CodecError, match=r"^There was an error encoding / decoding the payload: input 'x'"):
        NumpyCodec.decode_input(tensor(shape=[3], datatype="FP32", data=data))


@pytest.mark.parametrize(
    "datatype, data, message",
    [
        ("INT32", [1.5, 2.0], "must be integers"),  # deliberate: MLServer truncates to 1
        ("UINT8", [300, 1], "out of range"),  # deliberate: MLServer wraps to 44
        ("FP32", ["a", "b"], "must be numbers"),
        ("INT32", [1, None], "must be integers"),
    ],
)
def test_numpy_refuses_values_the_datatype_cannot_hold(datatype, data, message):
    with pytest.raises(CodecError, match=message):
        NumpyCodec.decode_input(tensor(shape=[2], datatype=datatype, data=data))


def test_numpy_errors_name_the_output():
    with pytest.raises(CodecError, match="output 'y'"):
        NumpyCodec.decode_output(ResponseOutput(name="y", shape=[2], datatype="INT8", data=[1]))


# --- StringCodec


def test_string_encode_output_equals_mlserver():
    assert StringCodec.encode_output("s", ["a", "é"]) == ResponseOutput(
        name="s", shape=[2, 1], datatype="BYTES", data=[b"a", "é".encode()], parameters=Parameters(content_type="str")
    )
    # the docs' JSON-ready form
    assert StringCodec.encode_input("foo", ["bar", "bar2"], use_bytes=False).model_dump() == {
        "name": "foo",
        "shape": [2, 1],
        "datatype": "BYTES",
        "parameters": {"content_type": "str"},
        "data": ["bar", "bar2"],
    }


def test_string_decodes_as_mlserver():
    # the docs' content-type example: one string, whatever the shape says
    assert StringCodec.decode_input(tensor(shape=[11], datatype="BYTES", data="hello world 😁")) == ["hello world 😁"]
    assert StringCodec.decode_input(tensor(shape=[2], datatype="BYTES", data=["a", "é".encode()])) == ["a", "é"]
    assert StringCodec.decode_input(tensor(shape=[2], datatype="BYTES", data=[None, "x"])) == [None, "x"]
    # nested data is flattened (MLServer would give "" for each nested list)
    assert StringCodec.decode_input(tensor(shape=[2, 1], datatype="BYTES", data=[["a"], ["b"]])) == ["a", "b"]
    assert StringCodec.decode_input(worker_input("s", "BYTES", object_array("hé".encode(), b"").reshape(2, 1))) == ["hé", ""]


def test_string_errors_are_codec_errors():
    # MLServer raises UnicodeDecodeError (a 500); a client's bad bytes are a 400 here
    with pytest.raises(CodecError, match="input 'x': element 0 is not a UTF-8 string"):
        StringCodec.decode_input(worker_input("x", "BYTES", object_array(b"\xff\xfe")))
    # MLServer gives "" for each number; a tensor of numbers is not text
    with pytest.raises(CodecError, match="content type 'str' needs datatype BYTES, got INT32"):
        StringCodec.decode_input(tensor(shape=[1], datatype="INT32", data=[1]))
    with pytest.raises(TypeError, match="StringCodec encodes a list of str"):
        StringCodec.encode_output("s", [1, 2])


def test_string_request_codec_equals_mlserver():
    request = StringRequestCodec.encode_request(["bar", "bar2"], use_bytes=False)
    assert request.model_dump() == {
        "parameters": {"content_type": "str"},
        "inputs": [{"name": "input-1", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": ["bar", "bar2"]}],
    }
    assert StringRequestCodec.decode_request(request) == ["bar", "bar2"]
    response = StringRequestCodec.encode_response("m", ["z"], "v1")
    assert response.model_dump() == {
        "model_name": "m",
        "model_version": "v1",
        "parameters": {"content_type": "str"},
        "outputs": [{"name": "output-1", "shape": [1, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": [b"z"]}],
    }
    assert StringRequestCodec.decode_response(response) == ["z"]


# --- Base64Codec and DatetimeCodec


def test_base64_equals_the_docs_example():
    # docs: b"Python is fun" travels as "UHl0aG9uIGlzIGZ1bg=="
    assert Base64Codec.encode_input("foo", [b"Python is fun"], use_bytes=False).model_dump() == {
        "name": "foo",
        "shape": [1, 1],
        "datatype": "BYTES",
        "parameters": {"content_type": "base64"},
        "data": ["UHl0aG9uIGlzIGZ1bg=="],
    }
    assert Base64Codec.encode_output("foo", [b"Python is fun"]).data.root == [b"UHl0aG9uIGlzIGZ1bg=="]
    assert Base64Codec.encode_output("foo", ["abc"]).data.root == [b"YWJj"]  # str is taken as ASCII
    decoded = Base64Codec.decode_input(tensor(shape=[1], datatype="BYTES", data=["UHl0aG9uIGlzIGZ1bg=="], content_type="base64"))
    assert decoded == [b"Python is fun"]


def test_base64_decodes_what_mlserver_accepts():
    text = base64.b64encode(b"\x00abc")
    assert Base64Codec.decode_input(worker_input("b", "BYTES", object_array(text))) == [b"\x00abc"]
    assert Base64Codec.decode_input(tensor(shape=[1], datatype="BYTES", data=text)) == [b"\x00abc"]
    # not base64: taken as the raw bytes themselves, as MLServer does
    assert Base64Codec.decode_input(tensor(shape=[2], datatype="BYTES", data=["aGk=", "not base64!"])) == [b"hi", b"not base64!"]
    with pytest.raises(CodecError, match="element 0 is not base64 text"):
        Base64Codec.decode_input(tensor(shape=[1], datatype="BYTES", data=["é"]))


def test_datetime_equals_the_docs_example():
    moment = datetime.datetime(2022, 1, 11, 11, 0, 0)
    assert DatetimeCodec.encode_input("foo", [moment], use_bytes=False).model_dump() == {
        "name": "foo",
        "shape": [1, 1],
        "datatype": "BYTES",
        "parameters": {"content_type": "datetime"},
        "data": ["2022-01-11T11:00:00"],
    }
    assert DatetimeCodec.encode_output("foo", [moment, "2021-02-03"]).data.root == [b"2022-01-11T11:00:00", b"2021-02-03"]
    request_input = tensor(shape=[1], datatype="BYTES", data=["2022-01-11T11:00:00"], content_type="datetime")
    assert DatetimeCodec.decode_input(request_input) == [moment]
    assert DatetimeCodec.decode_input(worker_input("d", "BYTES", object_array(b"2022-01-11T11:00:00"))) == [moment]
    with pytest.raises(CodecError, match="element 0 is not an ISO 8601 date"):
        DatetimeCodec.decode_input(tensor(shape=[1], datatype="BYTES", data=["yesterday"]))


# --- JSON helpers


def test_json_helpers():
    assert encode_to_json({"a": np.array([1, 2]), "b": np.float32(1.5), "é": "ü"}) == '{"a":[1,2],"b":1.5,"é":"ü"}'.encode()
    assert encode_to_json([1, None], use_bytes=False) == "[1,null]"
    assert encode_to_json_bytes({"a": b"x", "b": [1]}) == b'{"a":"x","b":[1]}'
    request_input = tensor(shape=[2], datatype="BYTES", data=['{"a":1}', b"[1,2]"])
    assert decode_json_input_or_output(request_input) == [{"a": 1}, [1, 2]]


# --- the registry


def test_registry_order_and_lookups_equal_mlserver():
    assert [c.ContentType for c in codecs_base._codec_registry._input_codecs.values()] == ["str", "np", "base64", "datetime"]
    assert [c.ContentType for c in codecs_base._codec_registry._request_codecs.values()] == ["str", "np", "pd"]
    assert find_input_codec("np") is NumpyCodec and find_input_codec("datetime") is DatetimeCodec
    assert find_input_codec("nope") is None and find_input_codec() is None
    assert find_request_codec("pd") is PandasCodec and find_request_codec("base64") is None
    payloads = [np.zeros(2), ["a"], [b"a"], [datetime.datetime.now()], 3.5, []]
    assert [getattr(find_input_codec_by_payload(p), "ContentType", None) for p in payloads] == ["np", "str", "base64", "datetime", None, "str"]
    payloads = [np.zeros(2), ["a"], pd.DataFrame({"a": [1]}), {"a": 1}]
    assert [getattr(find_request_codec_by_payload(p), "ContentType", None) for p in payloads] == ["np", "str", "pd", None]
    # by type hint, as decode_args finds codecs
    assert find_input_codec(type_hint=np.ndarray) is NumpyCodec
    assert find_input_codec(type_hint=List[str]) is StringCodec
    assert find_input_codec(type_hint=List[bytes]) is Base64Codec
    assert find_request_codec_by_type_hint(pd.DataFrame) is PandasCodec
    assert find_input_codec(type_hint=int) is None
    # MLServer raises here (it tests the array's truth value): ours finds the codec
    assert find_input_codec(payload=np.array([1, 2])) is NumpyCodec


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register test codecs into a copy, so that they do not outlive the test."""
    registry = codecs_base._codec_registry
    monkeypatch.setattr(registry, "_input_codecs", dict(registry._input_codecs))
    monkeypatch.setattr(registry, "_request_codecs", dict(registry._request_codecs))


def test_register_input_codec_decorator(scratch_registry):
    @register_input_codec
    class UpperCodec(InputCodec):
        ContentType = "test-upper"

        @classmethod
        def decode_input(cls, request_input):
            return [item.upper() for item in StringCodec.decode_input(request_input)]

    assert find_input_codec("test-upper") is UpperCodec
    request_input = tensor(shape=[1], datatype="BYTES", data=["ab"], content_type="test-upper")
    assert decode_request_input(request_input) == ["AB"]
    assert find_input_codec("test-upper") not in codecs_base._codec_registry._request_codecs.values()


def test_deprecated_method_names_still_work(caplog):
    with caplog.at_level("WARNING", logger="gateway.codecs"):
        assert NumpyCodec.encode("y", np.array([1])) == NumpyCodec.encode_output("y", np.array([1]))
        assert NumpyCodec.decode(tensor(shape=[1], datatype="INT8", data=[3])).tolist() == [3]
        assert NumpyRequestCodec.decode(NumpyRequestCodec.encode_request(np.array([[4]]))).tolist() == [[4]]
    assert [r.getMessage() for r in caplog.records] == [
        "DEPRECATED! The encode() method is now deprecated. Use encode_output() instead.",
        "DEPRECATED! The decode() method is now deprecated. Use decode_input() instead.",
        "DEPRECATED! The decode() method is now deprecated. Use decode_request() instead.",
    ]


# --- NumpyRequestCodec and the single-input rule


def test_numpy_request_codec_equals_mlserver():
    request = NumpyRequestCodec.encode_request(np.array([[1, 2], [3, 4]]))
    assert request.model_dump() == {
        "parameters": {"content_type": "np"},
        "inputs": [{"name": "input-1", "shape": [2, 2], "datatype": "INT64", "parameters": {"content_type": "np"}, "data": [1, 2, 3, 4]}],
    }
    assert NumpyRequestCodec.decode_request(request).tolist() == [[1, 2], [3, 4]]
    assert has_decoded(request.inputs[0])  # cached on the input, as MLServer does
    response = NumpyRequestCodec.encode_response("m", np.array([1.5]), "2")
    assert (response.model_name, response.model_version, response.outputs[0].name) == ("m", "2", "output-1")
    assert NumpyRequestCodec.decode_response(response).tolist() == [[1.5]]


def test_single_input_request_codec_refuses_several_inputs():
    request = InferenceRequest(inputs=[tensor("a", data=[1, 2, 3]), tensor("b", data=[1, 2, 3])])
    with pytest.raises(CodecError, match=r"The 'np' codec only supports a single input tensor \(2 were received\)"):
        NumpyRequestCodec.decode_request(request)


# --- PandasCodec


FIRST_NAME_AGE = {
    "parameters": {"content_type": "pd"},
    "inputs": [
        {"name": "First Name", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": ["Joanne", "Michael"]},
        {"name": "Age", "shape": [2, 1], "datatype": "INT64", "data": [34, 22]},
    ],
}


def test_pandas_encode_request_equals_the_docs_example():
    frame = pd.DataFrame({"First Name": ["Joanne", "Michael"], "Age": [34, 22]})
    assert PandasCodec.encode_request(frame, use_bytes=False).model_dump() == FIRST_NAME_AGE
    encoded = PandasCodec.encode_request(frame)
    assert encoded.inputs[0].data.root == [b"Joanne", b"Michael"]
    response = PandasCodec.encode_response("m", frame, "1")
    assert (response.model_name, response.model_version, response.parameters.content_type) == ("m", "1", "pd")
    assert [o.name for o in response.outputs] == ["First Name", "Age"]


def test_pandas_encodes_each_kind_of_column_as_mlserver():
    frame = pd.DataFrame(
        {
            "ints": np.array([1, 2], dtype=np.int32),
            "floats": [0.5, np.nan],
            "flags": [True, False],
            "blobs": [b"p", b"q"],
            "mixed": [1, "z"],
            "nested": [{"k": 1}, [1, 2]],
            "gaps": ["u", None],  # MLServer raises TypeError here (np.isnan of a str)
            "nullable": pd.array([1, 2], dtype="Int64"),  # MLServer: KeyError
        }
    )
    dumped = {i["name"]: i for i in PandasCodec.encode_request(frame).model_dump()["inputs"]}
    assert dumped["ints"] == {"name": "ints", "shape": [2, 1], "datatype": "INT32", "data": [1, 2]}
    assert dumped["floats"] == {"name": "floats", "shape": [2, 1], "datatype": "FP64", "data": [0.5, None]}
    assert dumped["flags"] == {"name": "flags", "shape": [2, 1], "datatype": "BOOL", "data": [True, False]}
    assert dumped["blobs"] == {"name": "blobs", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": [b"p", b"q"]}
    assert dumped["mixed"] == {"name": "mixed", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "pd_json"}, "data": [b"1", b'"z"']}
    assert dumped["nested"]["data"] == [b'{"k":1}', b"[1,2]"]
    assert dumped["gaps"] == {"name": "gaps", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "pd_json"}, "data": [b'"u"', b"null"]}
    assert dumped["nullable"] == {"name": "nullable", "shape": [2, 1], "datatype": "INT64", "data": [1, 2]}


def test_pandas_refuses_missing_values_an_integer_column_cannot_hold():
    with pytest.raises(TypeError, match="column 'n' of dtype Int64: it has missing values, which INT64 cannot hold"):
        PandasCodec.encode_request(pd.DataFrame({"n": pd.array([1, None], dtype="Int64")}))


def test_pandas_decode_request_alone_and_through_the_content_types():
    request = PandasCodec.encode_request(pd.DataFrame({"a": [1, 2], "f": [0.5, np.nan], "s": ["x", "y"], "m": [1, "z"]}))
    # decode_request alone leaves a BYTES column as its raw data, as MLServer does ...
    frame = PandasCodec.decode_request(request)
    assert frame.to_dict("list") == {"a": [1, 2], "f": [0.5, pytest.approx(np.nan, nan_ok=True)], "s": [b"x", b"y"], "m": [1, "z"]}
    assert frame["a"].dtype == np.int64 and frame["f"].dtype == np.float64
    # ... decode_inference_request first decodes each input by its own content type ("str")
    frame = decode_inference_request(request)
    assert frame["s"].tolist() == ["x", "y"] and has_decoded(request)


def test_pandas_decodes_the_docs_request_in_a_worker():
    request = InferenceRequest.model_construct(
        parameters=Parameters(content_type="pd"),
        inputs=[
            worker_input("First Name", "BYTES", object_array(b"Joanne", b"Michael"), content_type="str"),
            worker_input("Age", "INT32", np.array([34, 22], dtype=np.int32)),
            worker_input("wide", "FP32", np.arange(4, dtype=np.float32).reshape(2, 2)),
        ],
    )
    frame = decode_inference_request(request)
    assert frame["First Name"].tolist() == ["Joanne", "Michael"]
    assert frame["Age"].tolist() == [34, 22] and frame["Age"].dtype == np.int32
    # a [N, 2] tensor gives each row its own array (MLServer cannot decode it)
    assert [row.tolist() for row in frame["wide"]] == [[0.0, 1.0], [2.0, 3.0]]


def test_pandas_unequal_columns_are_a_codec_error():
    # deliberate: MLServer aligns the columns, filling the short one with NaN
    request = InferenceRequest(inputs=[tensor("a", shape=[2], data=[1, 2]), tensor("b", shape=[3], data=[1, 2, 3])])
    with pytest.raises(CodecError, match=r"columns of different lengths: 'a' has 2 rows, 'b' has 3"):
        PandasCodec.decode_request(request)


def test_codecs_import_without_pandas():
    script = """
import sys
sys.modules["pandas"] = None  # makes `import pandas` raise ImportError
import numpy as np
from gateway.codecs import PandasCodec
from gateway.codecs.base import find_request_codec
from gateway.errors import NotSupported
from gateway.types import InferenceRequest
assert find_request_codec("pd") is PandasCodec
assert find_request_codec(payload=np.zeros(1)).ContentType == "np"
assert find_request_codec(type_hint=int) is None
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


# --- content-type driven helpers and the decoded-payload cache


def test_decode_request_input_takes_the_inputs_content_type_then_its_metadata():
    metadata = {"x": MetadataTensor(name="x", datatype="BYTES", shape=[-1], parameters=Parameters(content_type="str"))}
    encoded = base64.b64encode(b"hi").decode()
    own = tensor(shape=[1], datatype="BYTES", data=[encoded], content_type="base64")
    assert decode_request_input(own, metadata) == [b"hi"]
    assert get_decoded(own) == [b"hi"] and get_decoded_or_raw(own) == [b"hi"]
    plain = tensor(shape=[1], datatype="BYTES", data=[encoded])
    assert decode_request_input(plain, metadata) == [encoded]
    # no content type: nothing decoded, nothing cached
    untouched = tensor(shape=[1], datatype="BYTES", data=[encoded])
    assert decode_request_input(untouched) is None and not has_decoded(untouched)
    assert get_decoded_or_raw(untouched) is untouched.data
    # an unknown content type on the input shadows the metadata's, as in MLServer
    unknown = tensor(shape=[1], datatype="BYTES", data=[encoded], content_type="no-such-codec")
    assert decode_request_input(unknown, metadata) is None


def test_the_decoded_payload_is_kept_beside_the_parameters_and_never_dumped():
    request_input = tensor(shape=[2], datatype="INT32", data=[1, 2], content_type="np")
    decode_request_input(request_input)
    assert getattr(request_input.parameters, DecodedParameterName).tolist() == [1, 2]
    assert request_input.model_dump() == {"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"content_type": "np"}, "data": [1, 2]}


def test_decode_inference_request_returns_the_request_without_a_content_type():
    settings = ModelSettings(name="m", implementation="x.Y", parameters={"content_type": "str"})
    request = InferenceRequest(inputs=[tensor(shape=[2], datatype="BYTES", data=[b"a", b"b"])])
    assert decode_inference_request(request, settings) == ["a", "b"]  # the model's content type
    # the input keeps what it was decoded to: a second decode reuses it, as in MLServer
    request.parameters = Parameters(content_type="np")
    assert decode_inference_request(request, settings) == ["a", "b"]
    request = InferenceRequest(parameters=Parameters(content_type="np"), inputs=[tensor(shape=[2], datatype="BYTES", data=[b"a", b"b"])])
    assert decode_inference_request(request, settings).tolist() == [b"a", b"b"]  # the request's wins
    untyped = InferenceRequest(inputs=[tensor(data=[1, 2, 3], content_type="np")])
    assert decode_inference_request(untyped) is untyped
    assert get_decoded(untyped.inputs[0]).tolist() == [1.0, 2.0, 3.0]  # inputs decoded all the same
    assert get_decoded_or_raw(untyped) is untyped


def test_encode_response_output_takes_the_content_type_else_the_payload():
    metadata = {"y": MetadataTensor(name="y", datatype="BYTES", shape=[-1], parameters=Parameters(content_type="base64"))}
    assert encode_response_output(["a"], RequestOutput(name="y", parameters=Parameters(content_type="str")), metadata).parameters.content_type == "str"
    assert encode_response_output([b"a"], RequestOutput(name="y"), metadata).data.root == [b"YQ=="]
    assert encode_response_output(np.ones(2), RequestOutput(name="z")).parameters.content_type == "np"
    assert encode_response_output({"a": 1}, RequestOutput(name="z")) is None
    # a content type no codec has: nothing, not a guess by payload
    assert encode_response_output(["a"], RequestOutput(name="z", parameters=Parameters(content_type="nope"))) is None


def test_encode_inference_response():
    settings = ModelSettings(name="m", implementation="x.Y", parameters={"version": "v1"})
    response = encode_inference_response(np.array([1.5]), settings)
    assert isinstance(response, InferenceResponse)
    assert response.model_dump() == {
        "model_name": "m",
        "model_version": "v1",
        "parameters": {"content_type": "np"},
        "outputs": [{"name": "output-1", "shape": [1, 1], "datatype": "FP64", "parameters": {"content_type": "np"}, "data": [1.5]}],
    }
    assert encode_inference_response(pd.DataFrame({"a": ["x"]}), settings).parameters.content_type == "pd"
    assert encode_inference_response(object(), settings) is None


def test_inject_batch_dimension():
    assert [inject_batch_dimension(shape) for shape in ([], [3], [2, 2])] == [[1], [3, 1], [2, 2]]
