"""A relay front door's data plane (`frontdoor_workers` above 1; docs/ARCHITECTURE.md, "Several
front doors").

A relay front door parses and checks requests as the main process does (the same Sanic app and
gRPC servicer, the model states read from the shared table the supervisor writes), then sends
each to the main process over one ZeroMQ DEALER socket, its tensors inline: the main runs it
through its own pool, so that every model's queue, batches and least-busy routing see all of its
traffic, and answers with the outputs copied into the reply. Nothing here holds a worker's
shared memory: a relay front door that dies leaves no lease behind.

What the main process alone holds is asked of it on the same socket: /metrics, the statistics
extension, load and unload. A request this front door answered is reported to the main's
registry (ACCOUNT) before its answer leaves; ZeroMQ keeps the order of one socket pair, so a
scrape sent after an answer counts it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, AsyncIterator, Optional

import zmq

from .. import logs
from ..control.table import ModelRecord, ModelTable
from ..errors import GatewayError, Unavailable
from ..settings import ServerSettings
from ..wire import messages
from ..wire.request import WireRequest, WireResponse
from ..wire.sockets import LoopSocket
from .dataplane import DataPlane, StreamCall

log = logging.getLogger("gateway.relay")


class MainProcess:
    """The relay front door's DEALER socket to the main process, and the calls waiting on it."""

    def __init__(self, endpoint: str, identity: str):
        self.endpoint, self.identity = endpoint, identity
        self._waiting: dict[int, asyncio.Future] = {}
        self._seq = itertools.count()

    def connect(self) -> None:
        """Connect, on the running loop (ZeroMQ connects in the background: what is sent meanwhile waits)."""
        self._context = zmq.Context()
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.IDENTITY, self.identity.encode())
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.endpoint)
        self._socket = LoopSocket(socket)
        self._loop = asyncio.get_running_loop()
        self._reader = self._loop.create_task(self._read())

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv()
            try:
                kind = frames[0].bytes
                result: Any
                if kind == messages.ANSWER:
                    header = messages.parse_control(frames)
                    seq, result = header["seq"], (header["result"], [frame.bytes for frame in frames[2:]])
                else:
                    seq, result, _, _ = messages.parse_reply(frames, None)
            except Exception:
                log.exception("bad message from the main process")
                continue
            waiting = self._waiting.pop(seq, None)
            if waiting is None or waiting.done():
                continue  # its request was cancelled meanwhile
            if isinstance(result, GatewayError):
                waiting.set_exception(result)
            else:
                waiting.set_result(result)

    async def _send(self, seq: int, frames: list) -> Any:
        """Send call `seq` and wait for its answer; a call whose caller goes away (client gone) is
        cancelled in the main process."""
        waiting = self._loop.create_future()
        self._waiting[seq] = waiting
        self._socket.send(frames)
        try:
            return await waiting
        except asyncio.CancelledError:
            if self._waiting.pop(seq, None) is not None:
                self._socket.send(messages.cancel_frames(seq))
            raise

    async def call(self, kind: bytes, request: WireRequest) -> tuple[list, dict]:
        """(outputs, parameters) of a request run by the main process; the outputs view the reply's frames."""
        seq = next(self._seq)
        return await self._send(seq, messages.request_frames(kind, seq, request, None, relayed=True))

    async def ask(self, what: str, **arguments: Any) -> tuple[Any, list[bytes]]:
        """(result, frames) of a question for the main process: metrics, statistics, load, unload."""
        seq = next(self._seq)
        return await self._send(seq, messages.control_frames(messages.ASK, {"seq": seq, "what": what, "arguments": arguments}))

    def account(self, protocol: str, http_status: int, ns: int, model: Optional[str], version: Optional[str]) -> None:
        self._socket.send(
            messages.control_frames(messages.ACCOUNT, {"protocol": protocol, "status": http_status, "ns": ns, "model": model, "version": version})
        )

    def fail_all(self, why: str) -> None:
        """Fail every call still waiting (the front door is stopping and their time is up)."""
        waiting, self._waiting = self._waiting, {}
        for seq, future in waiting.items():
            if not future.done():
                future.set_exception(Unavailable(why))
                self._socket.send(messages.cancel_frames(seq))

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.wait([self._reader])
        self._socket.close()
        self._context.term()


class _Relayed:
    """`async with`: one request run by the main process (the DataPlane's `_dispatch` here)."""

    __slots__ = ("_main", "_entry", "_kind", "_request")

    def __init__(self, main: MainProcess, entry: ModelRecord, kind: bytes, request: WireRequest):
        self._main, self._entry, self._kind, self._request = main, entry, kind, request

    async def __aenter__(self) -> WireResponse:
        outputs, parameters = await self._main.call(self._kind, self._request)
        return WireResponse(self._entry.name, self._entry.version, self._request.id, outputs, parameters)

    async def __aexit__(self, *exc_info: object) -> None:
        pass  # the outputs are the reply's own frames: nothing to give back


class RelayDataPlane(DataPlane):
    """The data plane of a relay front door: the model states from the table the supervisor publishes
    (control/table.py), everything that runs a model or counts by the main process. It has no
    supervisor: each DataPlane method that needs one is replaced here."""

    def __init__(self, settings: ServerSettings, table: ModelTable, main: MainProcess):
        self.settings, self.table, self.main = settings, table, main
        self.draining = False

    def _dispatch(self, entry: ModelRecord, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[WireResponse]:
        return _Relayed(self.main, entry, kind, request)

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
        if inference:  # counted in the main's registry, before the answer leaves
            self.main.account(protocol, http_status, ns, model, version)
        logs.access(protocol, method, path, status, ns, model, version, responses)

    @asynccontextmanager
    async def stream(self, request: WireRequest, kind: bytes = messages.STREAM) -> AsyncIterator[StreamCall]:
        raise Unavailable(
            "streams (predict_stream, streamed V1 predicts) are served by the main front-door process only, and this connection "
            "reached another one (frontdoor_workers > 1): retry on a new connection, or run the gateway with frontdoor_workers 1"
        )
        yield  # an async generator, as the DataPlane's

    async def metrics(self) -> bytes:
        _, (body,) = await self.main.ask("metrics")
        return body

    async def statistics(self, name: Optional[str] = None, version: Optional[str] = None) -> list[dict]:
        documents, _ = await self.main.ask("statistics", name=name, version=version)
        return documents

    async def load_model(self, name: str) -> None:
        await self.main.ask("load", name=name)

    async def unload_model(self, name: str) -> None:
        await self.main.ask("unload", name=name)
