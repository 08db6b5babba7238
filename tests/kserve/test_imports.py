"""A KServe script's imports work with `kserve` replaced by `gateway.kserve`, and KServe's helpers behave as KServe's."""

import importlib

import numpy as np
import pytest

from gateway import kserve
from gateway.kserve import InferInput, InferRequest, InferResponse
from gateway.kserve.utils.utils import get_predict_input, get_predict_response, strtobool, to_headers

# the names KServe 0.21's kserve/__init__.py exports for model servers, and the submodules scripts use by attribute
TOP_LEVEL = [
    "Model",
    "PredictorConfig",
    "ModelServer",
    "InferRequest",
    "InferInput",
    "InferResponse",
    "InferOutput",
    "ModelRepository",
    "constants",
    "utils",
    "RequestedOutput",
    "InferenceVerb",
    "BaseKServeModel",
    "InferenceModel",
    "errors",
    "logging",
    "model_server",
]

# module -> names, as KServe's docs, samples and model servers import them
MODULES = {
    "gateway.kserve.model": [
        "Model",
        "BaseKServeModel",
        "InferenceModel",
        "InferenceVerb",
        "PredictorProtocol",
        "InferRequest",
        "ModelInferRequest",
        "get_latency_ms",
    ],
    "gateway.kserve.model_server": ["ModelServer", "parser", "args"],
    "gateway.kserve.errors": [
        "InferenceError",
        "InvalidInput",
        "ModelMissingError",
        "ModelNotFound",
        "ModelNotReady",
        "NoModelReady",
        "ServerNotLive",
        "ServerNotReady",
        "UnsupportedProtocol",
        "WorkersShouldBeLessThanMaxWorkersError",
    ],
    "gateway.kserve.protocol.infer_type": [
        "InferInput",
        "InferOutput",
        "InferRequest",
        "InferResponse",
        "RequestedOutput",
        "serialize_byte_tensor",
        "deserialize_bytes_tensor",
        "to_grpc_parameters",
        "to_http_parameters",
        "get_content",
    ],
    "gateway.kserve.protocol.grpc.grpc_predict_v2_pb2": ["ModelInferRequest", "ModelInferResponse", "InferParameter", "InferTensorContents"],
    "gateway.kserve.model_repository": ["ModelRepository", "MODEL_MOUNT_DIRS"],
    "gateway.kserve.predictor_config": ["PredictorConfig"],
    "gateway.kserve.logging": ["logger", "trace_logger", "configure_logging", "KSERVE_LOG_CONFIG"],
    "gateway.kserve.constants.constants": [
        "PredictorProtocol",
        "INFERENCE_CONTENT_LENGTH_HEADER",
        "GRPC_CONTENT_DATATYPE_MAPPINGS",
        "DEFAULT_HTTP_PORT",
        "DEFAULT_GRPC_PORT",
    ],
    "gateway.kserve.utils.utils": ["get_predict_input", "get_predict_response", "generate_uuid", "strtobool", "cpu_count", "is_v1", "is_v2", "to_headers"],
    "gateway.kserve.utils.numpy_codec": ["to_np_dtype", "from_np_dtype"],
    "gateway.kserve.context": ["get_predictor_config", "set_predictor_config"],
}


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_from_gateway_import_kserve_has_every_public_name(name):
    assert getattr(kserve, name) is not None


@pytest.mark.parametrize("module, names", MODULES.items(), ids=list(MODULES))
def test_kserve_module_paths(module, names):
    imported = importlib.import_module(module)
    assert [name for name in names if not hasattr(imported, name)] == []


def test_constants_and_utils_are_kserves_modules_by_attribute():
    assert kserve.constants.PredictorProtocol.GRPC_V2.value == "grpc-v2"
    assert kserve.constants.INFERENCE_CONTENT_LENGTH_HEADER == "inference-header-content-length"
    assert kserve.utils.get_predict_input is get_predict_input


def test_get_predict_input_of_v1_and_v2_payloads():
    assert get_predict_input({"instances": [[1, 2], [3, 4]]}).tolist() == [[1, 2], [3, 4]]
    assert get_predict_input({"inputs": ["a", "b"]}) == ["a", "b"]
    # records: each instance a dict of columns, or a list of row dicts
    frame = get_predict_input({"instances": [{"a": [1], "b": [2]}, {"a": [3], "b": [4]}]}, columns=["a", "b"])
    assert frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    frame = get_predict_input({"instances": [[{"a": 1, "b": 2}, {"a": 3, "b": 4}]]})
    assert frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    request = InferRequest("m", [InferInput("x", [2, 2], "FP32", [1, 2, 3, 4])])
    assert get_predict_input(request).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    text = InferRequest("m", [InferInput("t", [2], "BYTES", ["hi", "yo"])])
    assert get_predict_input(text) == ["hi", "yo"]
    frame = get_predict_input(
        InferRequest("m", [InferInput("a", [2], "INT64", [1, 2]), InferInput("b", [2], "FP64", [0.5, 1.5])], parameters={"content_type": "pd"})
    )
    assert frame.to_dict("list") == {"a": [1, 2], "b": [0.5, 1.5]}
    grpc_pd = InferRequest.from_grpc(InferRequest("m", [InferInput("a", [1], "INT64", [7])], parameters={"content_type": "pd"}).to_grpc())
    assert get_predict_input(grpc_pd).to_dict("list") == {"a": [7]}  # gRPC parameters are InferParameter messages


def test_get_predict_response_for_v1_and_v2():
    assert get_predict_response({"instances": [[1]]}, np.array([0.5, 1.5]), "m") == {"predictions": [0.5, 1.5]}
    request = InferRequest("m", [InferInput("x", [1], "FP32", [1.0])], request_id="r1", parameters={"binary_data_output": True})
    response = get_predict_response(request, np.array([[1, 2]], dtype=np.int64), "m")
    assert isinstance(response, InferResponse) and response.id == "r1"
    body, json_length = response.to_rest()
    assert body[json_length:] == np.array([1, 2], dtype=np.int64).tobytes()  # the request asked for binary outputs
    strings = get_predict_response(InferRequest("m", [], request_id="r2"), ["a", "b"], "m")
    assert strings.outputs[0].datatype == "BYTES" and strings.outputs[0].data == ["a", "b"]
    with pytest.raises(kserve.errors.InferenceError, match="no V2 datatype"):
        get_predict_response(InferRequest("m", [], request_id="r3"), np.array([1j]), "m")


def test_small_helpers():
    assert strtobool("Yes") is True and strtobool("off") is False
    with pytest.raises(ValueError):
        strtobool("maybe")

    class Metadatum:
        def __init__(self, key, value):
            self.key, self.value = key, value

    class Context:
        def invocation_metadata(self):
            return (Metadatum("x-request-id", "abc"),)

        def trailing_metadata(self):
            return (Metadatum("t", "1"),)

    assert to_headers(Context()) == {"x-request-id": "abc", "t": "1"}
    assert kserve.utils.cpu_count() >= 1
