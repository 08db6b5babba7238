"""A ZeroMQ socket on an asyncio loop, without pyzmq's asyncio wrapper.

zmq.asyncio turns every send and receive into futures and callbacks; on the
per-request path that bookkeeping cost more than the messages themselves
(docs/PERFORMANCE.md). Here the socket is read when its file descriptor
signals, and sends are plain non-blocking calls (the peers never hold more
than one message in flight, so a send never has to wait).

ZeroMQ's descriptor is edge-triggered and any send or receive may consume the
edge of a message that arrived meanwhile: so ZMQ_EVENTS is checked again
after every operation, before the reader sleeps.

A socket made with `pack=True` (both ends of a link must say so) sends the
messages of one loop turn to one peer as one ZeroMQ message, PACKED, at the
turn's end, and its `recv` hands them out one by one. Each ZeroMQ message costs
a wake-up of libzmq's I/O thread on both sides (tens of µs, docs/PERFORMANCE.md);
under load a turn produces many messages, so packing divides that cost, and
with one message in a turn it sends that message as it is, a few µs later.
Order per peer is kept: everything goes through the same outbox.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque

import orjson
import zmq

log = logging.getLogger("gateway.sockets")

# plain ints: pyzmq's constants are enum members, and `&` on one builds a new member each time
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)

PACKED = b"packed"  # several messages in one: [PACKED, how many frames each has (JSON), *their frames]


class LoopSocket:
    def __init__(self, socket: zmq.Socket, pack: bool = False):
        self.socket = socket
        self._readable = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd: int = socket.getsockopt(zmq.FD)  # type: ignore[assignment]  # an int for zmq.FD
        self._loop.add_reader(self._fd, self._readable.set)
        self._pack = pack
        self._routed = socket.type == zmq.ROUTER  # its messages start with the peer's identity
        self._outbox: dict[bytes | None, list[list]] = {}  # pack: this turn's messages, by peer
        self._unpacked: deque[list] = deque()  # messages received, not handed out yet: the rest of a PACKED one, or unread

    async def recv(self) -> list[zmq.Frame]:
        # ZMQ_EVENTS before reading, not a read that fails: pyzmq's zmq.Again costs more than the check
        while True:
            if self._unpacked:
                return self._unpacked.popleft()
            self._readable.clear()
            if self._events() & _POLLIN:
                frames = self.recv_now()
                return self._unpack(frames) if self._pack else frames
            await self._readable.wait()

    def _unpack(self, frames: list[zmq.Frame]) -> list[zmq.Frame]:
        head, body = (frames[:1], frames[1:]) if self._routed else ([], frames)
        if body[0].bytes != PACKED:
            return frames
        rest, start = body[2:], 0
        for count in orjson.loads(body[1].bytes):
            self._unpacked.append([*head, *rest[start : start + count]])
            start += count
        return self._unpacked.popleft()

    def unread(self, frames: list[zmq.Frame]) -> None:
        """Give back a message recv_now read (on a socket that does not pack): `recv` hands it out next,
        after those given back before it, and wakes to do so if it waits."""
        self._unpacked.append(frames)
        self._readable.set()

    def recv_now(self) -> list[zmq.Frame]:
        """A whole message, without waiting (zmq.Again if none has arrived). ZeroMQ delivers a
        message's parts together, so once the first is read the others are there."""
        frame = self.socket.recv(zmq.NOBLOCK, copy=False)
        frames = [frame]
        while frame.more:  # the frame's own flag: recv_multipart asks the socket (ZMQ_RCVMORE) per part
            frame = self.socket.recv(zmq.NOBLOCK, copy=False)
            frames.append(frame)
        return frames

    def send(self, frames: list, now: bool = False) -> None:
        """Send a message (a ROUTER's: its peer's identity first). Packing, it leaves at the end of
        the loop turn and a failure is logged there; `now`: at once, raising what fails (what this
        turn queued before it leaves first, in order)."""
        if not self._pack:
            self._send(frames)
            return
        if now:
            self._flush()
            self._send(frames)
            return
        peer = frames[0] if self._routed else None
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.setdefault(peer, []).append(frames)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for peer, queued in outbox.items():
            if len(queued) == 1:
                message = queued[0]
            else:
                parts = [frames[1:] for frames in queued] if self._routed else queued
                head = [peer] if self._routed else []
                message = [*head, PACKED, orjson.dumps([len(part) for part in parts]), *itertools.chain.from_iterable(parts)]
            try:
                self._send(message)
            except zmq.ZMQError as exc:  # a ROUTER's peer gone: its calls are being cancelled
                log.debug("dropped %d message(s) for a peer that is gone: %s", len(queued), exc)

    def _send(self, frames: list) -> None:
        # part by part with int flags: send_multipart builds an enum member per part (SNDMORE | flags)
        # and checks every part's type first, which our frames (bytes, buffers, zmq.Frame) need not.
        # Once the first part is taken the others are (ZeroMQ counts whole messages against its limit).
        send, last = self.socket.send, len(frames) - 1
        for index, frame in enumerate(frames):
            send(frame, _MORE if index < last else _NOBLOCK, copy=False)
        if self._events() & _POLLIN:
            self._readable.set()  # the send may have swallowed a message's edge

    def _events(self) -> int:
        return self.socket.getsockopt(_EVENTS)  # type: ignore[return-value]  # an int for zmq.EVENTS

    def close(self, linger: int = 0) -> None:
        self._flush()
        self._loop.remove_reader(self._fd)
        self.socket.close(linger)
