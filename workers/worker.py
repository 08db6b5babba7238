"""One model worker process.

Started by the gateway's supervisor as `python -m workers ...`. It imports the
runtime named by `implementation`, calls `load()`, announces READY (or FAILED
with the reason) and then answers one message at a time: the gateway sends
the next request only when this worker is idle, so there is no queue here.
Input tensors are numpy views of the input arena (valid during the call);
outputs are written to the output arena.
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
import sys
import time
from pathlib import Path
from typing import Any

import zmq
from pydantic import ValidationError

from gateway import logs, metrics
from gateway.wire import messages
from gateway.codecs.utils import tensor_data
from gateway.errors import BadRequest, GatewayError, RuntimeFailure, shown
from gateway.model import MLModel
from gateway.runtimes import resolve_implementation
from gateway.settings import ModelSettings
from gateway.wire.arena import Arena
from gateway.wire.sockets import LoopSocket
from gateway.wire.datatypes import array_from_output
from gateway.wire.packed import PackedBytes, unpack_bytes
from gateway.wire.request import RequestedOutput, Tensor, WireRequest
from gateway.types import Datatype, InferenceRequest, InferenceResponse, Parameters, RequestInput, RequestOutput

log = logging.getLogger("gateway.worker")


def load_runtime(settings: ModelSettings) -> MLModel:
    """Import `module.Class` (the model's folder first on sys.path, as MLServer does) and build it.

    MLServer's names of the built-in runtimes (`mlserver_sklearn.SKLearnModel`, ...) mean ours."""
    implementation = resolve_implementation(settings.implementation)
    if implementation != settings.implementation:
        log.info("model %s: %s is served by the built-in %s", settings.name, settings.implementation, implementation)
    module_name, _, class_name = implementation.rpartition(".")
    if not module_name:
        raise ImportError(f"implementation {settings.implementation!r} must be 'module.Class'")
    if settings.folder is not None:
        sys.path.insert(0, str(settings.folder))
    runtime_class = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(runtime_class, type) and issubclass(runtime_class, MLModel)):
        raise TypeError(f"{settings.implementation} is not a subclass of gateway.MLModel")
    return runtime_class(settings)


def to_inference_request(request: WireRequest) -> InferenceRequest:
    """The SDK's request type around numpy views of the tensors (no copy, no validation pass);
    BYTES are unpacked here, their framing checked (a malformed one is the client's: a 400)."""
    return InferenceRequest.model_construct(
        id=request.id,
        parameters=_sdk_parameters(request.parameters),
        inputs=[
            RequestInput.model_construct(
                name=t.name,
                shape=t.shape,
                datatype=Datatype(t.datatype),
                parameters=_sdk_parameters(t.parameters),
                data=_unpacked(t),
            )
            for t in request.inputs
        ],
        outputs=None
        if request.outputs is None
        else [RequestOutput.model_construct(name=o.name, parameters=_sdk_parameters(o.parameters)) for o in request.outputs],
    )


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
    if parameters is None:
        return {}
    if isinstance(parameters, dict):
        return parameters
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
        datatype = getattr(out.datatype, "value", out.datatype)
        bounds_at = _bounds_at(list(out.shape), batch) if datatype == "BYTES" else None
        array = array_from_output(out.name, datatype, list(out.shape), tensor_data(out), bounds_at)
        tensors.append(Tensor(out.name, datatype, list(out.shape), array, _parameters(out.parameters)))
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
    return await result if inspect.isawaitable(result) else result


async def run(
    runtime: MLModel, kind: bytes, request: WireRequest, received: int, batch: list[int] | None = None
) -> tuple[list[Tensor], dict, list[int]]:
    """(outputs, parameters, [input, infer, output] stage times in ns since `received`, for the statistics)."""
    payload = to_inference_request(request)
    if kind == messages.EXPLAIN:
        inputs_ready = time.perf_counter_ns()
        response = await _call(runtime.explain, payload)
        inferred = time.perf_counter_ns()
    else:
        payload = await _call(runtime.preprocess, payload)
        inputs_ready = time.perf_counter_ns()
        response = await _call(runtime.predict, payload)
        inferred = time.perf_counter_ns()
        response = await _call(runtime.postprocess, response)
    outputs, parameters = select_outputs(response, request.outputs, batch)
    return outputs, parameters, [inputs_ready - received, inferred - inputs_ready, time.perf_counter_ns() - inferred]


async def serve(settings: ModelSettings, endpoint: str, identity: bytes, in_arena: Arena, out_arena: Arena) -> int:
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, identity)
    dealer.connect(endpoint)
    socket = LoopSocket(dealer)
    try:
        try:
            runtime = load_runtime(settings)
            loaded = await runtime.load()
            metadata = (await runtime.metadata()).model_dump(mode="json", exclude_none=True)
        except Exception as exc:
            log.exception("model %s failed to load", settings.name)
            loaded, reason = False, f"{type(exc).__name__}: {exc}"
        else:
            reason = "load() returned False"
        if loaded is False:
            socket.send(messages.control_frames(messages.FAILED, {"reason": reason}))
            return 1
        has_explain = type(runtime).explain is not MLModel.explain
        ready = {"metadata": metadata, "explain": has_explain, "report": metrics.take_report()}
        socket.send(messages.control_frames(messages.READY, ready))
        log.info("model %s loaded, serving", settings.name)
        while True:
            frames = await socket.recv()
            received = time.perf_counter_ns()
            kind = frames[0].bytes
            if kind == messages.STOP:
                break
            if kind == messages.PING:
                socket.send(messages.control_frames(messages.PONG, {"report": metrics.take_report()}))
                continue
            header = messages.request_header(frames)
            seq = header["seq"]
            logs.REQUEST_ID.set(header["id"])  # every line logged until the reply carries it
            try:
                request = messages.parse_request(header, frames, in_arena, settings.name, settings.version)
                outputs, parameters, times = await run(runtime, kind, request, received, header["batch"])
                reply = messages.reply_frames(seq, outputs, parameters, out_arena, {**metrics.take_report(), "times": times})
            except GatewayError as exc:
                reply = messages.error_frames(seq, exc, metrics.take_report())
            except Exception as exc:  # this call fails; the worker goes on
                log.exception("the runtime raised")
                reply = messages.error_frames(seq, RuntimeFailure(f"{type(exc).__name__}: {exc}"), metrics.take_report())
            socket.send(reply)
            logs.REQUEST_ID.set(None)
        await runtime.unload()
        log.info("model %s unloaded", settings.name)
        return 0
    finally:
        socket.close(linger=1000)  # let a last FAILED reach the gateway
        context.term()


def _die_with_parent(parent: int) -> None:
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
    parser.add_argument("--endpoint", required=True, help="the gateway's ZeroMQ endpoint")
    parser.add_argument("--identity", required=True, help="this worker's ZeroMQ identity")
    parser.add_argument("--in-fd", required=True, type=int, help="inherited shared-memory arena the gateway writes inputs to")
    parser.add_argument("--out-fd", required=True, type=int, help="inherited shared-memory arena this worker writes outputs to")
    parser.add_argument("--parent", required=True, type=int, help="the gateway's process id")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    _close_inherited({args.in_fd, args.out_fd})
    # Ctrl-C, or a SIGTERM to the process group (a shell, Kubernetes), also reaches the
    # gateway, which stops us in order: our runtime's unload() must get to run
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    logs.configure(args.log_level, args.log_format, worker=args.identity)
    # a runtime's print() reaches the log line by line, not when a block fills (or the worker exits)
    sys.stdout.reconfigure(line_buffering=True)
    settings = ModelSettings.from_file(args.settings) if args.settings else ModelSettings.from_environment()
    import uvloop

    in_arena, out_arena = Arena.attach(args.in_fd), Arena.attach(args.out_fd)
    sys.exit(uvloop.run(serve(settings, args.endpoint, args.identity.encode(), in_arena, out_arena)))
