"""Content type "str": a BYTES tensor as a list of UTF-8 strings (as `mlserver.codecs.string`)."""

from __future__ import annotations

from typing import Any, List, Optional

from ..types import Parameters, RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec, register_request_codec
from .errors import CodecError
from .lists import ListElement, is_list_of
from .utils import InputOrOutput, SingleInputRequestCodec, bytes_elements, tensor_label

_DefaultStrCodec = "utf-8"


def encode_str(elem: str) -> bytes:
    return elem.encode(_DefaultStrCodec)


def decode_str(encoded: Optional[ListElement], str_codec: str = _DefaultStrCodec) -> Optional[str]:
    """bytes decoded, str (what JSON gives) and None as they are."""
    if encoded is None or isinstance(encoded, str):
        return encoded
    if isinstance(encoded, bytes):
        return encoded.decode(str_codec)
    raise TypeError(f"expected str or bytes, got {type(encoded).__name__}")


def _decode_input_or_output(input_or_output: InputOrOutput) -> List[Optional[str]]:
    decoded = []
    for index, item in enumerate(bytes_elements(input_or_output, StringCodec.ContentType)):
        try:
            decoded.append(decode_str(item))
        except (UnicodeDecodeError, TypeError) as exc:
            raise CodecError(f"{tensor_label(input_or_output)}: element {index} is not a UTF-8 string ({exc})") from None
    return decoded


def _check_strings(name: str, payload: Any) -> None:
    if not (isinstance(payload, (list, tuple)) and all(isinstance(item, str) for item in payload)):
        raise TypeError(f"StringCodec encodes a list of str, got {type(payload).__name__} for {name!r}")


@register_input_codec
class StringCodec(InputCodec):
    """A list of str as a BYTES tensor of shape [N, 1]; decodes any shape to a flat list."""

    ContentType = "str"
    TypeHint = List[str]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, str)

    @classmethod
    def encode_output(cls, name: str, payload: List[str], use_bytes: bool = True, **kwargs) -> ResponseOutput:
        """`use_bytes=False` keeps the str as they are (JSON-ready, e.g. for `requests`)."""
        _check_strings(name, payload)
        return ResponseOutput(
            name=name,
            datatype="BYTES",
            shape=[len(payload), 1],
            data=[encode_str(item) for item in payload] if use_bytes else list(payload),
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> List[Optional[str]]:
        return _decode_input_or_output(response_output)

    @classmethod
    def encode_input(cls, name: str, payload: List[str], use_bytes: bool = True, **kwargs) -> RequestInput:
        output = cls.encode_output(name, payload, use_bytes)
        return RequestInput(
            name=output.name,
            datatype=output.datatype,
            shape=output.shape,
            data=output.data,
            parameters=output.parameters,
        )

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> List[Optional[str]]:
        return _decode_input_or_output(request_input)


@register_request_codec
class StringRequestCodec(SingleInputRequestCodec):
    """The request's (or response's) single tensor as a list of str."""

    InputCodec = StringCodec
    ContentType = StringCodec.ContentType
    TypeHint = List[str]
