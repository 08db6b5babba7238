"""Content type "base64": binary values as base64 text in a BYTES tensor, so that they
survive JSON (as `mlserver.codecs.base64`)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, List, Union

from ..types import Parameters, RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec
from .errors import CodecError
from .lists import ListElement, is_list_of
from .utils import InputOrOutput, bytes_elements, tensor_label

_Base64StrCodec = "ascii"


def _ensure_bytes(elem: ListElement) -> bytes:
    if isinstance(elem, str):
        return elem.encode(_Base64StrCodec)
    if isinstance(elem, bytes):
        return elem
    raise TypeError(f"expected bytes or str, got {type(elem).__name__}")


def _encode_base64(elem: ListElement, use_bytes: bool) -> Union[bytes, str]:
    encoded = base64.b64encode(_ensure_bytes(elem))
    return encoded if use_bytes else encoded.decode(_Base64StrCodec)


def _decode_base64(elem: ListElement) -> bytes:
    """The bytes that valid base64 stands for; anything else is taken as the raw bytes themselves."""
    as_bytes = _ensure_bytes(elem)
    try:
        return base64.b64decode(as_bytes, validate=True)
    except binascii.Error:
        return as_bytes


def _decode_input_or_output(input_or_output: InputOrOutput) -> List[bytes]:
    decoded = []
    for index, item in enumerate(bytes_elements(input_or_output, Base64Codec.ContentType)):
        try:
            decoded.append(_decode_base64(item))
        except (UnicodeEncodeError, TypeError) as exc:
            raise CodecError(f"{tensor_label(input_or_output)}: element {index} is not base64 text ({exc})") from None
    return decoded


@register_input_codec
class Base64Codec(InputCodec):
    """A list of bytes (or str, taken as ASCII) as base64 in a BYTES tensor of shape [N, 1]."""

    ContentType = "base64"
    TypeHint = List[bytes]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, bytes)

    @classmethod
    def encode_output(cls, name: str, payload: List[bytes], use_bytes: bool = True, **kwargs) -> ResponseOutput:
        """`use_bytes=False` gives the base64 as str (JSON-ready)."""
        if not isinstance(payload, list):
            raise TypeError(f"Base64Codec encodes a list of bytes, got {type(payload).__name__} for {name!r}")
        return ResponseOutput(
            name=name,
            datatype="BYTES",
            shape=[len(payload), 1],
            data=[_encode_base64(item, use_bytes) for item in payload],
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> List[bytes]:
        return _decode_input_or_output(response_output)

    @classmethod
    def encode_input(cls, name: str, payload: List[bytes], use_bytes: bool = True, **kwargs) -> RequestInput:
        output = cls.encode_output(name, payload, use_bytes)
        return RequestInput(
            name=output.name,
            datatype=output.datatype,
            shape=output.shape,
            data=output.data,
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> List[bytes]:
        return _decode_input_or_output(request_input)
