"""One model worker process.

Started by the gateway's supervisor as `python -m workers ...`. It imports the
runtime named by `implementation`, calls `load()`, announces READY (or FAILED
with the reason) and then runs its calls one at a time, in the order they came.
The gateway may send a call while another runs (it has SLOTS call slots,
wire/messages.py): that call waits in the `Inbox` and starts the moment the one
before it has replied, so the gateway's hop overlaps with compute.
A call carries one request, or a bundle of them (wire/messages.py): `_Call` runs
them one after the other, each exactly as a lone request, and sends their answers
as they come, at most every BUNDLE_SECONDS (a quick bundle in one REPLY).
A call runs in a task of its own, so that a CANCEL for it is read meanwhile: an
async predict is cancelled (asyncio), a sync one sees `MLModel.cancelled()` turn
true (which reads the socket itself, the loop being blocked by the sync call);
the call's requests not run yet are answered 499 without running.
A CANCEL for a call still waiting is answered at once (499), the call never run.
Input tensors are numpy views of the call's slot's region of the input arena
(valid during the call); outputs are written to its slot's region of the output arena.

A stream (`predict_stream`, wire/messages.py) is a call too, whose task runs
the generator while this loop goes on reading: the gateway's credits, further
requests, a cancel, pings.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib
import inspect
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path
from types import CoroutineType
from typing import Any, AsyncIterator, Callable, Optional, cast

import zmq
from pydantic import ValidationError

from gateway import logs, metrics
from gateway.codecs.utils import tensor_data
from gateway.errors import BadRequest, Cancelled, GatewayError, RuntimeFailure, shown
from gateway.model import MLModel
from gateway.runtimes import resolve_implementation
from gateway.settings import ModelSettings
from gateway.types import Datatype, InferenceRequest, InferenceResponse, Parameters, RequestInput, RequestOutput, constructed
from gateway.wire import messages
from gateway.wire.arena import Arena, Region
from gateway.wire.datatypes import array_from_output
from gateway.wire.packed import PackedBytes, unpack_bytes
from gateway.wire.request import RequestedOutput, Tensor, WireRequest
from gateway.wire.sockets import LoopSocket

log = logging.getLogger("gateway.worker")

STREAM_MESSAGES = (messages.NEXT, messages.END, messages.CREDIT)  # for the stream running (its CANCEL: the inbox's)


def runtime_class(settings: ModelSettings) -> type:
    """Import `module.Class` (the model's folder first on sys.path, as MLServer does).

    MLServer's names of the built-in runtimes (`mlserver_sklearn.SKLearnModel`, ...) mean ours."""
    implementation = resolve_implementation(settings.implementation)
    if implementation != settings.implementation:
        log.info("model %s: %s is served by the built-in %s", settings.name, settings.implementation, implementation)
    module_name, _, class_name = implementation.rpartition(".")
    if not module_name:
        raise ImportError(f"implementation {settings.implementation!r} must be 'module.Class'")
    if settings.folder is not None:
        sys.path.insert(0, str(settings.folder))
    return getattr(importlib.import_module(module_name), class_name)


Answer = Callable[[Any], tuple[list[Tensor], dict]]  # one answer of a stream as an ITEM's outputs and parameters


class Served:
    """What a worker serves: an MLModel runtime here, a KServe model in gateway.kserve.serving.

    `load()` runs once (in the worker, or in the fork server that forks the workers), `start()`
    in each worker before it announces READY, `stop()` when it is told to stop."""

    name: str

    async def load(self) -> None:
        """Load; raise (LoadFailed with the reason for a refusal) if the model cannot serve."""

    async def start(self) -> dict:
        """Per worker, once loaded: the READY payload (metadata, explain, ...)."""
        raise NotImplementedError

    async def call(self, kind: bytes, request: WireRequest, received: int, batch: list[int] | None) -> tuple[list[Tensor], dict, list[int]]:
        """(outputs, parameters, [input, infer, output] stage times in ns since `received`)."""
        raise NotImplementedError

    async def open_stream(self, kind: bytes, first: WireRequest, payloads: AsyncIterator[InferenceRequest]) -> tuple[AsyncIterator[Any], Answer]:
        """A stream's (STREAM, STREAM_V1) iterator of answers, and how each becomes an ITEM's
        (outputs, parameters). `payloads`: the stream's requests, `first` the first of them."""
        raise BadRequest(f"model {self.name!r} does not stream")  # the gateway streams only to models that say they do

    def watch_cancellation(self, cancelled: Callable[[], bool]) -> None:
        """Tell the model how to learn that its call is cancelled (MLModel.cancelled); an async
        call is cancelled with asyncio whatever the model."""

    def error(self, exc: Exception) -> GatewayError:
        """What a call's unexpected exception is answered with."""
        log.exception("the runtime raised")
        return RuntimeFailure(f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        pass


class LoadFailed(Exception):
    """load() refused (returned False): the reason is the whole message."""


class ServedRuntime(Served):
    """An MLModel runtime (MLServer's API)."""

    def __init__(self, runtime: MLModel):
        self.runtime = runtime
        self.name = runtime.name

    async def load(self) -> None:
        if await self.runtime.load() is False:
            raise LoadFailed("load() returned False")

    def watch_cancellation(self, cancelled: Callable[[], bool]) -> None:
        self.runtime._cancel_probe = cancelled

    async def open_stream(self, kind: bytes, first: WireRequest, payloads: AsyncIterator[InferenceRequest]) -> tuple[AsyncIterator[Any], Answer]:
        if kind != messages.STREAM:
            return await super().open_stream(kind, first, payloads)
        return self.runtime.predict_stream(payloads), lambda response: select_outputs(response, first.outputs)

    async def start(self) -> dict:
        metadata = (await self.runtime.metadata()).model_dump(mode="json", exclude_none=True)
        return {
            "metadata": metadata,
            "explain": type(self.runtime).explain is not MLModel.explain,
            "stream": type(self.runtime).predict_stream is not MLModel.predict_stream,
        }

    async def call(self, kind, request, received, batch):
        if kind not in (messages.INFER, messages.EXPLAIN):
            raise BadRequest(f"model {self.name!r} is an MLModel runtime: it speaks V2 only (POST /v2/models/{self.name}/infer)")
        return await run(self.runtime, kind, request, received, batch)

    async def stop(self) -> None:
        await self.runtime.unload()


def build_served(settings: ModelSettings) -> Served:
    """The model `implementation` names, built (not loaded): an MLModel runtime or a KServe model."""
    cls = runtime_class(settings)
    if isinstance(cls, type) and issubclass(cls, MLModel):
        return ServedRuntime(cls(settings))
    from .kserve import ServedKServe, is_kserve_model_class

    if is_kserve_model_class(cls):
        return ServedKServe(cast(Any, cls)(settings.name))
    raise TypeError(f"{settings.implementation} is neither a gateway.MLModel nor a KServe model (gateway.kserve.Model)")


_DATATYPES = {datatype.value: datatype for datatype in Datatype}  # Datatype(name) is an enum call per input


def to_inference_request(request: WireRequest) -> InferenceRequest:
    """The SDK's request type around numpy views of the tensors (no copy, no validation pass);
    BYTES are unpacked here, their framing checked (a malformed one is the client's: a 400).
    Built as model_construct builds it (validation would wrap each array in a TensorData), without
    its per-field work (types.constructed): every field is given, in the order the model declares it."""
    inputs = [
        constructed(
            RequestInput,
            {
                "name": t.name,
                "shape": t.shape,
                "datatype": _DATATYPES[t.datatype],  # the front door has checked it
                "parameters": _sdk_parameters(t.parameters),
                "data": _unpacked(t),
            },
        )
        for t in request.inputs
    ]
    outputs = None
    if request.outputs is not None:
        outputs = [constructed(RequestOutput, {"name": o.name, "parameters": _sdk_parameters(o.parameters)}) for o in request.outputs]
    return constructed(InferenceRequest, {"id": request.id, "parameters": _sdk_parameters(request.parameters), "inputs": inputs, "outputs": outputs})


def _unpacked(tensor: Tensor) -> Any:
    if type(tensor.data) is not PackedBytes:
        return tensor.data
    array = unpack_bytes(tensor.data, f"input {tensor.name!r}").reshape(tensor.shape)
    array.flags.writeable = False  # as every input: what the runtime gets is the request's, not its own
    return array


def _sdk_parameters(parameters: dict) -> Parameters | None:
    """The one part of the request pydantic validates. The front doors check parameters first,
    so a refusal here is still the request's fault: a 400, not a runtime error."""
    if not parameters:
        return None
    try:
        return Parameters(**parameters)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"invalid parameters: {problems}") from None


def _parameters(parameters: Parameters | dict | None) -> dict:
    """A response's or output's parameters as their dump (unset and None left out)."""
    if parameters is None:
        return {}
    if isinstance(parameters, dict):
        return parameters
    if type(parameters) is Parameters and not parameters.model_extra and parameters.headers is None:
        # what a codec sets (content_type alone) without model_dump, which cost ~5 % of a small request's worker CPU
        content_type = parameters.content_type
        return {} if content_type is None or "content_type" not in parameters.model_fields_set else {"content_type": content_type}
    return parameters.model_dump(exclude_none=True)


def select_outputs(response: Any, requested: list[RequestedOutput] | None, batch: list[int] | None = None) -> tuple[list[Tensor], dict]:
    """The runtime's outputs as tensors, only those the request asked for, in its order.

    `batch`: the rows of each request of a batched call; a BYTES output then says where each
    one's rows start, so that the gateway can split it without reading it (PackedBytes.bounds)."""
    if not isinstance(response, InferenceResponse):
        raise RuntimeFailure(f"the runtime returned {type(response).__name__}, not an InferenceResponse")
    produced = {o.name: o for o in response.outputs}
    if requested is None:
        chosen = list(produced.values())
    else:
        missing = [o.name for o in requested if o.name not in produced]
        if missing:
            raise BadRequest(f"the model has no output named {shown(missing)}; it returns {sorted(produced)}")
        chosen = [produced[o.name] for o in requested]
    tensors = []
    for out in chosen:
        datatype, shape = str(out.datatype), list(out.shape)  # a Datatype is its name as a plain str
        bounds_at = _bounds_at(shape, batch) if datatype == "BYTES" else None
        array = array_from_output(out.name, datatype, shape, tensor_data(out), bounds_at)
        tensors.append(Tensor(out.name, datatype, shape, array, _parameters(out.parameters)))
    return tensors, _parameters(response.parameters)


def _bounds_at(shape: list[int], batch: list[int] | None) -> list[int] | None:
    """Element indices where each request's rows of a batched output start (and where the last ends)."""
    if batch is None or not shape or shape[0] != sum(batch):
        return None  # no batch, or an output that does not follow it (the gateway refuses to split that)
    per_row = 1
    for dim in shape[1:]:
        per_row *= dim
    return [rows * per_row for rows in itertools.accumulate(batch, initial=0)]


async def _call(method, payload):
    result = method(payload)
    if type(result) is CoroutineType:  # an async def's, told apart without isawaitable's ABC check
        return await result
    return await result if inspect.isawaitable(result) else result


def _overridden(hook: Callable, default: Callable) -> bool:
    """Whether a runtime's preprocess or postprocess is its own, not MLModel's (which returns its argument)."""
    return getattr(hook, "__func__", None) is not default


async def run(runtime: MLModel, kind: bytes, request: WireRequest, received: int, batch: list[int] | None = None) -> tuple[list[Tensor], dict, list[int]]:
    """(outputs, parameters, [input, infer, output] stage times in ns since `received`, for the statistics)."""
    payload = to_inference_request(request)
    if kind == messages.EXPLAIN:
        inputs_ready = time.perf_counter_ns()
        response = await _call(runtime.explain, payload)
        inferred = time.perf_counter_ns()
    else:
        if _overridden(runtime.preprocess, MLModel.preprocess):
            payload = await _call(runtime.preprocess, payload)
        inputs_ready = time.perf_counter_ns()
        response = await _call(runtime.predict, payload)
        inferred = time.perf_counter_ns()
        if _overridden(runtime.postprocess, MLModel.postprocess):
            response = await _call(runtime.postprocess, response)
    outputs, parameters = select_outputs(response, request.outputs, batch)
    return outputs, parameters, [inputs_ready - received, inferred - inputs_ready, time.perf_counter_ns() - inferred]


async def load_served(settings: ModelSettings) -> Served | str:
    """The model built and loaded, or why it could not be."""
    try:
        served = build_served(settings)
        await served.load()
        return served
    except LoadFailed as exc:
        return str(exc)
    except Exception as exc:
        log.exception("model %s failed to load", settings.name)
        return f"{type(exc).__name__}: {exc}"


class Inbox:
    """The worker's messages, read by the loop or, while a sync call blocks it, by `cancelled()`,
    and its calls. Calls run one at a time, in the order they came: one that comes while another
    runs waits here, and starts once the one before it has replied. A CANCEL stops the call it
    names if it runs, or answers it at once (499) if it waits; anything else is kept for the
    loop, in order."""

    def __init__(self, link: LoopSocket, begin: Callable[[bytes, dict, list], asyncio.Task]):
        self.link = link
        self.loop = asyncio.get_running_loop()  # kept: asking for it costs a getpid() each time
        self._begin = begin  # starts a call (kind, header, frames): its task, whose result is the reply
        self._waiting: deque[tuple[dict, list]] = deque()  # calls that came while one runs: (header, frames)
        self._running: Optional[tuple[int, asyncio.Task]] = None  # the seq of the call running, and its task
        self.stopped = False  # the call running was cancelled

    def receive(self, frames: list) -> None:
        """A call: it starts now, or once the calls before it have replied."""
        header = messages.request_header(frames)
        header["arrived"] = time.perf_counter_ns()  # what each of its requests waits here is reported with its answer
        if self._running is None:
            self._start(header, frames)
        else:
            self._waiting.append((header, frames))

    def _start(self, header: dict, frames: list) -> None:
        seq = header["seq"]
        task = self._begin(frames[0].bytes, header, frames)
        self._running, self.stopped = (seq, task), False
        task.add_done_callback(lambda done: self._finish(seq, done))

    def _finish(self, seq: int, task: asyncio.Task) -> None:
        self._running = None
        # cancelled before it began (a CANCEL read in the same loop turn): it is answered all the same
        reply = messages.error_frames(seq, Cancelled("cancelled"), {}) if task.cancelled() else task.result()
        self.link.send(reply)
        if self._waiting:
            self._start(*self._waiting.popleft())

    async def finished(self) -> None:
        """Once every call received has replied."""
        while self._running is not None:
            await asyncio.wait([self._running[1]])

    def cancel(self, frames: list) -> None:
        """A CANCEL: stop the call it names if it runs, answer it if it waits (else it has been answered)."""
        seq = messages.parse_control(frames)["seq"]
        if self._running is not None and self._running[0] == seq:
            if not self.stopped:
                self.stopped = True
                log.info("the gateway cancelled the call: its client went away or its deadline passed")
                self._running[1].cancel()  # an async predict stops at its next await
            return
        for waiting in self._waiting:
            if waiting[0]["seq"] == seq:
                self._waiting.remove(waiting)
                log.info("the gateway cancelled a call waiting for the one running: answered, not run")
                self.link.send(messages.error_frames(seq, Cancelled("cancelled"), {}))
                return

    def cancelled(self) -> bool:
        """MLModel.cancelled(): read what arrived meanwhile without waiting (a sync predict blocks the loop)."""
        while not self.stopped:
            try:
                frames = self.link.recv_now()
            except zmq.Again:
                break
            kind = frames[0].bytes
            if kind == messages.CANCEL:
                self.cancel(frames)
            elif kind in messages.CALLS:
                self.receive(frames)  # it waits: a CANCEL for it, read next, must find it
            else:  # the loop's: it may be waiting for a message already read here (a stream's CREDIT)
                self.link.unread(frames)
        return self.stopped


async def answer(
    served: Served, inbox: Inbox, kind: bytes, described: dict, frames: list, batch: list[int] | None, in_arena: Region, name: str, version: str | None
) -> tuple[list[Tensor], dict, list[int]] | GatewayError:
    """One request of a call (INFER, EXPLAIN, or KServe's V1 verbs), exactly as a lone request runs:
    (outputs, parameters, stage times), or the error it fails with. CancelledError: the call was cancelled."""
    received = time.perf_counter_ns()
    logs.REQUEST_ID.set(described["id"])  # every line logged until its answer carries it
    try:
        request = messages.parse_request(described, frames, in_arena, name, version)
        return await served.call(kind, request, received, batch)
    except GatewayError as exc:
        return exc
    except Exception as exc:  # this request fails; the worker goes on
        if inbox.stopped:  # a sync predict that stopped early on cancelled() by raising, as it may: no failure to log
            raise asyncio.CancelledError from None
        return served.error(exc)
    finally:
        logs.REQUEST_ID.set(None)


class _Call:
    """One call (Inbox.start: its task; a CANCEL cancels it): its requests, one or a bundle's, run
    one after the other. Each answer is placed in the slot's output region as soon as it is done;
    what is done is sent once BUNDLE_SECONDS have passed since the call's previous message (checked
    when a request ends, and by a timer while one awaits), the rest with the last. So a quick
    bundle is answered in one message, and a slow request holds back no answer for long."""

    def __init__(self, served: Served, inbox: Inbox, kind: bytes, header: dict, frames: list, arenas: tuple[Region, Region], name: str, version: str | None):
        self._inbox, self._link = inbox, inbox.link
        self._answers = messages.Answers(header["seq"], arenas[1])
        self._sent = time.perf_counter()  # when the call's previous message left (its start, first)
        self._timer: asyncio.TimerHandle | None = None
        self.task = inbox.loop.create_task(self._run(served, kind, header, frames, arenas[0], name, version))

    async def _run(self, served: Served, kind: bytes, header: dict, frames: list, in_arena: Region, name: str, version: str | None) -> list:
        requests, batch = header["requests"], header["batch"]
        try:
            for index, described in enumerate(requests):
                waited = time.perf_counter_ns() - header["arrived"]
                result = await answer(served, self._inbox, kind, described, frames, batch, in_arena, name, version)
                if self._inbox.stopped:
                    raise asyncio.CancelledError  # a sync predict that stopped early (cancelled()), or went on: the rest is not run
                self._add(index, result, served, waited)
                if index + 1 < len(requests):
                    self._send_when_due()
            return self._answers.frames(metrics.take_report())
        except asyncio.CancelledError:  # every request not answered yet is gone
            return messages.error_frames(self._answers.seq, Cancelled("cancelled"), metrics.take_report())
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def _add(self, index: int, result: tuple[list[Tensor], dict, list[int]] | GatewayError, served: Served, waited: int) -> None:
        if isinstance(result, GatewayError):
            self._answers.fail(index, result, waited)
            return
        outputs, parameters, times = result
        try:
            self._answers.add(index, outputs, parameters, times, waited)
        except Exception as exc:  # an output that cannot be placed: this request fails
            self._answers.fail(index, served.error(exc), waited)

    def _send_when_due(self) -> None:
        wait = self._sent + messages.BUNDLE_SECONDS - time.perf_counter()
        if wait <= 0:
            self._send()
        elif self._timer is None:
            self._timer = self._inbox.loop.call_later(wait, self._send)

    def _send(self) -> None:
        """What is done so far, in one REPLY."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self._answers):
            self._link.send(self._answers.frames(metrics.take_report()))
            self._sent = time.perf_counter()


class _Stream:
    """One stream (a runtime's predict_stream; a KServe model's V1 predict), run as the call's task
    (Inbox.start: a CANCEL cancels it, and the message it returns ends the stream). Each response is sent as an ITEM once the gateway has
    given the previous one back (CREDIT): the generator runs at most one response ahead of the one
    being sent to the client. Cancelled, the generator is closed: its `finally` runs."""

    def __init__(
        self, served: Served, link: LoopSocket, kind: bytes, header: dict, frames: list, arenas: tuple[Region, Region], name: str, version: str | None
    ):
        self.seq, self._kind = header["seq"], kind
        self._served, self._link, self._out_arena = served, link, arenas[1]
        self._requests: asyncio.Queue[tuple[dict, list] | None] = asyncio.Queue()  # NEXT messages; None: END
        self._credit = asyncio.Event()
        self._credit.set()  # the output arena is free for the first response
        self.task = asyncio.create_task(self._run(header, frames, arenas[0], name, version))

    @property
    def running(self) -> bool:
        return not self.task.done()

    def on_message(self, kind: bytes, header: dict, frames: list) -> None:
        if kind == messages.CREDIT:
            self._credit.set()
        elif kind == messages.NEXT:
            self._requests.put_nowait((header, frames))
        elif kind == messages.END:
            self._requests.put_nowait(None)

    async def _payloads(self, first: WireRequest) -> AsyncIterator[InferenceRequest]:
        yield to_inference_request(first)
        while (message := await self._requests.get()) is not None:
            self._link.send(messages.control_frames(messages.TAKEN, {"seq": self.seq}))
            header, frames = message
            yield to_inference_request(messages.parse_request(header["requests"][0], frames, None, first.model_name, first.model_version))

    async def _run(self, header: dict, frames: list, in_arena: Region, name: str, version: str | None) -> list:
        (described,) = header["requests"]
        logs.REQUEST_ID.set(described["id"])
        generator, sent = None, 0
        try:
            first = messages.parse_request(described, frames, in_arena, name, version)
            generator, as_item = await self._served.open_stream(self._kind, first, self._payloads(first))
            async for response in generator:
                outputs, parameters = as_item(response)
                await self._credit.wait()
                self._credit.clear()
                self._link.send(messages.reply_frames(self.seq, outputs, parameters, self._out_arena, metrics.take_report(), messages.ITEM))
                sent += 1
            return messages.control_frames(messages.DONE, {"seq": self.seq, "report": metrics.take_report()})
        except asyncio.CancelledError:  # the client went away
            log.info("stream cancelled after %d response(s)", sent)
            return messages.error_frames(self.seq, Cancelled("cancelled"), metrics.take_report())
        except GatewayError as exc:
            return messages.error_frames(self.seq, exc, metrics.take_report())
        except Exception as exc:  # the stream fails; the worker goes on
            return messages.error_frames(self.seq, self._served.error(exc), metrics.take_report())
        finally:
            aclose = getattr(generator, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()  # a generator left at a yield runs its finally now
                except Exception:
                    log.exception("closing the model's stream raised")


async def serve(settings: ModelSettings, endpoint: str, identity: bytes, in_arena: Arena, out_arena: Arena) -> int:
    """A worker that loads its model itself."""
    loaded = await load_served(settings)
    return await serve_loaded(loaded, settings.name, settings.version, endpoint, identity, in_arena, out_arena)


async def serve_loaded(served: Served | str, name: str, version: str | None, endpoint: str, identity: bytes, in_arena: Arena, out_arena: Arena) -> int:
    """Announce READY (or FAILED: `served` is then the reason) and answer calls until told to stop."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, identity)
    dealer.connect(endpoint)
    link = LoopSocket(dealer)
    try:
        if not isinstance(served, str):
            try:
                ready = await served.start()
            except Exception as exc:
                log.exception("model %s failed to start", name)
                served = f"{type(exc).__name__}: {exc}"
        if isinstance(served, str):
            link.send(messages.control_frames(messages.FAILED, {"reason": served}))
            return 1
        stream: Optional[_Stream] = None

        def begin(kind: bytes, header: dict, frames: list) -> asyncio.Task:
            nonlocal stream
            slot = header["slot"]
            arenas = (in_arena.regions[slot], out_arena.regions[slot])
            if kind in (messages.STREAM, messages.STREAM_V1):
                stream = _Stream(served, link, kind, header, frames, arenas, name, version)
                return stream.task
            return _Call(served, inbox, kind, header, frames, arenas, name, version).task

        inbox = Inbox(link, begin)
        served.watch_cancellation(inbox.cancelled)
        link.send(messages.control_frames(messages.READY, {**ready, "report": metrics.take_report()}))
        log.info("model %s loaded, serving", name)
        while True:
            frames = await link.recv()  # a message the inbox read aside comes back here (LoopSocket.unread)
            kind = frames[0].bytes
            if kind == messages.STOP:
                if stream is not None:
                    stream.task.cancel()  # the gateway stops a worker that streams only when it is going away
                break
            if kind in messages.CALLS:
                inbox.receive(frames)
            elif kind == messages.PING:
                link.send(messages.control_frames(messages.PONG, {"report": metrics.take_report()}))
            elif kind == messages.CANCEL:
                inbox.cancel(frames)
            elif kind in STREAM_MESSAGES:
                header = messages.parse_control(frames)
                if stream is not None and stream.running and header["seq"] == stream.seq:
                    stream.on_message(kind, header, frames)  # else: for a stream that has ended (a CREDIT crossing its end)
        await inbox.finished()  # the gateway stops an idle worker; should it not be, its calls end first
        await served.stop()
        log.info("model %s unloaded", name)
        return 0
    finally:
        link.close(linger=1000)  # let a last FAILED reach the gateway
        context.term()


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL us when the gateway dies, so no worker outlives it
    (SIGKILL: this process ignores SIGTERM).

    The request covers only deaths after it is made: a gateway that died
    while this process started has already been replaced as our parent."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:
        sys.exit(f"the gateway (process {parent}) is gone; not starting")


def _close_inherited(keep: set[int]) -> None:
    """Close every descriptor but stdio and `keep`. uvloop starts processes without
    closing inheritable descriptors, and Sanic's listening socket is one: held here,
    it kept the REST port accepting connections after the gateway closed it."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description="a gateway model worker (started by the gateway)")
    parser.add_argument("--settings", type=Path, help="the model's model-settings.json (absent: the MLSERVER_MODEL_* variables define it)")
    parser.add_argument("--identity", required=True, help="this worker's ZeroMQ identity (a fork server's: its name in the log)")
    parser.add_argument("--parent", required=True, type=int, help="the gateway's process id")
    parser.add_argument("--endpoint", help="the gateway's ZeroMQ endpoint")
    parser.add_argument("--in-fd", type=int, help="inherited shared-memory arena the gateway writes inputs to")
    parser.add_argument("--out-fd", type=int, help="inherited shared-memory arena this worker writes outputs to")
    parser.add_argument(
        "--fork-server", type=int, metavar="FD", help="load the model once, then fork its workers when asked over this inherited socket (load_once)"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    args = parser.parse_args(argv)
    serving = (args.endpoint, args.in_fd, args.out_fd)
    if args.fork_server is None and None in serving:
        parser.error("a worker needs --endpoint, --in-fd and --out-fd")
    die_with_parent(args.parent)
    _close_inherited({args.fork_server} if args.fork_server is not None else {args.in_fd, args.out_fd})
    # Ctrl-C, or a SIGTERM to the process group (a shell, Kubernetes), also reaches the
    # gateway, which stops us in order: our runtime's unload() must get to run
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    logs.configure(args.log_level, args.log_format, worker=args.identity)
    # a runtime's print() reaches the log line by line, not when a block fills (or the worker exits)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper, as Python starts it
    settings = ModelSettings.from_file(args.settings) if args.settings else ModelSettings.from_environment()
    if settings is None:
        sys.exit("no model settings: give --settings, or set MLSERVER_MODEL_IMPLEMENTATION")
    import uvloop

    if args.fork_server is not None:
        from .forkserver import load_and_serve_forks

        sys.exit(load_and_serve_forks(settings, socket.socket(fileno=args.fork_server)))
    in_arena, out_arena = Arena.attach(args.in_fd, messages.SLOTS), Arena.attach(args.out_fd, messages.SLOTS)
    sys.exit(uvloop.run(serve(settings, args.endpoint, args.identity.encode(), in_arena, out_arena)))
