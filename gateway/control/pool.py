"""The gateway side of the worker message path.

One ROUTER socket talks to every worker process (each worker's DEALER has a
known identity). Each model version has a `ModelPool`: a queue of waiting
requests and its workers. A worker has SLOTS (wire/messages.py: 2) call slots,
and computes one call at a time, in the order it was given them; a call sent
while another runs waits in the worker and starts the moment the previous one
has replied, so the hop to the worker overlaps with compute (pipelining). The
pool sends the first waiting request (or batch) the moment a slot is free
(`ModelPool._slot_for`, the one place of the rule): to a worker with nothing in
flight before one that computes, so a lone request never queues behind another
call while a worker is free; when every worker computes, to a free second slot
only what gains nothing by waiting: a full batch, or a request of a model too
slow to bundle (a partial batch, or a quick model's requests, wait in the
queue, gaining company, until the running call has replied), and never behind a call
nobody waits for any more. Requests that come while every slot is taken wait in the
pool's queue, where batches form.

A call may be a bundle (`_take_runs`): the requests waiting that run alone (no
batch_key; streams aside), of one kind, sent as one message to save the per-message
cost of the hop, up to `_bundle_limit()` (BUNDLE_LIMIT, and only for a model whose
recent requests are quick). The worker runs them one after the other, each as a lone
request, and answers them by index in one REPLY or several; the call has ended once
every one of them has been answered, and its slot is free once their outputs have
been given back too. Everything below holds per request of a bundle: its deadline,
its client, its retry, its lease; only a CANCEL is per call (sent once every request
of the call is answered or gone).

The queue orders requests by priority level (control/queue.py) and may be bounded
(`max_queue_size`: beyond it, 503 / UNAVAILABLE with Retry-After). Each request
has a deadline (its client's, at most request_timeout): one still queued then is
dropped without reaching a worker; one sent is answered 504 and its call is
cancelled in the worker (a CANCEL message: the call running stops, one waiting
in the worker is answered at once without running), as is the call of a request
whose client went away, once no request of the call is still waited for. The
requests of every call in flight on a worker that died run again once, first in
line and in their order (unless the model opts out: `retry_on_worker_death`). A
worker whose running call lasts request_timeout + heartbeat_timeout without an answer is hung.

Every worker has two shared-memory arenas, each split in one region per slot:
the gateway writes a call's inputs into its slot's input region, the worker
writes its outputs into that slot's output region. When a reply's outputs lie
in the output region, the slot is lent to the request for as long as its caller
holds the reply (`async with pool.call(kind, request) as reply:`); only then
may the slot carry the next call. Every path gives the lease back: the block
left (normally or by an error), timeout, client gone, worker death.

A stream (`ModelPool.stream`, the runtime's predict_stream) is given only to a
worker with no call in flight, and keeps it for its whole life: the worker sends
response after response, each lent to the stream until the front door asks for
the next one (which gives the region back and the worker one credit), and is
given no other call until it says the generator has ended.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

import zmq

from ..errors import GatewayError, QueueFull, RuntimeFailure, Timeout, Unavailable
from ..settings import ModelSettings
from ..wire import messages
from ..wire.arena import Arena, Region
from ..wire.request import Tensor, WireRequest
from ..wire.sockets import LoopSocket
from .batching import batch_key, merge, rows_of, split
from .queue import RequestQueue
from .stats import model_stats

log = logging.getLogger("gateway.pool")


@dataclass(slots=True)
class Reply:
    """A call's outputs and parameters. The outputs may view the worker's output arena: they are
    valid only while the call's `async with` block runs (copy what you keep)."""

    outputs: list[Tensor]
    parameters: dict


class Call:
    """`async with pool.call(kind, request) as reply:` runs the request on a worker; leaving the
    block gives the worker's output arena back (the lease), whatever happened inside it."""

    __slots__ = ("_pool", "_kind", "_request", "_lender")

    def __init__(self, pool: "ModelPool", kind: bytes, request: WireRequest):
        self._pool, self._kind, self._request = pool, kind, request
        self._lender: Slot | None = None

    async def __aenter__(self) -> Reply:
        outputs, parameters, self._lender = await self._pool._run(self._kind, self._request)
        return Reply(outputs, parameters)

    async def __aexit__(self, *exc_info: object) -> None:
        self._pool._release(self._lender)


@dataclass(eq=False)
class _Waiting:
    kind: bytes
    request: WireRequest
    reply: asyncio.Future  # a stream's: done when the stream has ended on its worker
    batch_key: Optional[Hashable]  # None: runs alone
    level: int  # its priority level: lower is served first
    arrived: float  # loop.time() when it arrived: the batch it starts leaves by arrived + max_batch_time
    # for the queue-time metric: loop.time() is uvloop's per-iteration clock, in whole milliseconds
    queued: int = field(default_factory=time.perf_counter_ns)
    slot: Optional["Slot"] = None  # the worker's slot its call is in, while the call is in flight
    retried: bool = False  # it ran on a worker that died, and was queued again
    stream: Optional["Stream"] = None  # a predict_stream call: its reply is done when the stream has ended


@dataclass(eq=False, slots=True)
class _Call:
    """A call sent into a slot: what the worker runs, one after the other. Each run is one request,
    or a batch's requests merged into one; several runs are a bundle."""

    seq: int
    runs: list[list[_Waiting]]
    unanswered: int  # runs the worker has not answered yet

    def requests(self) -> list[_Waiting]:
        return [waiting for run in self.runs for waiting in run]


@dataclass(eq=False)
class Slot:
    """One of a worker's call slots: a region of each of its arenas, and the call sent into it."""

    worker: "Worker"
    index: int
    inputs: Region
    outputs: Region
    call: _Call | None = None  # sent, not wholly answered yet
    lent: int = 0  # how many requests are still reading its output region

    @property
    def free(self) -> bool:
        """A call may be sent into it: none is in flight in it, and its outputs have been given back."""
        return self.call is None and not self.lent


@dataclass(eq=False)
class Worker:
    identity: bytes
    pool: "ModelPool"
    in_arena: Arena
    out_arena: Arena
    loaded: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    ready: bool = False
    stopping: bool = False  # told to stop: it gets no more requests and is not pinged while it unloads
    busy_since: float = 0.0  # when the call running began (it was sent to an idle worker, or the one before it replied)
    last_seen: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    slots: list[Slot] = field(init=False)

    def __post_init__(self) -> None:
        self.slots = [Slot(self, i, inputs, outputs) for i, (inputs, outputs) in enumerate(zip(self.in_arena.regions, self.out_arena.regions))]

    @property
    def busy(self) -> int:
        """How many calls it has in flight (running, or waiting in it for the one running)."""
        return sum(slot.call is not None for slot in self.slots)

    @property
    def idle(self) -> bool:
        """Nothing in flight, nothing lent."""
        return all(slot.free for slot in self.slots)

    def requests(self) -> list[_Waiting]:
        """The requests of its calls in flight, in the order it runs them (the calls' order of sending: by seq)."""
        calls = sorted((slot.call for slot in self.slots if slot.call is not None), key=lambda call: call.seq)
        return [waiting for call in calls for waiting in call.requests()]

    def running(self) -> Slot | None:
        """The slot of the call it runs now, if any."""
        busy = [slot for slot in self.slots if slot.call is not None]
        return min(busy, key=lambda slot: slot.call.seq) if busy else None  # type: ignore[union-attr]

    def slot_of(self, seq: int) -> Slot | None:
        return next((slot for slot in self.slots if slot.call is not None and slot.call.seq == seq), None)


class Router:
    """The gateway's ROUTER socket and the task that reads every worker's messages."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._context = zmq.Context()
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a gone worker raises, never drops silently
        socket.bind(endpoint)
        self._socket = LoopSocket(socket)
        self._workers: dict[bytes, Worker] = {}
        self.loop = asyncio.get_running_loop()
        self._reader = self.loop.create_task(self._read())

    def add(self, worker: Worker) -> None:
        self._workers[worker.identity] = worker

    def remove(self, worker: Worker) -> None:
        self._workers.pop(worker.identity, None)

    def send(self, worker: Worker, frames: list) -> None:
        self._socket.send([worker.identity, *frames])

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv()
            worker = self._workers.get(frames[0].bytes)
            if worker is None:
                continue  # a worker we have already let go of
            worker.last_seen = self.loop.time()
            try:
                worker.pool.on_message(worker, frames[1].bytes, frames[1:])
            except Exception:
                log.exception("bad message from worker %s", worker.identity.decode())

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.wait([self._reader])  # gone before the loop closes
        self._socket.close()
        self._context.term()


class _End:
    """Queued after a stream's last response."""


# requests of a stream sent on to the worker and not yet taken by its generator; sending the next waits
STREAM_UNTAKEN = 4

# how many of a model's latest answers tell how long its requests take (_bundle_limit: their median)
RECENT = 15


class Stream:
    """One predict_stream call on one worker, from `ModelPool.stream`:

        async with pool.stream(first_request) as stream:
            await stream.send(request)     # further requests (gRPC), then
            stream.end_input()             # (REST: at once, its body is the one request)
            async for outputs, parameters in stream:
                ...                        # the outputs may view the worker's shared memory:
                                           # valid until the loop asks for the next response

    Leaving the block early (an error, the client gone) cancels the generator; the worker is
    given other calls only once it has closed it."""

    def __init__(self, pool: "ModelPool", request: WireRequest, kind: bytes):
        self._pool, self._request, self._kind = pool, request, kind
        self._responses: asyncio.Queue = asyncio.Queue()  # (outputs, parameters, in_arena), then _End or an error
        self._slot: Slot | None = None  # once dispatched, and the call's seq
        self._seq = 0
        self._unsent: list[tuple[bytes, WireRequest | None]] = []  # what was posted before dispatch
        self._input_open = True
        self._closed = False  # the caller has left its block
        self._lent: bool | None = None  # the caller holds a response (True: it views the output arena)
        self._untaken = 0
        self._taken = asyncio.Event()
        self.cancelled_at: float | None = None  # loop time the worker was told to cancel
        self.responses = 0

    async def __aenter__(self) -> "Stream":
        self._waiting = self._pool._enqueue(self._kind, self._request, self)
        self._waiting.reply.add_done_callback(self._ended)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._give_back()
        self._closed = True
        while not self._responses.empty():  # a response that arrived unread (the caller left on an error) is given back too
            item = self._responses.get_nowait()
            if isinstance(item, tuple) and item[2]:
                self._pool._release(self._slot)
        if self._waiting.reply.done():
            return
        if self._slot is None:
            self._waiting.reply.cancel()  # still queued: it will not be dispatched
            self._pool._abandon(self._waiting)
        else:
            self.cancelled_at = asyncio.get_running_loop().time()
            self._post(messages.CANCEL)

    async def send(self, request: WireRequest) -> None:
        """A further request for the generator; waits while the worker holds STREAM_UNTAKEN not yet taken.
        It travels inline: the input arena holds the first request for the stream's life."""
        while self._untaken >= STREAM_UNTAKEN and not self._waiting.reply.done():
            self._taken.clear()
            await self._taken.wait()
        self._untaken += 1
        self._post(messages.NEXT, request)

    def end_input(self) -> None:
        """No more requests: the generator's request iterator ends."""
        if self._input_open:
            self._input_open = False
            self._post(messages.END)

    def fail(self, error: Exception) -> None:
        """Raise `error` where the caller waits for the next response (it then leaves, cancelling the generator)."""
        self._responses.put_nowait(error)

    def __aiter__(self) -> "Stream":
        return self

    async def __anext__(self) -> tuple[list[Tensor], dict]:
        self._give_back()
        try:
            # once every request is in, the model must produce each response within the timeout
            # (before, it may be waiting for the client's next request)
            async with asyncio.timeout(None if self._input_open else self._pool.request_timeout):
                item = await self._responses.get()
        except TimeoutError:
            raise Timeout(f"model {self._pool.name!r} sent no response within {self._pool.request_timeout} s") from None
        if item is _End:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        outputs, parameters, self._lent = item
        self.responses += 1
        return outputs, parameters

    # --- the pool's side

    def _dispatched(self, slot: Slot, seq: int) -> None:
        self._slot, self._seq = slot, seq
        for kind, request in self._unsent:
            self._post(kind, request)
        self._unsent.clear()

    def _post(self, kind: bytes, request: WireRequest | None = None) -> None:
        if self._waiting.reply.done():
            return  # the stream has ended on its worker
        if self._slot is None:
            self._unsent.append((kind, request))
            return
        if request is None:
            frames = messages.control_frames(kind, {"seq": self._seq})
        else:
            frames = messages.request_frames(kind, self._seq, [request], None, self._slot.index)
        self._pool._post(self._slot.worker, frames)

    def _give_back(self) -> None:
        """The caller is done with the response it held: the worker may write the next one."""
        if self._lent is None:
            return
        in_arena, self._lent = self._lent, None
        self._post(messages.CREDIT)
        if in_arena:
            self._pool._release(self._slot)

    def _on_message(self, kind: bytes, frames: list[Any]) -> None:
        if kind == messages.TAKEN:
            self._untaken -= 1
            self._taken.set()
            return
        slot = self._slot
        assert slot is not None  # an ITEM comes from the worker the stream was given to
        header = messages.reply_header(frames)
        result, in_arena = messages.parse_reply(header, frames, slot.outputs)
        assert not isinstance(result, GatewayError)  # an ITEM, not an ERROR
        outputs, parameters = result
        self._pool.stats.worker_report(header["report"])
        if self._closed:
            return  # sent before the worker saw the cancel: nobody reads it, and no credit follows
        slot.lent += in_arena
        self._responses.put_nowait((outputs, parameters, in_arena))

    def _ended(self, reply: asyncio.Future) -> None:
        self._taken.set()
        if not reply.cancelled():
            self._responses.put_nowait(reply.exception() or _End)


@dataclass(frozen=True)
class QueuePolicy:
    """A model's queueing settings (model-settings.json: same names)."""

    max_queue_size: int = 0  # 0: no limit
    default_priority_level: int = 1
    retry_on_worker_death: bool = True

    @classmethod
    def of(cls, settings: ModelSettings) -> "QueuePolicy":
        return cls(settings.max_queue_size, settings.default_priority_level, settings.retry_on_worker_death)


class ModelPool:
    """The queue and the workers of one model version."""

    def __init__(
        self,
        name: str,
        router: Router,
        request_timeout: float,
        arena_bytes: int,
        max_batch_size: int = 0,
        version: str | None = None,
        max_batch_time: float = 0.0,
        policy: "QueuePolicy | None" = None,
        on_worker_lost: Callable[[Worker, str], None] = lambda worker, why: None,
    ):
        """`on_worker_lost(worker, why)`: told when a worker that had loaded is gone (it exited, or
        cannot be reached), after its requests have been run again or failed; its process may still run."""
        self.name, self.version = name, version
        self.policy = policy or QueuePolicy()
        self.stats = model_stats(name, version)  # told of each call sent and each worker report
        self.request_timeout = request_timeout
        self.arena_bytes = arena_bytes
        self.max_batch_size = max_batch_size
        self.max_batch_time = max_batch_time  # 0: no request waits for company while a worker is idle
        self._batch_timer: Optional[asyncio.TimerHandle] = None
        self.workers: list[Worker] = []
        self._on_worker_lost = on_worker_lost
        self._router = router
        self._loop = router.loop  # asyncio.get_running_loop() costs a getpid() each time
        self._waiting: RequestQueue[_Waiting] = RequestQueue()
        self._seq = itertools.count()
        self._recent_ns: deque[int] = deque(maxlen=RECENT)  # the latest answers' stage times, summed (_bundle_limit)
        self._quiet = asyncio.Event()
        self._quiet.set()

    def add_worker(self, identity: str) -> Worker:
        size = messages.SLOTS * self.arena_bytes  # arena_bytes per slot
        worker = Worker(
            identity.encode(),
            self,
            Arena(size, f"gateway:{identity}:in", regions=messages.SLOTS),
            Arena(size, f"gateway:{identity}:out", regions=messages.SLOTS),
        )
        self.workers.append(worker)
        self._router.add(worker)
        return worker

    @property
    def ready_workers(self) -> int:
        return sum(w.ready for w in self.workers)

    def shared_memory_bytes(self) -> int:
        """Memory the workers' arenas hold (pages written at least once, in any slot's region)."""
        return sum(w.in_arena.resident_bytes() + w.out_arena.resident_bytes() for w in self.workers)

    # --- requests -------------------------------------------------------

    def call(self, kind: bytes, request: WireRequest) -> Call:
        """Run the request on a worker: `async with pool.call(kind, request) as reply:` (see Call)."""
        return Call(self, kind, request)

    async def _run(self, kind: bytes, request: WireRequest) -> tuple[list[Tensor], dict, Slot | None]:
        """(outputs, parameters, the slot whose output region they view: released by the Call)."""
        seconds = self._time_left(request)
        if seconds <= 0:
            raise Timeout(f"model {self.name!r}: the request's deadline passed before it could be queued")
        waiting = self._enqueue(kind, request)
        # its error states the client's own timeout, not the time left now (less, by a relay front door's hop)
        bound = request.timeout if request.timeout is not None and seconds < self.request_timeout else seconds
        deadline = self._loop.call_later(seconds, self._expire, waiting, bound)
        try:
            return await waiting.reply
        except asyncio.CancelledError:
            # the client went away; if the reply had already arrived, give its lease back
            if waiting.reply.done() and not waiting.reply.cancelled() and waiting.reply.exception() is None:
                self._release(waiting.reply.result()[2])
            else:
                waiting.reply.cancel()
                self._abandon(waiting)
            raise
        finally:
            deadline.cancel()

    def stream(self, request: WireRequest, kind: bytes = messages.STREAM) -> Stream:
        """Run the runtime's predict_stream on a worker: `async with pool.stream(request) as stream:` (see Stream);
        `kind` STREAM_V1: a KServe model's V1 predict, its answer's chunks."""
        if not self.ready_workers:
            raise Unavailable(f"model {self.name!r} has no running worker")
        return Stream(self, request, kind)

    def _post(self, worker: Worker, frames: list) -> None:
        """A message for a worker that may have gone (its calls are failed by then)."""
        try:
            self._router.send(worker, frames)
        except zmq.ZMQError as exc:
            self.worker_exited(worker, f"unreachable: {exc}")

    def _enqueue(self, kind: bytes, request: WireRequest, stream: Optional[Stream] = None) -> _Waiting:
        """Queue the request (refused if no worker runs, or if the queue is full) and dispatch."""
        if not self.ready_workers:
            raise Unavailable(f"model {self.name!r} has no running worker")
        limit = self.policy.max_queue_size
        if limit and len(self._waiting) >= limit:
            self.stats.shed()
            raise QueueFull(f"model {self.name!r} has {limit} requests waiting already (max_queue_size); retry later")
        key = batch_key(request) if self.max_batch_size > 1 and kind == messages.INFER else None
        level = request.priority or self.policy.default_priority_level
        waiting = _Waiting(kind, request, self._loop.create_future(), key, level, self._loop.time(), stream=stream)
        self._waiting.push(waiting)
        self._quiet.clear()
        self._dispatch()
        return waiting

    def _time_left(self, request: WireRequest) -> float:
        """Seconds until the request's deadline: its client's, at most request_timeout from now."""
        if request.deadline is None:
            return self.request_timeout
        return min(self.request_timeout, request.deadline - time.monotonic())

    def _expire(self, waiting: _Waiting, seconds: float) -> None:
        if waiting.reply.done():
            return  # a late answer finds it done and is dropped
        slot = waiting.slot
        if slot is None:
            where = "waiting for a worker"
        elif slot.worker.running() is not slot:
            where = "waiting in its worker for the call before it"
        else:
            where = "running" if slot.call is not None and len(slot.call.runs) == 1 else "in a bundle its worker was running"
        waiting.reply.set_exception(Timeout(f"model {self.name!r} did not answer within {seconds:.3g} s, the request's deadline (it was {where})"))
        self._abandon(waiting)

    def _abandon(self, waiting: _Waiting) -> None:
        """The request is no longer waited for (client gone, deadline passed): drop it from the queue, or
        cancel its call in the worker once no request of the call is waited for any more."""
        if self._waiting.remove(waiting):
            self._check_quiet()
            return
        slot = waiting.slot
        if slot is None or slot.call is None:
            return
        if all(w.reply.done() for w in slot.call.requests()):  # answered or gone, every one
            try:
                self._router.send(slot.worker, messages.cancel_frames(slot.call.seq))
            except zmq.ZMQError:
                pass  # gone: worker_exited will free it

    def _dispatch(self) -> None:
        """While a slot is free, send the first waiting request and those waiting that can join it.

        Without max_batch_time nothing waits for company while a slot is free: batches form
        from the requests that queue while every slot is taken. With it (MLServer's rule), a
        batch waits for max_batch_size requests, at most max_batch_time from its oldest one."""
        while self._waiting:
            first = self._waiting.peek()
            slot = self._slot_for(first)
            if slot is None or self._waits_for_company(first):
                break
            self._waiting.pop()
            self._send(slot, self._take_runs(first))
        self._check_quiet()

    def _slot_for(self, first: _Waiting) -> Slot | None:
        """The slot rule: where the next call goes, if anywhere. A free slot of a worker that serves
        (ready, not stopping, not streaming), of the worker with the fewest calls in flight: one
        with none before one that computes, so that a lone request never waits behind another call
        while a worker is free. To a worker that computes (the call then waits in it) only what
        gains nothing by waiting: a full batch, or a request of a model too slow to bundle; a
        partial batch, or a quick model's requests, stay in the queue, gaining company (a batch,
        a bundle), until a worker has nothing in flight; and never behind a call that nobody waits
        for any more (cancelled, it may run on until its worker is killed as hung).
        A stream only to a worker with nothing in flight (it then takes no other call)."""
        best: Slot | None = None
        fewest = messages.SLOTS
        may_wait_in_worker = first.stream is None and (self._full_batch(first) if first.batch_key is not None else self._bundle_limit() == 1)
        for worker in self.workers:
            if not worker.ready or worker.stopping:
                continue
            busy = worker.busy
            if busy >= fewest or (busy and (not may_wait_in_worker or not _takes_a_call_behind(worker))):
                continue
            slot = next((slot for slot in worker.slots if slot.free), None)
            if slot is not None:
                best, fewest = slot, busy
        return best

    def _waits_for_company(self, first: _Waiting) -> bool:
        """Whether the batch `first` starts should wait for more requests; if so, a timer
        dispatches it when its time is up."""
        if not self.max_batch_time or first.batch_key is None:
            return False
        leaves_at = first.arrived + self.max_batch_time
        loop = self._loop
        if loop.time() >= leaves_at:
            return False
        if self._full_batch(first):
            return False
        if self._batch_timer is None or self._batch_timer.when() > leaves_at:
            if self._batch_timer is not None:
                self._batch_timer.cancel()
            self._batch_timer = loop.call_at(leaves_at, self._batch_time_up)
        return True

    def _full_batch(self, first: _Waiting) -> bool:
        """Whether max_batch_size waiting requests can join the batch `first` starts (requests of
        other shapes or parameters, which cannot, do not count)."""
        if len(self._waiting) < self.max_batch_size:
            return False
        return sum(1 for w in self._waiting if w.batch_key == first.batch_key) >= self.max_batch_size

    def _batch_time_up(self) -> None:
        self._batch_timer = None
        self._dispatch()

    def _take_runs(self, first: _Waiting) -> list[list[_Waiting]]:
        """What the call `first` starts runs: a batch, `first` and the waiting requests that can join
        it (in serving order, up to max_batch_size); or a bundle, `first` and the waiting requests
        of its kind that run alone (streams aside), up to `_bundle_limit()`, each a run of its own."""
        if first.batch_key is not None:
            return [[first, *self._waiting.take(lambda waiting: waiting.batch_key == first.batch_key, self.max_batch_size - 1)]]
        if first.stream is not None or not self._waiting:
            return [[first]]
        alone = self._waiting.take(lambda w: w.kind == first.kind and w.batch_key is None and w.stream is None, self._bundle_limit() - 1)
        return [[first], *([w] for w in alone)]

    def _bundle_limit(self) -> int:
        """How many requests a bundle may carry: as many as the model computes in BUNDLE_SECONDS, by
        the median of its recent requests' stage times, up to BUNDLE_LIMIT; 1 (no bundle) until
        it has answered one. A slower model is sent what it was without bundles, one request per
        call: a request bundled behind others is committed to its worker, where a higher priority
        level or an idle sibling worker can no longer take it first."""
        if not self._recent_ns:
            return 1
        typical = sorted(self._recent_ns)[len(self._recent_ns) // 2]
        return max(1, min(messages.BUNDLE_LIMIT, int(messages.BUNDLE_SECONDS * 1e9) // max(typical, 1)))

    def _send(self, slot: Slot, runs: list[list[_Waiting]]) -> None:
        """Send the runs as a call into the slot; if its message cannot be built, its requests
        fail and the slot stays free."""
        seq = next(self._seq)
        try:
            if len(runs[0]) > 1:  # a batch
                batch = runs[0]
                requests, rows = [merge([w.request for w in batch])], [rows_of(w.request) for w in batch]
            else:
                requests, rows = [run[0].request for run in runs], None
            frames = messages.request_frames(runs[0][0].kind, seq, requests, slot.inputs, slot.index, rows)
        except Exception as exc:
            for run in runs:
                self._fail(run, _request_error(exc, f"could not send a call of model {self.name!r} to its worker"))
            return
        worker = slot.worker
        if not worker.busy:
            worker.busy_since = self._loop.time()  # it starts at once
        slot.call = _Call(seq, runs, len(runs))
        for run in runs:
            for waiting in run:
                waiting.slot = slot
        self.stats.dispatched([[w.queued for w in run] for run in runs])
        self._post(worker, frames)
        first = runs[0][0]
        if first.stream is not None and slot.call is not None:
            first.stream._dispatched(slot, seq)

    @staticmethod
    def _fail(batch: list[_Waiting], error: GatewayError) -> None:
        for waiting in batch:
            if not waiting.reply.done():
                waiting.reply.set_exception(error)

    def _release(self, slot: Slot | None) -> None:
        if slot is not None and slot.lent:
            slot.lent -= 1
            if not slot.lent:
                self._dispatch()  # the slot may be free

    def _check_quiet(self) -> None:
        if not self._waiting and all(w.idle for w in self.workers):
            self._quiet.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued, running or being read; False on timeout."""
        if self._quiet.is_set():
            return True  # also with no time to wait (wait_for with 0 s times out even on what is done)
        try:
            await asyncio.wait_for(self._quiet.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    # --- messages from workers -------------------------------------------

    def on_message(self, worker: Worker, kind: bytes, frames: list[Any]) -> None:
        stream = _stream_of(worker)
        if stream is not None and kind in (messages.ITEM, messages.TAKEN):
            stream._on_message(kind, frames)
        elif stream is not None and kind in (messages.DONE, messages.ERROR):
            self._on_stream_end(worker, kind, frames)
        elif kind in (messages.REPLY, messages.ERROR):
            self._on_reply(worker, kind, frames)
        elif kind == messages.READY:
            worker.ready = True
            payload = messages.parse_control(frames)
            self.stats.worker_report(payload["report"])
            if not worker.loaded.done():
                worker.loaded.set_result(payload)
            self._dispatch()
        elif kind == messages.FAILED:
            if not worker.loaded.done():
                worker.loaded.set_exception(RuntimeError(messages.parse_control(frames)["reason"]))
        elif kind == messages.PONG:  # receiving it was the point (last_seen), and what it reports
            self.stats.worker_report(messages.parse_control(frames)["report"])

    def _on_reply(self, worker: Worker, kind: bytes, frames: list[Any]) -> None:
        """A REPLY answers some of the call's runs (all of them, but for a bundle a slow model
        answers as it goes); an ERROR fails those not answered yet. The call ends once every run
        has been answered, and the slot then takes the next call once its outputs are given back."""
        header = messages.reply_header(frames)
        slot = worker.slot_of(header["seq"])
        if slot is None or slot.call is None:
            log.warning("worker %s answered a call it was not given (%s)", worker.identity.decode(), header["seq"])
            return
        call = slot.call
        try:
            self.stats.worker_report(header["report"])
            if kind == messages.ERROR:
                error = messages.call_error(header)
                for run in call.runs:
                    self._fail(run, error)
                call.unanswered = 0
            else:
                for answer in header["answers"]:
                    self._answer(slot, call.runs[answer["index"]], answer, frames)
                    call.unanswered -= 1
        finally:  # whatever went wrong above, the worker goes on
            if worker.running() is slot:
                worker.busy_since = self._loop.time()  # the worker moved on: to the bundle's next request, or the call waiting in it
            if call.unanswered <= 0:
                self._end_call(slot)
                self._dispatch()

    def _on_stream_end(self, worker: Worker, kind: bytes, frames: list[Any]) -> None:
        """The generator has ended (or failed, or was cancelled): the worker is free once the
        stream's last response has been given back."""
        slot = worker.running()
        assert slot is not None and slot.call is not None  # the stream it runs, its only call
        reply = slot.call.runs[0][0].reply
        self._end_call(slot)
        try:
            header = messages.parse_control(frames)  # a DONE's payload, or an ERROR's header
            self.stats.worker_report(header["report"])
            if not reply.done():
                if kind == messages.ERROR:
                    reply.set_exception(messages.call_error(header))
                else:
                    reply.set_result(None)
        finally:
            self._dispatch()

    def _answer(self, slot: Slot, run: list[_Waiting], answer: dict, frames: list[Any]) -> None:
        """One answer of a REPLY to its run (a lone request, a batch's: split per request); a step
        that fails fails this run only."""
        try:
            if answer.get("waited") is not None:
                self.stats.waited_in_worker(answer["waited"], len(run))
            result, in_arena = messages.parse_answer(answer, frames, slot.outputs)
            if isinstance(result, GatewayError):
                self._fail(run, result)
                return
            times = answer["times"]
            self.stats.executed(times, len(run))
            self._recent_ns.append(sum(times))
            outputs, parameters = result
            outputs_of = split(outputs, [w.request for w in run]) if len(run) > 1 else [outputs]
            for waiting, own in zip(run, outputs_of):
                if not waiting.reply.done():  # else: timed out or gone; nobody will read
                    slot.lent += in_arena
                    waiting.reply.set_result((own, parameters, slot if in_arena else None))
        except Exception as exc:
            self._fail(run, _request_error(exc, f"could not read the answer of model {self.name!r}"))

    # --- liveness ----------------------------------------------------------

    def hung_workers(self, now: float, ping_every: float, silent_after: float) -> list[Worker]:
        """Ping streaming workers and those with no call in flight (they answer at once); name those
        silent too long, or still running one call `silent_after` past request_timeout: its call was
        cancelled at the timeout, and a worker gets that long to give it back (a sync predict that
        never asks cancelled() does not). A call waiting in a worker starts its clock when it starts."""
        hung = []
        for worker in self.workers:
            if not worker.ready or worker.stopping:
                continue
            stream, silent = _stream_of(worker), now - worker.last_seen
            if stream is not None:
                # it reads pings while its generator runs: a step may take as long as a call may,
                # and a cancel must be obeyed within that time too
                cancelled = stream.cancelled_at
                is_hung = silent > self.request_timeout or (cancelled is not None and now - cancelled > self.request_timeout)
            elif worker.busy:
                is_hung = now - worker.busy_since > self.request_timeout + silent_after
            else:
                is_hung = silent > silent_after
            if is_hung:
                hung.append(worker)
            elif silent > ping_every and (stream is not None or not worker.busy):
                try:
                    self._router.send(worker, messages.control_frames(messages.PING))
                except zmq.ZMQError:
                    hung.append(worker)
        return hung

    def worker_exited(self, worker: Worker, why: str, rerun: bool = True) -> None:
        """Queue again what the worker had in flight, every call of it (`rerun`, unless the model opts
        out) or fail it at once, free its arenas, and forget it."""
        if worker not in self.workers:
            return
        self.workers.remove(worker)
        self._router.remove(worker)
        if not worker.loaded.done():
            worker.loaded.set_exception(RuntimeError(f"worker exited during load ({why})"))
        requests = worker.requests()
        if requests:
            self._rerun_or_fail(requests, why, rerun and self.policy.retry_on_worker_death)
        for slot in worker.slots:
            self._end_call(slot)
        worker.in_arena.close()
        worker.out_arena.close()  # a reply still being read keeps its mapping alive until it is done
        if worker.ready:
            self._on_worker_lost(worker, why)
        self._dispatch()  # a retried request to a sibling (with none, it waits for the restart: see fail_waiting)

    @staticmethod
    def _end_call(slot: Slot) -> None:
        if slot.call is not None:
            for waiting in slot.call.requests():
                waiting.slot = None
        slot.call = None

    def _rerun_or_fail(self, batch: list[_Waiting], why: str, rerun: bool) -> None:
        """The requests of the calls of a worker that died: with `rerun`, each still waited for runs again,
        first in line, unless it has been retried already; the others fail (503 / UNAVAILABLE)."""
        retried = []
        for waiting in batch:
            if waiting.reply.done():
                continue
            # a stream does not run again: its client may have had responses, its further requests are gone
            if rerun and not waiting.retried and waiting.stream is None:
                waiting.retried = True
                retried.append(waiting)
            else:
                again = " again" if waiting.retried else ""
                waiting.reply.set_exception(Unavailable(f"model {self.name!r}: its worker stopped during the request{again} ({why})"))
        for waiting in reversed(retried):  # each to the front: the batch's order kept
            self._waiting.push(waiting, first=True)
        if retried:
            self.stats.retried(len(retried))
            log.warning("model %s: %d request(s) of a worker that stopped (%s) will run again", self.name, len(retried), why)

    def fail_waiting(self, why: str) -> int:
        """Fail every queued request (503 / UNAVAILABLE); returns how many. Queued requests outlive
        the death of the last worker, waiting for its restart: the supervisor calls this when
        none is coming (the model unloaded, the gateway stopping, a restart that failed)."""
        failed = 0
        for waiting in self._waiting.clear():
            if not waiting.reply.done():
                waiting.reply.set_exception(Unavailable(why))
                failed += 1
        self._check_quiet()
        return failed

    def stop_worker(self, worker: Worker) -> None:
        """Tell the worker to unload and exit (its unload() may take a while: it is not hung)."""
        worker.stopping = True
        try:
            self._router.send(worker, messages.control_frames(messages.STOP))
        except zmq.ZMQError:
            pass  # already gone


def _takes_a_call_behind(worker: Worker) -> bool:
    """Whether a call may wait in the computing worker for the one it runs: not behind a stream (it takes
    no other call), nor behind a call whose every request is answered or gone (cancelled: it runs on
    only until the worker obeys, or is killed as hung, and a sibling may well be free before that)."""
    slot = worker.running()
    assert slot is not None and slot.call is not None  # it computes
    return slot.call.runs[0][0].stream is None and not all(waiting.reply.done() for waiting in slot.call.requests())


def _stream_of(worker: Worker) -> Stream | None:
    """The stream the worker runs, if it runs one (then its only call)."""
    slot = worker.running()
    return slot.call.runs[0][0].stream if slot is not None and slot.call is not None else None


def _request_error(exc: Exception, what: str) -> GatewayError:
    """The error a request fails with when a step of its dispatch raised: a GatewayError keeps its
    status (e.g. an output the client asked for in a form that cannot hold it); anything else is a
    bug of ours, logged, and a 500 for this call only."""
    if isinstance(exc, GatewayError):
        return exc
    log.error("%s", what, exc_info=exc)
    return RuntimeFailure(f"{what}: {type(exc).__name__}: {exc}")
