"""Content type "datetime": ISO 8601 text in a BYTES tensor as `datetime` objects (as `mlserver.codecs.datetime`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, List, Union

from ..types import Parameters, RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec
from .errors import CodecError
from .lists import ListElement, is_list_of
from .utils import InputOrOutput, bytes_elements, tensor_label

_Datetime = Union[str, datetime]
_DatetimeStrCodec = "ascii"


def _to_iso(elem: _Datetime) -> str:
    # a str is taken as a date already in ISO form
    return elem if isinstance(elem, str) else elem.isoformat()


def _encode_datetime(elem: _Datetime, use_bytes: bool) -> Union[bytes, str]:
    iso_date = _to_iso(elem)
    return iso_date.encode(_DatetimeStrCodec) if use_bytes else iso_date


def _ensure_str(elem: ListElement) -> str:
    return elem if isinstance(elem, str) else elem.decode(_DatetimeStrCodec)


def _decode_datetime(elem: ListElement) -> datetime:
    return datetime.fromisoformat(_ensure_str(elem))


def _decode_input_or_output(input_or_output: InputOrOutput) -> List[datetime]:
    decoded = []
    for index, item in enumerate(bytes_elements(input_or_output, DatetimeCodec.ContentType)):
        try:
            decoded.append(_decode_datetime(item))
        except (ValueError, TypeError, AttributeError) as exc:
            raise CodecError(f"{tensor_label(input_or_output)}: element {index} is not an ISO 8601 date ({exc})") from None
    return decoded


@register_input_codec
class DatetimeCodec(InputCodec):
    """A list of `datetime` (or ISO str) as a BYTES tensor of shape [N, 1]."""

    ContentType = "datetime"
    TypeHint = List[_Datetime]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, datetime)

    @classmethod
    def encode_output(cls, name: str, payload: List[_Datetime], use_bytes: bool = True, **kwargs) -> ResponseOutput:
        if not isinstance(payload, list):
            raise TypeError(f"DatetimeCodec encodes a list of datetime, got {type(payload).__name__} for {name!r}")
        return ResponseOutput(
            name=name,
            datatype="BYTES",
            shape=[len(payload), 1],
            data=[_encode_datetime(item, use_bytes) for item in payload],
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> List[datetime]:
        return _decode_input_or_output(response_output)

    @classmethod
    def encode_input(cls, name: str, payload: List[_Datetime], use_bytes: bool = True, **kwargs) -> RequestInput:
        output = cls.encode_output(name, payload, use_bytes=use_bytes)
        return RequestInput(
            name=output.name,
            datatype=output.datatype,
            shape=output.shape,
            data=output.data,
            parameters=Parameters(content_type=cls.ContentType),
        )

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> List[datetime]:
        return _decode_input_or_output(request_input)
