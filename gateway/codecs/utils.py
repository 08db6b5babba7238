"""Content-type driven decoding and encoding, as the model base class uses it.

Precedence, as in MLServer: the content type on the tensor or request itself,
then the one model-settings.json declares for it, then the model's default
codec. A content type with no registered codec counts as absent, so the next
source decides (MLServer likewise ignores content types it does not know).
When encoding, a codec that can encode the payload comes before the default.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..types import InferenceRequest, InferenceResponse, MetadataTensor, Parameters, RequestInput, RequestOutput, ResponseOutput
from .base import InputCodec, RequestCodec, content_type_of, find_input_codec, find_request_codec


def _declared_codec(find: Callable, *sources: Any) -> Any:
    """The codec of the first source whose content type has a registered codec."""
    for source in sources:
        codec = find(content_type_of(source))
        if codec is not None:
            return codec
    return None


def decode_request_input(
    request_input: RequestInput,
    metadata_inputs: Optional[dict[str, MetadataTensor]] = None,
    default_codec: Optional[type[InputCodec]] = None,
) -> Any:
    """The input decoded by its codec; its raw `data` when no codec applies."""
    metadata = (metadata_inputs or {}).get(request_input.name)
    codec = _declared_codec(find_input_codec, request_input, metadata) or default_codec
    if codec is None:
        return request_input.data
    return codec.decode_input(request_input)


def decode_inference_request(
    request: InferenceRequest,
    model_settings: Any = None,
    metadata_inputs: Optional[dict[str, MetadataTensor]] = None,
    default_codec: Optional[type[RequestCodec]] = None,
) -> Any:
    """The whole request decoded by its request codec; None when no request codec applies."""
    codec = _declared_codec(find_request_codec, request, model_settings) or default_codec
    if codec is None:
        return None
    return codec.decode_request(_with_declared_input_types(request, metadata_inputs))


def _with_declared_input_types(
    request: InferenceRequest, metadata_inputs: Optional[dict[str, MetadataTensor]]
) -> InferenceRequest:
    """A request codec sees only the request, so copy onto each input the content
    type its metadata declares (shallow copies: the data is never copied)."""
    if not metadata_inputs:
        return request
    inputs = []
    for request_input in request.inputs:
        codec = _declared_codec(find_input_codec, request_input, metadata_inputs.get(request_input.name))
        if codec is not None and content_type_of(request_input) != codec.ContentType:
            parameters = (request_input.parameters or Parameters()).model_copy(update={"content_type": codec.ContentType})
            request_input = request_input.model_copy(update={"parameters": parameters})
        inputs.append(request_input)
    return request.model_copy(update={"inputs": inputs})


def encode_response_output(
    payload: Any,
    request_output: RequestOutput,
    metadata_outputs: Optional[dict[str, MetadataTensor]] = None,
    default_codec: Optional[type[InputCodec]] = None,
) -> Optional[ResponseOutput]:
    """The payload as the requested output; None when no codec can encode it."""
    metadata = (metadata_outputs or {}).get(request_output.name)
    codec = (
        _declared_codec(find_input_codec, request_output, metadata)
        or find_input_codec(payload=payload)
        or default_codec
    )
    if codec is None:
        return None
    return codec.encode_output(request_output.name, payload)


def encode_inference_response(
    payload: Any,
    model_settings: Any = None,
    default_codec: Optional[type[RequestCodec]] = None,
) -> Optional[InferenceResponse]:
    """The payload as a whole response, by the request codec that can encode it; None if none can."""
    codec = find_request_codec(payload=payload) or default_codec
    if codec is None:
        return None
    if model_settings is None:
        return codec.encode_response("", payload)
    return codec.encode_response(model_settings.name, payload, model_settings.version)
