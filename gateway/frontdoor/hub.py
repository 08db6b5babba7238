"""The main process's side of the relay front doors (`frontdoor_workers` above 1; docs/ARCHITECTURE.md,
"Several front doors").

`RelayFrontDoors` starts front doors 2..N (`python -m gateway.relay`), passes them their settings
through a pipe, restarts one that dies (with back-off), passes SIGTERM and SIGINT on (as
RELAYED_SIGNALS), and waits for them at the stop, before the workers are stopped.

`RelayHub` is the ROUTER socket they connect to: it runs each relayed request through the main
DataPlane (so the model's queue, batching and least-busy routing see it like any other), copies
its outputs into the reply and gives the lease back at once; it answers their questions
(metrics, statistics, load, unload) and counts what they report (ACCOUNT). The calls of a front
door that died are cancelled, and what it sent that is read only then is not run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
from typing import Any, Callable, Coroutine, Optional

import zmq

from ..errors import GatewayError, answer_for, from_status
from ..settings import ServerSettings, settings_document, without_secrets
from ..wire import messages
from ..wire.request import WireRequest
from ..wire.sockets import LoopSocket
from .dataplane import DataPlane, StreamCall

log = logging.getLogger("gateway.frontdoors")

SOCKET_NAME = "frontdoors.sock"
SYNC_TIMEOUT = 2.0  # seconds a scrape waits for each relay front door's SYNC answer
STABLE_AFTER = 30.0  # a front door that lived this long resets the restart back-off
# how the main process passes a signal on to the relay front doors, which share its process group and
# ignore SIGTERM and SIGINT themselves: a signal to the group (Ctrl-C) reaches each of them once
RELAYED_SIGNALS: dict[int, int] = {signal.SIGTERM: signal.SIGUSR1, signal.SIGINT: signal.SIGUSR2}
RELAYED_CALLS = frozenset({messages.INFER, messages.EXPLAIN, messages.PREDICT_V1, messages.EXPLAIN_V1})
STARTS_WORK = RELAYED_CALLS | {messages.STREAM, messages.STREAM_V1, messages.ASK}  # what a front door sends that runs here


class RelayHub:
    """The ROUTER the relay front doors' DEALERs connect to; runs what they send."""

    def __init__(self, dataplane: DataPlane, endpoint: str, members: Callable[[], list[bytes]]):
        """`members()`: the identities of the relay front doors running now."""
        self.dataplane, self.endpoint, self._members = dataplane, endpoint, members
        self._syncs: dict[int, asyncio.Future] = {}
        self._sync_seq = itertools.count()
        self._context = zmq.Context()
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an answer for a front door that is gone raises: dropped (wire/sockets.py _flush)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 0)  # no limit: what waits is bounded by the front doors' requests in flight
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.bind(endpoint)
        self._socket = LoopSocket(socket, pack=True)  # a turn's messages to a front door leave as one
        self._calls: dict[bytes, dict[int, asyncio.Task]] = {}  # per front door: its calls running here, by seq
        self._feeds: dict[tuple[bytes, int], _Feed] = {}  # the streams running here, by front door and seq
        self._loop = asyncio.get_running_loop()
        self._reader = self._loop.create_task(self._read())

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv()
            identity = frames[0].bytes
            try:
                self._on_message(identity, frames[1].bytes, frames[1:])
            except Exception:
                log.exception("bad message from front door %s", identity.decode(errors="replace"))

    def _on_message(self, identity: bytes, kind: bytes, frames: list) -> None:
        if kind in STARTS_WORK and identity not in self._members():
            return  # its front door's death was seen (and its calls cancelled) before this was read: nobody would read the answer
        if kind == messages.ANSWER:  # to a SYNC
            synced = self._syncs.pop(messages.parse_control(frames)["seq"], None)
            if synced is not None and not synced.done():
                synced.set_result(None)
        elif kind == messages.ACCOUNT:
            for protocol, status, ns, model, version in messages.parse_control(frames)["requests"]:
                self.dataplane.model_stats(model or "", version).request_done(protocol, status, ns)
        elif kind == messages.CANCEL:
            task = self._calls.get(identity, {}).get(messages.parse_control(frames)["seq"])
            if task is not None:
                task.cancel()
        elif kind in RELAYED_CALLS:
            header = messages.request_header(frames)
            request = _relayed_request(header, frames)
            self._start(identity, header["seq"], self._call(identity, header["seq"], kind, request))
        elif kind in (messages.STREAM, messages.STREAM_V1):
            header = messages.request_header(frames)
            request = _relayed_request(header, frames)
            feed = self._feeds[identity, header["seq"]] = _Feed()
            self._start(identity, header["seq"], self._stream(identity, header["seq"], kind, request, feed))
        elif kind in (messages.NEXT, messages.END, messages.CREDIT):
            header = messages.request_header(frames)
            running = self._feeds.get((identity, header["seq"]))
            if running is None:
                return  # the stream has ended meanwhile
            if kind == messages.NEXT:
                running.requests.put_nowait(_relayed_request(header, frames))
            elif kind == messages.END:
                running.requests.put_nowait(None)
            else:
                running.credits.release()
        elif kind == messages.ASK:
            question = messages.parse_control(frames)
            self._start(identity, question["seq"], self._ask(identity, question["seq"], question["what"], question["arguments"]))
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def _start(self, identity: bytes, seq: int, coroutine: Coroutine) -> None:
        calls = self._calls.setdefault(identity, {})
        task = self._loop.create_task(coroutine)
        calls[seq] = task
        task.add_done_callback(lambda _: calls.pop(seq, None))

    async def _call(self, identity: bytes, seq: int, kind: bytes, request: WireRequest) -> None:
        try:
            async with self.dataplane.relayed(kind, request) as response:
                reply = messages.reply_frames(seq, response.outputs, response.parameters, None, {})
                # copied out of the worker's shared memory before the lease is given back (ZeroMQ sends later)
                reply[2:] = [bytes(frame) for frame in reply[2:]]
        except asyncio.CancelledError:
            return  # the front door's client went away, or the front door itself: nobody waits
        except Exception as exc:
            reply = messages.error_frames(seq, _as_gateway_error(exc), {})
        self._reply(identity, reply)

    async def _stream(self, identity: bytes, seq: int, kind: bytes, request: WireRequest, feed: "_Feed") -> None:
        """A relayed stream: each response copied into an ITEM, the next asked for once the front door
        has written it (CREDIT), so that its client's back-pressure reaches the generator."""
        feeding: asyncio.Task | None = None
        try:
            async with self.dataplane.relayed_stream(kind, request) as call:
                feeding = self._loop.create_task(self._feed(identity, seq, call, feed.requests))
                async for response in call:
                    item = messages.reply_frames(seq, response.outputs, response.parameters, None, {}, messages.ITEM)
                    item[2:] = [bytes(frame) for frame in item[2:]]  # out of the worker's shared memory, as _call's
                    self._reply(identity, item)
                    await feed.credits.acquire()
            end = messages.control_frames(messages.DONE, {"seq": seq})
        except asyncio.CancelledError:
            return  # the front door's client went away (CANCEL), or the front door itself
        except Exception as exc:
            end = messages.error_frames(seq, _as_gateway_error(exc), {})
        finally:
            if feeding is not None:
                feeding.cancel()
            self._feeds.pop((identity, seq), None)
        self._reply(identity, end)

    async def _feed(self, identity: bytes, seq: int, call: StreamCall, requests: asyncio.Queue) -> None:
        """A stream's further requests, on to its generator as it takes them (TAKEN to the front door); then its end."""
        try:
            while (request := await requests.get()) is not None:
                await call.send(request)
                self._reply(identity, messages.control_frames(messages.TAKEN, {"seq": seq}))
            call.end_input()
        except GatewayError as exc:  # a further request that cannot be served ends the stream
            call.fail(exc)

    async def _ask(self, identity: bytes, seq: int, what: str, arguments: dict) -> None:
        body: list[bytes] = []
        result: Any = None
        try:
            if what == "metrics":
                body = [await self.dataplane.metrics()]
            elif what == "statistics":
                result = await self.dataplane.statistics(arguments["name"], arguments["version"])
            elif what == "load":
                await self.dataplane.load_model(arguments["name"])
            elif what == "unload":
                await self.dataplane.unload_model(arguments["name"])
            else:
                raise ValueError(f"unknown question {what!r}")
        except asyncio.CancelledError:
            return
        except Exception as exc:
            self._reply(identity, messages.error_frames(seq, _as_gateway_error(exc), {}))
            return
        self._reply(identity, [*messages.control_frames(messages.ANSWER, {"seq": seq, "result": result}), *body])

    async def sync(self) -> None:
        """Wait until every relay front door's ACCOUNTs so far are in: each answers a SYNC behind them.
        One that does not answer within SYNC_TIMEOUT (being restarted, or stuck) is not waited for."""
        waiting: list[int] = []
        try:
            for identity in self._members():
                seq = next(self._sync_seq)
                try:
                    self._socket.send([identity, *messages.control_frames(messages.SYNC, {"seq": seq})], now=True)
                except zmq.ZMQError:
                    continue  # not connected (yet): it has sent nothing either
                self._syncs[seq] = self._loop.create_future()
                waiting.append(seq)
            if waiting:
                _, late = await asyncio.wait([self._syncs[seq] for seq in waiting], timeout=SYNC_TIMEOUT)
                if late:
                    log.warning("%d front door(s) did not answer within %g s: the counts may miss their last requests", len(late), SYNC_TIMEOUT)
        finally:
            for seq in waiting:  # an answer that comes later finds nothing waiting
                self._syncs.pop(seq, None)

    def _reply(self, identity: bytes, frames: list) -> None:
        self._socket.send([identity, *frames])  # for a front door that is gone: dropped when the turn's messages leave

    def forget(self, identity: bytes) -> int:
        """A front door is gone: cancel the calls it was waiting for (their workers are freed as for
        a client gone). Returns how many."""
        calls = self._calls.pop(identity, {})
        for task in calls.values():
            task.cancel()
        return len(calls)

    async def close(self) -> None:
        for identity in list(self._calls):
            self.forget(identity)
        self._reader.cancel()
        await asyncio.wait([self._reader])
        self._socket.close()
        self._context.term()


class _Feed:
    """What a relay front door sends a stream running here: further requests (None: no more), credits."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue = asyncio.Queue()
        self.credits = asyncio.Semaphore(0)


def _relayed_request(header: dict, frames: list) -> WireRequest:
    """The one request a relay front door's call carries (its description names the model)."""
    (described,) = header["requests"]
    return messages.parse_request(described, frames, None, described["model"], described["version"])


def _as_gateway_error(exc: Exception) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    log.error("a relayed request failed", exc_info=exc)
    status, code, message = answer_for(exc)
    return from_status(status, message, code)


class RelayFrontDoors:
    """Front doors 2..N: started, watched, restarted, signalled, waited for."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.count = settings.frontdoor_workers
        self.stopping = False
        self._passed_on: Optional[int] = None  # the last signal passed on to the front doors
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._identities: dict[int, bytes] = {}  # of the front doors running, by number
        self._tasks: list[asyncio.Task] = []

    def members(self) -> list[bytes]:
        """The identities of the relay front doors running now (on the hub's socket)."""
        return list(self._identities.values())

    def start(self, hub: RelayHub, table_fd: int) -> None:
        """Start front doors 2..N, connecting to `hub`, reading the model table through `table_fd`
        (a read-only descriptor of the supervisor's: control/table.py)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep(number, hub, table_fd)) for number in range(2, self.count + 1)]

    async def _keep(self, number: int, hub: RelayHub, table_fd: int) -> None:
        """Run front door `number`, and again when it dies, backing off (restart_backoff, doubling
        per death in a row, up to 30 s) while it keeps dying."""
        loop = asyncio.get_running_loop()
        deaths = 0
        for generation in range(sys.maxsize):
            identity = f"front door {number}#{generation}"
            started = loop.time()
            try:
                process = await self._spawn(number, identity, hub, table_fd)
            except OSError as exc:
                log.error("front door %d could not be started: %s", number, exc)
                code, lost = None, 0
            else:
                self._processes[number], self._identities[number] = process, identity.encode()
                if self._passed_on is not None:  # the signal came while it was being started
                    process.send_signal(self._passed_on)
                code = await process.wait()
                del self._processes[number], self._identities[number]
                lost = hub.forget(identity.encode())
            if self.stopping:
                return
            if loop.time() - started > STABLE_AFTER:
                deaths = 0
            delay = min(self.settings.restart_backoff * 2**deaths, 30.0)
            deaths += 1
            log.error("front door %d exited with code %s (%d request(s) in flight failed); restarting it in %.1f s", number, code, lost, delay)
            await asyncio.sleep(delay)
            if self.stopping:
                return  # told to stop while it waited: a front door started now would never be told to drain

    async def _spawn(self, number: int, identity: str, hub: RelayHub, table_fd: int) -> asyncio.subprocess.Process:
        document = settings_document(self.settings)
        theirs, ours = os.pipe()
        try:
            os.write(ours, document)  # far below a pipe's buffer: written before the process reads it
        finally:
            os.close(ours)
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.relay",
                "--number", str(number),
                "--endpoint", hub.endpoint,
                "--identity", identity,
                "--parent", str(os.getpid()),
                "--settings-fd", str(theirs),
                "--table-fd", str(table_fd),
                pass_fds=(theirs, table_fd),
                env=without_secrets(dict(os.environ)),  # its tokens come with its settings
            )  # fmt: skip
        finally:
            os.close(theirs)

    def signal(self, signum: int) -> None:
        """Pass SIGTERM / SIGINT on (as RELAYED_SIGNALS): each front door drains and stops as the main one does."""
        self.stopping = True
        self._passed_on = RELAYED_SIGNALS[signum]
        for process in list(self._processes.values()):
            if process.returncode is None:
                process.send_signal(self._passed_on)

    async def stop(self, timeout: float) -> None:
        """Wait up to `timeout` for the front doors to exit (they were signalled), then kill those left."""
        self.stopping = True
        processes = list(self._processes.values())
        if processes:
            _, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in processes], timeout=timeout)
            for process in processes:
                if process.returncode is None:
                    log.warning("front door (pid %d) did not stop within %g s; killing it", process.pid, timeout)
                    process.kill()
            if pending:
                await asyncio.wait(pending)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def endpoint_in(folder: str) -> str:
    return f"ipc://{folder}/{SOCKET_NAME}"
