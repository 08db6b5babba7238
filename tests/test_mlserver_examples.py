"""Runtimes from MLServer's documentation, served unchanged but for `mlserver` -> `gateway` in their
imports (tests/mlserver_examples/), called with the docs' requests over requests and tritonclient."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.codecs import NumpyCodec, PandasCodec, StringCodec
from gateway.types import InferenceRequest, InferenceResponse
from tests.conftest import ROOT, SHARED_MEMORY_BYTES, assert_serves_large

MODELS = ["content-type-example", "content-type-metadata", "sum-model", "dataframe", "codec-outputs", "text-model"]


@pytest.fixture(scope="module")
def gateway(start_gateway):
    with pytest.MonkeyPatch.context() as patch:
        # as in production: the EchoRuntime's print()s must reach the log without Python's -u
        patch.delenv("PYTHONUNBUFFERED", raising=False)
        return start_gateway(ROOT / "tests" / "mlserver_examples").wait_ready(MODELS)


@pytest.fixture(scope="module")
def http(gateway):
    client = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    yield client
    client.close()


def infer(gateway, model, body):
    return requests.post(f"{gateway.url}/v2/models/{model}/infer", json=body, timeout=30)


def printed_after(gateway, heading: str) -> str:
    """What the docs' EchoRuntime printed (into the gateway's log) after the last `heading` line."""
    text = gateway.log_text()
    assert heading in text, text[-3000:]
    return text.rsplit(heading + "\n", 1)[1]


# --- the content-type example's EchoRuntime


def test_content_type_echo_decodes_by_the_inputs_content_types(gateway):
    # the docs' first request, as written there
    payload = {
        "inputs": [
            {"name": "parameters-np", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4], "parameters": {"content_type": "np"}},
            {"name": "parameters-str", "datatype": "BYTES", "shape": [1], "data": "hello world 😁", "parameters": {"content_type": "str"}},
        ]
    }
    response = infer(gateway, "content-type-example", payload)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [
        {"name": "parameters-np", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
        {"name": "parameters-str", "datatype": "BYTES", "shape": [1], "data": ["hello world 😁"]},
    ]
    # the runtime printed each input as MLServer's would: dumped as JSON, then decoded
    assert printed_after(gateway, "------ Decoded input (parameters-np) ------").startswith("[[1 2]\n [3 4]]\n")
    assert printed_after(gateway, "------ Decoded input (parameters-str) ------").startswith("['hello world 😁']\n")
    dumped = printed_after(gateway, "------ Encoded Input (parameters-str) ------").split("------")[0]
    expected = {"name": "parameters-str", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": ["hello world 😁"]}
    assert json.loads(dumped) == expected


def test_content_type_echo_with_the_docs_codec_client(gateway):
    # the docs' client code: codecs build the request, and decode the response
    parameters_np = np.array([[1, 2], [3, 4]])
    parameters_str = ["hello world 😁"]
    payload = InferenceRequest(
        inputs=[
            NumpyCodec.encode_input("parameters-np", parameters_np),
            # The `use_bytes=False` flag will ensure that the encoded payload is JSON-compatible
            StringCodec.encode_input("parameters-str", parameters_str, use_bytes=False),
        ]
    )
    response = requests.post(f"{gateway.url}/v2/models/content-type-example/infer", json=payload.model_dump(), timeout=30)
    response_payload = InferenceResponse.model_validate_json(response.text)
    assert NumpyCodec.decode_output(response_payload.outputs[0]).tolist() == [[1, 2], [3, 4]]
    assert StringCodec.decode_output(response_payload.outputs[1]) == ["hello world 😁"]


def test_content_type_echo_decodes_by_the_models_metadata(gateway, http):
    # the docs' second request (its shape [11] for one string counted characters: here [1])
    payload = {
        "inputs": [
            {"name": "metadata-np", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
            {"name": "metadata-str", "datatype": "BYTES", "shape": [1], "data": "hello world 😁"},
        ]
    }
    assert infer(gateway, "content-type-metadata", payload).status_code == 200
    assert printed_after(gateway, "------ Decoded input (metadata-np) ------").startswith("[[1 2]\n [3 4]]\n")
    assert printed_after(gateway, "------ Decoded input (metadata-str) ------").startswith("['hello world 😁']\n")
    # the same over the binary extension, from tritonclient
    numbers = httpclient.InferInput("metadata-np", [2, 2], "INT32")
    numbers.set_data_from_numpy(np.array([[5, 6], [7, 8]], dtype=np.int32))
    text = httpclient.InferInput("metadata-str", [1], "BYTES")
    text.set_data_from_numpy(np.array(["grüezi".encode()], dtype=object))
    result = http.infer("content-type-metadata", [numbers, text])
    assert result.as_numpy("metadata-np").tolist() == [[5, 6], [7, 8]]
    assert result.as_numpy("metadata-str").tolist() == ["grüezi".encode()]
    assert printed_after(gateway, "------ Decoded input (metadata-str) ------").startswith("['grüezi']\n")


# --- the custom runtime guide's decode_args runtime


def test_decode_args_runtime_over_json_and_grpc(gateway):
    body = {
        "inputs": [
            {"name": "questions", "datatype": "BYTES", "shape": [2], "data": ["what is the time", "who are you"]},
            {"name": "context", "datatype": "BYTES", "shape": [2], "data": ["the time is now", "I am me"]},
        ]
    }
    response = infer(gateway, "sum-model", body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [{"name": "output-0", "datatype": "INT64", "shape": [2, 1], "parameters": {"content_type": "np"}, "data": [3, 0]}]
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    inputs = []
    for name, values in (("questions", [b"a b c"]), ("context", [b"b c d"])):
        inputs.append(grpcclient.InferInput(name, [1], "BYTES"))
        inputs[-1].set_data_from_numpy(np.array(values, dtype=object))
    assert client.infer("sum-model", inputs).as_numpy("output-0").tolist() == [[2]]
    client.close()


def test_decode_args_runtime_refuses_bad_inputs_and_keeps_serving(gateway, http):
    not_utf8 = httpclient.InferInput("questions", [1], "BYTES")
    not_utf8.set_data_from_numpy(np.array([b"\xff\xfe"], dtype=object))
    context = httpclient.InferInput("context", [1], "BYTES")
    context.set_data_from_numpy(np.array([b"x"], dtype=object))
    with pytest.raises(InferenceServerException, match="input 'questions': element 0 is not a UTF-8 string") as caught:
        http.infer("sum-model", [not_utf8, context])
    assert caught.value.status() == "400"
    unknown = {
        "inputs": [{"name": "questions", "datatype": "BYTES", "shape": [1], "data": ["a"]}, {"name": "extra", "datatype": "INT32", "shape": [1], "data": [1]}]
    }
    response = infer(gateway, "sum-model", unknown)
    assert response.status_code == 400
    assert response.json() == {"error": "Input 'extra' was not found. Available inputs are 'questions', 'context'."}
    # then a correct request large enough to travel through shared memory (over 16 KiB a tensor)
    rows = 2000
    questions = [f"question number {i} about cats" for i in range(rows)]
    contexts = [f"cats and number {i}" for i in range(rows)]
    body = {
        "inputs": [
            {"name": "questions", "datatype": "BYTES", "shape": [rows], "data": questions},
            {"name": "context", "datatype": "BYTES", "shape": [rows], "data": contexts},
        ]
    }
    assert len("".join(questions)) > 16 * 1024
    response = infer(gateway, "sum-model", body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [3] * rows


# --- a DataFrame runtime with the content-type guide's model metadata and request


def test_dataframe_runtime_with_the_docs_request(gateway):
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": "First Name", "datatype": "BYTES", "parameters": {"content_type": "str"}, "shape": [2], "data": ["Joanne", "Michael"]},
            {"name": "Age", "datatype": "INT32", "shape": [2], "data": [34, 22]},
        ],
    }
    response = infer(gateway, "dataframe", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["parameters"] == {"content_type": "pd"}
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["Greeting"] == {
        "name": "Greeting",
        "datatype": "BYTES",
        "shape": [2, 1],
        "parameters": {"content_type": "str"},
        "data": ["Hello Joanne", "Hello Michael"],
    }
    assert outputs["Age Next Year"]["shape"] == [2, 1] and outputs["Age Next Year"]["data"] == [35, 23]
    assert outputs["Score"] == {"name": "Score", "datatype": "FP64", "shape": [2, 1], "data": [17.0, 11.0]}


def test_dataframe_runtime_with_pandas_codec_clients(gateway, http):
    # the docs' client: PandasCodec builds the request (columns [N, 1], which the model's declared
    # [-1] takes) and reads the answer
    dataframe = pd.DataFrame({"First Name": ["Joanne", "Michael"], "Age": np.array([34, 22], dtype=np.int32)})
    inference_request = PandasCodec.encode_request(dataframe, use_bytes=False)
    response = requests.post(f"{gateway.url}/v2/models/dataframe/infer", json=inference_request.model_dump(), timeout=30)
    inference_response = InferenceResponse(**response.json())
    answer = PandasCodec.decode_response(inference_response)
    assert answer.to_dict("list") == {"Greeting": ["Hello Joanne", "Hello Michael"], "Age Next Year": [35, 23], "Score": [17.0, 11.0]}
    # tritonclient, binary: the model's own content types ("pd", "str" for First Name) apply
    names = httpclient.InferInput("First Name", [2], "BYTES")
    names.set_data_from_numpy(np.array([b"Ada", b"Bo"], dtype=object))
    ages = httpclient.InferInput("Age", [2], "INT32")
    ages.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    result = http.infer("dataframe", [names, ages])
    assert result.as_numpy("Greeting").ravel().tolist() == [b"Hello Ada", b"Hello Bo"]
    assert result.as_numpy("Score").tolist() == [[0.5], [1.0]]


def test_dataframe_runtime_refuses_ragged_columns_and_keeps_serving(gateway):
    ragged = {
        "inputs": [
            {"name": "First Name", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
            {"name": "Age", "datatype": "INT32", "shape": [3], "data": [1, 2, 3]},
        ]
    }
    response = infer(gateway, "dataframe", ragged)
    assert response.status_code == 400
    assert "columns of different lengths: 'First Name' has 2 rows, 'Age' has 3" in response.json()["error"]
    response = infer(gateway, "dataframe", {"inputs": ragged["inputs"][1:]})
    assert response.status_code == 400 and response.json()["error"] == "model 'dataframe' needs input(s) ['First Name']"
    rows = 5000  # 20 KiB of INT32: through shared memory
    body = {
        "inputs": [
            {"name": "First Name", "datatype": "BYTES", "shape": [rows], "data": ["x"] * rows},
            {"name": "Age", "datatype": "INT32", "shape": [rows], "data": list(range(rows))},
        ]
    }
    response = infer(gateway, "dataframe", body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["Age Next Year"] == list(range(1, rows + 1))


# --- NumpyCodec outputs through the worker


def test_numpy_codec_outputs_reach_the_client_exactly(gateway, http):
    # the model declares x [-1, 1]; a 1-D tensor is taken as that ([N] == [N, 1], as MLServer has it)
    x = np.linspace(-1, 1, 8192, dtype=np.float32)  # 32 KiB: through shared memory
    expected = np.where(x < 0, np.nan, x * 2).astype(np.float32).reshape(-1, 1)
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    wanted = [httpclient.InferRequestedOutput("y", binary_data=True)]
    result = http.infer("codec-outputs", [tensor], outputs=wanted)
    # NaN (MLServer's None in the list) arrives as NaN; the rest bit for bit
    np.testing.assert_array_equal(result.as_numpy("y"), expected)
    # a runtime that reads and changes the encoded list gets its change sent
    edited = http.infer("codec-outputs", [tensor], outputs=wanted, parameters={"edit": True}).as_numpy("y")
    assert edited[0, 0] == 42.0
    np.testing.assert_array_equal(edited[1:], expected[1:])


def test_numpy_codec_nan_output_over_json_asks_for_binary(gateway):
    # deliberate difference: MLServer writes NaN as null; JSON has no NaN, and we never change a value
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [-1.0, 1.0]}]}
    response = infer(gateway, "codec-outputs", body)
    assert response.status_code == 400 and "NaN or infinity" in response.json()["error"]
    body["inputs"][0]["data"] = [0.5, 1.0]
    assert infer(gateway, "codec-outputs", body).json()["outputs"][0]["data"] == [1.0, 2.0]
    x = np.linspace(0, 1, SHARED_MEMORY_BYTES // 4, dtype=np.float32).reshape(-1, 1)
    assert_serves_large(gateway, "codec-outputs", {"x": x}, expect=lambda inputs: {"y": inputs["x"] * 2})


def test_unused_model_settings_keys_are_logged_not_fatal(gateway):
    # custom.md's model-settings.json names the model with "model": the folder names it here
    assert re.search(r"sum-model/model-settings.json: ignoring settings this gateway does not use: model", gateway.log_text())


# --- the streaming example's TextModel (docs/examples/streaming): one word every 0.5 s

GENERATE_REQUEST = {  # the example's generate-request.json
    "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["What is the capital of France?"], "parameters": {"content_type": "str"}}],
    "outputs": [{"name": "output"}],
}
WORDS = ["What", " is", " the", " capital", " of", " France?"]


def test_text_model_streams_server_sent_events(gateway):
    # the example reads them with httpx_sse's connect_sse / iter_sse: here by hand, as `data: <JSON>` lines
    with requests.post(f"{gateway.url}/v2/models/text-model/generate_stream", json=GENERATE_REQUEST, stream=True, timeout=30) as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = [line for line in response.iter_lines() if line]
    words = [StringCodec.decode_output(InferenceResponse.model_validate_json(line.removeprefix(b"data: ")).outputs[0]) for line in lines]
    assert words == [[word] for word in WORDS]


def test_text_model_streams_over_grpc(gateway):
    # the example's gRPC client uses MLServer's own stubs, whose stream answers ModelInferResponse: here tritonclient
    results = []
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    client.start_stream(callback=lambda result, error: results.append(error or result))
    prompt = grpcclient.InferInput("prompt", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([b"What is the capital of France?"], dtype=object))
    client.async_stream_infer("text-model", [prompt], parameters={"content_type": "str"})
    client.stop_stream()  # the model reads every request before it answers: the stream's end lets it start
    client.close()
    assert [result.as_numpy("output").ravel().tolist() for result in results] == [[word.encode()] for word in WORDS]
