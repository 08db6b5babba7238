"""gateway.MLModel and decode_args against MLServer 1.7's, in-process (the served runtimes are in
tests/test_mlserver_examples.py)."""

import asyncio
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd
import pytest

import gateway
from gateway import MLModel
from gateway.codecs import (
    CodecError,
    NumpyCodec,
    NumpyRequestCodec,
    StringCodec,
    StringRequestCodec,
    decode_args,
    get_decoded,
    has_decoded,
)
from gateway.codecs.errors import CodecNotFound, InputsNotFound, OutputNotFound
from gateway.settings import ModelSettings
from gateway.types import InferenceRequest, InferenceResponse, MetadataTensor, Parameters, RequestInput, RequestOutput

SETTINGS = {
    "name": "m",
    "implementation": "x.Y",
    "parameters": {"version": "v1"},
    "inputs": [{"name": "t", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "str"}}],
    "outputs": [{"name": "o", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "base64"}}],
}


@pytest.fixture
def model():
    return MLModel(ModelSettings(**SETTINGS))


def text(name, *items, content_type=None):
    parameters = Parameters(content_type=content_type) if content_type else None
    return RequestInput(name=name, shape=[len(items)], datatype="BYTES", data=list(items), parameters=parameters)


def ints(name, *items):
    return RequestInput(name=name, shape=[len(items)], datatype="INT32", data=list(items))


def run(coroutine):
    return asyncio.run(coroutine)


def test_decode_by_content_type_metadata_then_default(model):
    assert model.decode(text("t", b"hi")) == ["hi"]  # the metadata's "str"
    assert model.decode(text("t", "aGk=", content_type="base64")) == [b"hi"]  # the input's own
    # an unknown content type on the input shadows the metadata's; no default: the data as it is
    unknown = text("t", b"hi", content_type="nope")
    assert model.decode(unknown) is unknown.data
    undeclared = ints("x", 1, 2)
    assert model.decode(undeclared) is undeclared.data  # MLServer returns the TensorData
    assert model.decode(undeclared, default_codec=NumpyCodec).tolist() == [1, 2]
    assert not has_decoded(undeclared)  # a default codec's result is not cached (as in MLServer)


def test_decode_keeps_what_it_decoded(model):
    request_input = text("t", b"hi")
    decoded = model.decode(request_input)
    assert has_decoded(request_input) and get_decoded(request_input) is decoded
    assert model.decode(request_input, default_codec=NumpyCodec) == ["hi"]  # the content type beats the default


def test_decode_request(model):
    request = InferenceRequest(inputs=[ints("x", 1)])
    assert model.decode_request(request) is request  # MLServer returns the request itself
    assert model.decode_request(request, default_codec=NumpyRequestCodec).tolist() == [1]
    frame = model.decode_request(InferenceRequest(parameters=Parameters(content_type="pd"), inputs=[text("t", b"a", b"b"), ints("n", 1, 2)]))
    assert frame.to_dict("list") == {"t": ["a", "b"], "n": [1, 2]}  # "t" by its metadata's "str"


def test_decode_request_by_the_models_content_type():
    model = MLModel(ModelSettings(name="m", implementation="x.Y", parameters={"content_type": "str"}))
    assert model.decode_request(InferenceRequest(inputs=[text("any", b"q")])) == ["q"]


def test_encode(model):
    assert model.encode([b"x"], RequestOutput(name="o")).data.root == [b"eA=="]  # the metadata's "base64"
    assert model.encode(["a"], RequestOutput(name="y", parameters=Parameters(content_type="str"))).parameters.content_type == "str"
    assert model.encode(np.array([1, 2]), RequestOutput(name="y")).shape == [2, 1]  # by payload
    assert model.encode([3], RequestOutput(name="y"), default_codec=NumpyCodec).data.root == [3]
    with pytest.raises(CodecNotFound, match="^Codec not found for output field with name 'y'$") as caught:
        model.encode({"a": 1}, RequestOutput(name="y"))
    assert caught.value.http_status == 500  # the runtime's payload, not the request, is at fault


def test_encode_response(model):
    response = model.encode_response(np.array([[1.5]]))
    assert (response.model_name, response.model_version, response.outputs[0].name) == ("m", "v1", "output-1")
    assert model.encode_response(pd.DataFrame({"a": [1]})).parameters.content_type == "pd"
    assert model.encode_response(("a", "b"), default_codec=StringRequestCodec).outputs[0].data.root == [b"a", b"b"]
    with pytest.raises(CodecNotFound, match="^Codec not found for output response with type <class 'dict'>$"):
        model.encode_response({"a": 1})


def test_metadata_and_declared_tensors(model):
    assert run(model.metadata()).model_dump() == {
        "name": "m",
        "versions": [],
        "platform": "",
        "inputs": [{"name": "t", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "str"}}],
        "outputs": [{"name": "o", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "base64"}}],
        "parameters": {},  # MLServer adds the model's content type when model-settings.json has parameters
    }
    assert [t.name for t in model.inputs] == ["t"] and [t.name for t in model.outputs] == ["o"]
    # load() may declare them; decode follows
    model.inputs = [MetadataTensor(name="b", datatype="BYTES", shape=[-1], parameters=Parameters(content_type="base64"))]
    assert model.decode(text("b", "aGk=")) == [b"hi"]
    no_longer_declared = text("t", b"hi")
    assert model.decode(no_longer_declared) is no_longer_declared.data
    assert (model.name, model.version, model.settings.name) == ("m", "v1", "m")


def test_predict_stream_default_answers_the_first_request_with_predict():
    class Echo(MLModel):
        async def predict(self, payload):
            return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("x", NumpyCodec.decode_input(payload.inputs[0]))])

    async def requests():
        yield InferenceRequest(inputs=[ints("x", 1)])
        yield InferenceRequest(inputs=[ints("x", 2)])

    async def collect():
        return [response async for response in Echo(ModelSettings(name="e", implementation="x.Y")).predict_stream(requests())]

    responses = run(collect())
    assert [r.outputs[0].data.root for r in responses] == [[1]]


def test_log_and_register_are_top_level_names():
    from gateway import metrics

    assert gateway.log is metrics.log and gateway.register is metrics.register


# --- decode_args, MLServer's "simplified interface"


class Questions(MLModel):
    @decode_args
    async def predict(self, questions: List[str], context: Optional[np.ndarray] = None) -> np.ndarray:
        return np.array([len(q) for q in questions]) if context is None else context * 2


class Pair(MLModel):
    @decode_args
    async def predict(self, x: np.ndarray, frame: pd.DataFrame) -> Tuple[np.ndarray, List[str]]:
        return x + 1, [str(column) for column in frame.columns]


def predict(model_class, *inputs, settings=None):
    model = model_class(ModelSettings(**(settings or {"name": "typed", "implementation": "x.Y"})))
    return run(model.predict(InferenceRequest(inputs=list(inputs))))


def test_decode_args_decodes_by_type_hint_and_encodes_the_return():
    response = predict(Questions, text("questions", "ab", "c"))
    assert response.model_dump() == {
        "model_name": "typed",
        "outputs": [{"name": "output-0", "shape": [2, 1], "datatype": "INT64", "parameters": {"content_type": "np"}, "data": [2, 1]}],
    }
    assert predict(Questions, text("questions", "ab"), ints("context", 1, 2)).outputs[0].data.root == [2, 4]


def test_decode_args_gives_unnamed_inputs_to_a_dataframe_argument():
    response = predict(Pair, ints("x", 1), ints("c1", 1), ints("c2", 1), settings={"name": "pair", "implementation": "x.Y", "parameters": {"version": "3"}})
    assert response.model_dump() == {
        "model_name": "pair",
        "model_version": "3",
        "outputs": [
            {"name": "output-0", "shape": [1, 1], "datatype": "INT32", "parameters": {"content_type": "np"}, "data": [2]},
            {"name": "output-1", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": [b"c1", b"c2"]},
        ],
    }


def test_decode_args_errors():
    with pytest.raises(InputsNotFound, match="^Input 'other' was not found. Available inputs are 'questions', 'context'.$"):
        predict(Questions, text("questions", "a"), ints("other", 1))

    class WrongOutput(MLModel):
        @decode_args
        async def predict(self, x: np.ndarray) -> np.ndarray:
            return ["not", "an", "array"]

    with pytest.raises(OutputNotFound, match="Unexpected output value at position '0'"):
        predict(WrongOutput, ints("x", 1))
    with pytest.raises(CodecNotFound, match="^Codec not found for input field with name 'x' and type <class 'int'>$"):

        class NoCodec(MLModel):
            @decode_args
            async def predict(self, x: int) -> np.ndarray: ...


def test_codec_errors_are_client_errors():
    # MLServer's CodecError is a 400, and so is ours: the request did not decode
    with pytest.raises(CodecError) as caught:
        StringCodec.decode_input(RequestInput(name="x", shape=[1], datatype="INT8", data=[1]))
    assert (caught.value.http_status, caught.value.grpc_code) == (400, "INVALID_ARGUMENT")
