"""Worker processes: start them, watch them, kill them (gunicorn's arbiter, for our workers).

It knows processes, not models. The model table (models.py) asks for a worker in a model's pool
(`spawn`) and is told when its process exits (the `on_exit` it passed); it decides what that
means for the model (a restart, a failed load). This module alone holds process handles, so it
alone kills:

- a worker whose pool names it hung (silent to pings while idle, or holding one request
  heartbeat_timeout past request_timeout: `ModelPool.hung_workers`), checked every heartbeat_interval;
- a worker the model table gives up on (`kill`), and, at `stop_gracefully`'s end, one that did
  not exit within worker_stop_grace.

The workers' ZeroMQ socket lives in a private folder, `$TMPDIR/gateway-ipc-*`, locked while this
gateway runs (see `_socket_folder`).
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Callable, Coroutine, Iterable, Optional

from ..settings import ModelSettings, ServerSettings, without_secrets
from .forkserver import ForkedProcess, ForkServer
from .pool import ModelPool, Router, Worker

log = logging.getLogger("gateway.supervisor")

SOCKET_FOLDER_PREFIX = "gateway-ipc-"
SOCKET_NAME = "workers.sock"

# told when a worker's process has exited: (the worker, its exit code, the seconds it lived)
OnExit = Callable[[Worker, int, float], None]


def _socket_folder() -> tuple[str, int]:
    """A private folder for the workers' socket, and a lock on it (flock) held while this gateway lives.

    A gateway killed with SIGKILL cannot remove its folder, but the kernel lets go
    of its lock: a folder whose socket exists while nobody holds its lock was left
    by a dead gateway (a live one locks its folder before it binds the socket), and
    is removed here. (Linux's abstract sockets, ipc://@name, leave nothing behind
    but have no permissions: any local user could connect as a worker.)"""
    for socket_file in Path(tempfile.gettempdir()).glob(f"{SOCKET_FOLDER_PREFIX}*/{SOCKET_NAME}"):
        _remove_if_abandoned(socket_file.parent)
    folder = tempfile.mkdtemp(prefix=SOCKET_FOLDER_PREFIX)
    lock = os.open(folder, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return folder, lock


def _remove_if_abandoned(folder: Path) -> None:
    try:
        lock = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # removed meanwhile, or another user's
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(folder, ignore_errors=True)
    except BlockingIOError:
        pass  # its gateway lives
    finally:
        os.close(lock)


class WorkerProcesses:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self._processes: dict[Worker, asyncio.subprocess.Process | ForkedProcess] = {}
        self._identities = itertools.count()
        self._socket_folder, self._socket_folder_lock = "", -1
        self._router: Router | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def router(self) -> Router:
        if self._router is None:
            raise RuntimeError("the worker processes have not been started")
        return self._router

    def start(self) -> Router:
        """Bind the workers' socket (in a folder of its own) and start watching heartbeats, once."""
        if self._router is None:
            self._socket_folder, self._socket_folder_lock = _socket_folder()
            self._router = Router(f"ipc://{self._socket_folder}/{SOCKET_NAME}")
            self.background(self._watch_heartbeats())
        return self._router

    @property
    def socket_folder(self) -> str:
        """The gateway's private folder of sockets (the relay front doors' is there too)."""
        return self._socket_folder

    def background(self, coroutine: Coroutine) -> asyncio.Task:
        """A task that stop() cancels and waits for, so that none is left pending when the loop closes."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _environment(self) -> dict[str, str]:
        threads = str(self.settings.worker_blas_threads)
        # tokens stay in the front door: a library in a runtime that logs or reports its environment cannot
        # leak them (a runtime's own code, as the same user, could still read ours: docs/SECURITY.md)
        return {**without_secrets(dict(os.environ)), "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    async def spawn(self, pool: ModelPool, settings_file: Optional[Path], on_exit: OnExit, forker: Optional[ForkServer] = None) -> Worker:
        """Start a worker process for the pool's model (its settings file; None: the worker reads them
        from the environment, as the front door did), or have `forker` fork one from the model it
        holds loaded; `on_exit` is told when it exits.

        Raises what starting the process raised (the worker is then gone from the pool)."""
        identity = f"{pool.name}:{pool.version or '-'}#{next(self._identities)}"
        worker = pool.add_worker(identity)
        process: asyncio.subprocess.Process | ForkedProcess
        try:
            if forker is not None:
                process = await forker.fork(
                    pool.name, identity, self.router.endpoint, worker.in_arena.fd, worker.out_arena.fd, self.settings.log_level, self.settings.log_format
                )
            else:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "workers",
                    *(("--settings", str(settings_file)) if settings_file else ()),
                    "--endpoint", self.router.endpoint,
                    "--identity", identity,
                    "--parent", str(os.getpid()),
                    "--in-fd", str(worker.in_arena.fd),
                    "--out-fd", str(worker.out_arena.fd),
                    "--log-level", self.settings.log_level,
                    "--log-format", self.settings.log_format,
                    env=self._environment(),
                    pass_fds=(worker.in_arena.fd, worker.out_arena.fd),
                )  # fmt: skip
        except BaseException:  # also cancelled by an unload: the loop has killed the process if it had started
            pool.worker_exited(worker, "it could not be started")
            raise
        self._processes[worker] = process
        self.background(self._watch(worker, process, on_exit))
        return worker

    async def start_fork_server(self, settings: ModelSettings) -> ForkServer:
        """Start a fork server for a load_once model: it loads the model once, then forks its workers."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "workers",
                "--fork-server", str(theirs.fileno()),
                *(("--settings", str(settings.path)) if settings.path else ()),  # else: from the environment
                "--identity", f"{settings.name}:{settings.version or '-'}#fork-server",
                "--parent", str(os.getpid()),
                "--log-level", self.settings.log_level,
                "--log-format", self.settings.log_format,
                env=self._environment(),
                pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        log.info("model %s (version %s): loading it once, in a fork server (pid %d)", settings.name, settings.version, process.pid)
        return ForkServer(ours, process, f"the fork server of model {settings.name!r}")

    async def _watch(self, worker: Worker, process: asyncio.subprocess.Process | ForkedProcess, on_exit: OnExit) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = await process.wait()
        self._processes.pop(worker, None)
        on_exit(worker, code, loop.time() - started)

    async def _watch_heartbeats(self) -> None:
        every, silent_after = self.settings.heartbeat_interval, self.settings.heartbeat_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            for pool in {worker.pool: None for worker in self._processes}:
                for worker in pool.hung_workers(loop.time(), every, silent_after):
                    log.error("worker %s of model %s is hung; killing it", worker.identity.decode(), pool.name)
                    self.kill(worker)

    def kill(self, worker: Worker) -> None:
        process = self._processes.get(worker)
        if process is not None and process.returncode is None:
            process.kill()

    async def stop_gracefully(self, workers: Iterable[Worker], what: str) -> None:
        """Wait up to worker_stop_grace for the workers' processes to exit (each was told to stop,
        or killed), then kill those still running."""
        grace = self.settings.worker_stop_grace
        processes = [process for worker in workers if (process := self._processes.get(worker)) is not None]
        if not processes:
            return
        _, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in processes], timeout=grace)
        for process in processes:
            if process.returncode is None:
                log.warning("a worker of %s did not stop in %s s; killing it", what, grace)
                process.kill()
        if pending:
            await asyncio.wait(pending)

    async def stop(self) -> None:
        """Kill every process left (e.g. a replacement still loading), cancel the watchers, close the socket."""
        for process in list(self._processes.values()):
            if process.returncode is None:
                process.kill()
                await process.wait()
        for task in self._tasks:  # watchers of exited workers, heartbeats, restarts waiting out their back-off
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._router is not None:
            await self._router.close()
            shutil.rmtree(self._socket_folder, ignore_errors=True)
            os.close(self._socket_folder_lock)  # only now: a starting gateway would take the folder for abandoned
