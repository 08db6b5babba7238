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
registry (ACCOUNT, one message per loop turn); before the main process reads its registry for a
scrape it asks every front door for an answer on the same socket pair (SYNC), which each sends
after its reports, and ZeroMQ keeps the order of one pair: so a scrape sent after an answer counts
it, whichever front doors the two went through.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any, Optional

import zmq

from ..control.pool import STREAM_UNTAKEN
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
        self._waiting: dict[int, asyncio.Future] = {}  # calls and questions, by seq
        self._streams: dict[int, _RelayedStream] = {}
        self._seq = itertools.count()
        self._accounts: list[list] = []  # requests answered, not yet reported (account)

    def connect(self) -> None:
        """Connect, on the running loop (ZeroMQ connects in the background: what is sent meanwhile waits)."""
        self._context = zmq.Context()
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.IDENTITY, self.identity.encode())
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 0)  # no limit: what waits is bounded by this front door's requests in flight
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.connect(self.endpoint)
        self._socket = LoopSocket(socket, pack=True)  # a turn's messages to the main process leave as one
        self._loop = asyncio.get_running_loop()
        self._reader = self._loop.create_task(self._read())

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv()
            try:
                kind = frames[0].bytes
                result: Any = None
                if kind == messages.SYNC:  # every request answered so far is reported ahead of this answer on the socket
                    self._send_accounts()
                    self._socket.send([messages.ANSWER, frames[1].bytes])
                    continue
                if kind in (messages.ANSWER, messages.TAKEN, messages.DONE):
                    header = messages.parse_control(frames)
                    seq, result = header["seq"], (header.get("result"), [frame.bytes for frame in frames[2:]])
                else:  # REPLY, ITEM, ERROR
                    header = messages.reply_header(frames)
                    seq = header["seq"]
                    result, _ = messages.parse_reply(header, frames, None)
            except Exception:
                log.exception("bad message from the main process")
                continue
            stream = self._streams.get(seq)
            if stream is not None:
                stream.on_message(kind, result)
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
        return await self._send(seq, messages.request_frames(kind, seq, [request], None, relayed=True))

    async def ask(self, what: str, **arguments: Any) -> tuple[Any, list[bytes]]:
        """(result, frames) of a question for the main process: metrics, statistics, load, unload."""
        seq = next(self._seq)
        return await self._send(seq, messages.control_frames(messages.ASK, {"seq": seq, "what": what, "arguments": arguments}))

    def open_stream(self, stream: "_RelayedStream", kind: bytes, first: WireRequest) -> int:
        """Open a stream in the main process; its messages go to `stream` until `close_stream`."""
        seq = next(self._seq)
        self._streams[seq] = stream
        self._socket.send(messages.request_frames(kind, seq, [first], None, relayed=True))
        return seq

    def close_stream(self, seq: int, cancel: bool) -> None:
        """The stream's caller is done with it; `cancel`: before its end (the generator is cancelled)."""
        self._streams.pop(seq, None)
        if cancel:
            self._socket.send(messages.cancel_frames(seq))

    def post(self, frames: list) -> None:
        """A message of a stream (NEXT, END, CREDIT)."""
        self._socket.send(frames)

    def account(self, protocol: str, http_status: int, ns: int, model: Optional[str], version: Optional[str]) -> None:
        """Report a request this front door answered; the reports of one loop turn leave as one message,
        at the turn's end, or before this front door answers a SYNC."""
        self._accounts.append([protocol, http_status, ns, model, version])
        if len(self._accounts) == 1:
            self._loop.call_soon(self._send_accounts)

    def _send_accounts(self) -> None:
        if self._accounts:
            self._socket.send(messages.control_frames(messages.ACCOUNT, {"requests": self._accounts}))
            self._accounts = []

    def fail_all(self, why: str) -> None:
        """Fail every call still waiting (the front door is stopping and their time is up)."""
        waiting, self._waiting = self._waiting, {}
        for seq, future in waiting.items():
            if not future.done():
                future.set_exception(Unavailable(why))
                self._socket.send(messages.cancel_frames(seq))
        for stream in self._streams.values():
            stream.on_message(messages.ERROR, Unavailable(why))

    async def close(self) -> None:
        self._send_accounts()
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


class _RelayedStream(StreamCall):
    """`async with`: a stream run by the main process (DataPlane._open_stream here), used as the
    StreamCall it yields. Each response is acknowledged (CREDIT) when the next is asked for, once
    the front door has written it: the client's back-pressure reaches the model. Further requests
    go on as the main process takes them (TAKEN), a few at a time; the main process checks them."""

    def __init__(self, main: MainProcess, entry: ModelRecord, kind: bytes, first: WireRequest):  # no StreamCall.__init__: no pool here
        self._main, self._entry, self._kind, self._first = main, entry, kind, first
        self._seq = 0
        self._items: asyncio.Queue = asyncio.Queue()  # (outputs, parameters), then _DONE or an error
        self._held = False  # the caller holds a response: acknowledged when it asks for the next
        self._input_open, self._ended = True, False
        self._untaken = 0
        self._taken = asyncio.Event()
        self._responses = 0

    async def __aenter__(self) -> "_RelayedStream":
        self._seq = self._main.open_stream(self, self._kind, self._first)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._main.close_stream(self._seq, cancel=not self._ended)

    @property
    def responses(self) -> int:
        return self._responses

    async def send(self, request: WireRequest) -> None:
        while self._untaken >= STREAM_UNTAKEN and not self._ended:
            self._taken.clear()
            await self._taken.wait()
        self._untaken += 1
        self._main.post(messages.request_frames(messages.NEXT, self._seq, [request], None, relayed=True))

    def end_input(self) -> None:
        if self._input_open:
            self._input_open = False
            self._main.post(messages.control_frames(messages.END, {"seq": self._seq}))

    def fail(self, error: Exception) -> None:
        self._items.put_nowait(error)

    async def __anext__(self) -> WireResponse:
        if self._held:
            self._held = False
            self._main.post(messages.control_frames(messages.CREDIT, {"seq": self._seq}))
        item = await self._items.get()
        if item is _DONE:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        outputs, parameters = item
        self._held = True
        self._responses += 1
        return WireResponse(self._entry.name, self._entry.version, self._first.id, outputs, parameters)

    def on_message(self, kind: bytes, result: Any) -> None:
        """From the main process: an ITEM's (outputs, parameters), TAKEN, DONE, or an error."""
        if kind == messages.TAKEN:
            self._untaken -= 1
            self._taken.set()
            return
        if kind != messages.ITEM:  # DONE, or the error it ended with
            self._ended = True
            self._taken.set()
            result = _DONE if kind == messages.DONE else result
        self._items.put_nowait(result)


_DONE = object()  # queued after a stream's last response


class RelayDataPlane(DataPlane):
    """The data plane of a relay front door: the model states from the table the supervisor publishes
    (control/table.py), everything that runs a model or counts by the main process. It has no
    supervisor: each DataPlane method that needs one is replaced here."""

    def __init__(self, settings: ServerSettings, table: ModelTable, main: MainProcess):
        self.settings, self.table, self.main = settings, table, main
        self.draining = False

    def _dispatch(self, entry: ModelRecord, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[WireResponse]:
        return _Relayed(self.main, entry, kind, request)

    def _count(self, protocol: str, http_status: int, ns: int, model: Optional[str], version: Optional[str]) -> None:
        self.main.account(protocol, http_status, ns, model, version)  # in the main's registry, before the answer leaves

    def _open_stream(self, entry: ModelRecord, kind: bytes, request: WireRequest) -> AbstractAsyncContextManager[StreamCall]:
        return _RelayedStream(self.main, entry, kind, request)

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
