"""The one dispatch path every front door calls.

REST and gRPC parse their requests into `wire.request.WireRequest` and call
`DataPlane.infer`; everything about models (lookup, readiness, checking the
request against the model's declared inputs, handing it to the worker pool)
happens here, once, and so does the accounting of every answered request
(`answered`).

    async with dataplane.infer(request) as response:
        ... render the answer from `response` into bytes the front door owns ...

The response's outputs may view a worker's shared memory: they are valid inside
the block only, and that worker takes no other request until the block is left.
"""

from __future__ import annotations

import itertools
import uuid
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Optional, cast

from .. import logs
from ..control.models import ModelEntry, Supervisor
from ..control.pool import Stream
from ..control.stats import ModelStats, exposition, model_stats
from ..control.table import ModelRecord, ModelTable, in_order
from ..errors import BadRequest, NotFound, NotSupported, Unavailable, shown
from ..settings import ServerSettings
from ..types import MetadataTensor, State
from ..wire import messages
from ..wire.request import WireRequest, WireResponse, raw_bytes

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "schedule_policy"]

# ids for requests that come without one: unique per gateway process, cheaper than a uuid4 each
_ID_PREFIX = uuid.uuid4().hex[:12]
_ids = itertools.count(1)


class DataPlane:
    def __init__(self, settings: ServerSettings, supervisor: Supervisor):
        self.settings = settings
        self.supervisor = supervisor
        # the reads that need no worker pool, by the model table's protocol: in a front door of another
        # process, the same reads of the table the supervisor publishes (control/table.py's TableReader)
        self.table: ModelTable = supervisor
        # the gateway is stopping: it answers not ready (so that load balancers stop sending), and REST
        # answers close their connections; requests are still served
        self.draining = False
        # waits until what other front-door processes answered is counted (gateway/frontdoor/hub.py: RelayHub.sync)
        self.counts_in: Callable[[], Awaitable[None]] = _nothing_pending

    # --- server and model state ---------------------------------------

    def server_metadata(self) -> dict:
        return {"name": self.settings.server_name, "version": self.settings.server_version, "extensions": EXTENSIONS}

    def server_ready(self) -> bool:
        return not self.draining and self.table.ready

    def check_model_exists(self, name: str, version: Optional[str] = None) -> None:
        """The one check that a request names a known model (and version), made before its body is
        parsed: NotFound for an unknown one, whatever its inputs."""
        if not name:
            raise BadRequest("model_name is required")
        self.table.get(name, version)

    def model_state(self, name: str, version: Optional[str] = None) -> tuple[str, str]:
        """(state, reason): READY, LOADING, UNLOADING or UNAVAILABLE (the reason says why)."""
        entry = self.table.get(name, version)
        return entry.state.value, entry.reason

    def model_metadata(self, name: str, version: Optional[str] = None) -> dict:
        return self.table.get(name, version).model_metadata()

    def model_names(self) -> list[str]:
        """Every model, a versioned one as name:version for each version (as MLRun lists them)."""
        entries = in_order(self.table.entries())
        return [entry.name if entry.version is None else f"{entry.name}:{entry.version}" for entry in entries]

    def declared_inputs(self, name: str, version: Optional[str] = None) -> list[MetadataTensor]:
        return list(self._ready_entry(name, version).inputs.values())

    # --- inference ----------------------------------------------------

    def check_request(self, request: WireRequest) -> None:
        """What `infer` checks before running a request (the model ready, the inputs it declares):
        for a front door that reads a large request's data only once it passes."""
        _check_against_metadata(self._ready_entry(request.model_name, request.model_version), request)

    def infer(self, request: WireRequest) -> AbstractAsyncContextManager[WireResponse]:
        """`async with dataplane.infer(request) as response:` (see the module docstring)."""
        return self._run(messages.INFER, request)

    def explain(self, request: WireRequest) -> AbstractAsyncContextManager[WireResponse]:
        return self._run(messages.EXPLAIN, request)

    def _run(self, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[WireResponse]:
        entry = self._ready_entry(request.model_name, request.model_version)
        if kind in (messages.EXPLAIN, messages.EXPLAIN_V1) and not entry.has_explain:
            raise NotSupported(f"model {entry.name!r} has no explainer")
        if not request.id:
            request.id = f"{_ID_PREFIX}-{next(_ids)}"
        logs.REQUEST_ID.set(request.id)
        _check_against_metadata(entry, request)
        _take_schedule_policy(request)
        return self._dispatch(entry, kind, request)

    def _dispatch(self, entry: ModelRecord, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[WireResponse]:
        """Hand a checked request to its model's pool (a relay front door sends it to the main process instead)."""
        return _Inference(_pooled(entry), kind, request)

    def relayed(self, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[WireResponse]:
        """A request a relay front door has checked (its schedule policy taken, its id given), run
        here: `async with` as `infer` (gateway/frontdoor/hub.py)."""
        logs.REQUEST_ID.set(request.id)
        return _Inference(_pooled(self._ready_entry(request.model_name, request.model_version)), kind, request)

    # --- accounting -----------------------------------------------------

    def answered(
        self,
        protocol: str,
        method: str,
        path: str,
        status: int | str,
        http_status: int,
        ns: int,
        model: Optional[str],
        version: Optional[str],
        inference: bool,
        responses: Optional[int] = None,
    ) -> None:
        """The one place a request is accounted for, whatever its protocol: an inference request is
        counted in its model's metrics (`http_status`: its outcome as REST answers it, so that both
        protocols count alike), and every request gets its access line (`status`: as the protocol
        says it). A stream is one request: `responses`, how many it sent, goes in its access line."""
        if inference:
            self._count(protocol, http_status, ns, model, version)
        logs.access(protocol, method, path, status, ns, model, version, responses)

    def _count(self, protocol: str, http_status: int, ns: int, model: Optional[str], version: Optional[str]) -> None:
        """An inference request in its model's metrics (this process holds the registry)."""
        self.model_stats(model or "", version).request_done(protocol, http_status, ns)

    def streams(self, name: str, version: Optional[str] = None) -> bool:
        """Whether the model implements predict_stream (its stream calls run it; others answer each
        request with one response)."""
        return self._ready_entry(name, version).has_stream

    @asynccontextmanager
    async def stream(self, request: WireRequest, kind: bytes = messages.STREAM) -> AsyncIterator[StreamCall]:
        """Run the model's predict_stream, the request its first:

            async with dataplane.stream(request) as call:
                await call.send(further)      # gRPC's further requests; then call.end_input()
                async for response in call:   # WireResponse; valid until the next one is asked for
                    ...

        Counted as one request (in flight while the block runs); leaving the block early cancels the generator.
        `kind` STREAM_V1: a KServe model's V1 predict (v1_stream)."""
        entry = self._ready_entry(request.model_name, request.model_version)
        if kind == messages.STREAM and not entry.has_stream:
            raise BadRequest(f"model {entry.name!r} does not stream (its runtime has no predict_stream)")
        if not request.id:
            request.id = f"{_ID_PREFIX}-{next(_ids)}"
        logs.REQUEST_ID.set(request.id)
        _take_schedule_policy(request)
        _check_against_metadata(entry, request)
        async with self._open_stream(entry, kind, request) as call:
            yield call

    def relayed_stream(self, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[StreamCall]:
        """A stream a relay front door has checked, run here: `async with` as `stream`."""
        logs.REQUEST_ID.set(request.id)
        return self._open_stream(self._ready_entry(request.model_name, request.model_version), kind, request)

    def _open_stream(self, entry: ModelRecord, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[StreamCall]:
        """Open a checked stream on its model's pool (a relay front door opens it in the main process instead)."""
        return _pool_stream(_pooled(entry), kind, request)

    def takes_headers(self, name: str, version: Optional[str] = None) -> bool:
        """Whether the model's hooks take the request's headers (a KServe model's do)."""
        return self.table.get(name, version).kserve

    async def v1(self, name: str, body: bytes, headers: dict[str, str], explain: bool, timeout: Optional[float] = None) -> "V1Answer":
        """KServe's V1 protocol: the body to the model as it came, its answer as the model gave it;
        `timeout`: seconds the client waits (None: request_timeout bounds it)."""
        kind = messages.EXPLAIN_V1 if explain else messages.PREDICT_V1
        request = messages.v1_request(name, body, headers)
        request.bound_by(timeout)
        async with self._run(kind, request) as response:
            return _v1_answer(response)  # copied out of the worker's shared memory

    def v1_streams(self, name: str) -> bool:
        """Whether a KServe model's predict may answer an async iterator: its V1 predicts then run as `v1_stream`."""
        return self._ready_entry(name, None).v1_stream

    def v1_stream(self, name: str, body: bytes, headers: dict[str, str]) -> AbstractAsyncContextManager[StreamCall]:
        """A V1 predict as a stream: each response its `v1_part`, the chunks of the model's async
        iterator, or its one whole answer."""
        return self.stream(messages.v1_request(name, body, headers), messages.STREAM_V1)

    # --- statistics extension -------------------------------------------

    def model_stats(self, name: str, version: Optional[str] = None) -> ModelStats:
        """The measurements of the model version a request names; those of model "" for an unknown one
        (so that clients cannot create label values)."""
        try:
            return self.supervisor.get(name, version).pool.stats
        except NotFound:
            return model_stats("", None)

    async def metrics(self) -> bytes:
        """/metrics: the Prometheus registry, which holds every front door's counts."""
        await self.counts_in()
        return exposition()

    async def statistics(self, name: Optional[str] = None, version: Optional[str] = None) -> list[dict]:
        """The statistics extension: every model version, every version of `name`, or one version
        (counted here, in the main process, before a relayed answer leaves it). Without a name, a
        version names nothing: every model version (as Triton answers gRPC's ModelStatistics)."""
        if name is None:
            entries = self.supervisor.entries()
        elif version is not None:
            entries = [self.supervisor.get(name, version)]
        else:
            self.supervisor.get(name)  # NotFound for an unknown model
            entries = list(self.supervisor.models[name].values())
        return [entry.pool.stats.document() for entry in entries]

    # --- model repository extension -------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[dict]:
        return self.table.index(ready_only)

    async def load_model(self, name: str) -> None:
        await self.supervisor.load_model(name)

    async def unload_model(self, name: str) -> None:
        await self.supervisor.unload_model(name)

    def _ready_entry(self, name: str, version: Optional[str]) -> ModelRecord:
        entry = self.table.get(name, version)
        if entry.state != State.READY:
            why = f": {entry.reason}" if entry.reason else ""
            raise Unavailable(f"model {name!r} is not ready ({entry.state.value}{why})")
        return entry


@asynccontextmanager
async def _pool_stream(entry: ModelEntry, kind: bytes, request: WireRequest) -> AsyncIterator[StreamCall]:
    """A stream on the model's pool, counted as one request in its statistics."""
    stats = entry.pool.stats
    started = stats.request_started()
    try:
        async with entry.pool.stream(request, kind) as stream:
            yield StreamCall(entry, request, stream)
    except BaseException:
        stats.request_finished(started, ok=False)
        raise
    stats.request_finished(started, ok=True)


class StreamCall:
    """A stream being served (DataPlane.stream): its further requests checked as its first was, its
    responses as WireResponse, all with the first request's id (as MLServer does)."""

    def __init__(self, entry: ModelRecord, first: WireRequest, stream: Stream):
        self._entry, self._first, self._stream = entry, first, stream

    @property
    def responses(self) -> int:
        return self._stream.responses

    async def send(self, request: WireRequest) -> None:
        if (request.model_name, request.model_version) != (self._first.model_name, self._first.model_version):
            raise BadRequest(f"a stream's requests all go to the model its first names ({self._first.model_name!r}), not {shown(request.model_name)}")
        _take_schedule_policy(request)
        _check_against_metadata(self._entry, request)
        request.id = self._first.id
        await self._stream.send(request)

    def end_input(self) -> None:
        self._stream.end_input()

    def fail(self, error: Exception) -> None:
        """End the stream with this error (a further request that cannot be served)."""
        self._stream.fail(error)

    def __aiter__(self) -> "StreamCall":
        return self

    async def __anext__(self) -> WireResponse:
        outputs, parameters = await self._stream.__anext__()
        return WireResponse(self._entry.name, self._entry.version, self._first.id, outputs, parameters)


class _Inference:
    """One request on its way through the pool, counted in its model's statistics from the moment it
    is queued until its answer has been rendered (or it failed, timed out, or its client left)."""

    __slots__ = ("_entry", "_call", "_request", "_started")

    def __init__(self, entry: ModelEntry, kind: bytes, request: WireRequest):
        self._entry, self._request = entry, request
        self._call = entry.pool.call(kind, request)
        self._started = 0

    async def __aenter__(self) -> WireResponse:
        self._started = self._entry.pool.stats.request_started()
        try:
            reply = await self._call.__aenter__()
        except BaseException:  # an error, a timeout, or the client gone (cancelled)
            self._entry.pool.stats.request_finished(self._started, ok=False)
            raise
        entry, request = self._entry, self._request
        return WireResponse(entry.name, entry.version, request.id, reply.outputs, reply.parameters)

    async def __aexit__(self, error_type: type[BaseException] | None, *exc_info: object) -> None:
        await self._call.__aexit__(error_type, *exc_info)  # the lease is given back
        self._entry.pool.stats.request_finished(self._started, ok=error_type is None)


def _take_schedule_policy(request: WireRequest) -> None:
    """Triton's schedule policy parameters, which are the pool's and never reach the model (nor split
    a batch): `priority`, a level (lower is served first; 0: the model's default), and `timeout`, in
    microseconds (0: none), which bounds the request's deadline."""
    priority = request.parameters.pop("priority", 0)
    timeout = request.parameters.pop("timeout", 0)
    if priority < 0:
        raise BadRequest(f"parameter 'priority' must be 0 (the default) or more, got {priority}")
    if timeout < 0:
        raise BadRequest(f"parameter 'timeout' must be 0 (none) or more microseconds, got {timeout}")
    request.priority = priority
    if timeout:
        request.bound_by(timeout / 1e6)


@dataclass
class V1Answer:
    body: bytes
    content_type: str
    headers: Optional[dict]


def _v1_answer(response: WireResponse) -> V1Answer:
    """The one output a V1 answer travels as, copied out of the worker's shared memory."""
    (body,) = response.outputs
    headers = response.parameters.get("headers") if response.parameters else None
    return V1Answer(bytes(raw_bytes(body)), body.parameters.get("content_type", "application/json"), headers)


def v1_part(response: WireResponse) -> V1Answer | bytes:
    """A response of `v1_stream`: a chunk (its bytes, copied out of the worker's shared memory), or the whole answer."""
    (body,) = response.outputs
    if body.parameters.get(messages.V1_CHUNK):
        return bytes(raw_bytes(body))
    return _v1_answer(response)


def _shape_matches(declared: list[int], shape: list[int]) -> bool:
    # MLServer's rule [N] == [N, 1] for a batch of any size: its codecs send a 1-D tensor as
    # [N, 1], so a model declaring [-1] takes it (and one declaring [-1, 1] a client's [N])
    if declared == [-1] and len(shape) == 2 and shape[1] == 1:
        shape = shape[:1]
    elif declared == [-1, 1] and len(shape) == 1:
        declared = declared[:1]
    return len(declared) == len(shape) and all(d == -1 or d == s for d, s in zip(declared, shape))


async def _nothing_pending() -> None:
    pass


def _pooled(entry: ModelRecord) -> ModelEntry:
    """A model version with its pool: in the main process the table is the supervisor, whose records are its entries."""
    return cast(ModelEntry, entry)


def _check_against_metadata(entry: ModelRecord, request: WireRequest) -> None:
    """Refuse inputs the model did not declare, or of another datatype or shape; and outputs asked for in
    a form the gateway cannot give."""
    for output in request.outputs or ():
        # Triton's classification extension (tritonclient's class_count): ignored, the answer would be the whole tensor
        if output.parameters.get("classification"):
            raise NotSupported(
                f"output {shown(output.name)} asks for classification (class_count {shown(output.parameters['classification'])}), "
                "Triton's classification extension, which this gateway does not support"
            )
    if entry.inputs:
        for tensor in request.inputs:
            declared = entry.inputs.get(tensor.name)
            if declared is None:
                raise BadRequest(f"unknown input {shown(tensor.name)} for model {entry.name!r}; it takes {sorted(entry.inputs)}")
            if declared.datatype.value != tensor.datatype:
                raise BadRequest(f"input {tensor.name!r} must be {declared.datatype.value}, got {tensor.datatype}")
            if not _shape_matches(declared.shape, tensor.shape):
                raise BadRequest(f"input {tensor.name!r} must have shape {declared.shape} (-1: any), got {tensor.shape}")
        missing = set(entry.inputs) - {t.name for t in request.inputs}
        if missing:
            raise BadRequest(f"model {entry.name!r} needs input(s) {sorted(missing)}")
    if entry.outputs and request.outputs:
        unknown = [o.name for o in request.outputs if o.name not in entry.outputs]
        if unknown:
            raise BadRequest(f"unknown output(s) {shown(unknown)} for model {entry.name!r}; it returns {sorted(entry.outputs)}")
