"""Codec base classes and the content-type registry (as `mlserver.codecs.base`).

An input codec converts one tensor (`RequestInput` / `ResponseOutput`) to and
from a Python value; a request codec converts a whole `InferenceRequest` /
`InferenceResponse`. Codecs are found by the `content_type` a client or
model-settings.json names, by asking each one whether it can encode a value,
or by the type hint a `decode_args` signature gives.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, ClassVar, Dict, Iterable, Optional, Type, Union

from ..types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput

log = logging.getLogger("gateway.codecs")

InputCodecLike = Union[Type["InputCodec"], "InputCodec"]
RequestCodecLike = Union[Type["RequestCodec"], "RequestCodec"]


def deprecated(reason: str):
    """Log `DEPRECATED! <reason>` at each call (MLServer's old codec method names)."""

    def wrap(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            log.warning("DEPRECATED! %s", reason)
            return func(*args, **kwargs)

        return inner

    return wrap


class InputCodec:
    """Converts one tensor. A subclass implements `encode_output` and `decode_input`;
    `encode_input` and `decode_output` follow from them unless it overrides them,
    because inputs and outputs carry the same fields."""

    ContentType: ClassVar[str] = ""
    TypeHint: ClassVar[Any] = type(None)

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return False

    @classmethod
    @deprecated("The encode() method is now deprecated. Use encode_output() instead.")
    def encode(cls, name: str, payload: Any) -> ResponseOutput:
        return cls.encode_output(name, payload)

    @classmethod
    def encode_output(cls, name: str, payload: Any, **kwargs) -> ResponseOutput:
        raise NotImplementedError()

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> Any:
        # decode_input reads only the fields both types share
        return cls.decode_input(response_output)  # type: ignore[arg-type]

    @classmethod
    def encode_input(cls, name: str, payload: Any, **kwargs) -> RequestInput:
        output = cls.encode_output(name, payload, **kwargs)
        return RequestInput(
            name=output.name,
            shape=output.shape,
            datatype=output.datatype,
            parameters=output.parameters,
            data=output.data,
        )

    @classmethod
    @deprecated("The decode() method is now deprecated. Use decode_input() instead.")
    def decode(cls, request_input: RequestInput) -> Any:
        return cls.decode_input(request_input)

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> Any:
        raise NotImplementedError()


class RequestCodec:
    """Converts a whole request or response (e.g. a DataFrame, one tensor per column)."""

    ContentType: ClassVar[str] = ""
    TypeHint: ClassVar[Any] = type(None)

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return False

    @classmethod
    @deprecated("The encode() method is now deprecated. Use encode_response() instead.")
    def encode(cls, model_name: str, payload: Any, model_version: Optional[str] = None) -> InferenceResponse:
        return cls.encode_response(model_name, payload, model_version)

    @classmethod
    def encode_response(cls, model_name: str, payload: Any, model_version: Optional[str] = None, **kwargs) -> InferenceResponse:
        raise NotImplementedError()

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        raise NotImplementedError()

    @classmethod
    def encode_request(cls, payload: Any, **kwargs) -> InferenceRequest:
        raise NotImplementedError()

    @classmethod
    @deprecated("The decode() method is now deprecated. Use decode_request() instead.")
    def decode(cls, request: InferenceRequest) -> Any:
        return cls.decode_request(request)

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        raise NotImplementedError()


def _first(matching: list, what: str) -> Any:
    """The first of the codecs that match; debug lines say when none or several did
    (MLServer warns; per request that would flood the log)."""
    if not matching:
        log.debug("no codec found for %s", what)
        return None
    if len(matching) > 1:
        log.debug("%d codecs found for %s; using the first (%r)", len(matching), what, matching[0].ContentType)
    return matching[0]


def _find_by_payload(payload: Any, codecs: Iterable[Any]) -> Any:
    return _first([codec for codec in codecs if codec.can_encode(payload)], f"payload of type {type(payload)}")


def _find_by_type_hint(type_hint: Any, codecs: Iterable[Any]) -> Any:
    return _first([codec for codec in codecs if codec.TypeHint == type_hint], f"type hint {type_hint}")


class _CodecRegistry:
    """Codecs by content type; insertion order is the order they are asked `can_encode`."""

    def __init__(self) -> None:
        self._input_codecs: Dict[str, InputCodecLike] = {}
        self._request_codecs: Dict[str, RequestCodecLike] = {}

    def register_input_codec(self, content_type: str, codec: InputCodecLike) -> None:
        self._input_codecs[content_type] = codec

    def register_request_codec(self, content_type: str, codec: RequestCodecLike) -> None:
        self._request_codecs[content_type] = codec

    def find_input_codec(self, content_type: Optional[str] = None, payload: Any = None, type_hint: Any = None) -> Optional[InputCodecLike]:
        """By content type if given, else by payload if given, else by type hint."""
        if content_type:
            return self._input_codecs.get(content_type)
        if payload is not None:
            return self.find_input_codec_by_payload(payload)
        if type_hint is not None:
            return self.find_input_codec_by_type_hint(type_hint)
        return None

    def find_input_codec_by_payload(self, payload: Any) -> Optional[InputCodecLike]:
        return _find_by_payload(payload, list(self._input_codecs.values()))

    def find_input_codec_by_type_hint(self, type_hint: Any) -> Optional[InputCodecLike]:
        return _find_by_type_hint(type_hint, list(self._input_codecs.values()))

    def find_request_codec(self, content_type: Optional[str] = None, payload: Any = None, type_hint: Any = None) -> Optional[RequestCodecLike]:
        """By content type if given, else by payload if given, else by type hint."""
        if content_type:
            return self._request_codecs.get(content_type)
        if payload is not None:
            return self.find_request_codec_by_payload(payload)
        if type_hint is not None:
            return self.find_request_codec_by_type_hint(type_hint)
        return None

    def find_request_codec_by_payload(self, payload: Any) -> Optional[RequestCodecLike]:
        return _find_by_payload(payload, list(self._request_codecs.values()))

    def find_request_codec_by_type_hint(self, type_hint: Any) -> Optional[RequestCodecLike]:
        return _find_by_type_hint(type_hint, list(self._request_codecs.values()))


_codec_registry = _CodecRegistry()

find_input_codec = _codec_registry.find_input_codec
find_input_codec_by_payload = _codec_registry.find_input_codec_by_payload
find_input_codec_by_type_hint = _codec_registry.find_input_codec_by_type_hint
find_request_codec = _codec_registry.find_request_codec
find_request_codec_by_payload = _codec_registry.find_request_codec_by_payload
find_request_codec_by_type_hint = _codec_registry.find_request_codec_by_type_hint


def register_input_codec(CodecKlass: InputCodecLike) -> InputCodecLike:
    """Class decorator: make a codec findable by its ContentType, payload and TypeHint."""
    if CodecKlass.ContentType is not None:
        _codec_registry.register_input_codec(CodecKlass.ContentType, CodecKlass)
    return CodecKlass


def register_request_codec(CodecKlass: RequestCodecLike) -> RequestCodecLike:
    """Class decorator: make a codec findable by its ContentType, payload and TypeHint."""
    if CodecKlass.ContentType is not None:
        _codec_registry.register_request_codec(CodecKlass.ContentType, CodecKlass)
    return CodecKlass
