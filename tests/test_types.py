"""The V2 protocol types: pydantic validation, and MLServer's behaviour (dumps, TensorData)."""

import copy
import json

import numpy as np
import pytest
from pydantic import ValidationError

from gateway import types as gateway_types
from gateway.errors import BadRequest
from gateway.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    Parameters,
    RepositoryIndexResponse,
    RequestInput,
    RequestOutput,
    ResponseOutput,
    State,
    TensorData,
    constructed,
)
from gateway.wire.request import RequestedOutput, Tensor, WireRequest
from tests.conftest import slots
from workers.worker import _parameters, to_inference_request

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
        datatype = RequestInput(name="a", shape=[1], datatype=name, data=[0]).datatype
        # a member is its string, as MLServer's field (which holds the enum's value) is
        assert datatype == Datatype(name) and datatype == name and f"{datatype}" == name and {name: 1}[datatype] == 1


@pytest.mark.parametrize("shape", [["a"], 3, [1.5]])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(ValidationError):
        RequestInput(name="a", shape=shape, datatype="FP32")


def test_missing_required_fields_are_rejected():
    with pytest.raises(ValidationError):
        InferenceRequest.model_validate({"id": "x"})
    with pytest.raises(ValidationError):
        RequestInput.model_validate({"name": "a", "datatype": "FP32"})


def test_data_is_tensor_data_and_keeps_an_ndarray_as_is():
    array = np.frombuffer(np.arange(4, dtype=np.float32).tobytes(), dtype=np.float32)
    request_input = RequestInput(name="a", shape=[4], datatype="FP32", data=array)
    assert isinstance(request_input.data, TensorData) and request_input.data.root is array
    # MLServer's TensorData: a list (or whatever was given), iterable and indexable
    data = RequestInput(name="a", shape=[2], datatype="INT8", data=[3, 4]).data
    assert data == TensorData(root=[3, 4]) and list(data) == [3, 4] and data[1] == 4 and len(data) == 2
    assert RequestInput(name="a", shape=[1], datatype="BYTES", data="one").data.root == "one"


class _CountedIterations(np.ndarray):
    iterations = 0  # (a failure raised here would only make the List fail, and the array be kept)

    def __iter__(self):
        type(self).iterations += 1
        return super().__iter__()


def test_an_ndarray_is_never_read_element_by_element_to_be_kept():
    """Validating an array as the List of TensorData's union first would build a Python list of it
    (11x its size, 217 ms for 16 MiB) only to keep the array."""
    array = np.arange(6, dtype=np.float32).reshape(2, 3).view(_CountedIterations)
    assert ResponseOutput(name="y", shape=[2, 3], datatype="FP32", data=array).data.root is array
    assert TensorData(array).root is array and TensorData(root=array).root is array
    assert _CountedIterations.iterations == 0


def test_data_is_required():
    with pytest.raises(ValidationError, match="data"):
        RequestInput(name="a", shape=[1], datatype="FP32")


def test_dumps_leave_out_unset_and_none_fields_as_mlserver():
    response = InferenceResponse(model_name="m", outputs=[{"name": "y", "shape": [1], "datatype": "INT64", "data": [7]}])
    assert response.model_version is None
    expected = {"model_name": "m", "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [7]}]}
    assert response.model_dump() == expected
    assert type(response.model_dump()["outputs"][0]["datatype"]) is str
    assert response.model_dump_json() == '{"model_name":"m","outputs":[{"name":"y","shape":[1],"datatype":"INT64","data":[7]}]}'
    assert InferenceResponse.model_validate(response.model_dump()) == response
    # asked for, they are there
    assert response.model_dump(exclude_none=False, exclude_unset=False)["id"] is None
    assert InferenceResponse(outputs=[]).model_dump(exclude_unset=False) == {"model_name": "", "outputs": []}


def test_deferred_tensor_data_is_the_list_it_stands_for():
    data = TensorData.deferred(np.array([1.5, np.nan]), lambda array: [None if x != x else x for x in array.tolist()])
    output = ResponseOutput(name="y", shape=[2], datatype="FP64", data=data)
    assert output.data is data and data.deferred_array() is not None
    assert output.model_dump_json() == '{"name":"y","shape":[2],"datatype":"FP64","data":[1.5,null]}'
    assert output == ResponseOutput(name="y", shape=[2], datatype="FP64", data=[1.5, None])
    assert repr(data) == "TensorData(root=[1.5, None])"
    assert data.deferred_array() is None  # read: from now on the list is the data
    copied = copy.deepcopy(ResponseOutput(name="y", shape=[1], datatype="FP64", data=TensorData.deferred(np.ones(1), list)))
    assert copied.data.deferred_array() is not None and copied.data.root == [1.0]


def test_a_worker_input_dumps_as_mlserver_holds_v2_json():
    # what a worker builds around shared memory; a runtime that logs or forwards its request
    # (json.dumps(request.dict()), requests.post(json=request.model_dump())) gets V2 JSON values
    texts = np.empty((2, 1), dtype=object)
    texts[:, 0] = [b"hello world \xf0\x9f\x98\x81", b"\xff"]
    numbers = np.frombuffer(np.array([1.5, np.nan], dtype=np.float32).tobytes(), dtype=np.float32)
    request = InferenceRequest.model_construct(
        id=None,
        parameters=None,
        inputs=[
            RequestInput.model_construct(name="t", shape=[2, 1], datatype=Datatype.BYTES, parameters=None, data=texts),
            RequestInput.model_construct(name="n", shape=[2], datatype=Datatype.FP32, parameters=None, data=numbers),
        ],
        outputs=None,
    )
    assert request.model_dump() == {
        "inputs": [
            {"name": "t", "shape": [2, 1], "datatype": "BYTES", "data": ["hello world 😁", b"\xff"]},
            {"name": "n", "shape": [2], "datatype": "FP32", "data": [1.5, pytest.approx(np.nan, nan_ok=True)]},
        ]
    }
    assert json.loads(request.inputs[1].model_dump_json()) == {"name": "n", "shape": [2], "datatype": "FP32", "data": [1.5, None]}


def test_metadata_and_repository_types():
    metadata = MetadataModelResponse.model_validate({"name": "m", "platform": "", "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1, 3]}]})
    assert metadata.inputs[0].shape == [-1, 3]
    index = RepositoryIndexResponse.model_validate([{"name": "m", "state": "READY"}])
    assert index.root[0].state is State.READY and index[0].state == "READY" and len(index) == 1
    assert index.root[0].reason == ""
    with pytest.raises(ValidationError):
        RepositoryIndexResponse.model_validate([{"name": "m", "state": "SLEEPING"}])


def test_the_worker_turns_parameters_pydantic_refuses_into_a_400():
    # the front doors refuse these first; the worker's own check is the backstop
    tensor = Tensor("x", "INT8", [1], np.zeros(1, np.int8), {"content_type": 5})
    with pytest.raises(BadRequest, match=r"^invalid parameters: content_type: Input should be a valid string$"):
        to_inference_request(WireRequest("m", None, "r", [tensor]))
    outputs = [RequestedOutput("y", {"headers": "h"})]
    with pytest.raises(BadRequest, match=r"^invalid parameters: headers: Input should be a valid dictionary$"):
        to_inference_request(WireRequest("m", None, "r", [Tensor("x", "INT8", [1], np.zeros(1, np.int8))], outputs=outputs))


@pytest.mark.parametrize("slots_known", [True, False], ids=["pydantic 2's slots", "other slots: model_construct"])
def test_constructed_builds_what_model_construct_builds(slots_known, monkeypatch):
    monkeypatch.setattr(gateway_types, "_SLOTS_KNOWN", slots_known)
    array = np.zeros((1, 2), np.float32)
    values = {"name": "x", "shape": [1, 2], "datatype": Datatype.FP32, "parameters": Parameters(content_type="np"), "data": array}
    built, reference = constructed(RequestInput, dict(values)), RequestInput.model_construct(**values)
    assert slots(built) == slots(reference)
    assert built.data is array and built.model_dump() == reference.model_dump() and repr(built) == repr(reference)


def test_the_installed_pydantic_takes_constructed_s_quick_path():
    # else every request pays model_construct: right, but the quick path would go untested
    assert gateway_types._SLOTS_KNOWN


def test_the_worker_builds_the_request_a_runtime_sees_as_model_construct_does():
    # what the worker built before it skipped pydantic's per-field work: the same objects, slot by slot
    x, y = np.frombuffer(np.arange(4, dtype=np.float32).tobytes(), np.float32).reshape(2, 2), np.frombuffer(b"\x01", np.uint8)
    wire = WireRequest(
        "m", None, "r1", [Tensor("x", "FP32", [2, 2], x, {"content_type": "np"}), Tensor("y", "UINT8", [1], y)], {"p": 1}, [RequestedOutput("out", {"k": "v"})]
    )
    request = to_inference_request(wire)
    reference = InferenceRequest.model_construct(
        id="r1",
        parameters=Parameters(p=1),
        inputs=[
            RequestInput.model_construct(name="x", shape=[2, 2], datatype=Datatype.FP32, parameters=Parameters(content_type="np"), data=x),
            RequestInput.model_construct(name="y", shape=[1], datatype=Datatype.UINT8, parameters=None, data=y),
        ],
        outputs=[RequestOutput.model_construct(name="out", parameters=Parameters(k="v"))],
    )
    assert slots(request) == slots(reference)
    for built, expected in zip([*request.inputs, *request.outputs], [*reference.inputs, *reference.outputs]):
        assert slots(built) == slots(expected)
    assert request.inputs[0].data is x  # the view of the tensor's bytes, not a TensorData
    without_outputs = to_inference_request(WireRequest("m", None, "r2", [Tensor("y", "UINT8", [1], y)]))
    assert without_outputs.outputs is None and without_outputs.parameters is None


@pytest.mark.parametrize(
    "parameters",
    [
        Parameters(content_type="np"),  # what the codecs set: the quick path
        Parameters(),
        Parameters(content_type=None),
        Parameters(content_type="np", extra_one=1),
        Parameters(headers={"x-a": "1"}),
        Parameters.model_construct(content_type="np", _fields_set=set()),  # set, yet unset: left out as model_dump does
        None,
    ],
)
def test_the_parameters_of_an_answer_are_their_model_dump(parameters):
    expected = {} if parameters is None else parameters.model_dump(exclude_none=True)
    assert _parameters(parameters) == expected


def test_the_parameters_of_a_subclass_are_dumped_with_its_fields():
    class Tagged(Parameters):
        tag: str = "t"

    assert _parameters(Tagged(content_type="np", tag="u")) == {"content_type": "np", "tag": "u"}
