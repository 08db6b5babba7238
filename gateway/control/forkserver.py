"""The gateway's side of a fork server (workers/forkserver.py has the other side and the why).

`ForkServer` asks a fork server for workers and hears when they exit; each worker it
forks is a `ForkedProcess`, which the supervisor watches and kills as it does a
worker it started itself (the same `returncode`, `wait()`, `kill()`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import orjson

from ..errors import Unavailable
from ..settings import ModelSettings

log = logging.getLogger("gateway.forkserver")

MESSAGE_BYTES = 65536


@dataclass
class Preloaded:
    """Models a KServe script loaded, held by the fork server forked from the script (`pid`, reached
    over `sock`); each of `models` has load_once set and names a model the fork server holds.
    `setup_loop(loop)`: what the script's ModelServer does to each event loop (exception handler)."""

    sock: socket.socket
    pid: int
    models: list[ModelSettings]
    setup_loop: Optional[Callable[[asyncio.AbstractEventLoop], None]] = None


class ForkedProcess:
    """A worker forked by a fork server: a grandchild of the gateway, reaped by the fork server."""

    def __init__(self, pid: int, server: "ForkServer"):
        self.pid = pid
        self.returncode: Optional[int] = None
        self._server = server
        self._exited = asyncio.get_running_loop().create_future()

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self.returncode is None:
            self._server.send({"op": "kill", "pid": self.pid})


class ForkServer:
    """A fork server reached over `sock` (a SOCK_SEQPACKET socket); `process`: the fork server
    itself, an asyncio subprocess, or the pid of a child forked by this process."""

    def __init__(self, sock: socket.socket, process: "asyncio.subprocess.Process | int", label: str):
        self.label = label
        self._sock = sock
        self._process = process
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loaded = self._loop.create_future()
        self._forking: deque[asyncio.Future] = deque()
        self._children: dict[int, ForkedProcess] = {}
        self.closed = False
        self._loop.add_reader(sock.fileno(), self._read)

    async def loaded(self) -> None:
        """Wait until its models are loaded; RuntimeError with the reason if they failed to."""
        await asyncio.shield(self._loaded)

    def send(self, message: dict, fds: tuple[int, ...] = ()) -> None:
        if self.closed:
            raise Unavailable(f"{self.label} has exited")
        data = orjson.dumps(message)
        try:
            if fds:
                socket.send_fds(self._sock, [data], list(fds))
            else:
                self._sock.send(data)
        except OSError as exc:  # full (never expected: messages are tiny) or gone
            self._gone(f"cannot be reached: {exc}")
            raise Unavailable(f"{self.label} has exited") from None

    async def fork(self, model: str, identity: str, endpoint: str, in_fd: int, out_fd: int, log_level: str, log_format: str) -> ForkedProcess:
        """A new worker of `model`, given the two arenas."""
        forked = self._loop.create_future()
        message = {"op": "fork", "model": model, "identity": identity, "endpoint": endpoint, "log_level": log_level, "log_format": log_format}
        self.send(message, (in_fd, out_fd))
        self._forking.append(forked)
        return await forked

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(MESSAGE_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                self._gone(f"cannot be read: {exc}")
                return
            if not data:
                self._gone("has exited")
                return
            self._on_message(orjson.loads(data))

    def _on_message(self, message: dict) -> None:
        op = message["op"]
        if op == "loaded":
            self._loaded.set_result(None)
        elif op == "failed":
            self._loaded.set_exception(RuntimeError(message["reason"]))
        elif op == "forked":
            process = self._children[message["pid"]] = ForkedProcess(message["pid"], self)
            forked = self._forking.popleft()
            if forked.done():  # its spawn was cancelled meanwhile: the worker must not be left running
                process.kill()
            else:
                forked.set_result(process)
        elif op == "exited":
            exited = self._children.pop(message["pid"], None)
            if exited is not None:
                exited.exited(message["code"])

    def _gone(self, why: str) -> None:
        """The fork server is gone: its workers died with it (they ask for SIGKILL when it does)."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        if not self._loaded.done():
            self._loaded.set_exception(RuntimeError(f"{self.label} {why} before its models were loaded"))
        for forked in self._forking:
            if not forked.done():
                forked.set_exception(Unavailable(f"{self.label} {why}"))
        self._forking.clear()
        for process in self._children.values():
            process.exited(-9)
        self._children.clear()
        log.warning("%s %s", self.label, why)

    async def close(self) -> None:
        """Close our end (it kills what is left of its workers and exits) and wait for it to end."""
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        if isinstance(self._process, int):
            await asyncio.get_running_loop().run_in_executor(None, os.waitpid, self._process, 0)
        else:
            await self._process.wait()
