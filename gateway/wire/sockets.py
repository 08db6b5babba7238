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


class LoopSocket:
    def __init__(self, socket: zmq.Socket):
        self.socket = socket
        self._readable = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd: int = socket.getsockopt(zmq.FD)  # type: ignore[assignment]  # an int for zmq.FD
        self._loop.add_reader(self._fd, self._readable.set)

    async def recv(self) -> list[zmq.Frame]:
        while True:
            try:
                return self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                pass
            self._readable.clear()
            if not self._events() & zmq.POLLIN:
                await self._readable.wait()

    def send(self, frames: list) -> None:
        self.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        if self._events() & zmq.POLLIN:
            self._readable.set()  # the send may have swallowed a message's edge

    def _events(self) -> int:
        return self.socket.getsockopt(zmq.EVENTS)  # type: ignore[return-value]  # an int for zmq.EVENTS

    def close(self, linger: int = 0) -> None:
        self._loop.remove_reader(self._fd)
        self.socket.close(linger)
