"""KServe's infer types (`kserve.protocol.infer_type`): what a KServe model receives and returns.

`InferRequest`/`InferResponse` hold `InferInput`/`InferOutput` tensors whose data is
either a Python list (JSON, gRPC typed contents) or raw bytes (the REST binary
tensor extension, gRPC raw contents), and convert to and from every wire form:
REST JSON (`to_rest`/`from_rest`), REST binary (`to_rest`/`from_bytes`), gRPC
(`to_grpc`/`from_grpc`, with the gateway's `inference` protobuf messages, the same
proto as KServe's) and the gateway's pydantic `InferenceRequest`.

The rules are KServe 0.21's, so a KServe script sees what it saw there:
- `set_data_from_numpy(..., binary_data=True)` keeps the tensor as raw bytes and
  sets the parameter `binary_data_size`; with False the data becomes a flat list
  (BYTES: UTF-8 strings) and `binary_data_size` is removed.
- BYTES raw bytes are each element's 4-byte little-endian length, then its bytes.
- FP16 never travels as JSON: a REST body refuses FP16 `data`; a gRPC response
  with an FP16 output sends every output raw (FP16 has no typed-contents field).
- Binary REST outputs: when the request names its outputs, each output's own
  `binary_data` parameter decides (absent: JSON); otherwise the request-level
  `binary_data_output` does (`InferRequest.use_binary_outputs`; over gRPC: True
  when the inputs came raw).
- `from_bytes` turns binary inputs into lists (`data`), as KServe does.
- Equality compares name, shape, datatype, parameters and data (KServe's fields).

Where KServe 0.21 crashes or silently loses data, these answer instead (the only
places the bytes differ from KServe's): a clear `InvalidInput` for malformed or
truncated bodies and for raw contents that do not match the inputs; float
parameters travel as `double_param` (KServe refuses them) and gRPC `double_param`
/`uint64_param` values are kept (KServe drops them); a gRPC message never mixes
raw and typed contents (if one tensor goes raw, all do, which the V2 protocol
requires); nested JSON lists are flattened for gRPC contents; zero-element raw
tensors are sent as zero bytes; `str` numpy arrays serialize as UTF-8;
numpy-array `data` compares by value; `data` given as gRPC typed contents
(`InferTensorContents`, which KServe's signatures allow) is read as their list.
"""

from __future__ import annotations

import struct
import types
import uuid
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union, overload

import numpy as np
import orjson

from ...codecs.pandas import _pandas
from ...codecs.utils import tensor_data
from ...errors import BadRequest
from ...protocol.generated.inference_pb2 import (
    InferParameter,
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from ...types import InferenceRequest
from ...wire.datatypes import array_from_raw, flatten
from ...wire.packed import PackedBytes, pack_bytes, unpack_bytes
from ..constants.constants import GRPC_CONTENT_DATATYPE_MAPPINGS
from ..errors import InferenceError, InvalidInput
from ..utils.numpy_codec import from_np_dtype, to_np_dtype

Parameters = Mapping[str, Any]  # a dict, or a protobuf map<string, InferParameter>
# a tensor's data as KServe allows it: a (possibly nested) list, a numpy array, or gRPC typed contents
Data = Union[List[Any], np.ndarray, InferTensorContents]
_LENGTH = struct.Struct("<I")
_INT64_MIN, _INT64_MAX, _UINT64_END = -(2**63), 2**63 - 1, 2**64


# --- BYTES tensors on the wire


def serialize_byte_tensor(input_tensor: np.ndarray) -> np.ndarray:
    """A BYTES tensor as its wire bytes: each element's 4-byte little-endian length, then
    its bytes, in row-major order. Returned as a 0-d object array holding one `bytes`
    (`.item()`), or an empty array for a tensor with no elements.

    Elements that are not bytes are written as their UTF-8 `str()`. Use object arrays
    for binary data: numpy strips trailing zero bytes from fixed-width `bytes_` arrays."""
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.object_)
    if input_tensor.dtype.kind not in "OSU":
        raise InferenceError(f"cannot serialize bytes tensor: invalid datatype {input_tensor.dtype}")
    return np.asarray(bytes(pack_bytes(input_tensor.ravel().tolist()).buffer), dtype=np.object_)


def deserialize_bytes_tensor(encoded_tensor: bytes) -> np.ndarray:
    """The elements of serialized BYTES (see `serialize_byte_tensor`): a 1-D object array of `bytes`."""
    view = memoryview(encoded_tensor)
    items: List[bytes] = []
    pos = 0
    while pos < len(view):
        if pos + _LENGTH.size > len(view):
            raise InvalidInput(f"BYTES data ends inside the length prefix of element {len(items)}")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += _LENGTH.size
        if pos + length > len(view):
            raise InvalidInput(f"BYTES element {len(items)} of length {length} overruns its {len(view)}-byte buffer")
        items.append(bytes(view[pos : pos + length]))
        pos += length
    array = np.empty(len(items), dtype=np.object_)
    array[:] = items
    return array


# --- parameters


def to_grpc_parameters(parameters: Parameters) -> Dict[str, InferParameter]:
    """REST parameters (str, bool, int, float, or InferParameter values) as gRPC InferParameters."""
    converted: Dict[str, InferParameter] = {}
    for key, value in parameters.items():
        if isinstance(value, InferParameter):
            converted[key] = value
        elif isinstance(value, str):
            converted[key] = InferParameter(string_param=value)
        elif isinstance(value, bool):
            converted[key] = InferParameter(bool_param=value)
        elif isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
            converted[key] = InferParameter(int64_param=value)
        elif isinstance(value, int) and 0 <= value < _UINT64_END:
            converted[key] = InferParameter(uint64_param=value)
        elif isinstance(value, float):
            converted[key] = InferParameter(double_param=value)
        else:
            raise InvalidInput(f"to_grpc: invalid parameter value: {value!r} (parameter {key!r})")
    return converted


def to_http_parameters(parameters: Parameters) -> Dict[str, Any]:
    """gRPC InferParameters (or a dict holding some) as plain REST values."""
    converted: Dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, InferParameter):
            which = value.WhichOneof("parameter_choice")
            if which is not None:
                converted[key] = getattr(value, which)
        else:
            converted[key] = value
    return converted


def get_content(datatype: str, data: InferTensorContents) -> list:
    """The typed gRPC contents of a tensor as a list; FP16 has none (it travels raw)."""
    if datatype == "FP16":
        return []
    field = GRPC_CONTENT_DATATYPE_MAPPINGS.get(datatype)
    if field is None:
        raise InvalidInput(f"invalid content type: datatype {datatype!r}")
    return list(getattr(data, field))


# --- tensors


def _same_data(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def _json_strings(tensor: np.ndarray, where: str) -> List[str]:
    """BYTES elements as JSON strings: bytes must be UTF-8, anything else is its str()."""
    strings = []
    for item in tensor.ravel():
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise InferenceError(
                    f'{where}: failed to encode "{item!r}" using UTF-8. Please use binary_data=True, if you want to pass a byte array.'
                ) from None
        strings.append(item if isinstance(item, str) else str(item))
    return strings


class _Tensor:
    """What InferInput and InferOutput share (KServe defines them twice, alike)."""

    _role = "tensor"

    def __init__(
        self,
        name: str,
        shape: List[int],
        datatype: str,
        data: Optional[Data] = None,
        parameters: Optional[Parameters] = None,
    ):
        self._name = name
        self._shape = shape
        self._datatype = datatype.upper()
        self._parameters = parameters
        self._data = data
        self._raw_data: Optional[bytes] = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def datatype(self) -> str:
        return self._datatype

    @property
    def data(self) -> Optional[Data]:
        """A list (JSON, gRPC contents), a numpy array, or None when the tensor is held as raw bytes."""
        return self._data

    @data.setter
    def data(self, data: Optional[Data]):
        self._data = data

    def _values(self) -> Union[List[Any], np.ndarray]:
        """The data as given, gRPC typed contents as their list; [] when there is none (raw bytes)."""
        data = self.data  # the property: a subclass may make it when first read
        if isinstance(data, InferTensorContents):
            return get_content(self._datatype, data)
        return [] if data is None else data

    @property
    def shape(self) -> List[int]:
        return self._shape

    @shape.setter
    def shape(self, shape: List[int]):
        self._shape = shape

    @property
    def parameters(self) -> Optional[Parameters]:
        return self._parameters

    @parameters.setter
    def parameters(self, params: Optional[Parameters]):
        self._parameters = params

    @property
    def _where(self) -> str:
        return f"{self._role} {self._name!r}"

    def as_numpy(self) -> np.ndarray:
        """The data as a numpy array of the tensor's datatype and shape (BYTES: an object array)."""
        dtype = to_np_dtype(self._datatype)
        if dtype is None:
            raise InvalidInput(f"invalid datatype {self._datatype} in the {self._where}")
        if self._raw_data is not None:
            try:
                data = array_from_raw(self._datatype, list(self._shape), self._raw_data, self._where)
                if isinstance(data, PackedBytes):
                    data = unpack_bytes(data, self._where).reshape(list(self._shape))
                return data
            except BadRequest as exc:
                raise InvalidInput(exc.message) from None
        if self._data is None:
            raise InvalidInput(f"{self._where} has no data")
        array = np.array(self._values(), dtype=dtype)
        try:
            return array.reshape(self._shape)
        except ValueError:
            raise InvalidInput(f"{self._where}: data holds {array.size} elements, its shape {list(self._shape)} does not fit") from None

    def set_data_from_numpy(self, input_tensor: np.ndarray, binary_data: bool = True):
        """Set the data from a numpy array of this tensor's datatype and shape.

        binary_data=True (the default) keeps it as raw bytes, sent in the binary tensor
        extension over REST and as raw contents over gRPC, and sets the parameter
        `binary_data_size`; False turns it into a flat list for JSON (BYTES: UTF-8 strings)."""
        if not isinstance(input_tensor, np.ndarray):
            raise InferenceError(f"{self._where}: the tensor must be a numpy array, got {type(input_tensor).__name__}")
        datatype = from_np_dtype(input_tensor.dtype)
        if datatype != self._datatype:
            raise InferenceError(f"got unexpected datatype {datatype} from numpy array, expected {self._datatype}")
        if list(input_tensor.shape) != list(self._shape):
            raise InferenceError(f"got unexpected numpy array shape [{', '.join(map(str, input_tensor.shape))}], expected [{', '.join(map(str, self._shape))}]")
        if input_tensor.dtype.kind == "M":  # datetimes travel as their text
            input_tensor = input_tensor.astype(np.object_)
        parameters = self._parameters
        if parameters is not None and not isinstance(parameters, dict):
            parameters = self._parameters = to_http_parameters(parameters)  # a gRPC map cannot hold plain values
        if not binary_data:
            if parameters:
                parameters.pop("binary_data_size", None)
            self._raw_data = None
            if self._datatype == "BYTES":
                self._data = _json_strings(input_tensor, self._where)
            else:
                self._data = input_tensor.ravel().tolist()
            return
        self._data = None
        self._raw_data = bytes(pack_bytes(input_tensor.ravel().tolist()).buffer) if self._datatype == "BYTES" else input_tensor.tobytes()
        if parameters is None:
            parameters = self._parameters = {}
        parameters["binary_data_size"] = len(self._raw_data)

    def __eq__(self, other):  # defining it leaves instances unhashable: they are mutable
        if not (isinstance(other, type(self)) or isinstance(self, type(other))):
            return False
        return (
            self.name == other.name
            and list(self.shape) == list(other.shape)
            and self.datatype == other.datatype
            and self.parameters == other.parameters
            and _same_data(self.data, other.data)
            and self._raw_data == other._raw_data
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": self.shape,
            "datatype": self.datatype,
            "data": self.data,
            "parameters": self.parameters,
        }

    def __repr__(self) -> str:
        return f'"name": "{self.name}","shape": {self.shape},"datatype": "{self.datatype}","data": {self.data},"parameters": {self.parameters}'

    __str__ = __repr__


class InferInput(_Tensor):
    """An input tensor of an inference request."""

    _role = "input"

    def as_string(self) -> List[str]:
        """The elements of a BYTES input decoded as UTF-8 strings, in row-major order (a flat list)."""
        if self._datatype != "BYTES":
            raise InvalidInput(f"invalid datatype {self._datatype} in the input")
        if self._raw_data is not None:
            items = self.as_numpy().ravel().tolist()
        else:
            values = self._values()
            items = values.ravel().tolist() if isinstance(values, np.ndarray) else flatten(values, self._where)
        try:
            return [item.decode("utf-8") if isinstance(item, bytes) else item for item in items]
        except UnicodeDecodeError:
            raise InvalidInput(f"{self._where} holds bytes that are not UTF-8") from None


class InferOutput(_Tensor):
    """An output tensor of an inference response."""

    _role = "output"


class RequestedOutput:
    """An output a request asks for, with its parameters (`binary_data`, ...)."""

    def __init__(self, name: str, parameters: Optional[Parameters] = None):
        self._name = name
        self._parameters = parameters

    @property
    def name(self) -> str:
        return self._name

    @property
    def parameters(self) -> Optional[Parameters]:
        return self._parameters

    @parameters.setter
    def parameters(self, params: Optional[Parameters]):
        self._parameters = params

    @property
    def binary_data(self) -> Optional[bool]:
        """The output's `binary_data` parameter: whether it goes back as binary; None when unset."""
        if self._parameters and "binary_data" in self._parameters:
            return self._parameters["binary_data"]
        return None

    def __eq__(self, other):  # defining it leaves instances unhashable: they are mutable
        return isinstance(other, RequestedOutput) and self.name == other.name and self.parameters == other.parameters

    def __repr__(self):
        return f"RequestedOutput(name={self.name}, parameters={self.parameters})"

    __str__ = __repr__


# --- REST bodies


def _load_json(body: bytes, what: str) -> dict:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Unrecognized request format: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"the {what} must be a JSON object")
    return document


def _json_part(body: bytes, json_length: int, what: str) -> dict:
    if not isinstance(json_length, int) or not 0 <= json_length <= len(body):
        raise InvalidInput(f"the JSON length {json_length!r} does not fit the {len(body)}-byte {what}")
    return _load_json(body[:json_length], what)


def _tensor_entries(document: dict, key: str) -> list:
    entries = document.get(key)
    if not isinstance(entries, list):
        raise InvalidInput(f"'{key}' must be a list")
    for entry in entries:
        if not isinstance(entry, dict) or any(field not in entry for field in ("name", "shape", "datatype")):
            raise InvalidInput(f"each of '{key}' needs a name, a shape and a datatype, got {entry!r}")
        if not isinstance(entry.get("parameters", {}), (dict, type(None))):
            raise InvalidInput(f"the parameters of '{entry['name']}' must be a JSON object")
    return entries


def _take_binary(tensor: _Tensor, body: bytes, start: int, model_name: str) -> int:
    """Give `tensor` its `binary_data_size` bytes of `body` from `start`, turned into a list as
    KServe does; returns where the next tensor's bytes begin."""
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        raise InvalidInput(f"'binary_data_size' is not specified for {tensor._where} for model '{model_name}'")
    if type(size) is not int or size < 0:
        raise InvalidInput(f"'binary_data_size' of {tensor._where} must be a non-negative integer, got {size!r}")
    end = start + size
    if end > len(body):
        raise InvalidInput(f"{tensor._where} needs {size} bytes of binary data, the body has {len(body) - start} left")
    tensor._raw_data = body[start:end]
    tensor.set_data_from_numpy(tensor.as_numpy(), binary_data=False)
    return end


def _check_consumed(body: bytes, end: int) -> None:
    if end != len(body):
        raise InvalidInput(f"{len(body) - end} bytes of binary data follow the last tensor's")


def _no_fp16_json(tensor: _Tensor, verb: str) -> None:
    if tensor.datatype == "FP16" and tensor.data:
        raise InvalidInput(f"{verb} FP16 data via JSON is not supported. Please use the binary data format for {tensor._where}")


def _rest_entry(tensor: _Tensor) -> Dict[str, Any]:
    """The tensor's JSON entry: with its `data`, or when it is held as raw bytes their size (they follow the JSON)."""
    entry: Dict[str, Any] = {"name": tensor.name, "shape": tensor.shape, "datatype": tensor.datatype}
    parameters = to_http_parameters(tensor.parameters) if tensor.parameters else {}
    if tensor._raw_data is not None:
        parameters["binary_data_size"] = len(tensor._raw_data)  # the receiver finds the bytes by it
    if parameters:
        entry["parameters"] = parameters
    if tensor._raw_data is None:
        entry["data"] = tensor.data
    return entry


def _rest_body(document: dict, raw: List[bytes]) -> Tuple[Union[bytes, Dict], Optional[int]]:
    """A JSON document (dict, None) or, with binary tensors, JSON then their bytes (bytes, JSON length)."""
    if not raw:
        return document, None
    header = orjson.dumps(document)
    return b"".join([header, *raw]), len(header)


# --- gRPC messages


def _grpc_entries(tensors: Sequence[_Tensor], all_raw: bool) -> Tuple[List[Dict[str, Any]], List[bytes]]:
    """Tensor entries and raw contents for a ModelInfer message. Raw and typed contents never
    mix in one message: with `all_raw`, or if any tensor is an array or raw bytes, all go raw."""
    all_raw = all_raw or any(t._raw_data is not None or isinstance(t.data, np.ndarray) or t.datatype == "FP16" for t in tensors)
    entries: List[Dict[str, Any]] = []
    raw: List[bytes] = []
    for tensor in tensors:
        if isinstance(tensor.data, np.ndarray):
            tensor.set_data_from_numpy(tensor.data, binary_data=True)
        elif all_raw and tensor._raw_data is None:
            tensor.set_data_from_numpy(tensor.as_numpy(), binary_data=True)
        entry: Dict[str, Any] = {"name": tensor.name, "shape": tensor.shape, "datatype": tensor.datatype}
        if tensor.parameters:
            entry["parameters"] = to_grpc_parameters(tensor.parameters)
        if tensor._raw_data is not None:
            raw.append(tensor._raw_data)
        else:
            values = tensor._values()
            if not isinstance(values, list):
                raise InvalidInput(f"{tensor._where}: data is not a list")
            field = GRPC_CONTENT_DATATYPE_MAPPINGS.get(tensor.datatype)
            if field is None:
                raise InvalidInput(f"{tensor._where}: invalid datatype {tensor.datatype!r}")
            flat = [item.encode("utf-8") if isinstance(item, str) else item for item in flatten(values, tensor._where)]
            tensor._data = flat
            entry["contents"] = {field: flat}
        entries.append(entry)
    return entries, raw


_Made = TypeVar("_Made")
_Message = TypeVar("_Message")


class _FromGrpc(Generic[_Made, _Message]):
    """KServe's `from_grpc`, one name with two meanings: on the class, the classmethod that builds
    one from a gRPC message (`InferRequest.from_grpc(message)`); on an instance, whether it came
    from gRPC (`request.from_grpc`, set by the constructor)."""

    def __init__(self, build: Callable[[Type[_Made], _Message], _Made]):
        self._build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, instance: None, owner: Type[_Made]) -> Callable[[_Message], _Made]: ...
    @overload
    def __get__(self, instance: _Made, owner: Type[_Made]) -> Optional[bool]: ...
    def __get__(self, instance: Optional[_Made], owner: Type[_Made]) -> Union[Callable[[_Message], _Made], Optional[bool]]:
        if instance is None:
            return types.MethodType(self._build, owner)
        return vars(instance)["from_grpc"]

    def __set__(self, instance: _Made, from_grpc: Optional[bool]) -> None:
        vars(instance)["from_grpc"] = from_grpc


class InferRequest:
    """An inference request as a KServe model sees it (V2 REST JSON or binary, or gRPC)."""

    def __init__(
        self,
        model_name: str,
        infer_inputs: List[InferInput],
        request_id: Optional[str] = None,
        raw_inputs=None,
        from_grpc: Optional[bool] = False,
        parameters: Optional[Parameters] = None,
        request_outputs: Optional[List[RequestedOutput]] = None,
        model_version: Optional[str] = None,
    ):
        """`raw_inputs`: one bytes per input, in order (gRPC raw_input_contents)."""
        self.id = request_id
        self.model_name = model_name
        self.inputs = infer_inputs
        self.parameters = parameters
        self.from_grpc = from_grpc
        self._use_raw_outputs = False
        if raw_inputs:
            if len(raw_inputs) != len(infer_inputs):
                raise InvalidInput(
                    f"the number of inputs ({len(infer_inputs)}) does not match the number of raw input contents ({len(raw_inputs)}) for model '{model_name}'"
                )
            self._use_raw_outputs = True
            for infer_input, raw in zip(infer_inputs, raw_inputs):
                infer_input._raw_data = raw
        self.request_outputs = request_outputs
        self.model_version = model_version

    @property
    def use_binary_outputs(self) -> bool:
        """Whether outputs go back as binary: over gRPC, when the inputs came raw; over REST, the
        request parameter `binary_data_output` (each requested output's `binary_data` overrides it)."""
        if self._use_raw_outputs and self.from_grpc:
            return True
        if self.parameters and not self.from_grpc:
            return self.parameters.get("binary_data_output", False)
        return False

    @_FromGrpc
    def from_grpc(cls: Type[InferRequest], request: ModelInferRequest) -> InferRequest:
        """From a gRPC ModelInferRequest. Input and output parameters become plain values; the
        request's `parameters` stay the protobuf map (of InferParameter), as in KServe."""
        infer_inputs = [
            InferInput(
                name=tensor.name,
                shape=list(tensor.shape),
                datatype=tensor.datatype,
                data=get_content(tensor.datatype, tensor.contents),
                parameters=to_http_parameters(tensor.parameters) if tensor.parameters else None,
            )
            for tensor in request.inputs
        ]
        request_outputs = [
            RequestedOutput(name=output.name, parameters=to_http_parameters(output.parameters) if output.parameters else None) for output in request.outputs
        ]
        return cls(
            request_id=request.id,
            model_name=request.model_name,
            infer_inputs=infer_inputs,
            raw_inputs=request.raw_input_contents,
            from_grpc=True,
            parameters=request.parameters,
            request_outputs=request_outputs or None,
            model_version=request.model_version,
        )

    @classmethod
    def from_bytes(cls, req_bytes: bytes, json_length: int, model_name: str) -> "InferRequest":
        """From a REST body: `json_length` bytes of JSON, then the binary inputs' bytes in input
        order (each input's `binary_data_size`). Binary inputs become lists (`data`)."""
        document = _json_part(req_bytes, json_length, "request body")
        infer_inputs, position = [], json_length
        for entry in _tensor_entries(document, "inputs"):
            parameters = entry.get("parameters")
            infer_input = InferInput(name=entry["name"], shape=entry["shape"], datatype=entry["datatype"], parameters=parameters)
            data = entry.get("data")
            if data is not None:
                infer_input.data = data
                _no_fp16_json(infer_input, "Receiving")
            elif parameters and "binary_data_size" in parameters:
                position = _take_binary(infer_input, req_bytes, position, model_name)
            else:
                raise InvalidInput(f"'data' field is missing for input '{infer_input.name}' for model '{model_name}'")
            infer_inputs.append(infer_input)
        _check_consumed(req_bytes, position)
        requested_outputs = None
        if document.get("outputs") is not None:
            requested_outputs = [RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in _outputs(document)]
        return cls(
            model_name=model_name,
            request_id=document.get("id"),
            parameters=document.get("parameters"),
            infer_inputs=infer_inputs,
            request_outputs=requested_outputs,
        )

    @classmethod
    def from_inference_request(cls, request: InferenceRequest, model_name: str) -> "InferRequest":
        """From the gateway's pydantic `gateway.types.InferenceRequest` (KServe: its own
        InferenceRequest model). `data` is kept as given: a list, or a numpy array."""
        infer_inputs = []
        for tensor in request.inputs:
            data = tensor_data(tensor)  # a TensorData's list (or array), a worker's array
            infer_input = InferInput(
                name=tensor.name,
                shape=list(tensor.shape),
                datatype=str(getattr(tensor.datatype, "value", tensor.datatype)),
                data=data,
                parameters=_plain_parameters(tensor.parameters) or {},
            )
            if isinstance(data, list):
                _no_fp16_json(infer_input, "Sending")
            infer_inputs.append(infer_input)
        requested_outputs = None
        if request.outputs:
            requested_outputs = [RequestedOutput(name=output.name, parameters=_plain_parameters(output.parameters) or {}) for output in request.outputs]
        return cls(
            request_id=request.id,
            model_name=model_name,
            infer_inputs=infer_inputs,
            parameters=_plain_parameters(request.parameters),
            request_outputs=requested_outputs,
        )

    def to_rest(self) -> Tuple[Union[bytes, Dict], Optional[int]]:
        """As a V2 REST body: a dict (and None) when every input is JSON data, else the JSON
        followed by the raw inputs' bytes (and the JSON's length, for the
        Inference-Header-Content-Length header). A request without an id gets a new UUID."""
        entries: List[Dict[str, Any]] = []
        raw: List[bytes] = []
        for infer_input in self.inputs:
            if infer_input.data is None and infer_input._raw_data is None:
                raise InvalidInput(f"'data' field is missing for input '{infer_input.name}' for model '{self.model_name}'")
            if isinstance(infer_input.data, np.ndarray):
                infer_input.set_data_from_numpy(infer_input.data, binary_data=False)
            if infer_input.data and infer_input._raw_data is not None:
                raise InvalidInput(f"Both 'data' and 'raw_data' fields are set for input '{infer_input.name}' for model '{self.model_name}'")
            _no_fp16_json(infer_input, "Sending")
            entries.append(_rest_entry(infer_input))
            if infer_input._raw_data is not None:
                raw.append(infer_input._raw_data)
        document: Dict[str, Any] = {"id": self.id or str(uuid.uuid4()), "model_name": self.model_name, "inputs": entries}
        if self.request_outputs:
            document["outputs"] = [_requested_output_entry(output) for output in self.request_outputs]
        if self.parameters:
            document["parameters"] = to_http_parameters(self.parameters)
        return _rest_body(document, raw)

    def to_grpc(self) -> ModelInferRequest:
        """As a gRPC ModelInferRequest: typed contents, or raw contents when any input is raw,
        a numpy array or FP16."""
        entries, raw = _grpc_entries(self.inputs, all_raw=False)
        outputs = []
        for output in self.request_outputs or ():
            entry: Dict[str, Any] = {"name": output.name}
            if output.parameters:
                entry["parameters"] = to_grpc_parameters(output.parameters)
            outputs.append(entry)
        return ModelInferRequest(
            id=self.id,
            model_name=self.model_name,
            model_version=self.model_version,
            inputs=entries,
            raw_input_contents=raw,
            parameters=to_grpc_parameters(self.parameters) if self.parameters else None,
            outputs=outputs or None,
        )

    def as_dataframe(self):
        """The inputs as the columns of a pandas DataFrame (BYTES decoded as UTF-8); needs pandas."""
        pd = _pandas()
        frames = []
        for infer_input in self.inputs:
            column: Union[List[Any], np.ndarray]
            if infer_input._raw_data is not None:
                column = infer_input.as_numpy()
                if infer_input.datatype == "BYTES":
                    column = np.array([item.decode("utf-8") for item in column.ravel()], dtype=np.object_).reshape(column.shape)
            else:
                column = infer_input._values()
                if infer_input.datatype == "BYTES":
                    column = [item.decode("utf-8") if isinstance(item, bytes) else item for item in column]
            frames.append(pd.DataFrame(column, columns=[infer_input.name]))
        return pd.concat(frames, axis=1)

    def get_input_by_name(self, name: str) -> Optional[InferInput]:
        """The input named `name`, or None."""
        return next((infer_input for infer_input in self.inputs if infer_input.name == name), None)

    def __eq__(self, other):
        return (
            isinstance(other, InferRequest)
            and self.model_name == other.model_name
            and self.id == other.id
            and self.from_grpc == other.from_grpc
            and self.parameters == other.parameters
            and self.inputs == other.inputs
            and self.request_outputs == other.request_outputs
        )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "model_name": self.model_name,
            "inputs": [infer_input.to_dict() for infer_input in self.inputs],
            "parameters": self.parameters,
            "from_grpc": self.from_grpc,
        }

    def __repr__(self) -> str:
        return f'"id": "{self.id}","model_name": "{self.model_name}","inputs": {self.inputs!r},"parameters": {self.parameters},"from_grpc": {self.from_grpc}'

    __str__ = __repr__


def _outputs(document: dict) -> list:
    outputs = document["outputs"]
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and "name" in o for o in outputs):
        raise InvalidInput("'outputs' must be a list of objects with a name")
    return outputs


def _requested_output_entry(output: RequestedOutput) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"name": output.name}
    if output.parameters:
        entry["parameters"] = to_http_parameters(output.parameters)
    return entry


def _plain_parameters(parameters: Any) -> Optional[dict]:
    """The gateway's pydantic Parameters as the plain dict KServe's types hold (unset fields left out)."""
    if parameters is None or isinstance(parameters, dict):
        return parameters
    return parameters.model_dump(exclude_none=True)


class InferResponse:
    """An inference response as a KServe model returns it."""

    def __init__(
        self,
        response_id: Optional[str],
        model_name: Optional[str],  # a dict a model returns (from_rest) may leave both out
        infer_outputs: List[InferOutput],
        model_version: Optional[str] = None,
        raw_outputs=None,
        from_grpc: Optional[bool] = False,
        parameters: Optional[Parameters] = None,
        use_binary_outputs: Optional[bool] = False,
        requested_outputs: Optional[List[RequestedOutput]] = None,
    ):
        """`use_binary_outputs`: send the outputs as binary over REST (each requested output's
        `binary_data` overrides it) and raw over gRPC. `raw_outputs`: one bytes per output."""
        self.id = response_id
        self.model_name = model_name
        self.model_version = model_version
        self.outputs = infer_outputs
        self.parameters = parameters
        self.from_grpc = from_grpc
        self._requested_outputs = requested_outputs
        self._use_binary_outputs = use_binary_outputs
        if raw_outputs:
            if len(raw_outputs) != len(infer_outputs):
                raise InvalidInput(
                    f"the number of outputs ({len(infer_outputs)}) does not match the number of raw output "
                    f"contents ({len(raw_outputs)}) for model '{model_name}'"
                )
            for infer_output, raw in zip(infer_outputs, raw_outputs):
                infer_output._raw_data = raw

    @_FromGrpc
    def from_grpc(cls: Type[InferResponse], response: ModelInferResponse) -> InferResponse:
        """From a gRPC ModelInferResponse (parameters stay protobuf maps, as in KServe)."""
        infer_outputs = [
            InferOutput(
                name=output.name,
                shape=list(output.shape),
                datatype=output.datatype,
                data=get_content(output.datatype, output.contents),
                parameters=output.parameters,
            )
            for output in response.outputs
        ]
        return cls(
            model_name=response.model_name,
            model_version=response.model_version,
            response_id=response.id,
            parameters=response.parameters,
            infer_outputs=infer_outputs,
            raw_outputs=response.raw_output_contents,
            from_grpc=True,
        )

    @classmethod
    def from_rest(cls, response: Dict) -> "InferResponse":
        """From a V2 REST JSON response (a dict)."""
        infer_outputs = []
        for output in _tensor_entries(response, "outputs"):
            if "data" not in output:
                raise InvalidInput(f"'data' field is missing for output '{output['name']}' for model '{response.get('model_name')}'")
            infer_outputs.append(
                InferOutput(
                    name=output["name"],
                    shape=list(output["shape"]),
                    datatype=output["datatype"],
                    data=output["data"],
                    parameters=output.get("parameters"),
                )
            )
        return cls(
            model_name=response.get("model_name"),
            model_version=response.get("model_version"),
            response_id=response.get("id"),
            parameters=response.get("parameters"),
            infer_outputs=infer_outputs,
        )

    @classmethod
    def from_bytes(cls, res_bytes: bytes, json_length: int) -> "InferResponse":
        """From a REST response body with binary outputs: `json_length` bytes of JSON, then the
        binary outputs' bytes in output order. Binary outputs become lists (`data`)."""
        document = _json_part(res_bytes, json_length, "response body")
        if "model_name" not in document:
            raise InvalidInput("the response has no 'model_name'")
        model_name = document["model_name"]
        infer_outputs, position = [], json_length
        for entry in _tensor_entries(document, "outputs"):
            parameters = entry.get("parameters")
            infer_output = InferOutput(name=entry["name"], shape=entry["shape"], datatype=entry["datatype"], parameters=parameters)
            if parameters and "binary_data_size" in parameters:
                position = _take_binary(infer_output, res_bytes, position, model_name)
            elif entry.get("data") is None:
                raise InvalidInput(f"'data' field is missing for output '{infer_output.name}' for model '{model_name}'")
            else:
                infer_output.data = entry["data"]
            infer_outputs.append(infer_output)
        _check_consumed(res_bytes, position)
        return cls(
            model_name=model_name,
            response_id=document.get("id"),
            parameters=document.get("parameters"),
            infer_outputs=infer_outputs,
        )

    def to_rest(self) -> Tuple[Union[bytes, Dict], Optional[int]]:
        """As a V2 REST body: a dict (and None) when every output is JSON, else the JSON followed
        by the binary outputs' bytes (and the JSON's length). When the request named its outputs,
        only those are sent, each binary if its own `binary_data` is true; otherwise every output,
        binary if `use_binary_outputs`."""
        entries: List[Dict[str, Any]] = []
        raw: List[bytes] = []
        for infer_output, binary in self._outputs_to_send():
            if infer_output.data is None and infer_output._raw_data is None:
                raise InvalidInput(f"'data' field is missing for output '{infer_output.name}' for model '{self.model_name}'")
            if isinstance(infer_output.data, np.ndarray):
                infer_output.set_data_from_numpy(infer_output.data, binary_data=binary)
            else:
                infer_output.set_data_from_numpy(infer_output.as_numpy(), binary_data=binary)
            _no_fp16_json(infer_output, "Sending")
            entries.append(_rest_entry(infer_output))
            if infer_output._raw_data is not None:
                raw.append(infer_output._raw_data)
        document: Dict[str, Any] = {"id": self.id, "model_name": self.model_name, "model_version": self.model_version, "outputs": entries}
        if self.parameters:
            document["parameters"] = to_http_parameters(self.parameters)
        return _rest_body(document, raw)

    def _outputs_to_send(self) -> List[Tuple[InferOutput, bool]]:
        """Each output `to_rest` sends, and whether it goes binary: those the request named, by
        their own `binary_data`; otherwise all, by `use_binary_outputs`."""
        if not self._requested_outputs:
            return [(infer_output, bool(self._use_binary_outputs)) for infer_output in self.outputs]
        chosen = []
        for wanted in self._requested_outputs:
            infer_output = self.get_output_by_name(wanted.name)
            if infer_output is None:
                raise InvalidInput(f"Unexpected inference output '{wanted.name}' for model '{self.model_name}'")
            chosen.append((infer_output, bool(wanted.binary_data)))
        return chosen

    def to_grpc(self) -> ModelInferResponse:
        """As a gRPC ModelInferResponse: raw contents when `use_binary_outputs`, when an output is
        FP16, a numpy array or raw bytes; typed contents otherwise."""
        entries, raw = _grpc_entries(self.outputs, all_raw=bool(self._use_binary_outputs))
        return ModelInferResponse(
            id=self.id,
            model_name=self.model_name,
            model_version=self.model_version,
            outputs=entries,
            raw_output_contents=raw,
            parameters=to_grpc_parameters(self.parameters) if self.parameters else None,
        )

    def get_output_by_name(self, name: str) -> Optional[InferOutput]:
        """The output named `name`, or None."""
        return next((infer_output for infer_output in self.outputs if infer_output.name == name), None)

    def __eq__(self, other):
        return (
            isinstance(other, InferResponse)
            and self.model_name == other.model_name
            and self.model_version == other.model_version
            and self.id == other.id
            and self.from_grpc == other.from_grpc
            and self.parameters == other.parameters
            and self.outputs == other.outputs
        )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "model_name": self.model_name,
            "outputs": [infer_output.to_dict() for infer_output in self.outputs],
            "parameters": self.parameters,
            "from_grpc": self.from_grpc,
        }

    def __repr__(self) -> str:
        return f'"id": "{self.id}","model_name": "{self.model_name}","outputs": {self.outputs!r},"parameters": {self.parameters},"from_grpc": {self.from_grpc}'

    __str__ = __repr__
