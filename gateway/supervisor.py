"""Starts, watches and stops the model worker processes, and keeps each model's state.

The state table (`ModelEntry.state` and `.reason`) is what readiness answers
from: a model is READY once all of its workers have loaded; a load that raises,
returns False or times out leaves it UNAVAILABLE with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Optional

from .errors import NotFound
from .pool import ModelPool, Router, Worker
from .settings import MODEL_SETTINGS_FILE, ModelSettings, ServerSettings, find_model_settings
from .types import MetadataModelResponse, MetadataTensor, State

log = logging.getLogger("gateway.supervisor")


@dataclass(eq=False)
class ModelEntry:
    settings: ModelSettings
    pool: ModelPool
    state: State = State.LOADING
    reason: str = ""
    metadata: dict = field(default_factory=dict)
    has_explain: bool = False
    inputs: dict[str, MetadataTensor] = field(default_factory=dict)
    outputs: dict[str, MetadataTensor] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def version(self) -> Optional[str]:
        return self.settings.version

    def describe(self, metadata: dict) -> None:
        """Take the metadata the runtime reported after load()."""
        self.metadata = metadata
        described = MetadataModelResponse(**metadata)
        self.inputs = {t.name: t for t in described.inputs or []}
        self.outputs = {t.name: t for t in described.outputs or []}


def _version_key(version: Optional[str]) -> tuple:
    # numeric versions compare as numbers, so "10" is newer than "9"
    if version is None:
        return (0, 0, "")
    return (1, int(version), "") if version.isdigit() else (1, -1, version)


class Supervisor:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.models: dict[str, dict[Optional[str], ModelEntry]] = {}
        self._processes: dict[Worker, asyncio.subprocess.Process] = {}
        self._identities = itertools.count()
        self._runtime_dir = ""
        self.router: Router | None = None

    async def start(self) -> None:
        """Bind the worker socket and load every model of the repository (concurrently)."""
        self._runtime_dir = tempfile.mkdtemp(prefix="gateway-")
        self.router = Router(f"ipc://{self._runtime_dir}/workers.sock")
        for model_settings in find_model_settings(self.settings.model_repository):
            pool = ModelPool(model_settings.name, self.router, self.settings.request_timeout)
            self.models.setdefault(model_settings.name, {})[model_settings.version] = ModelEntry(model_settings, pool)
        log.info("loading %d model(s) from %s", len(self.entries()), self.settings.model_repository)
        await asyncio.gather(*(self._load(entry) for entry in self.entries()))

    def entries(self) -> list[ModelEntry]:
        return [entry for versions in self.models.values() for entry in versions.values()]

    def get(self, name: str, version: Optional[str] = None) -> ModelEntry:
        versions = self.models.get(name)
        if not versions:
            raise NotFound(f"model {name!r} not found")
        if version is None:
            return versions[max(versions, key=_version_key)]
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version!r}; it has {sorted(v or '' for v in versions)}")
        return versions[version]

    @property
    def ready(self) -> bool:
        return all(entry.state == State.READY for entry in self.entries())

    async def _load(self, entry: ModelEntry) -> None:
        count = entry.settings.parallel_workers or self.settings.parallel_workers
        entry.pool.on_worker_lost = lambda worker: self._worker_lost(entry, worker)
        workers = [await self._spawn(entry) for _ in range(count)]
        try:
            loaded = await asyncio.wait_for(asyncio.gather(*(w.loaded for w in workers)), self.settings.load_timeout)
        except asyncio.TimeoutError:
            self._fail(entry, f"load() did not finish within {self.settings.load_timeout} s")
        except Exception as exc:
            self._fail(entry, str(exc))
        else:
            entry.describe(loaded[0]["metadata"])
            entry.has_explain = loaded[0]["explain"]
            entry.state, entry.reason = State.READY, ""
            log.info("model %s (version %s) is ready with %d worker(s)", entry.name, entry.version, count)

    def _fail(self, entry: ModelEntry, reason: str) -> None:
        entry.state, entry.reason = State.UNAVAILABLE, reason
        log.error("model %s (version %s) failed to load: %s", entry.name, entry.version, reason)
        for worker in list(entry.pool.workers):
            self._kill(worker)

    def _worker_lost(self, entry: ModelEntry, worker: Worker) -> None:
        if entry.pool.ready_workers == 0 and entry.state == State.READY:
            entry.state, entry.reason = State.UNAVAILABLE, "all of its workers exited"
            log.error("model %s is unavailable: all of its workers exited", entry.name)

    async def _spawn(self, entry: ModelEntry) -> Worker:
        identity = f"{entry.name}:{entry.version or '-'}#{next(self._identities)}"
        worker = entry.pool.add_worker(identity.encode())
        threads = str(self.settings.worker_blas_threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers",
            "--settings", str(entry.settings.folder / MODEL_SETTINGS_FILE),
            "--endpoint", self.router.endpoint,
            "--identity", identity,
            "--log-level", self.settings.log_level,
            env=env,
        )
        self._processes[worker] = process
        asyncio.get_running_loop().create_task(self._watch(entry, worker, process))
        return worker

    async def _watch(self, entry: ModelEntry, worker: Worker, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        self._processes.pop(worker, None)
        if worker in entry.pool.workers:
            log.warning("worker %s exited with code %s", worker.identity.decode(), code)
            entry.pool.worker_exited(worker, f"exit code {code}")

    def _kill(self, worker: Worker) -> None:
        process = self._processes.get(worker)
        if process is not None and process.returncode is None:
            process.kill()

    async def stop(self, grace: float = 10.0) -> None:
        """Ask every worker to unload, wait up to `grace` seconds, then kill what is left."""
        for entry in self.entries():
            entry.state = State.UNLOADING
            for worker in list(entry.pool.workers):
                entry.pool.stop_worker(worker)
        processes = list(self._processes.values())
        if processes:
            done, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in processes], timeout=grace)
            for process in processes:
                if process.returncode is None:
                    process.kill()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for entry in self.entries():
            entry.state = State.UNAVAILABLE
            entry.pool.fail_waiting("the gateway is shutting down")
        if self.router is not None:
            await self.router.close()
        shutil.rmtree(self._runtime_dir, ignore_errors=True)
