"""A KServe model in a gateway worker: what the worker calls, in KServe's terms.

The worker (workers/worker.py) hands over a request in the gateway's internal form; here it
becomes what KServe 0.21 gives a model, `await model(body, headers, verb)` runs its hooks,
and the answer goes back as tensors:

- V2 (REST JSON, REST binary, gRPC): the body is an `InferRequest` whose inputs view the
  request's tensor bytes (`as_numpy()` is a read-only view; `data` is KServe's flat list,
  made on first use; BYTES elements are `str` from REST and `bytes` from gRPC, as in KServe).
  The model answers an `InferResponse` or a V2 response dict.
- V1 (`POST /v1/models/{name}:predict`, `:explain`): the body travels as one UINT8 tensor;
  here it becomes the parsed JSON (a dict), or the raw bytes when the content type is not
  JSON, as KServe decodes it. The answer (a dict or list, an `InferResponse`, bytes or str)
  goes back as one UINT8 tensor whose `content_type` parameter the front door sends.
- Streams: a model whose predict may answer an async iterator (`may_stream`) gets its V1 predicts
  as streams (STREAM_V1, workers/worker.py `_Stream`): each chunk an ITEM; over V2 an iterator
  is a server error, as in KServe, which streams only V1 `:predict`.
- Errors are KServe's answers: its errors carry their status and gRPC code; NotImplementedError
  is 501 / UNIMPLEMENTED; anything else is 500 / INTERNAL with "Type : message".
- `response_headers` a model fills (return_response_headers=True) travel as the reply's
  parameter "headers", which the REST front door sends as HTTP headers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, AsyncIterator, Callable, Optional

import numpy as np
import orjson

from gateway.errors import GatewayError, NotSupported, RuntimeFailure
from gateway.kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from gateway.kserve.errors import InvalidInput
from gateway.kserve.model import BaseKServeModel, InferenceModel, InferenceVerb, Model
from gateway.kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput, to_http_parameters
from gateway.types import Datatype, InferenceResponse, ResponseOutput
from gateway.wire import messages
from gateway.wire.packed import PackedBytes, unpack_bytes
from gateway.wire.request import Tensor
from gateway.wire.request import WireRequest as Arrived

from .worker import Answer, LoadFailed, Served, select_outputs

log = logging.getLogger("gateway.kserve")

V1_KINDS = (messages.PREDICT_V1, messages.EXPLAIN_V1)
EXPLAIN_KINDS = (messages.EXPLAIN, messages.EXPLAIN_V1)
# the content types KServe's V1 decodes as JSON (kserve.protocol.dataplane.JSON_HEADERS)
# the return annotations that say a predict may answer a stream (typing's and collections.abc's names)
ASYNC_ITERATORS = ("AsyncIterator", "AsyncGenerator", "AsyncIterable")
JSON_CONTENT_TYPES = frozenset({"application/json", "application/cloudevents+json", "application/ld+json", "application/octet-stream"})


def is_kserve_model_class(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, BaseKServeModel)


async def _settled(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class ServedKServe(Served):
    """A KServe model (`BaseKServeModel`) as a worker serves it (workers.worker.Served)."""

    def __init__(self, model: BaseKServeModel, name: Optional[str] = None, setup_loop: Optional[Callable[[asyncio.AbstractEventLoop], None]] = None):
        """`name`: the name it is served under (default: its own); `setup_loop(loop)`: run on the
        worker's event loop first (a ModelServer's exception handler and thread pool)."""
        self.model = model
        self.name = name or model.name
        self.setup_loop = setup_loop

    async def load(self) -> None:
        await _settled(self.model.load())
        if not self.model.ready:
            raise LoadFailed(f"load() left model {self.name!r} not ready (self.ready is False)")

    async def start(self) -> dict:
        """In each worker: the model's start() (and start_engine() for an engine), then its metadata."""
        if self.setup_loop is not None:
            self.setup_loop(asyncio.get_running_loop())
        self.model.start()
        if self.model.engine:
            await self.model.start_engine()
        metadata: dict = {"name": self.name, "platform": ""}
        if isinstance(self.model, InferenceModel):
            metadata["inputs"] = await _settled(self.model.get_input_types())
            metadata["outputs"] = await _settled(self.model.get_output_types())
        # an explainer of its own, or a host its explain() forwards to
        explains = isinstance(self.model, Model) and (type(self.model).explain is not Model.explain or self.model.explainer_host is not None)
        return {"metadata": metadata, "explain": explains, "kserve": True, "v1_stream": may_stream(self.model)}

    async def call(self, kind: bytes, request: Arrived, received: int, batch) -> tuple[list[Tensor], dict, list[int]]:
        if not isinstance(self.model, InferenceModel):
            raise NotSupported(f"Model of type {type(self.model).__name__} does not support inference")
        headers = dict(request.headers or {})
        body = _v1_body(request, headers) if kind in V1_KINDS else _infer_request(request)
        verb = InferenceVerb.EXPLAIN if kind in EXPLAIN_KINDS else InferenceVerb.PREDICT
        inputs_ready = time.perf_counter_ns()
        response, response_headers = await self.model(body, headers=headers, verb=verb)
        inferred = time.perf_counter_ns()
        if isinstance(response, AsyncIterator):
            if kind == messages.PREDICT_V1:  # may_stream did not see it coming
                raise NotSupported(
                    f"model {self.name!r} answered an async iterator, but its predict does not say it streams:"
                    " make predict an async generator, or annotate its return type AsyncIterator[...]"
                )
            raise RuntimeFailure(f"model {self.name!r} answered an async iterator: only V1 :predict streams (as in KServe)")
        if kind in V1_KINDS:
            outputs, parameters = _v1_answer(response, response_headers)
        else:
            outputs, parameters = _v2_answer(self.name, response, request, batch)
            if response_headers:
                parameters["headers"] = {**parameters.get("headers", {}), **response_headers}
        return outputs, parameters, [inputs_ready - received, inferred - inputs_ready, time.perf_counter_ns() - inferred]

    async def open_stream(self, kind: bytes, first: Arrived, payloads: AsyncIterator) -> tuple[AsyncIterator[Any], Answer]:
        """A V1 predict of a model that may stream: the chunks of the async iterator it answers
        (after postprocess, as KServe), or its one whole answer."""
        if kind != messages.STREAM_V1 or not isinstance(self.model, InferenceModel):
            return await super().open_stream(kind, first, payloads)
        headers = dict(first.headers or {})
        response, response_headers = await self.model(_v1_body(first, headers), headers=headers, verb=InferenceVerb.PREDICT)
        if isinstance(response, AsyncIterator):
            return response, self._chunk
        return _once(response), lambda whole: _v1_answer(whole, response_headers)

    def _chunk(self, chunk: Any) -> tuple[list[Tensor], dict]:
        """A chunk as KServe sends it (Starlette's StreamingResponse): bytes as they are, str in UTF-8."""
        if isinstance(chunk, str):
            chunk = chunk.encode()
        elif not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise RuntimeFailure(f"model {self.name!r} streamed a {type(chunk).__name__}: the chunks of a stream are str or bytes (as in KServe)")
        data = np.frombuffer(chunk, dtype=np.uint8)
        return [Tensor(messages.V1_BODY, "UINT8", [data.size], data, {messages.V1_CHUNK: True})], {}

    def error(self, exc: Exception) -> GatewayError:
        """KServe's answers to what its handlers do not name: 501 for NotImplementedError, else 500."""
        log.exception("model %s raised", self.name)
        if isinstance(exc, NotImplementedError):
            return NotSupported(str(exc))
        return RuntimeFailure(f"{type(exc).__name__} : {exc}")

    async def stop(self) -> None:
        self.model.stop()
        if self.model.engine:
            self.model.stop_engine()


class _ArrivedInput(InferInput):
    """An input as the worker received it: `as_numpy()` views the request's bytes (read-only, no
    copy); `data` is the flat list KServe's REST decoding gives, made only if it is read."""

    def __init__(self, tensor: Tensor, from_grpc: bool):
        super().__init__(tensor.name, list(tensor.shape), tensor.datatype, None, dict(tensor.parameters) or None)
        array = tensor.data
        if isinstance(array, PackedBytes):
            array = unpack_bytes(array, f"input {tensor.name!r}").reshape(tensor.shape)
            array.flags.writeable = False
            if not from_grpc:  # KServe's REST decoding gives BYTES as str
                try:
                    array = np.array([item.decode() for item in array.ravel()], dtype=object).reshape(tensor.shape)
                except UnicodeDecodeError:
                    pass  # not text: kept as bytes
        self._array: Optional[np.ndarray] = array

    @property
    def data(self):
        if self._data is None and self._array is not None:
            self._data = self._array.ravel().tolist()
        return self._data

    @data.setter
    def data(self, data):
        self._data, self._array = data, None

    def as_numpy(self) -> np.ndarray:
        return self._array if self._array is not None else super().as_numpy()

    def set_data_from_numpy(self, input_tensor: np.ndarray, binary_data: bool = True):
        self._array = None
        super().set_data_from_numpy(input_tensor, binary_data)


def _infer_request(request: Arrived) -> InferRequest:
    outputs = None if request.outputs is None else [RequestedOutput(o.name, dict(o.parameters) or None) for o in request.outputs]
    return InferRequest(
        model_name=request.model_name,
        infer_inputs=[_ArrivedInput(tensor, request.from_grpc) for tensor in request.inputs],
        request_id=request.id,
        from_grpc=request.from_grpc,
        parameters=dict(request.parameters) or None,
        request_outputs=outputs,
        model_version=request.model_version,
    )


def _v1_body(request: Arrived, headers: dict[str, str]) -> Any:
    """The V1 body as KServe decodes it: JSON, unless the content type says otherwise."""
    raw = request.inputs[0].data
    assert isinstance(raw, np.ndarray), "the front door sends a V1 body as one UINT8 tensor"
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in JSON_CONTENT_TYPES:
        return raw.tobytes()
    try:
        return orjson.loads(raw.data)  # the array's memoryview: no copy
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Unrecognized request format: {exc}") from None


def may_stream(model: BaseKServeModel) -> bool:
    """Whether the model's V1 predict may answer an async iterator, to be streamed: its `predict` or
    `postprocess` is an async generator, or says it returns an async iterator (its annotation)."""
    if not isinstance(model, Model):
        return False
    for hook in ("predict", "postprocess"):
        method = getattr(type(model), hook)
        if method is getattr(Model, hook):
            continue  # KServe's own: forwards to a predictor, or passes the answer on
        if inspect.isasyncgenfunction(method) or any(name in str(inspect.signature(method).return_annotation) for name in ASYNC_ITERATORS):
            return True
    return False


async def _once(answer: Any) -> AsyncIterator[Any]:
    yield answer


def _v1_answer(response: Any, response_headers: dict[str, str]) -> tuple[list[Tensor], dict]:
    """A V1 answer as one UINT8 tensor and its content type; an InferResponse as its V2 REST body."""
    headers = {}
    if isinstance(response, InferResponse):
        response, json_length = response.to_rest()
        if json_length is not None:
            headers[INFERENCE_CONTENT_LENGTH_HEADER] = str(json_length)
    if isinstance(response, bytes):
        body, content_type = response, "application/octet-stream"
    elif isinstance(response, str):
        body, content_type = response.encode(), "text/plain; charset=utf-8"
    else:
        body = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        content_type = "application/json"
    data = np.frombuffer(body, dtype=np.uint8)
    headers.update(response_headers)  # the model's own win
    parameters = {"headers": headers} if headers else {}
    return [Tensor(messages.V1_BODY, "UINT8", [data.size], data, {"content_type": content_type})], parameters


def _v2_answer(name: str, response: Any, request: Arrived, batch) -> tuple[list[Tensor], dict]:
    """A V2 answer's outputs, those the request asked for (workers.worker.select_outputs' rules)."""
    if isinstance(response, dict):
        response = InferResponse.from_rest(response)
    if not isinstance(response, InferResponse):
        raise RuntimeFailure(f"model {name!r} answered a V2 request with {type(response).__name__}: expected an InferResponse or a dict")
    # the parameters stay plain dicts: model_construct does not validate them, and select_outputs takes dicts
    outputs = []
    for output in response.outputs:
        data = output.as_numpy()  # first: it refuses an unknown datatype with a clear error
        parameters = to_http_parameters(output.parameters or {})
        parameters.pop("binary_data_size", None)  # of the model's own encoding; the front door writes its own
        outputs.append(
            ResponseOutput.model_construct(
                name=output.name,
                shape=list(output.shape),
                datatype=Datatype(output.datatype),
                parameters=parameters or None,  # type: ignore[arg-type]  # a dict, see above
                data=data,
            )
        )
    response_parameters = to_http_parameters(response.parameters) if response.parameters else None
    answer = InferenceResponse.model_construct(model_name=name, outputs=outputs, parameters=response_parameters)  # type: ignore[arg-type]  # a dict
    return select_outputs(answer, request.outputs, batch)
