"""KServe's model classes (`kserve.model`): subclass `Model`, override its hooks.

A call, `await model(body, headers)`, runs `preprocess` -> `predict` (or `explain`)
-> `postprocess`, each sync or async, and returns `(response, response_headers)`.
`body` is a dict for KServe's V1 protocol and an `InferRequest` for V2 (REST JSON,
REST binary or gRPC); `predict` may return a dict, an `InferResponse` or an async
iterator (a stream), and `postprocess` gets what `predict` returned.

With `return_response_headers=True`, `predict` and `postprocess` also receive
`response_headers`, a dict they may fill; the server sends it back over REST.

Each call records KServe's latency metrics (`request_preprocess_seconds`,
`request_predict_seconds`, `request_explain_seconds`, `request_postprocess_seconds`,
histograms labelled with the model) through `gateway.metrics`, and logs KServe's
per-request latency line on "kserve.trace" when `enable_latency_logging` is on.

Transformer mode: a `Model` that does not override `predict` sends the preprocessed request to
`--predictor_host` (v1, v2 or grpc-v2), one that does not override `explain` to
`explainer_host`; `postprocess` gets the answer (gateway/kserve/predictor_client.py).
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, AsyncIterator, Awaitable, Dict, List, Optional, Tuple, Union

from .. import metrics
from ..protocol.generated.inference_pb2 import ModelInferRequest
from . import context, predictor_client
from .constants.constants import PredictorProtocol
from .errors import InvalidInput
from .logging import trace_logger
from .predictor_config import PredictorConfig
from .protocol.infer_type import InferRequest, InferResponse

# KServe's latency histograms (kserve/metrics.py), by verb
_LATENCY_METRICS = {
    "preprocess": ("request_preprocess_seconds", "pre-process request latency"),
    "predict": ("request_predict_seconds", "predict request latency"),
    "explain": ("request_explain_seconds", "explain request latency"),
    "postprocess": ("request_postprocess_seconds", "post-process request latency"),
}


class BaseKServeModel(ABC):
    """What every KServe model has: a name, readiness, and load/start/stop hooks.

    `load()` runs once, in the process that builds the model; `start()` (and
    `start_engine()` for a model with `engine = True`) when the server starts serving it,
    `stop()`/`stop_engine()` when it stops."""

    enable_latency_logging = False  # the server sets it on each model it serves (Model logs by it)

    @abstractmethod
    def __init__(self, name: str):
        self.name = name
        self.ready = False
        self.engine = False

    async def healthy(self) -> bool:
        """Whether the model can serve; by default `self.ready`."""
        return self.ready

    def load(self) -> bool:
        """Load the model's artefacts; set `self.ready` (True here) and return it."""
        self.ready = True
        return self.ready

    def start(self):
        self.ready = True

    async def start_engine(self):
        self.ready = True

    def stop(self):
        self.ready = False

    def stop_engine(self):
        self.ready = False


class InferenceVerb(Enum):
    EXPLAIN = 1
    PREDICT = 2


InferReturnValueTypes = Union[Dict, InferResponse, List[str]]
InferReturnType = Union[InferReturnValueTypes, Awaitable[InferReturnValueTypes]]  # KServe's names, kept for its users
# what a call answers, (response, response headers): the response is what `postprocess` returned
# (a dict, an InferResponse, strings, a stream), the headers what the hooks put in `response_headers`
InferCallResult = Tuple[Any, Dict[str, str]]


class InferenceModel(BaseKServeModel):
    """A model the server can call for inference; `get_input_types`/`get_output_types` are
    its V2 metadata (lists of {"name", "datatype", "shape"})."""

    @abstractmethod
    def __call__(
        self,
        body: Union[Dict, InferRequest],
        headers: Optional[Dict[str, str]] = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> Awaitable[InferCallResult]:
        pass

    def get_input_types(self) -> List[Dict]:
        return []

    def get_output_types(self) -> List[Dict]:
        return []


def get_latency_ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 9)


async def _settled(result: Any) -> Any:
    """A hook's result, awaited if the hook was async (or returned an awaitable)."""
    return await result if inspect.isawaitable(result) else result


class Model(InferenceModel):
    """KServe's model: override `load`, `preprocess`, `predict`, `postprocess`, `explain`."""

    def __init__(self, name: str, return_response_headers: bool = False):
        super().__init__(name)
        self.explainer_host = None
        self.enable_latency_logging = False
        self.required_response_headers = return_response_headers

    @property
    def predictor_config(self) -> Optional[PredictorConfig]:
        """The server's predictor configuration (set by `ModelServer()`), or None."""
        return context.get_predictor_config()

    async def __call__(
        self,
        body: Union[Dict, InferRequest],
        headers: Optional[Dict[str, str]] = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> InferCallResult:
        """preprocess -> predict (or explain) -> postprocess; returns (response, response_headers)."""
        request_id = headers.get("x-request-id", "N.A.") if headers else "N.A."
        response_headers: Dict[str, str] = {}
        latency_ms: Dict[str, float] = dict.fromkeys(("preprocess", "explain", "predict", "postprocess"), 0)
        # each hook's time counts from its call to its (awaited) result
        started = time.perf_counter()
        payload = await _settled(self.preprocess(body, headers))
        _record(latency_ms, "preprocess", started)
        payload = self.validate(payload)
        if verb == InferenceVerb.EXPLAIN:
            started = time.perf_counter()
            response = await _settled(self.explain(payload, headers))
            _record(latency_ms, "explain", started)
        elif verb == InferenceVerb.PREDICT:
            started = time.perf_counter()
            if self.required_response_headers:
                response = await _settled(self.predict(payload, headers, response_headers))
            else:
                response = await _settled(self.predict(payload, headers))
            _record(latency_ms, "predict", started)
        else:
            raise NotImplementedError(f"unknown inference verb {verb!r}")
        started = time.perf_counter()
        if self.required_response_headers:
            response = await _settled(self.postprocess(response, headers, response_headers))
        else:
            response = await _settled(self.postprocess(response, headers))
        _record(latency_ms, "postprocess", started)

        if self.enable_latency_logging is True:
            trace_logger.info(
                f"requestId: {request_id}, preprocess_ms: {latency_ms['preprocess']}, "
                f"explain_ms: {latency_ms['explain']}, predict_ms: {latency_ms['predict']}, "
                f"postprocess_ms: {latency_ms['postprocess']}"
            )
        return response, response_headers

    def validate(self, payload: Any) -> Any:
        """Check the shape of a dict payload against the predictor protocol: "inputs" (v2) and
        "instances" (v1) must be lists."""
        if isinstance(payload, (ModelInferRequest, InferRequest)):
            return payload
        config = self.predictor_config
        if config is not None and isinstance(payload, dict):
            if config.protocol == PredictorProtocol.REST_V2.value:
                if "inputs" in payload and not isinstance(payload["inputs"], list):
                    raise InvalidInput('Expected "inputs" to be a list')
            elif config.protocol == PredictorProtocol.REST_V1.value:
                if "instances" in payload and not isinstance(payload["instances"], list):
                    raise InvalidInput('Expected "instances" to be a list')
        return payload

    def load(self) -> bool:
        """Load the model's artefacts; set `self.ready` (True here) and return it."""
        self.ready = True
        return self.ready

    async def preprocess(self, payload: Union[Dict, InferRequest], headers: Optional[Dict[str, str]] = None) -> Any:
        """Transform the request (a dict for V1, an InferRequest for V2) into what `predict` takes."""
        return payload

    async def postprocess(
        self,
        result: Union[Dict, InferResponse],
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> Union[Dict, InferResponse]:
        """Transform what `predict` returned into the response."""
        return result

    async def predict(
        self,
        payload: Union[Dict, InferRequest, ModelInferRequest],
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> Union[Dict, InferResponse, AsyncIterator[Any]]:
        """Run the model. Not overridden, the request goes to the predictor (transformer mode:
        gateway/kserve/predictor_client.py), over the protocol the predictor configuration names."""
        config = self.predictor_config
        if config is None:
            raise NotImplementedError("Could not find PredictorConfig.")
        if not config.predictor_host:
            raise NotImplementedError("Could not find predictor_host.")
        if config.predictor_protocol == PredictorProtocol.GRPC_V2.value:
            return await predictor_client.predict_grpc(config, payload, headers)
        return await predictor_client.predict_rest(config, config.predictor_base_url, self.name, payload, headers, response_headers)

    async def explain(self, payload: Any, headers: Optional[Dict[str, str]] = None) -> Dict:
        """Explain a prediction. Not overridden, the request goes to `explainer_host` (KServe V1)."""
        if self.explainer_host is None:
            raise NotImplementedError("Could not find explainer_host.")
        return await predictor_client.explain(self.predictor_config, self.explainer_host, self.name, payload, headers)


def _record(latency_ms: Dict[str, float], step: str, started: float) -> None:
    """Note a hook's latency for the trace line and KServe's histogram."""
    seconds = time.perf_counter() - started
    latency_ms[step] = get_latency_ms(0, seconds)
    name, description = _LATENCY_METRICS[step]
    metrics.register(name, description)  # once: later registrations are no-ops
    metrics.log(**{name: seconds})
