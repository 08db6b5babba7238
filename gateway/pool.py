"""The gateway side of the worker message path.

One ROUTER socket talks to every worker process (each worker's DEALER has a
known identity). Each model has a `ModelPool`: a queue of waiting requests and
its workers. A worker holds at most one request at a time; the pool sends the
oldest waiting request to an idle worker the moment one is free, which is
least-busy routing without guessing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq
import zmq.asyncio

from . import transport
from .errors import GatewayError, Timeout, Unavailable
from .tensors import InferRequest, Tensor

log = logging.getLogger("gateway.pool")

Outputs = tuple[list[Tensor], dict]


@dataclass(eq=False)
class Worker:
    identity: bytes
    pool: "ModelPool"
    # resolves with the READY payload, or raises the load failure
    loaded: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    ready: bool = False
    inflight: tuple[int, asyncio.Future] | None = None


@dataclass(eq=False)
class _Waiting:
    kind: bytes
    request: InferRequest
    reply: asyncio.Future


class Router:
    """The gateway's ROUTER socket and the task that reads every worker's messages."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a gone worker raises, never drops silently
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)
        self._workers: dict[bytes, Worker] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def add(self, worker: Worker) -> None:
        self._workers[worker.identity] = worker

    def remove(self, worker: Worker) -> None:
        self._workers.pop(worker.identity, None)

    def send(self, worker: Worker, frames: list) -> None:
        self._socket.send_multipart([worker.identity, *frames], copy=False)

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            worker = self._workers.get(frames[0].bytes)
            if worker is None:
                continue  # a worker we have already let go of
            try:
                worker.pool.on_message(worker, frames[1].bytes, frames[1:])
            except Exception:
                log.exception("bad message from worker %s", worker.identity.decode())

    async def close(self) -> None:
        self._reader.cancel()
        self._socket.close()
        self._context.term()


class ModelPool:
    """The queue and the workers of one model version."""

    def __init__(self, name: str, router: Router, request_timeout: float):
        self.name = name
        self.request_timeout = request_timeout
        self._router = router
        self._waiting: deque[_Waiting] = deque()
        self._idle: list[Worker] = []
        self.workers: list[Worker] = []
        self._seq = itertools.count()
        self.on_worker_lost: Callable[[Worker], None] = lambda worker: None

    def add_worker(self, identity: bytes) -> Worker:
        worker = Worker(identity, self)
        self.workers.append(worker)
        self._router.add(worker)
        return worker

    @property
    def ready_workers(self) -> int:
        return sum(w.ready for w in self.workers)

    async def submit(self, kind: bytes, request: InferRequest) -> Outputs:
        if not self.ready_workers:
            raise Unavailable(f"model {self.name!r} has no running worker")
        waiting = _Waiting(kind, request, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._dispatch()
        try:
            return await asyncio.wait_for(waiting.reply, self.request_timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"model {self.name!r} did not answer within {self.request_timeout} s") from None
        # a cancelled or timed-out request stays in the queue marked done; _dispatch skips it

    def _dispatch(self) -> None:
        while self._waiting and self._idle:
            waiting = self._waiting.popleft()
            if waiting.reply.done():
                continue
            worker = self._idle.pop()
            seq = next(self._seq)
            worker.inflight = (seq, waiting.reply)
            try:
                self._router.send(worker, transport.request_frames(waiting.kind, seq, waiting.request))
            except zmq.ZMQError as exc:
                worker.inflight = None
                waiting.reply.set_exception(Unavailable(f"model {self.name!r}: worker unreachable ({exc})"))
                self.worker_exited(worker, f"unreachable: {exc}")

    def on_message(self, worker: Worker, kind: bytes, frames: list[Any]) -> None:
        if kind in (transport.REPLY, transport.ERROR):
            seq, result = transport.parse_reply(frames)
            if worker.inflight is not None and worker.inflight[0] == seq:
                reply = worker.inflight[1]
                worker.inflight = None
                if not reply.done():
                    if isinstance(result, GatewayError):
                        reply.set_exception(result)
                    else:
                        reply.set_result(result)
            self._idle.append(worker)
            self._dispatch()
        elif kind == transport.READY:
            worker.ready = True
            if not worker.loaded.done():
                worker.loaded.set_result(transport.parse_control(frames))
            self._idle.append(worker)
            self._dispatch()
        elif kind == transport.FAILED:
            if not worker.loaded.done():
                worker.loaded.set_exception(RuntimeError(transport.parse_control(frames)["reason"]))

    def worker_exited(self, worker: Worker, why: str) -> None:
        """Fail what the worker was running at once, and forget it."""
        if worker not in self.workers:
            return
        self.workers.remove(worker)
        self._router.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        if not worker.loaded.done():
            worker.loaded.set_exception(RuntimeError(f"worker exited during load ({why})"))
        if worker.inflight is not None and not worker.inflight[1].done():
            worker.inflight[1].set_exception(Unavailable(f"model {self.name!r}: its worker stopped during the request ({why})"))
        if worker.ready:
            self.on_worker_lost(worker)
        if not self.workers:
            self.fail_waiting(f"model {self.name!r} has no running worker")

    def fail_waiting(self, why: str) -> None:
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.reply.done():
                waiting.reply.set_exception(Unavailable(why))

    def stop_worker(self, worker: Worker) -> None:
        try:
            self._router.send(worker, transport.control_frames(transport.STOP))
        except zmq.ZMQError:
            pass  # already gone
