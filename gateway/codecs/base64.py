"""Content type "base64": binary values sent as base64 text in a BYTES tensor,
so they survive JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Any, List

from ..errors import BadRequest
from ..types import Parameters, RequestInput, ResponseOutput
from .base import InputCodec, is_list_of, register_input_codec, tensor_label
from .numpy import bytes_elements


@register_input_codec
class Base64Codec(InputCodec):
    """Encodes a list of bytes to a BYTES tensor of shape [n]; decodes any shape to a flat list."""

    ContentType = "base64"
    TypeHint = List[bytes]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, bytes)

    @classmethod
    def encode_output(cls, name: str, payload: List[bytes], **kwargs) -> ResponseOutput:
        if not is_list_of(payload, bytes):
            raise TypeError(f"Base64Codec encodes a list of bytes, got {type(payload).__name__} for {name!r}")
        return ResponseOutput(
            name=name,
            datatype="BYTES",
            shape=[len(payload)],
            data=[base64.b64encode(item) for item in payload],
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_input(cls, request_input: RequestInput | ResponseOutput) -> List[bytes]:
        decoded = []
        for index, item in enumerate(bytes_elements(request_input, cls.ContentType)):
            try:
                decoded.append(base64.b64decode(item, validate=True))
            except binascii.Error as exc:
                raise BadRequest(f"{tensor_label(request_input)}: element {index} is not valid base64 ({exc})") from None
        return decoded
