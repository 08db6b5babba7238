"""Codec base classes and the content-type registry.

An input codec converts one tensor (`RequestInput` / `ResponseOutput`) to and
from a Python value; a request codec converts a whole `InferenceRequest` /
`InferenceResponse`. Codecs are found either by the `content_type` a client or
model-settings.json names, or by asking each one whether it can encode a value.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

from ..errors import BadRequest
from ..types import InferenceRequest, InferenceResponse, Parameters, RequestInput, ResponseOutput

# Tensor names a request codec gives the single tensor it creates (MLServer's names).
DEFAULT_INPUT_NAME = "input-1"
DEFAULT_OUTPUT_NAME = "output-1"


def tensor_label(tensor: RequestInput | ResponseOutput) -> str:
    """How error messages name a tensor: `input 'x'` or `output 'y'`."""
    kind = "output" if isinstance(tensor, ResponseOutput) else "input"
    return f"{kind} {tensor.name!r}"


def content_type_of(obj: Any) -> Optional[str]:
    """The `parameters.content_type` of a tensor, request, metadata tensor or model settings, if set."""
    parameters = getattr(obj, "parameters", None)
    return getattr(parameters, "content_type", None)


def is_list_of(payload: Any, kind: type) -> bool:
    """Whether payload is a list whose every element is a `kind` (what can_encode checks)."""
    return isinstance(payload, list) and all(isinstance(item, kind) for item in payload)


class InputCodec:
    """Converts one tensor. Subclasses implement `encode_output` and `decode_input`;
    the other two directions follow, because inputs and outputs carry the same fields."""

    ContentType: ClassVar[str] = ""
    TypeHint: ClassVar[Any] = None

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return False

    @classmethod
    def encode_output(cls, name: str, payload: Any, **kwargs) -> ResponseOutput:
        raise NotImplementedError

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> Any:
        raise NotImplementedError

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
    def decode_output(cls, response_output: ResponseOutput) -> Any:
        # decode_input only reads the fields both types share
        return cls.decode_input(response_output)


class RequestCodec:
    """Converts a whole request or response."""

    ContentType: ClassVar[str] = ""
    TypeHint: ClassVar[Any] = None

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return False

    @classmethod
    def encode_response(
        cls, model_name: str, payload: Any, model_version: Optional[str] = None, **kwargs
    ) -> InferenceResponse:
        raise NotImplementedError

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        raise NotImplementedError

    @classmethod
    def encode_request(cls, payload: Any, **kwargs) -> InferenceRequest:
        raise NotImplementedError

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        raise NotImplementedError


class SingleInputRequestCodec(RequestCodec):
    """A request codec for requests of exactly one tensor, delegating to `InputCodec`."""

    InputCodec: ClassVar[type[InputCodec]]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return cls.InputCodec.can_encode(payload)

    @classmethod
    def encode_response(
        cls, model_name: str, payload: Any, model_version: Optional[str] = None, **kwargs
    ) -> InferenceResponse:
        return InferenceResponse(
            model_name=model_name,
            model_version=model_version,
            parameters=Parameters(content_type=cls.ContentType),
            outputs=[cls.InputCodec.encode_output(DEFAULT_OUTPUT_NAME, payload, **kwargs)],
        )

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        return cls.InputCodec.decode_output(cls._only(response.outputs, "outputs"))

    @classmethod
    def encode_request(cls, payload: Any, **kwargs) -> InferenceRequest:
        return InferenceRequest(
            parameters=Parameters(content_type=cls.ContentType),
            inputs=[cls.InputCodec.encode_input(DEFAULT_INPUT_NAME, payload, **kwargs)],
        )

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        return cls.InputCodec.decode_input(cls._only(request.inputs, "inputs"))

    @classmethod
    def _only(cls, tensors: list, what: str):
        if len(tensors) != 1:
            raise BadRequest(
                f"content type {cls.ContentType!r} ({cls.__name__}) takes exactly one tensor, got {len(tensors)} {what}"
            )
        return tensors[0]


# Insertion order is the order codecs are asked `can_encode`.
_input_codecs: dict[str, type[InputCodec]] = {}
_request_codecs: dict[str, type[RequestCodec]] = {}


def register_input_codec(codec: type[InputCodec]) -> type[InputCodec]:
    """Class decorator: make `codec` findable by its ContentType and by payload."""
    _input_codecs[codec.ContentType] = codec
    return codec


def register_request_codec(codec: type[RequestCodec]) -> type[RequestCodec]:
    """Class decorator: make `codec` findable by its ContentType and by payload."""
    _request_codecs[codec.ContentType] = codec
    return codec


def _find(registry: dict, content_type: Optional[str], payload: Any):
    if content_type:
        return registry.get(content_type)
    if payload is not None:
        return next((codec for codec in registry.values() if codec.can_encode(payload)), None)
    return None


def find_input_codec(content_type: Optional[str] = None, payload: Any = None) -> Optional[type[InputCodec]]:
    """The input codec registered for `content_type`, else the first that can encode `payload`."""
    return _find(_input_codecs, content_type, payload)


def find_request_codec(content_type: Optional[str] = None, payload: Any = None) -> Optional[type[RequestCodec]]:
    """The request codec registered for `content_type`, else the first that can encode `payload`."""
    return _find(_request_codecs, content_type, payload)
