"""The gRPC servicers and their server (grpc.aio, on Sanic's event loop; see the package docstring).

Services: inference.GRPCInferenceService (here), grpc.health.v1.Health (health.py) and server
reflection (reflection.py).

Every RPC translates to a `DataPlane` call and back. A `GatewayError` leaves
with its status code (`.grpc_code`) and message: NOT_FOUND unknown model or
version, INVALID_ARGUMENT bad input, UNAVAILABLE not ready, INTERNAL runtime
error. Messages over `grpc_max_message_bytes` are refused by gRPC itself with
RESOURCE_EXHAUSTED; an answer over it is refused here, with the same code (`_fits`).

The services' handlers are registered with deserializers of ours (handlers.py):
a message that does not parse is the client's fault (INVALID_ARGUMENT).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Optional

import grpc

from ...errors import AnswerTooLarge, BadRequest, GatewayError, NotSupported, Timeout, Unauthenticated, answer_for
from ...protocol.generated import inference_pb2 as pb
from ...protocol.generated import inference_pb2_grpc as pb_grpc
from ...settings import ServerSettings
from ...wire.request import WireRequest
from ..access import GRPC, Access
from ..dataplane import DataPlane, StreamCall
from ..tls import TLS
from . import convert
from .handlers import Malformed, authorization, check_parsed, method_handlers
from .health import HealthServicer
from .reflection import ReflectionServicer

log = logging.getLogger("gateway.grpc")

# a message whose tensors hold this many bytes lets other calls in between its copies
LARGE_MESSAGE = 1024 * 1024
# requests of one ModelStreamInfer stream being answered, or answered and not yet taken by grpc (a client
# that reads slowly holds them back), at once; the stream stops being read beyond that
STREAM_IN_FLIGHT = 64
SERVICE = "inference.GRPCInferenceService"
SERVICE_PATH = f"/{SERVICE}/"
INFERENCE_RPCS = ("ModelInfer", "ModelStreamInfer")  # counted in the request metrics of their model


# a call cancelled this close to its deadline was cancelled by it: the client's own deadline passes a
# little before the server's (counted from the request's arrival), and the client cancels the call then
DEADLINE_SLACK = 0.05

# a status message travels in a trailer, which clients refuse past 8 KiB: percent-encoded,
# a byte may take three, so longer messages (a runtime's, say) are cut
STATUS_MESSAGE_BYTES = 2048


def _status_message(message: str) -> str:
    encoded = message.encode()
    if len(encoded) <= STATUS_MESSAGE_BYTES:
        return message
    return encoded[:STATUS_MESSAGE_BYTES].decode(errors="ignore") + f"... ({len(encoded)} bytes in all)"


def unary(method):
    """Turn a GatewayError into its status code and message, anything else into INTERNAL;
    then count and log the call (`answered`)."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        started, http_status, code = time.perf_counter_ns(), 200, grpc.StatusCode.OK
        try:
            self.check_token(method.__name__, context)
            check_parsed(request)
            return await method(self, request, context)
        except asyncio.CancelledError as exc:
            # the client cancelled or its deadline passed: unanswered, and the client's doing
            http_status, code = _cancelled(exc, context)
            raise
        except Exception as exc:
            if not isinstance(exc, GatewayError):
                log.exception("unexpected error in %s", method.__name__)
            http_status, code, message = _answer_for(exc)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:  # gRPC's retry pushback: a client's retry policy waits this long
                context.set_trailing_metadata((("grpc-retry-pushback-ms", str(int(retry_after * 1000))),))
            await context.abort(code, _status_message(message))
        finally:
            self.answered(method.__name__, request, http_status, code, started)

    return wrapper


def _wants_empty_final(request: pb.ModelInferRequest | Malformed) -> bool:
    """Whether a stream's request asks for Triton's empty final response (tritonclient's enable_empty_final_response)."""
    if isinstance(request, Malformed) or convert.EMPTY_FINAL_RESPONSE not in request.parameters:
        return False  # (`in` first: reading a missing key of a protobuf map would add it)
    return request.parameters[convert.EMPTY_FINAL_RESPONSE].bool_param


def _answer_for(exc: BaseException) -> tuple[int, grpc.StatusCode, str]:
    """errors.answer_for, its code as grpc's: (the REST status of the same outcome, code, message)."""
    http_status, code, message = answer_for(exc)
    return http_status, getattr(grpc.StatusCode, code, grpc.StatusCode.INTERNAL), message


def _cancelled(exc: asyncio.CancelledError, context: grpc.aio.ServicerContext) -> tuple[int, grpc.StatusCode]:
    """How a cancelled call counts: at its deadline, as the deadline error the gateway answers when its
    own timer is first (504, DEADLINE_EXCEEDED; a relay front door's often is not: the main process's
    answer comes after a hop); else as its client gone (499, CANCELLED)."""
    remaining = context.time_remaining()  # None without a deadline
    if remaining is not None and remaining < DEADLINE_SLACK:
        return Timeout.http_status, grpc.StatusCode.DEADLINE_EXCEEDED
    http_status, code, _ = _answer_for(exc)
    return http_status, code


class _ClientGone(logging.Filter):
    """grpc logs a send that failed, unless it has seen the client go first, as an ERROR with its traceback
    ("ExecuteBatchError raised in core by servicer method [...]"). Answers over grpc_max_message_bytes are
    refused before grpc sends them (`_fits`): what fails is the send to a client that went away meanwhile
    (cancelled, past its deadline, its connection lost), the client's doing, said in one INFO line."""

    GRPC_MESSAGE = "ExecuteBatchError raised in core by servicer method"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.GRPC_MESSAGE):
            return True
        if not log.isEnabledFor(logging.INFO):
            return False
        record.name, record.levelno, record.levelname = log.name, logging.INFO, "INFO"
        record.msg, record.args = "the client of %s went away while its answer was being sent", (message[len(self.GRPC_MESSAGE) :].strip(" []"),)
        record.exc_info = record.exc_text = None
        return True


CLIENT_GONE = _ClientGone()


def _unimplemented(what: str) -> NotSupported:
    return NotSupported(f"{what} is not supported by this gateway yet")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, access: Access):
        self.dataplane = dataplane
        self.max_tensor_bytes = dataplane.settings.max_tensor_bytes
        self.max_message_bytes = dataplane.settings.grpc_max_message_bytes
        self.access = access
        self.protected = {rpc: scope for rpc, scope in GRPC.items() if access.protects(scope)}

    def check_token(self, rpc: str, context: grpc.aio.ServicerContext) -> None:
        """Unauthenticated unless the call's metadata holds a token of the RPC's scope (gateway/frontdoor/access.py)."""
        scope = self.protected.get(rpc)
        if scope is not None:
            self.access.check(scope, authorization(context))

    def answered(self, rpc: str, request, http_status: int, code: grpc.StatusCode, started: int, responses: int | None = None) -> None:
        """Account for a call (DataPlane.answered; `http_status`: the REST status of the same outcome).
        Each call, and each stream message, runs in a task (so a request-id context) of its own; a
        predict_stream call is one request (`responses`: how many it sent)."""
        elapsed = time.perf_counter_ns() - started
        model = getattr(request, "model_name", "") or getattr(request, "name", "")
        version = getattr(request, "model_version", "") or getattr(request, "version", "")
        inference = rpc in INFERENCE_RPCS
        self.dataplane.answered("grpc", rpc, SERVICE_PATH + rpc, code.name, http_status, elapsed, model or None, version or None, inference, responses)

    # --- health and metadata ------------------------------------------

    @unary
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @unary
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.dataplane.server_ready())

    @unary
    async def ModelReady(self, request, context):
        state, _ = self.dataplane.model_state(request.name, request.version or None)  # NotFound for unknown models
        return pb.ModelReadyResponse(ready=state == "READY")

    @unary
    async def ServerMetadata(self, request, context):
        metadata = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"])

    @unary
    async def ModelMetadata(self, request, context):
        return convert.render_metadata(self.dataplane.model_metadata(request.name, request.version or None))

    @unary
    async def ModelConfig(self, request, context):
        metadata = self.dataplane.model_metadata(request.name, request.version or None)
        return pb.ModelConfigResponse(config=convert.render_config(metadata))

    # --- inference ----------------------------------------------------

    async def _parse(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> WireRequest:
        check_parsed(request)  # a stream's message
        # an unknown model or version is NOT_FOUND whatever its inputs, as over REST
        self.dataplane.check_model_exists(request.model_name, request.model_version or None)
        parsed, pending = convert.parse_infer_request(request, self.max_tensor_bytes)
        if pending:  # many typed contents: checked against the model first, then converted in steps
            self.dataplane.check_request(parsed)
            await convert.convert_contents(request, pending, self.max_tensor_bytes)
        elif sum(t.data.nbytes for t in parsed.inputs) >= LARGE_MESSAGE:
            await asyncio.sleep(0)  # its raw contents were just copied out of the message: let others in before the next copy
        parsed.bound_by(context.time_remaining())
        parsed.parameters.pop(convert.EMPTY_FINAL_RESPONSE, None)  # the stream's to honour (_wants_empty_final), not the model's
        if self.dataplane.takes_headers(parsed.model_name, parsed.model_version):
            # KServe's hooks get the call's metadata as headers (binary "-bin" values left out)
            parsed.headers = {key: value for key, value in context.invocation_metadata() if not key.endswith("-bin")}
        return parsed

    async def _infer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext, streamed: bool = False, not_final: bool = False) -> bytes:
        """The serialized answer (convert.render_infer_response; `streamed`: as a ModelStreamInferResponse;
        `not_final`: marked as not the request's last, an empty final response to follow); the call's
        deadline bounds the request's."""
        async with self.dataplane.infer(await self._parse(request, context)) as response:
            answer = convert.render_infer_response(response, not_final)  # while the outputs may view the worker's shared memory
            return self._fits(convert.stream_reply(answer) if streamed else answer)

    def _fits(self, answer: bytes) -> bytes:
        """The answer, if grpc may send it: else the request's error (grpc would end the call, a stream's
        other requests with it, after the request had been counted a success)."""
        if len(answer) > self.max_message_bytes:
            raise AnswerTooLarge(f"the answer is {len(answer)} bytes, over the limit of {self.max_message_bytes} bytes (setting grpc_max_message_bytes)")
        return answer

    @unary
    async def ModelInfer(self, request, context):
        return await self._infer(request, context)

    async def ModelStreamInfer(self, request_iterator, context) -> AsyncIterator[pb.ModelStreamInferResponse | bytes]:
        """A model that implements predict_stream streams: the whole call is one predict_stream, fed
        every request of the call, answering with its responses (as MLServer; an error ends the call
        with its status). Any other model answers each request with one response (as Triton; a failed
        one answers with error_message and the call goes on)."""
        try:
            self.check_token("ModelStreamInfer", context)
        except Unauthenticated as exc:
            self.answered("ModelStreamInfer", pb.ModelInferRequest(), exc.http_status, grpc.StatusCode.UNAUTHENTICATED, time.perf_counter_ns())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        replies = self._stream(first, requests, context) if self._streams(first) else self._answer_each(first, requests, context)
        async for reply in replies:
            yield reply

    def _streams(self, request) -> bool:
        """Whether the model the stream's first request names implements predict_stream."""
        if isinstance(request, Malformed) or not request.model_name:
            return False
        try:
            return self.dataplane.streams(request.model_name, request.model_version or None)
        except GatewayError:
            return False  # unknown or not ready: answered as the message's own error

    async def _stream(self, first: pb.ModelInferRequest, requests: AsyncIterator, context) -> AsyncIterator[bytes]:
        started, http_status, code, call = time.perf_counter_ns(), 200, grpc.StatusCode.OK, None
        empty_final = _wants_empty_final(first)  # the call is one request: its responses, then Triton's final one
        try:
            async with self.dataplane.stream(await self._parse(first, context)) as call:
                feeding = asyncio.create_task(self._feed(call, requests, context))
                try:
                    async for response in call:
                        # rendered (copied) while the response may view the worker's shared memory; the
                        # next is asked for only once grpc has taken this one: a slow client holds the model back
                        yield self._fits(convert.stream_reply(convert.render_infer_response(response, empty_final)))
                finally:
                    feeding.cancel()
            if empty_final:
                yield convert.final_stream_reply(first)
        except (asyncio.CancelledError, GeneratorExit):
            # the client went away (or its deadline passed): this generator is cancelled where it awaits, or
            # closed where it yielded (grpc was sending that response)
            http_status, code = _cancelled(asyncio.CancelledError(), context)
            raise
        except Exception as exc:
            if not isinstance(exc, GatewayError):
                log.exception("unexpected error in ModelStreamInfer")
            http_status, code, message = _answer_for(exc)
            await context.abort(code, _status_message(message))
        finally:
            self.answered("ModelStreamInfer", first, http_status, code, started, call.responses if call is not None else 0)

    async def _feed(self, call: StreamCall, requests: AsyncIterator, context: grpc.aio.ServicerContext) -> None:
        """The call's further requests, on to the generator; then the end of its requests."""
        try:
            async for request in requests:
                await call.send(await self._parse(request, context))
            call.end_input()
        except GatewayError as exc:
            call.fail(exc)
        except Exception as exc:  # the client's side failed: grpc ends the call
            log.debug("reading a stream's requests: %s", exc)

    async def _answer_each(self, first, requests: AsyncIterator, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ModelStreamInferResponse | bytes]:
        """Answer each request as soon as it is done (match replies by id); a failed one answers with error_message."""
        try:
            self.check_token("ModelStreamInfer", context)
        except Unauthenticated as exc:
            self.answered("ModelStreamInfer", pb.ModelInferRequest(), exc.http_status, grpc.StatusCode.UNAUTHENTICATED, time.perf_counter_ns())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        replies: asyncio.Queue = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_IN_FLIGHT)
        tasks: set[asyncio.Task] = set()

        async def answer(request: pb.ModelInferRequest) -> None:
            started, http_status, code = time.perf_counter_ns(), 200, grpc.StatusCode.OK
            empty_final = _wants_empty_final(request)
            try:
                messages_of_it = [await self._infer(request, context, streamed=True, not_final=empty_final)]
                if empty_final:
                    messages_of_it.append(convert.final_stream_reply(request))
            except asyncio.CancelledError as exc:  # the call ended (cancelled, its deadline passed) before this answer
                http_status, code = _cancelled(exc, context)
                raise
            except Exception as exc:
                if not isinstance(exc, GatewayError):
                    log.exception("unexpected error in ModelStreamInfer")
                http_status, code, message = _answer_for(exc)
                echo = pb.ModelInferResponse()
                if not isinstance(request, Malformed):
                    echo = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
                if empty_final:  # the error is the request's last response
                    echo.parameters[convert.FINAL_RESPONSE].bool_param = True
                messages_of_it = [pb.ModelStreamInferResponse(error_message=message, infer_response=echo)]
            finally:
                self.answered("ModelStreamInfer", request, http_status, code, started)
            replies.put_nowait(messages_of_it)

        async def read() -> None:
            try:
                request = first
                while request is not None:
                    await slots.acquire()
                    task = asyncio.create_task(answer(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    request = await anext(requests, None)
                if tasks:
                    await asyncio.wait(set(tasks))
            finally:
                replies.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (messages_of_one := await replies.get()) is not None:
                for reply in messages_of_one:
                    yield reply
                slots.release()  # grpc has taken the request's answer: its slot may read the next request
            await reader  # the client's side of the stream failed: let grpc see it
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()

    # --- model repository extension -----------------------------------

    @unary
    async def RepositoryIndex(self, request, context):
        models = [pb.RepositoryIndexResponse.ModelIndex(**item) for item in self.dataplane.repository_index(request.ready)]
        return pb.RepositoryIndexResponse(models=models)

    @unary
    async def RepositoryModelLoad(self, request, context):
        _no_repository_parameters(request)
        await self.dataplane.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @unary
    async def RepositoryModelUnload(self, request, context):
        _no_repository_parameters(request, allowed=frozenset({"unload_dependents"}))
        await self.dataplane.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # --- statistics extension ------------------------------------------

    @unary
    async def ModelStatistics(self, request, context):
        documents = await self.dataplane.statistics(request.name or None, request.version or None)
        return pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(**document) for document in documents])

    # --- not (yet) in the data plane ------------------------------------

    @unary
    async def SystemSharedMemoryStatus(self, request, context):
        raise _unimplemented("SystemSharedMemoryStatus (the system shared-memory extension)")

    @unary
    async def SystemSharedMemoryRegister(self, request, context):
        raise _unimplemented("SystemSharedMemoryRegister (the system shared-memory extension)")

    @unary
    async def SystemSharedMemoryUnregister(self, request, context):
        raise _unimplemented("SystemSharedMemoryUnregister (the system shared-memory extension)")


def _no_repository_parameters(request, allowed: frozenset = frozenset()) -> None:
    """Triton's load parameters (a config override, model files) are not supported: refuse rather than ignore them.

    `unload_dependents` (which tritonclient always sends) has nothing to act on: there are no ensembles."""
    unsupported = sorted(set(request.parameters) - allowed)
    if unsupported:
        raise BadRequest(f"repository parameters {unsupported} are not supported; edit the model's model-settings.json instead")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class GrpcFrontDoor:
    server: grpc.aio.Server
    health: HealthServicer


async def start(dataplane: DataPlane, settings: ServerSettings, access: Access, tls: Optional[TLS]) -> GrpcFrontDoor:
    """Start serving on the running loop (call it from a Sanic listener)."""
    limit = settings.grpc_max_message_bytes
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # shared by every front-door process (frontdoor_workers > 1: the kernel spreads connections);
        # else bound alone, so that a second gateway on the same port fails loudly instead of sharing it
        ("grpc.so_reuseport", int(settings.frontdoor_workers > 1)),
    ]
    if settings.grpc_max_connection_age:
        # grpc sends GOAWAY (give or take 10 %) while it still serves: the client reconnects, and no call is
        # lost, unlike at stop(), which cancels the calls that cross its GOAWAY
        options.append(("grpc.max_connection_age_ms", max(1, round(settings.grpc_max_connection_age * 1000))))
    server = grpc.aio.server(options=options)
    logging.getLogger("grpc._cython.cygrpc").addFilter(CLIENT_GONE)
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    unscoped = [method.name for method in service.methods if method.name not in GRPC]
    if unscoped:
        raise RuntimeError(f"gRPC methods {unscoped} have no scope in gateway/frontdoor/access.py: decide who may call them")
    # the inference RPCs' answers are rendered serialized already (convert.render_infer_response)
    inference = method_handlers(InferenceServicer(dataplane, access), service, pb, dict.fromkeys(INFERENCE_RPCS, convert.serialize))
    health = HealthServicer(dataplane, access)
    reflection = ReflectionServicer([SERVICE, *health.services, *ReflectionServicer.services])
    server.add_generic_rpc_handlers((inference, *health.handlers(), *reflection.handlers()))
    address = _address(settings.host, settings.grpc_port)
    try:
        if tls is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, tls.grpc_credentials())
    except RuntimeError as exc:
        raise RuntimeError(f"gRPC cannot listen on {address}: {exc}") from None
    await server.start()
    return GrpcFrontDoor(server, health)


async def stop(front_door: GrpcFrontDoor, grace: float) -> None:
    """End the health watches (they would hold the grace up to its end), refuse new calls, give
    in-flight ones `grace` seconds, then cancel the rest."""
    front_door.health.close()
    await front_door.server.stop(grace)
