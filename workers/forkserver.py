"""The fork server: one process holding loaded models, forking their workers ("load once").

A model loaded here is shared with every worker forked from it: its memory is the
fork server's, copied by the kernel only where a worker writes to it, so N workers of a
model holding 1 GiB of weights cost about 1 GiB, not N GiB. Two starts lead here:

- a KServe script: `ModelServer.start(models)` forks this process from the script's own,
  the models loaded by the script (gateway/kserve/model_server.py);
- a model whose model-settings.json says `"load_once": true`: the supervisor starts
  `python -m workers --fork-server FD ...`, which loads the model, then serves forks.

A fork copies only the thread that calls it, so the process forking must have no other:
a thread of a library (a gRPC channel's, a GPU context's, a model's own) would be missing
in the workers, with its locks possibly held forever. This process checks that before it
serves (`fork_hazards`) and never starts a thread or an event loop itself: it is a plain
blocking loop over one socket. Each worker starts its own event loop after the fork.

The gateway talks to it over a SOCK_SEQPACKET socket, one JSON message each way, the arena
descriptors of a new worker passed along (SCM_RIGHTS):
  gateway -> here: {"op": "fork", "model", "identity", "endpoint", "log_level", "log_format"}
                   (+ 2 fds), {"op": "kill", "pid"}
  here -> gateway: {"op": "loaded"} or {"op": "failed", "reason"} (first), {"op": "forked", "pid"}
                   (answers forks in order), {"op": "exited", "pid", "code"}
When the gateway's end closes, remaining workers are killed and this process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Mapping, NoReturn

import orjson

from gateway import logs
from gateway.settings import ModelSettings
from gateway.wire import messages
from gateway.wire.arena import Arena

from .worker import Served, die_with_parent, load_served, serve_loaded

log = logging.getLogger("gateway.forkserver")

MESSAGE_BYTES = 65536


def fork_hazards() -> list[str]:
    """What makes forking this process unsafe: a running event loop, threads besides this one.

    Threads started by native code alone (a BLAS pool) are not Python threads: they are
    logged (`native_threads`), not refused, as BLAS libraries prepare for fork themselves."""
    hazards = []
    try:
        asyncio.get_running_loop()
        hazards.append("an asyncio event loop is running in this process")
    except RuntimeError:
        pass
    others = [thread.name for thread in threading.enumerate() if thread is not threading.current_thread()]
    if others:
        hazards.append(f"{len(others)} thread(s) besides the main one are running ({', '.join(others)})")
    return hazards


def native_threads() -> list[str]:
    """The names of this process's threads (Linux /proc), this one included."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            pass  # it ended meanwhile
    return names


def send(sock: socket.socket, message: dict) -> None:
    sock.send(orjson.dumps(message))


def load_and_serve_forks(settings: ModelSettings, sock: socket.socket) -> int:
    """`python -m workers --fork-server`: load the model (its event loop closed afterwards), then
    serve forks of it; a failed load, or one that left threads running, is reported and ends here."""
    import uvloop

    loaded = uvloop.run(load_served(settings))
    if not isinstance(loaded, str):
        hazards = fork_hazards()
        if hazards:
            loaded = (
                f"load_once: the model cannot be forked after load(): {'; '.join(hazards)}. Start threads in the "
                "worker instead (lazily, on the first request), or set load_once to false to load in every worker"
            )
    if isinstance(loaded, str):
        send(sock, {"op": "failed", "reason": loaded})
        return 1
    serve_forks(sock, {settings.name: (loaded, settings.version)})


def serve_forks(sock: socket.socket, models: Mapping[str, tuple[Served, str | None]]) -> NoReturn:
    """Announce the models loaded, then fork a worker for each request until the gateway's end closes.

    `models`: name -> (the loaded model, its version). Never returns: the process exits."""
    threads = native_threads()
    if len(threads) > 1:
        log.warning(
            "forking workers with %d threads started by native code (%s): only libraries that prepare for fork (OpenBLAS, MKL) are safe so",
            len(threads) - 1,
            ", ".join(threads),
        )
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)  # the gateway stops us, after its workers
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so that it wakes the select
    children: set[int] = set()
    send(sock, {"op": "loaded"})
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_read], [], [])
        if wake_read in readable:
            while _drained(wake_read):
                pass
        _reap(sock, children)
        if sock.fileno() not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 2)
        if not message:  # the gateway is gone, or done with us
            break
        request = orjson.loads(message)
        if request["op"] == "kill":
            if request["pid"] in children:  # only our own, not yet reaped: no pid reuse can be hit
                os.kill(request["pid"], signal.SIGKILL)
            continue
        served, version = models[request["model"]]
        pid = _fork_worker(served, version, request, fds, (sock.fileno(), wake_read, wake_write))
        for fd in fds:
            os.close(fd)  # the worker has them
        children.add(pid)
        send(sock, {"op": "forked", "pid": pid})
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    os._exit(0)


def _drained(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        send(sock, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _fork_worker(served: Served, version: str | None, request: dict, fds: list[int], ours: tuple[int, ...]) -> int:
    hazards = fork_hazards()
    if hazards:  # never expected: this process starts no thread nor loop
        raise RuntimeError(f"the fork server cannot fork: {'; '.join(hazards)}")
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the worker: never returns into the fork server's loop
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in ours:
            os.close(fd)
        die_with_parent(parent)
        logs.configure(request["log_level"], request["log_format"], worker=request["identity"])
        import uvloop

        in_arena, out_arena = Arena.attach(fds[0], messages.SLOTS), Arena.attach(fds[1], messages.SLOTS)
        code = uvloop.run(serve_loaded(served, request["model"], version, request["endpoint"], request["identity"].encode(), in_arena, out_arena))
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
