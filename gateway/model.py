"""The base class of custom runtimes.

A runtime subclasses `MLModel`, loads its artefacts in `load()` and answers
`predict()`. The gateway runs each model in worker processes of its own and
calls, for every request: `preprocess` -> `predict` -> `postprocess`
(each may be sync or async). `explain` serves POST .../explain.
"""

from __future__ import annotations

from typing import Any, Optional

from . import codecs
from .errors import NotSupported
from .settings import ModelSettings
from .types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)


class MLModel:
    def __init__(self, settings: ModelSettings):
        self._settings = settings
        self.ready = False
        self._inputs_metadata = {t.name: t for t in settings.inputs}
        self._outputs_metadata = {t.name: t for t in settings.outputs}

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def version(self) -> Optional[str]:
        return self._settings.version

    @property
    def settings(self) -> ModelSettings:
        return self._settings

    async def load(self) -> bool:
        """Load the model's artefacts (self.settings.uri). Return False, or raise, to fail the load."""
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raise NotSupported(f"model {self.name!r} does not implement predict()")

    async def unload(self) -> bool:
        self.ready = False
        return True

    def preprocess(self, payload: InferenceRequest) -> InferenceRequest:
        return payload

    def postprocess(self, response: InferenceResponse) -> InferenceResponse:
        return response

    async def explain(self, payload: InferenceRequest) -> InferenceResponse:
        raise NotSupported(f"model {self.name!r} has no explainer")

    async def metadata(self) -> MetadataModelResponse:
        """What GET /v2/models/{name} answers; read once after load()."""
        return MetadataModelResponse(
            name=self.name,
            versions=self._settings.versions or None,
            platform=self._settings.platform,
            inputs=self._settings.inputs,
            outputs=self._settings.outputs,
        )

    # --- codec helpers -------------------------------------------------

    def decode(self, request_input: RequestInput, default_codec: Any = None) -> Any:
        """Decode one input by its content type (input parameters, then metadata, then default_codec)."""
        return codecs.decode_request_input(request_input, self._inputs_metadata, default_codec)

    def decode_request(self, request: InferenceRequest, default_codec: Any = None) -> Any:
        """Decode a whole request with a request codec (e.g. pandas) picked by content type."""
        return codecs.decode_inference_request(request, self._settings, self._inputs_metadata, default_codec)

    def encode(self, payload: Any, request_output: RequestOutput, default_codec: Any = None) -> ResponseOutput:
        """Encode one output, with the codec its metadata names or one that fits the payload."""
        return codecs.encode_response_output(payload, request_output, self._outputs_metadata, default_codec)

    def encode_response(self, payload: Any, default_codec: Any = None) -> InferenceResponse:
        """Encode a whole response (e.g. a DataFrame) with a request codec."""
        return codecs.encode_inference_response(payload, self._settings, default_codec)

    def input_metadata(self, name: str) -> Optional[MetadataTensor]:
        return self._inputs_metadata.get(name)
