"""Content-type driven decoding and encoding, and the decoded-payload cache (as `mlserver.codecs.utils`).

Which codec decodes an input: the content type in the input's own parameters,
else the one its metadata (model-settings.json `inputs`) declares. Which codec
decodes a whole request: the request's content type, else the model's
(`parameters.content_type` in model-settings.json). A content type no codec is
registered for decodes nothing. Each decoded value is kept on the object it
came from (`parameters._decoded_payload`), so that request codecs such as
pandas' build on what the input codecs made.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from ..settings import ModelSettings
from ..types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
    TensorData,
)
from .base import (
    InputCodecLike,
    RequestCodec,
    RequestCodecLike,
    find_input_codec,
    find_input_codec_by_payload,
    find_request_codec,
    find_request_codec_by_payload,
)
from .errors import CodecError
from .lists import as_list

DefaultOutputPrefix = "output-"
DefaultInputPrefix = "input-"
DecodedParameterName = "_decoded_payload"

InputOrOutput = Union[RequestInput, ResponseOutput]
Codec = Union[InputCodecLike, RequestCodecLike]
Parametrised = Union[InferenceRequest, RequestInput, RequestOutput, ResponseOutput, InferenceResponse]
Tagged = Union[MetadataTensor, ModelSettings]


def inject_batch_dimension(shape: List[int]) -> List[int]:
    """A 1-D shape [N] becomes [N, 1] (and a scalar's [] becomes [1]): N rows of one value each."""
    if len(shape) > 1:
        return shape
    return shape + [1]


def tensor_data(tensor: InputOrOutput) -> Any:
    """A tensor's data unwrapped: a list, a value, or a numpy array (a worker's input,
    or what a codec built from an array and nothing has read as a list yet)."""
    data = tensor.data
    if isinstance(data, TensorData):
        deferred = data.deferred_array()
        return data.root if deferred is None else deferred
    return data


def tensor_label(tensor: Any) -> str:
    """How error messages name a tensor: `input 'x'` or `output 'y'`."""
    kind = "output" if isinstance(tensor, ResponseOutput) else "input"
    return f"{kind} {tensor.name!r}"


def _get_content_type(request: Parametrised, metadata: Optional[Tagged] = None) -> Optional[str]:
    if request.parameters and request.parameters.content_type:
        return request.parameters.content_type
    if metadata is not None and metadata.parameters and metadata.parameters.content_type:
        return metadata.parameters.content_type
    return None


def _save_decoded(parametrised_obj: Parametrised, decoded_payload: Any) -> None:
    if not parametrised_obj.parameters:
        parametrised_obj.parameters = Parameters()
    # an attribute outside the fields: kept with the object, never dumped
    setattr(parametrised_obj.parameters, DecodedParameterName, decoded_payload)


def has_decoded(parametrised_obj: Parametrised) -> bool:
    if parametrised_obj.parameters:
        return hasattr(parametrised_obj.parameters, DecodedParameterName)
    return False


def get_decoded(parametrised_obj: Parametrised) -> Any:
    if has_decoded(parametrised_obj):
        return getattr(parametrised_obj.parameters, DecodedParameterName)
    return None


def get_decoded_or_raw(parametrised_obj: Parametrised) -> Any:
    """The cached decoded value; else a tensor's `data`, or any other object itself."""
    if has_decoded(parametrised_obj):
        return get_decoded(parametrised_obj)
    if isinstance(parametrised_obj, (RequestInput, ResponseOutput)):
        return parametrised_obj.data
    return parametrised_obj


def encode_response_output(
    payload: Any,
    request_output: RequestOutput,
    metadata_outputs: Dict[str, MetadataTensor] = {},  # noqa: B006 (MLServer's signature; never changed here)
) -> Optional[ResponseOutput]:
    """The payload as the requested output, by the codec its content type names (the request
    output's, else its metadata's), else by one that can encode it; None if there is none."""
    content_type = _get_content_type(request_output, metadata_outputs.get(request_output.name))
    codec = find_input_codec(content_type) if content_type else find_input_codec_by_payload(payload)
    if not codec:
        return None
    return codec.encode_output(name=request_output.name, payload=payload)


def encode_inference_response(payload: Any, model_settings: ModelSettings) -> Optional[InferenceResponse]:
    """The payload as a whole response, by the request codec that can encode it; None if none can."""
    codec = find_request_codec_by_payload(payload)
    if not codec:
        return None
    model_version = model_settings.parameters.version if model_settings.parameters else None
    return codec.encode_response(model_settings.name, payload, model_version)


def decode_request_input(
    request_input: RequestInput,
    metadata_inputs: Dict[str, MetadataTensor] = {},  # noqa: B006 (MLServer's signature; never changed here)
) -> Optional[Any]:
    """Decode (and cache) an input by its content type; None when it has none or no codec has it."""
    content_type = _get_content_type(request_input, metadata_inputs.get(request_input.name))
    if content_type is None:
        return None
    codec = find_input_codec(content_type)
    if codec is None:
        return None
    decoded_payload = codec.decode_input(request_input)
    _save_decoded(request_input, decoded_payload)
    return decoded_payload


def decode_inference_request(
    inference_request: InferenceRequest,
    model_settings: Optional[ModelSettings] = None,
    metadata_inputs: Dict[str, MetadataTensor] = {},  # noqa: B006 (MLServer's signature; never changed here)
) -> Optional[Any]:
    """Decode every input by its content type, then the whole request by the request's (or the
    model's) content type, caching each; the request itself when no request codec applies."""
    for request_input in inference_request.inputs:
        decode_request_input(request_input, metadata_inputs)
    request_content_type = _get_content_type(inference_request, model_settings)
    if request_content_type is not None:
        codec = find_request_codec(request_content_type)
        if codec is not None:
            decoded_payload = codec.decode_request(inference_request)
            _save_decoded(inference_request, decoded_payload)
            return decoded_payload
    return inference_request


class SingleInputRequestCodec(RequestCodec):
    """A request codec for requests of exactly one tensor, through `InputCodec`."""

    InputCodec: Optional[InputCodecLike] = None

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return cls.InputCodec is not None and cls.InputCodec.can_encode(payload)

    @classmethod
    def encode_response(cls, model_name: str, payload: Any, model_version: Optional[str] = None, **kwargs) -> InferenceResponse:
        output = cls._input_codec().encode_output(f"{DefaultOutputPrefix}1", payload, **kwargs)
        return InferenceResponse(
            model_name=model_name,
            model_version=model_version,
            parameters=Parameters(content_type=cls.ContentType),
            outputs=[output],
        )

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        output = cls._only(response.outputs, "output")
        if not has_decoded(output) and cls.InputCodec is not None:
            _save_decoded(output, cls.InputCodec.decode_output(output))
        return get_decoded_or_raw(output)

    @classmethod
    def encode_request(cls, payload: Any, **kwargs) -> InferenceRequest:
        request_input = cls._input_codec().encode_input(f"{DefaultInputPrefix}1", payload, **kwargs)
        return InferenceRequest(inputs=[request_input], parameters=Parameters(content_type=cls.ContentType))

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        request_input = cls._only(request.inputs, "input")
        if not has_decoded(request_input) and cls.InputCodec is not None:
            _save_decoded(request_input, cls.InputCodec.decode_input(request_input))
        return get_decoded_or_raw(request_input)

    @classmethod
    def _input_codec(cls) -> InputCodecLike:
        if cls.InputCodec is None:
            raise NotImplementedError(f"No input codec found for {cls.__name__} request codec")
        return cls.InputCodec

    @classmethod
    def _only(cls, tensors: list, kind: str) -> Any:
        if len(tensors) != 1:
            raise CodecError(f"The '{cls.ContentType}' codec only supports a single {kind} tensor ({len(tensors)} were received)")
        return tensors[0]


def bytes_elements(tensor: InputOrOutput, content_type: str) -> list:
    """The flat elements of a BYTES tensor, for the codecs that read text or bytes out of it."""
    if tensor.datatype != "BYTES":
        raise CodecError(f"{tensor_label(tensor)}: content type {content_type!r} needs datatype BYTES, got {tensor.datatype}")
    return list(as_list(tensor_data(tensor)))
