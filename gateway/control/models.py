"""The model table: each model version's state, which readiness, metadata and the repository
index answer from, and the repository operations (load, unload). The worker processes themselves
are started, watched and killed by processes.py; this module decides what their fate means for
their model.

- A model is READY once all of its workers have loaded. A load that raises,
  returns False or times out, or a worker that cannot even be started, leaves
  it UNAVAILABLE with the reason (logged, and in the repository index).
- A worker that dies (or is killed for hanging) has its in-flight request run
  again once on a sibling or on its replacement (or failed at once, if the model
  opts out: pool.worker_exited), and is replaced after a back-off that doubles with
  each crash in a row; the model's other workers keep serving meanwhile.
- A worker is hung when it stays silent to pings while idle, or still holds one
  request heartbeat_timeout after its request_timeout (the call was cancelled
  then): it is killed, then replaced.
- Repository operations (load, unload) on one model run one at a time, in
  the order asked; an unload cancels the tasks starting that model's workers
  and waits for them, so no worker it started is left running.
- A settings file that cannot be used (it does not parse or validate, or two
  files declare one model version) fails that model alone: it is listed as
  UNAVAILABLE with the reason, and the others load.
- Readiness: every model that should be served is READY. A model unloaded on
  purpose is not expected; one that failed (at start, or in a live load) is.

The table lives in this process's memory, where the front door of the supervisor's process reads
it directly; front doors in other processes read the copy the supervisor publishes in shared
memory (table.py) on every change they can see: any assignment to a field of ModelEntry.PUBLISHED,
a model version added or removed, the repository read. Changes made in one turn of the event loop
go out as one write, before a repository operation that made them answers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Iterator, Optional

from ..errors import BadRequest, NotFound, Unavailable
from ..settings import ModelParameters, ModelSettings, ServerSettings, UnusableSettings, scan_model_settings
from ..types import MetadataModelResponse, MetadataTensor, State
from .forkserver import ForkServer, Preloaded
from .pool import ModelPool, QueuePolicy, Worker
from .processes import WorkerProcesses
from .seqlock import DocumentWriter
from .stats import ModelGauges
from .table import find_version, repository_index, table_document

log = logging.getLogger("gateway.supervisor")

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STABLE_AFTER = 30.0  # a worker that lived this long resets the crash back-off


def _unwatched() -> None:
    pass


@dataclass(eq=False)
class ModelEntry:
    settings: ModelSettings
    on_change: Callable[[], None] = field(default=_unwatched, repr=False)  # told of every change to a PUBLISHED field
    pool: ModelPool = field(init=False)  # made by the table, told how to report a lost worker
    state: State = State.LOADING
    reason: str = ""
    wanted: bool = True  # should be loaded: counts for server readiness, gets restarts
    metadata: dict = field(default_factory=dict)
    has_explain: bool = False
    has_stream: bool = False  # its runtime implements predict_stream
    inputs: dict[str, MetadataTensor] = field(default_factory=dict)
    outputs: dict[str, MetadataTensor] = field(default_factory=dict)
    crashes: int = 0  # in a row, for the restart back-off
    unusable: Optional[UnusableSettings] = None  # its settings file(s) could not be used: nothing to start
    starting: set[asyncio.Task] = field(default_factory=set)  # its load, restarts of its workers: an unload cancels them
    forker: Optional[ForkServer] = None  # load_once: the fork server holding the loaded model, forking its workers
    kserve: bool = False  # a KServe model: it takes KServe's V1 protocol and the request headers
    v1_stream: bool = False  # a KServe model whose predict may answer an async iterator: its V1 predicts run as streams

    # what the supervisor publishes for front doors in other processes (table.py): assigning any of
    # them tells on_change, so that no change goes unpublished, wherever it is made
    PUBLISHED = frozenset({"state", "reason", "wanted", "metadata", "has_explain", "has_stream", "inputs", "outputs", "kserve", "v1_stream"})

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in ModelEntry.PUBLISHED:
            self.on_change()

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def version(self) -> Optional[str]:
        return self.settings.version

    def model_metadata(self) -> dict:
        """What the metadata endpoint answers: the runtime's metadata, or, before it has loaded (or if
        it failed), what its settings declare."""
        if self.metadata:
            return self.metadata
        settings = self.settings
        return {
            "name": settings.name,
            "versions": settings.versions or None,
            "platform": settings.platform,
            "inputs": [t.model_dump(mode="json", exclude_none=True) for t in settings.inputs],
            "outputs": [t.model_dump(mode="json", exclude_none=True) for t in settings.outputs],
        }

    def take_ready(self, payload: dict) -> None:
        """A worker loaded: take the metadata the runtime reported."""
        self.metadata = payload["metadata"]
        self.has_explain = payload["explain"]
        self.has_stream = payload.get("stream", False)  # a KServe model's READY does not say
        self.kserve = payload.get("kserve", False)
        self.v1_stream = payload.get("v1_stream", False)
        described = MetadataModelResponse(**self.metadata)
        if not self.kserve:  # KServe's input and output types describe; KServe checks no request against them
            self.inputs = {t.name: t for t in described.inputs or []}
            self.outputs = {t.name: t for t in described.outputs or []}
        self.state, self.reason = State.READY, ""


class Supervisor:
    def __init__(self, settings: ServerSettings, preloaded: Optional[Preloaded] = None):
        """`preloaded`: models loaded by a KServe script, held by the fork server it forked (served
        besides those of the model repository, if the settings name one)."""
        self.settings = settings
        self._preloaded = preloaded
        self._script_forker: Optional[ForkServer] = None
        self.models: dict[str, dict[Optional[str], ModelEntry]] = {}
        self.processes = WorkerProcesses(settings)
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()
        self._locks: dict[str, asyncio.Lock] = {}  # per model name: repository operations run one at a time
        self._scanned = False  # the repository has been read: before, no model is known, and the server is not ready
        # the table as front doors in other processes read it (table.TableReader over table.read_fd)
        self.table = DocumentWriter(table_document(False, []), name="gateway-models")
        self._publishing: Optional[asyncio.Handle] = None  # a publish is due at the loop's next turn

    # --- start, lookup, state ---------------------------------------------

    async def start(self) -> None:
        """Start the worker processes' socket and load every model of the repository (concurrently)."""
        self.processes.start()
        usable, unusable = self._scan()
        if self._preloaded is not None:
            self._script_forker = ForkServer(self._preloaded.sock, self._preloaded.pid, "the KServe script's fork server")
            usable = [*self._preloaded.models, *usable]
        loading = [self._add(model_settings) for model_settings in usable]
        for failure in unusable:
            self._add_unusable(failure)
        self._scanned = True
        self._changed()
        log.info("loading %d model(s) from %s", len(loading), self.settings.model_repository)
        await asyncio.gather(*(self._start_loading(entry) for entry in loading), return_exceptions=True)

    def _scan(self) -> tuple[list[ModelSettings], list[UnusableSettings]]:
        """The model repository's settings files; none when there is no repository (a KServe script)."""
        if self.settings.model_repository is None:
            return [], []
        return scan_model_settings(Path(self.settings.model_repository))

    def _background(self, coroutine: Coroutine) -> asyncio.Task:
        """A task that stop() cancels and waits for, so that none is left pending when the loop closes."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _add(self, model_settings: ModelSettings) -> ModelEntry:
        entry = ModelEntry(model_settings, on_change=self._changed)
        entry.pool = ModelPool(
            model_settings.name,
            self.processes.router,
            self.settings.request_timeout,
            self.settings.shm_arena_bytes,
            model_settings.max_batch_size,
            version=model_settings.version,
            max_batch_time=model_settings.max_batch_time,
            policy=QueuePolicy.of(model_settings),
            on_worker_lost=lambda worker, why: self._worker_lost(entry, worker, why),
        )
        self.models.setdefault(model_settings.name, {})[model_settings.version] = entry
        self._changed()
        return entry

    def _add_unusable(self, failure: UnusableSettings) -> None:
        """List a model version whose settings cannot be used as failed, so that the index shows it and
        the server is not ready until it is fixed (and loaded) or unloaded."""
        placeholder = ModelSettings(name=failure.name, implementation="", parameters=ModelParameters(version=failure.version))
        entry = self._add(placeholder)
        entry.state, entry.reason, entry.unusable = State.UNAVAILABLE, failure.reason, failure
        log.error("model %s (version %s) cannot be served: %s", failure.name, failure.version, failure.reason)

    def entries(self) -> list[ModelEntry]:
        return [entry for versions in self.models.values() for entry in versions.values()]

    def get(self, name: str, version: Optional[str] = None) -> ModelEntry:
        return find_version(self.models, name, version)

    def gauges(self) -> Iterator[ModelGauges]:
        """What the metrics read when scraped (stats.watch): each model version's state and shared memory."""
        for entry in self.entries():
            yield ModelGauges(entry.name, entry.version, entry.state, entry.pool.shared_memory_bytes())

    @property
    def ready(self) -> bool:
        """The repository has been read, the gateway is not stopping, and every model that should be served is READY."""
        return self._scanned and not self._stopping and all(entry.state == State.READY for entry in self.entries() if entry.wanted)

    # --- the published table ----------------------------------------------------

    def _changed(self) -> None:
        """Something front doors in other processes see changed: publish the table at the loop's next
        turn, once for all the changes made until then. So a repository operation's result is published
        before the task that awaits the operation resumes (which takes at least one more turn), and
        before its answer leaves through any front door."""
        if self._publishing is None:
            self._publishing = asyncio.get_running_loop().call_soon(self._publish)

    def _publish(self) -> None:
        self._publishing = None
        if not self.table.closed:
            self.table.publish(table_document(self.ready, self.entries()))

    # --- loading ------------------------------------------------------------

    def _start_loading(self, entry: ModelEntry) -> asyncio.Task:
        return self._starting(entry, self._load(entry))

    def _starting(self, entry: ModelEntry, coroutine) -> asyncio.Task:
        """A task that starts workers of the entry; unloading the entry cancels it and waits for it."""
        task = self._background(coroutine)
        entry.starting.add(task)
        task.add_done_callback(entry.starting.discard)
        return task

    def _stop_starting(self, entry: ModelEntry) -> None:
        entry.wanted = False
        for task in entry.starting:
            task.cancel()

    async def _load(self, entry: ModelEntry) -> None:
        count = entry.settings.parallel_workers or self.settings.parallel_workers
        entry.state, entry.reason, entry.wanted = State.LOADING, "", True
        try:
            workers = [await self._spawn(entry) for _ in range(count)]
            loaded = await asyncio.wait_for(asyncio.gather(*(w.loaded for w in workers)), self.settings.load_timeout)
        except asyncio.TimeoutError:
            self._fail(entry, f"load() did not finish within {self.settings.load_timeout} s")
        except OSError as exc:  # the worker process could not even start
            self._fail(entry, f"a worker could not be started: {exc}")
        except Exception as exc:
            self._fail(entry, str(exc))
        else:
            entry.take_ready(loaded[0])
            log.info("model %s (version %s) is ready with %d worker(s)", entry.name, entry.version, count)

    def _fail(self, entry: ModelEntry, reason: str) -> None:
        entry.state, entry.reason = State.UNAVAILABLE, reason
        log.error("model %s (version %s) failed to load: %s", entry.name, entry.version, reason)
        for worker in list(entry.pool.workers):
            self.processes.kill(worker)
        if entry.forker is not None:  # a failed load, or one that left threads: the fork server exits
            self._background(entry.forker.close())
            entry.forker = None

    async def _forker(self, entry: ModelEntry) -> Optional[ForkServer]:
        """The fork server of a load_once model, its model loaded (started, or restarted, if need be);
        None for a model whose workers load it themselves."""
        if self._preloaded is not None and any(entry.settings is preloaded for preloaded in self._preloaded.models):
            assert self._script_forker is not None  # made at start, with the preloaded models
            forker = self._script_forker
            if forker.closed:  # it held the script's models: nothing can load them again
                raise Unavailable(f"{forker.label} has exited: the model can be served again only by restarting the script")
        elif entry.settings.load_once:
            if entry.forker is None or entry.forker.closed:
                entry.forker = await self.processes.start_fork_server(entry.settings)
            forker = entry.forker
        else:
            return None
        await asyncio.wait_for(forker.loaded(), self.settings.load_timeout)
        return forker

    async def _spawn(self, entry: ModelEntry) -> Worker:
        def exited(worker: Worker, code: int, lived: float) -> None:
            if worker in entry.pool.workers:  # its requests run again elsewhere, unless the model is going away
                entry.pool.worker_exited(worker, f"exit code {code}", rerun=entry.wanted and not self._stopping)
            if worker.ready and entry.wanted and not self._stopping:
                if lived > STABLE_AFTER:
                    entry.crashes = 0
                log.warning("worker %s of model %s exited with code %s", worker.identity.decode(), entry.name, code)
                self._starting(entry, self._replace(entry))

        forker = await self._forker(entry)  # a load_once model's workers are forked from its fork server
        return await self.processes.spawn(entry.pool, entry.settings.path, exited, forker)

    # --- crashes, hangs, restarts ------------------------------------------

    def _worker_lost(self, entry: ModelEntry, worker: Worker, why: str) -> None:
        self.processes.kill(worker)  # it may still run, e.g. if it stopped answering
        if entry.pool.ready_workers == 0 and entry.state == State.READY and not self._stopping:
            entry.state, entry.reason = State.UNAVAILABLE, f"its worker stopped ({why}); restarting it"
            log.error("model %s is unavailable until its worker is restarted (%s)", entry.name, why)

    async def _replace(self, entry: ModelEntry) -> None:
        """Start a worker in place of a dead one, backing off (0.5 s, 1 s, 2 s ... 30 s) while it keeps failing.

        An unload (or the gateway's stop) cancels it."""
        while True:
            delay = min(self.settings.restart_backoff * 2**entry.crashes, 30.0)
            entry.crashes += 1
            log.info("restarting a worker of model %s in %.1f s", entry.name, delay)
            await asyncio.sleep(delay)
            worker = None
            try:
                worker = await self._spawn(entry)
                entry.pool.stats.worker_restarted()
                payload = await asyncio.wait_for(worker.loaded, self.settings.load_timeout)
            except Exception as exc:
                log.error("restarted worker of model %s failed to load: %s", entry.name, exc)
                entry.reason = f"restart failed: {exc}"
                if worker is not None:
                    self.processes.kill(worker)
                if not entry.pool.ready_workers:  # what queued for the restart would wait for nothing
                    entry.pool.fail_waiting(f"model {entry.name!r}: its worker stopped and could not be restarted ({exc})")
                continue
            entry.take_ready(payload)
            log.info("model %s has a new worker (%d ready)", entry.name, entry.pool.ready_workers)
            return

    # --- repository: load, unload, index -------------------------------------

    def index(self, ready_only: bool = False) -> list[dict]:
        """The repository index: every model version known, with its state."""
        return repository_index(self.entries(), ready_only)

    async def _in_turn(self, name: str, operation: Callable[[], Awaitable[None]]) -> None:
        """Run a repository operation on the model once those asked for before it are done.

        It runs to its end even if its client goes away: half of one would leave workers behind."""
        lock = self._locks.setdefault(name, asyncio.Lock())

        async def in_turn() -> None:
            async with lock:
                await operation()

        await asyncio.shield(self._background(in_turn()))

    async def load_model(self, name: str) -> None:
        """(Re)read the model's model-settings.json file(s) and load it; unload the running one first."""
        found = self._find_in_repository(name)
        await self._in_turn(name, lambda: self._reload(name, found))

    async def _reload(self, name: str, found: list[ModelSettings]) -> None:
        await self._unload_versions(name)
        self.models.pop(name, None)
        self._changed()
        entries = [self._add(model_settings) for model_settings in found]
        # an unload asked for meanwhile cancels the load: that shows as a failed load
        await asyncio.gather(*(self._start_loading(entry) for entry in entries), return_exceptions=True)
        failed = [entry for entry in entries if entry.state != State.READY]
        if failed:
            raise BadRequest(f"model {name!r} failed to load: {failed[0].reason or 'it was unloaded meanwhile'}")
        self._forget_unusable({entry.settings.path for entry in entries})

    def _forget_unusable(self, loaded: set[Optional[Path]]) -> None:
        """A file that failed at start and now loaded (perhaps under another name than it was listed by)
        is no longer a failure."""
        for name, versions in list(self.models.items()):
            for version, entry in list(versions.items()):
                if entry.unusable is not None and loaded & set(entry.unusable.paths):
                    del versions[version]
            if not versions:
                del self.models[name]
        self._changed()

    def _find_in_repository(self, name: str) -> list[ModelSettings]:
        if not MODEL_NAME.match(name):
            raise BadRequest(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
        # match by the name inside each file, never by joining the name into a path
        if self._preloaded is not None:
            found = [model_settings for model_settings in self._preloaded.models if model_settings.name == name]
            if found:
                return found
        usable, unusable = self._scan()
        errors = [failure.reason for failure in unusable if failure.name == name]
        if errors:
            raise BadRequest(f"cannot load model {name!r}: {errors[0]}")
        found = [model_settings for model_settings in usable if model_settings.name == name]
        if not found:
            raise NotFound(f"model {name!r} is not in the model repository")
        return found

    async def unload_model(self, name: str) -> None:
        """Refuse new requests, let in-flight ones finish, then stop the workers (calling unload())."""
        if name not in self.models:
            raise NotFound(f"model {name!r} not found")
        for entry in self.models[name].values():
            self._stop_starting(entry)  # a load in progress stops now, not once it is done
        await self._in_turn(name, lambda: self._unload_versions(name))

    async def _unload_versions(self, name: str) -> None:
        await asyncio.gather(*(self._unload(entry) for entry in self.models.get(name, {}).values()))

    async def _unload(self, entry: ModelEntry, reason: str = "unloaded", grace: Optional[float] = None) -> None:
        """Refuse new requests, give in-flight ones `grace` (default shutdown_grace) to finish, fail
        those still running, then stop the workers: an idle worker calls unload() and exits (killed
        after worker_stop_grace), one still running a request is killed at once."""
        grace = self.settings.shutdown_grace if grace is None else grace
        self._stop_starting(entry)
        if entry.starting:
            await asyncio.wait(entry.starting)  # so that every worker they started is in the pool, or gone
        entry.state, entry.reason = State.UNLOADING, ""
        if not await entry.pool.drain(grace):
            log.warning("model %s: in-flight requests did not finish within %s s; failing them", entry.name, grace)
            self._abandon_requests(entry, f"model {entry.name!r} was unloaded: the request did not finish within shutdown_grace, {grace} s")
        workers = list(entry.pool.workers)
        for worker in workers:
            if worker.ready:
                entry.pool.stop_worker(worker)
            else:
                self.processes.kill(worker)  # still loading: it cannot take STOP before load() ends
        await self.processes.stop_gracefully(workers, f"model {entry.name}")
        entry.pool.fail_waiting(f"model {entry.name!r} was unloaded")
        if entry.forker is not None:
            await entry.forker.close()
            entry.forker = None
        entry.state, entry.reason = State.UNAVAILABLE, reason
        log.info("model %s (version %s) %s", entry.name, entry.version, reason)

    def _abandon_requests(self, entry: ModelEntry, why: str) -> int:
        """Fail the entry's queued and running requests at once (503 / UNAVAILABLE, saying why) and kill
        the workers running them: a worker would read STOP only once its request ends. Returns how many failed."""
        running = [(worker, worker.inflight[1]) for worker in entry.pool.workers if worker.inflight is not None]
        failed = sum(not waiting.reply.done() for _, batch in running for waiting in batch)
        for worker, _ in running:
            entry.pool.worker_exited(worker, why, rerun=False)
            self.processes.kill(worker)
        return failed + entry.pool.fail_waiting(why)

    # --- shutdown ---------------------------------------------------------------

    def cut_off(self, why: str) -> None:
        """The gateway stops and the requests' time is up: fail those still queued or running (the front
        doors answer them 503 / UNAVAILABLE, saying why) and kill the workers running them."""
        self._stopping = True  # no restart of the workers killed here
        self._changed()  # not ready, for the front doors of other processes too
        failed = sum(self._abandon_requests(entry, why) for entry in self.entries())
        if failed:
            log.warning("%d request(s) still queued or running get 503 / UNAVAILABLE: %s", failed, why)

    async def stop(self) -> None:
        """Stop every model's workers (an idle worker calls unload() first), then close the socket.

        The front doors have given in-flight requests their grace already: what still runs is cut off."""
        self.cut_off("the gateway stopped")
        await asyncio.gather(*(self._unload(entry, "the gateway stopped", grace=0) for entry in self.entries()))
        for task in self._tasks:  # restarts waiting out their back-off
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._script_forker is not None:
            await self._script_forker.close()
        await self.processes.stop()
        self._publish()  # now, not at a next turn: front doors in other processes see every model stopped
        self.table.close()
