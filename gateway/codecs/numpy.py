"""Content type "np": a tensor as a numpy array of its own datatype and shape."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest
from ..tensors import NUMPY_DTYPES, array_from_json, datatype_of, element_count
from ..types import Datatype, Parameters, RequestInput, ResponseOutput
from .base import InputCodec, SingleInputRequestCodec, register_input_codec, register_request_codec, tensor_label


def to_ndarray(tensor: RequestInput | ResponseOutput) -> np.ndarray:
    """The tensor's data as an array of its declared datatype and shape.

    An array already of that datatype (what workers hold: a read-only view of
    the tensor bytes) is only reshaped, never copied. Anything else goes through
    the JSON validation, which refuses values the datatype cannot hold exactly.
    BYTES become an object array of `bytes`.
    """
    datatype = Datatype(tensor.datatype).value
    where = tensor_label(tensor)
    data = tensor.data
    if isinstance(data, np.ndarray):
        if data.dtype == NUMPY_DTYPES[datatype] and (datatype != "BYTES" or _all_bytes(data)):
            count = element_count(tensor.shape, where)
            if data.size != count:
                raise BadRequest(f"{where}: data holds {data.size} elements, shape {tensor.shape} needs {count}")
            return data.reshape(tensor.shape)
        data = data.tolist()
    return array_from_json(datatype, tensor.shape, data, where)


def _all_bytes(array: np.ndarray) -> bool:
    return all(isinstance(item, bytes) for item in array.flat)


def bytes_elements(tensor: RequestInput | ResponseOutput, content_type: str) -> list[bytes]:
    """The flat elements of a BYTES tensor, for codecs that only make sense on BYTES."""
    if Datatype(tensor.datatype) is not Datatype.BYTES:
        raise BadRequest(
            f"{tensor_label(tensor)}: content type {content_type!r} needs datatype BYTES, "
            f"got {Datatype(tensor.datatype).value}"
        )
    return to_ndarray(tensor).ravel().tolist()


@register_input_codec
class NumpyCodec(InputCodec):
    ContentType = "np"
    TypeHint = np.ndarray

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return isinstance(payload, np.ndarray)

    @classmethod
    def encode_output(cls, name: str, payload: np.ndarray, **kwargs) -> ResponseOutput:
        # data stays an array: the server serialises arrays directly, which is
        # what keeps large tensors fast (a .tolist() would box every element)
        return ResponseOutput(
            name=name,
            datatype=datatype_of(payload),
            shape=list(payload.shape),
            data=payload,
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> np.ndarray:
        return to_ndarray(request_input)


@register_request_codec
class NumpyRequestCodec(SingleInputRequestCodec):
    ContentType = NumpyCodec.ContentType
    TypeHint = np.ndarray
    InputCodec = NumpyCodec
