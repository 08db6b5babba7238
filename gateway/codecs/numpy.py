"""Content type "np": a tensor as a numpy array of its datatype and shape (as `mlserver.codecs.numpy`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import BadRequest
from ..types import Datatype, Parameters, RequestInput, ResponseOutput, TensorData, constructed
from ..wire.datatypes import NUMPY_DTYPES, array_from_json, element_count
from .base import InputCodec, register_input_codec, register_request_codec
from .errors import CodecError
from .lists import as_list, is_list_of
from .string import encode_str
from .utils import InputOrOutput, SingleInputRequestCodec, inject_batch_dimension, tensor_data, tensor_label

_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_DATATYPE_OF_DTYPE = {dtype: Datatype(name) for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"}


def to_dtype(input_or_output: InputOrOutput) -> np.dtype:
    """The numpy dtype a tensor decodes to. BYTES: str for a list of str (as JSON sends
    them), else object (an array of `bytes`)."""
    datatype = Datatype(input_or_output.datatype)
    if datatype is Datatype.BYTES:
        return np.dtype(str) if is_list_of(tensor_data(input_or_output), str) else np.dtype(object)
    return NUMPY_DTYPES[datatype]


def to_datatype(dtype: np.dtype) -> Datatype:
    """The V2 datatype of a numpy dtype: object, bytes and str arrays are BYTES."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return Datatype.BYTES
    datatype = _DATATYPE_OF_DTYPE.get(dtype) or _DATATYPE_OF_DTYPE.get(dtype.newbyteorder("<"))  # big-endian too
    if datatype is None:
        raise TypeError(f"numpy dtype {dtype} has no V2 datatype")
    return datatype


def convert_nan(val: Any) -> Any:
    """None for a float NaN (JSON's null), anything else unchanged."""
    if isinstance(val, float) and math.isnan(val):
        return None
    return val


def _numeric_list(array: np.ndarray) -> list:
    """MLServer's data of a numeric array: flat, Python numbers, NaN as None."""
    flat = array.ravel().tolist()
    if array.dtype.kind == "f" and np.isnan(array).any():
        return [convert_nan(value) for value in flat]
    return flat


def _encode_data(array: np.ndarray) -> Any:
    """The `data` of an encoded array. A numeric array's list is made only if something reads it
    (TensorData.deferred); until then the worker sends the array itself. Not a copy: copying a
    64 MiB output cost the worker 20-50 ms (docs/MLSERVER.md)."""
    if array.dtype.kind in "biuf":
        return TensorData.deferred(array, _numeric_list)
    flat = array.ravel().tolist()
    if array.dtype.kind == "U":
        return [encode_str(item) for item in flat]
    # "S" and "O": one element per entry (MLServer packs an "S" array into a single
    # bytes element, which no V2 client can read back as that many elements)
    return flat


def to_ndarray(input_or_output: InputOrOutput) -> np.ndarray:
    """The tensor as an array of its datatype and shape.

    An array already of that dtype (what a worker holds: a read-only view of the
    tensor bytes) is only reshaped, never copied; BYTES arrays are taken as they
    are. A list goes through the same checks as JSON data, so a value the
    datatype cannot hold (1.5 for INT32, 300 for UINT8) is refused rather than
    changed; null in FP16/FP32/FP64 data is NaN, as MLServer reads it.
    """
    datatype = input_or_output.datatype
    if type(datatype) is not Datatype:  # a field holds one; model_construct may have left a name
        datatype = Datatype(datatype)
    data = tensor_data(input_or_output)
    where = tensor_label(input_or_output)
    try:
        count = element_count(input_or_output.shape, where)
        if datatype is Datatype.BYTES:
            array = data if isinstance(data, np.ndarray) else _bytes_array(data, where)
        elif isinstance(data, np.ndarray) and data.dtype == NUMPY_DTYPES[datatype]:
            array = data
        else:
            if isinstance(data, np.ndarray):
                data = data.tolist()
            if datatype in _FLOATS:
                data = _nulls_as_nan(data)
            return array_from_json(datatype.value, input_or_output.shape, data, where)
    except BadRequest as exc:
        raise CodecError(exc.message) from None
    if array.size != count:
        raise CodecError(f"{where}: data holds {array.size} elements, shape {input_or_output.shape} needs {count}")
    return array.reshape(input_or_output.shape)


def _bytes_array(data: Any, where: str) -> np.ndarray:
    """BYTES data from a list: all str gives a str array (as MLServer decodes JSON strings),
    anything else an object array of bytes (str as UTF-8; None stays None)."""
    flat = list(as_list(data))
    if is_list_of(flat, str):
        return np.array(flat, dtype=str)
    array = np.empty(len(flat), dtype=object)
    for index, item in enumerate(flat):
        if isinstance(item, str):
            item = encode_str(item)
        elif item is not None and not isinstance(item, bytes):
            raise CodecError(f"{where}: BYTES data must be str or bytes, got {type(item).__name__}")
        array[index] = item
    return array


def _nulls_as_nan(data: Any) -> Any:
    if isinstance(data, (list, tuple)):
        return [_nulls_as_nan(item) for item in data]
    return math.nan if data is None else data


@register_input_codec
class NumpyCodec(InputCodec):
    """A tensor as a numpy array. Encoding a 1-D array gives shape [N, 1]."""

    ContentType = "np"
    TypeHint = np.ndarray

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return isinstance(payload, np.ndarray)

    @classmethod
    def encode_output(cls, name: str, payload: np.ndarray, **kwargs) -> ResponseOutput:
        payload = np.asarray(payload)
        fields = {
            "name": name,
            "shape": inject_batch_dimension(list(payload.shape)),
            "datatype": to_datatype(payload.dtype),
            "parameters": Parameters(content_type=cls.ContentType),
            "data": _encode_data(payload),
        }
        if type(name) is str and type(fields["data"]) is TensorData:
            # a numeric array (the common case): every field is already what validation would keep,
            # so the output is built as validation builds it, without its work (a model's every answer)
            return constructed(ResponseOutput, fields)
        return ResponseOutput(**fields)

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> np.ndarray:
        return to_ndarray(response_output)

    @classmethod
    def encode_input(cls, name: str, payload: np.ndarray, **kwargs) -> RequestInput:
        output = cls.encode_output(name=name, payload=payload)
        return RequestInput(
            name=output.name,
            datatype=output.datatype,
            shape=output.shape,
            data=output.data,
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> np.ndarray:
        return to_ndarray(request_input)


@register_request_codec
class NumpyRequestCodec(SingleInputRequestCodec):
    """The request's (or response's) single tensor as a numpy array."""

    InputCodec = NumpyCodec
    ContentType = NumpyCodec.ContentType
