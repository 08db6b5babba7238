"""Content type "str": a BYTES tensor as a flat list of UTF-8 strings."""

from __future__ import annotations

from typing import Any, List

from ..errors import BadRequest
from ..types import Parameters, RequestInput, ResponseOutput
from .base import (
    InputCodec,
    SingleInputRequestCodec,
    is_list_of,
    register_input_codec,
    register_request_codec,
    tensor_label,
)
from .numpy import bytes_elements


@register_input_codec
class StringCodec(InputCodec):
    """Encodes to shape [n] (MLServer 1.x uses [n, 1]); decodes any shape to a flat list."""

    ContentType = "str"
    TypeHint = List[str]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, str)

    @classmethod
    def encode_output(cls, name: str, payload: List[str], **kwargs) -> ResponseOutput:
        if not is_list_of(payload, str):
            raise TypeError(f"StringCodec encodes a list of str, got {type(payload).__name__} for {name!r}")
        return ResponseOutput(
            name=name,
            datatype="BYTES",
            shape=[len(payload)],
            data=[item.encode() for item in payload],
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_input(cls, request_input: RequestInput | ResponseOutput) -> List[str]:
        items = bytes_elements(request_input, cls.ContentType)
        try:
            return [item.decode() for item in items]
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{tensor_label(request_input)}: data is not valid UTF-8 ({exc.reason})") from None


@register_request_codec
class StringRequestCodec(SingleInputRequestCodec):
    ContentType = StringCodec.ContentType
    TypeHint = List[str]
    InputCodec = StringCodec
