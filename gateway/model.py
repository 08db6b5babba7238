"""The base class of custom runtimes, as `mlserver.MLModel`.

A runtime subclasses `MLModel`, loads its artefacts in `load()` and answers
`predict()`. The gateway runs each model in worker processes of its own and
calls, for every request: `preprocess` -> `predict` -> `postprocess`
(each may be sync or async; the two hooks are ours, KServe style).
`explain` serves POST .../explain.
"""

from __future__ import annotations

import inspect
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

from .codecs import (
    InputCodecLike,
    RequestCodecLike,
    decode_inference_request,
    decode_request_input,
    encode_inference_response,
    encode_response_output,
    get_decoded,
    has_decoded,
)
from .codecs.errors import CodecNotFound
from .errors import NotSupported
from .settings import ModelSettings
from .types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)


def _metadata_index(tensors: Optional[List[MetadataTensor]]) -> Dict[str, MetadataTensor]:
    return {tensor.name: tensor for tensor in tensors or []}


def _never_cancelled() -> bool:
    return False


class MLModel:
    # set by the worker process that runs the model (workers/worker.py)
    _cancel_probe: Callable[[], bool] = staticmethod(_never_cancelled)

    def __init__(self, settings: ModelSettings):
        self._settings = settings
        self._inputs_index = _metadata_index(settings.inputs)
        self._outputs_index = _metadata_index(settings.outputs)
        self.ready = False

    async def load(self) -> bool:
        """Load the model's artefacts (self.settings.uri). Return False, or raise, to fail the load."""
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raise NotSupported(f"model {self.name!r} does not implement predict()")

    async def predict_stream(self, payloads: AsyncIterator[InferenceRequest]) -> AsyncIterator[InferenceResponse]:
        """Stream responses to a stream of requests. By default: `predict` on the first request, one response."""
        response = self.predict(await payloads.__anext__())
        yield (await response) if inspect.isawaitable(response) else response

    async def unload(self) -> bool:
        self.ready = False
        return True

    def preprocess(self, payload: InferenceRequest) -> InferenceRequest:
        return payload

    def postprocess(self, response: InferenceResponse) -> InferenceResponse:
        return response

    async def explain(self, payload: InferenceRequest) -> InferenceResponse:
        raise NotSupported(f"model {self.name!r} has no explainer")

    def cancelled(self) -> bool:
        """True once the request being predicted is no longer waited for: its client went away or its
        deadline passed (for a batch: every request of the call). A long synchronous predict may ask
        now and then, and stop early (return anything, or raise): its answer is dropped. An async
        predict needs not ask: it is cancelled (asyncio.CancelledError at its next await)."""
        return self._cancel_probe()

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def version(self) -> Optional[str]:
        return self._settings.version

    @property
    def settings(self) -> ModelSettings:
        return self._settings

    @property
    def inputs(self) -> Optional[List[MetadataTensor]]:
        """The declared inputs (model-settings.json); load() may set them."""
        return self._settings.inputs

    @inputs.setter
    def inputs(self, value: List[MetadataTensor]) -> None:
        self._settings.inputs = value
        self._inputs_index = _metadata_index(value)

    @property
    def outputs(self) -> Optional[List[MetadataTensor]]:
        """The declared outputs (model-settings.json); load() may set them."""
        return self._settings.outputs

    @outputs.setter
    def outputs(self, value: List[MetadataTensor]) -> None:
        self._settings.outputs = value
        self._outputs_index = _metadata_index(value)

    async def metadata(self) -> MetadataModelResponse:
        """What GET /v2/models/{name} answers; read once after load()."""
        metadata = MetadataModelResponse(
            name=self.name,
            platform=self._settings.platform,
            versions=self._settings.versions,
            inputs=self._settings.inputs,
            outputs=self._settings.outputs,
        )
        if "parameters" in self._settings.model_fields_set:
            metadata.parameters = Parameters(content_type=self._settings.parameters.content_type)
        return metadata

    # --- codec helpers -------------------------------------------------

    def decode(self, request_input: RequestInput, default_codec: Optional[InputCodecLike] = None) -> Any:
        """One input decoded by its content type (its own, else its metadata's), else by
        default_codec; with neither, its data as it is."""
        decode_request_input(request_input, self._inputs_index)
        if has_decoded(request_input):
            return get_decoded(request_input)
        if default_codec:
            return default_codec.decode_input(request_input)
        return request_input.data

    def decode_request(self, inference_request: InferenceRequest, default_codec: Optional[RequestCodecLike] = None) -> Any:
        """The request decoded by its content type (its own, else the model's), else by
        default_codec; with neither, the request itself (each input decoded by its own content type)."""
        decode_inference_request(inference_request, self._settings, self._inputs_index)
        if has_decoded(inference_request):
            return get_decoded(inference_request)
        if default_codec:
            return default_codec.decode_request(inference_request)
        return inference_request

    def encode_response(self, payload: Any, default_codec: Optional[RequestCodecLike] = None) -> InferenceResponse:
        """A whole response, by the request codec that can encode the payload, else by default_codec."""
        inference_response = encode_inference_response(payload, self._settings)
        if inference_response:
            return inference_response
        if default_codec:
            return default_codec.encode_response(self.name, payload, self.version)
        raise CodecNotFound(payload_type=str(type(payload)), is_input=False, is_request=True)

    def encode(self, payload: Any, request_output: RequestOutput, default_codec: Optional[InputCodecLike] = None) -> ResponseOutput:
        """One output, by the content type the request output or its metadata names, else by a
        codec that can encode the payload, else by default_codec."""
        response_output = encode_response_output(payload, request_output, self._outputs_index)
        if response_output:
            return response_output
        if default_codec:
            return default_codec.encode_output(request_output.name, payload)
        raise CodecNotFound(name=request_output.name, is_input=False, is_request=False)
