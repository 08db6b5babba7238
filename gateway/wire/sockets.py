"""A ZeroMQ socket on an asyncio loop, without pyzmq's asyncio wrapper.

zmq.asyncio turns every send and receive into futures and callbacks; on the
per-request path that bookkeeping cost more than the messages themselves
(docs/PERFORMANCE.md). Here the socket is read when its file descriptor
signals, and sends are plain non-blocking calls (the peers never hold more
than one message in flight, so a send never has to wait).

ZeroMQ's descriptor is edge-triggered and any send or receive may consume the
edge of a message that arrived meanwhile: so ZMQ_EVENTS is checked again
after every operation, before the reader sleeps.
"""

from __future__ import annotations

import asyncio

import zmq

# plain ints: pyzmq's constants are enum members, and `&` on one builds a new member each time
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)


class LoopSocket:
    def __init__(self, socket: zmq.Socket):
        self.socket = socket
        self._readable = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd: int = socket.getsockopt(zmq.FD)  # type: ignore[assignment]  # an int for zmq.FD
        self._loop.add_reader(self._fd, self._readable.set)

    async def recv(self) -> list[zmq.Frame]:
        # ZMQ_EVENTS before reading, not a read that fails: pyzmq's zmq.Again costs more than the check
        while True:
            self._readable.clear()
            if self._events() & _POLLIN:
                return self.recv_now()
            await self._readable.wait()

    def recv_now(self) -> list[zmq.Frame]:
        """A whole message, without waiting (zmq.Again if none has arrived). ZeroMQ delivers a
        message's parts together, so once the first is read the others are there."""
        frame = self.socket.recv(zmq.NOBLOCK, copy=False)
        frames = [frame]
        while frame.more:  # the frame's own flag: recv_multipart asks the socket (ZMQ_RCVMORE) per part
            frame = self.socket.recv(zmq.NOBLOCK, copy=False)
            frames.append(frame)
        return frames

    def send(self, frames: list) -> None:
        self.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        if self._events() & _POLLIN:
            self._readable.set()  # the send may have swallowed a message's edge

    def _events(self) -> int:
        return self.socket.getsockopt(_EVENTS)  # type: ignore[return-value]  # an int for zmq.EVENTS

    def close(self, linger: int = 0) -> None:
        self._loop.remove_reader(self._fd)
        self.socket.close(linger)
