"""Pydantic validation of the V2 protocol types."""

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.errors import BadRequest
from gateway.tensors import InferRequest, RequestedOutput, Tensor
from gateway.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    Parameters,
    RepositoryIndexResponse,
    RequestInput,
    State,
)
from workers.worker import to_inference_request

REQUEST = {
    "id": "r1",
    "parameters": {"content_type": "pd", "custom": {"k": [1, 2]}},
    "inputs": [
        {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1.0, 2.0], [3.0, 4.0]]},
        {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["hi"], "parameters": {"content_type": "str"}},
    ],
    "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
}


def test_request_round_trips_through_model_dump():
    request = InferenceRequest.model_validate(REQUEST)
    assert request.inputs[0].datatype is Datatype.FP32
    assert request.inputs[1].parameters.content_type == "str"
    assert request.model_dump(mode="json", exclude_none=True) == REQUEST
    assert InferenceRequest.model_validate(request.model_dump()) == request


def test_extra_parameters_are_kept():
    parameters = Parameters(content_type="np", headers={"h": "v"}, binary_data_size=12)
    assert parameters.binary_data_size == 12
    assert parameters.model_dump(exclude_none=True) == {"content_type": "np", "headers": {"h": "v"}, "binary_data_size": 12}
    assert InferenceRequest.model_validate(REQUEST).parameters.custom == {"k": [1, 2]}


@pytest.mark.parametrize("datatype", ["fp32", "FLOAT", "BF16", "", 3])
def test_unknown_datatypes_are_rejected(datatype):
    with pytest.raises(ValidationError):
        RequestInput(name="a", shape=[1], datatype=datatype, data=[1])


def test_every_v2_datatype_is_accepted():
    names = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
    assert [d.value for d in Datatype] == names
    for name in names:
        assert RequestInput(name="a", shape=[1], datatype=name).datatype == Datatype(name)


@pytest.mark.parametrize("shape", [["a"], 3, [1.5]])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(ValidationError):
        RequestInput(name="a", shape=shape, datatype="FP32")


def test_missing_required_fields_are_rejected():
    with pytest.raises(ValidationError):
        InferenceRequest.model_validate({"id": "x"})
    with pytest.raises(ValidationError):
        RequestInput.model_validate({"name": "a", "datatype": "FP32"})


def test_data_may_be_an_ndarray_kept_as_is():
    array = np.frombuffer(np.arange(4, dtype=np.float32).tobytes(), dtype=np.float32)
    request_input = RequestInput(name="a", shape=[4], datatype="FP32", data=array)
    assert request_input.data is array


def test_response_defaults_and_dump():
    response = InferenceResponse(outputs=[{"name": "y", "shape": [1], "datatype": "INT64", "data": [7]}])
    assert response.model_name == ""
    assert response.model_version is None
    dumped = response.model_dump(mode="json", exclude_none=True)
    assert dumped == {"model_name": "", "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [7]}]}
    assert InferenceResponse.model_validate(dumped) == response


def test_metadata_and_repository_types():
    metadata = MetadataModelResponse.model_validate(
        {"name": "m", "platform": "", "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1, 3]}]}
    )
    assert metadata.inputs[0].shape == [-1, 3]
    index = RepositoryIndexResponse.model_validate([{"name": "m", "state": "READY"}])
    assert index.root[0].state is State.READY
    assert index.root[0].reason == ""
    with pytest.raises(ValidationError):
        RepositoryIndexResponse.model_validate([{"name": "m", "state": "SLEEPING"}])


def test_the_worker_turns_parameters_pydantic_refuses_into_a_400():
    # the front doors refuse these first; the worker's own check is the backstop
    tensor = Tensor("x", "INT8", [1], np.zeros(1, np.int8), {"content_type": 5})
    with pytest.raises(BadRequest, match=r"^invalid parameters: content_type: Input should be a valid string$"):
        to_inference_request(InferRequest("m", None, "r", [tensor]))
    outputs = [RequestedOutput("y", {"headers": "h"})]
    with pytest.raises(BadRequest, match=r"^invalid parameters: headers: Input should be a valid dictionary$"):
        to_inference_request(InferRequest("m", None, "r", [Tensor("x", "INT8", [1], np.zeros(1, np.int8))], outputs=outputs))
