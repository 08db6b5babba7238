"""The model table as front doors in other processes read it.

The supervisor (models.py) keeps the model table in its process and publishes it, on every change
a reader can see, as one JSON document in shared memory (seqlock.py): every model version's state,
reason, metadata, what it declares and what it can do, and whether the server is ready. A front door
in another process reads it with `TableReader`, which answers what the supervisor answers (`get`,
`entries`, `ready`, `index`, `models`: the `ModelTable` protocol), by the same rules (this module's
`version_key`, `find_version`, `repository_index`), so that the data plane does not care which it has.

A read costs 8 bytes (the document's generation) while nothing changed; after a change, the first
read parses the document again (once per reader and change), and a model's declared inputs and
outputs become MetadataTensor once per change, on first use.

Why not shared-memory-dict: it pickles the whole dict into the block on every write and unpickles
the whole block on every read (per request, for readiness), and its lock is a no-op unless
SHARED_MEMORY_USE_LOCK=1 is set before import (and then a per-process lock under spawn): readers
would need their own torn-read detection anyway. One writer and a seqlock need no lock at all.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Protocol, Sequence, TypeVar

from ..errors import NotFound, shown
from ..types import MetadataTensor, State
from .seqlock import DocumentReader


class ModelRecord(Protocol):
    """What a front door reads of a model version: models.py's ModelEntry, or a ModelView of the table."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> Optional[str]: ...
    @property
    def state(self) -> State: ...
    @property
    def reason(self) -> str: ...
    @property
    def wanted(self) -> bool: ...
    @property
    def has_explain(self) -> bool: ...
    @property
    def has_stream(self) -> bool: ...
    @property
    def kserve(self) -> bool: ...
    @property
    def v1_stream(self) -> bool: ...
    @property
    def inputs(self) -> Mapping[str, MetadataTensor]: ...
    @property
    def outputs(self) -> Mapping[str, MetadataTensor]: ...
    def model_metadata(self) -> dict: ...


class ModelTable(Protocol):
    """The reads a front door makes of the model table: models.py's Supervisor, or a TableReader."""

    @property
    def models(self) -> Mapping[str, Mapping[Optional[str], ModelRecord]]: ...
    @property
    def ready(self) -> bool: ...
    def entries(self) -> Sequence[ModelRecord]: ...
    def get(self, name: str, version: Optional[str] = None) -> ModelRecord: ...
    def index(self, ready_only: bool = False) -> list[dict]: ...


# --- the rules, one place for the supervisor and the readers ----------------------

Record = TypeVar("Record", bound=ModelRecord)


def version_key(version: Optional[str]) -> tuple:
    # numeric versions compare as numbers, so "10" is newer than "9"
    if version is None:
        return (0, 0, "")
    return (1, int(version), "") if version.isdigit() else (1, -1, version)


def find_version(models: Mapping[str, Mapping[Optional[str], Record]], name: str, version: Optional[str]) -> Record:
    """The model version asked for; without a version, the newest (version_key)."""
    versions = models.get(name)
    if not versions:
        raise NotFound(f"model {shown(name)} not found")
    if version is None:
        return versions[max(versions, key=version_key)]
    if version not in versions:
        raise NotFound(f"model {shown(name)} has no version {shown(version)}; it has {sorted(v or '' for v in versions)}")
    return versions[version]


def in_order(entries: Iterable[Record]) -> list[Record]:
    """By name, then version (version_key)."""
    return sorted(entries, key=lambda entry: (entry.name, version_key(entry.version)))


def repository_index(entries: Iterable[ModelRecord], ready_only: bool) -> list[dict]:
    """The repository index: every model version known (or only the READY ones), with its state."""
    items = [{"name": e.name, "version": e.version or "", "state": e.state.value, "reason": e.reason} for e in in_order(entries)]
    return [i for i in items if i["state"] == State.READY.value] if ready_only else items


# --- the document ----------------------------------------------------------------


def table_document(ready: bool, entries: Iterable[ModelRecord]) -> dict:
    """What the supervisor publishes: `ready`, and every model version in order (ModelView reads it)."""
    return {"ready": ready, "models": [_record(entry) for entry in in_order(entries)]}


def _record(entry: ModelRecord) -> dict:
    return {
        "name": entry.name,
        "version": entry.version,
        "state": entry.state.value,
        "reason": entry.reason,
        "wanted": entry.wanted,
        "has_explain": entry.has_explain,
        "has_stream": entry.has_stream,
        "kserve": entry.kserve,
        "v1_stream": entry.v1_stream,
        "metadata": entry.model_metadata(),
        "inputs": [t.model_dump(mode="json", exclude_none=True) for t in entry.inputs.values()],
        "outputs": [t.model_dump(mode="json", exclude_none=True) for t in entry.outputs.values()],
    }


class ModelView:
    """A model version as the published table has it (a ModelRecord). Do not change it: it is the
    reader's copy, shared by every request until the table changes."""

    def __init__(self, record: dict):
        self._record = record
        self.name: str = record["name"]
        self.version: Optional[str] = record["version"]
        self.state = State(record["state"])
        self.reason: str = record["reason"]
        self.wanted: bool = record["wanted"]
        self.has_explain: bool = record["has_explain"]
        self.has_stream: bool = record["has_stream"]
        self.kserve: bool = record["kserve"]
        self.v1_stream: bool = record["v1_stream"]

    def model_metadata(self) -> dict:
        return self._record["metadata"]

    @cached_property
    def inputs(self) -> dict[str, MetadataTensor]:
        return {t["name"]: MetadataTensor(**t) for t in self._record["inputs"]}

    @cached_property
    def outputs(self) -> dict[str, MetadataTensor]:
        return {t["name"]: MetadataTensor(**t) for t in self._record["outputs"]}

    def __repr__(self) -> str:
        return f"ModelView({self.name!r}, {self.version!r}, {self.state.value})"


class TableReader:
    """The supervisor's model table, read from shared memory in another process (a ModelTable).

    `fd`: an inherited descriptor of the supervisor's table (`Supervisor.table.read_fd`)."""

    def __init__(self, fd: int):
        self._document = DocumentReader(fd)
        self._ready = False
        self._entries: list[ModelView] = []
        self._models: dict[str, dict[Optional[str], ModelView]] = {}
        self._fresh()

    def _fresh(self) -> None:
        """Take the newest table, if it changed since the last read."""
        if not self._document.changed():
            return
        document = self._document.read()
        entries = [ModelView(record) for record in document["models"]]
        models: dict[str, dict[Optional[str], ModelView]] = {}
        for view in entries:
            models.setdefault(view.name, {})[view.version] = view
        self._ready, self._entries, self._models = document["ready"], entries, models

    @property
    def generation(self) -> int:
        """Of the table last read: it changes with every change the supervisor published."""
        return self._document.generation

    @property
    def models(self) -> Mapping[str, Mapping[Optional[str], ModelView]]:
        self._fresh()
        return self._models

    @property
    def ready(self) -> bool:
        """As Supervisor.ready: the repository has been read, the gateway is not stopping, and every model
        that should be served is READY."""
        self._fresh()
        return self._ready

    def entries(self) -> list[ModelView]:
        self._fresh()
        return list(self._entries)

    def get(self, name: str, version: Optional[str] = None) -> ModelView:
        self._fresh()
        return find_version(self._models, name, version)

    def index(self, ready_only: bool = False) -> list[dict]:
        self._fresh()
        return repository_index(self._entries, ready_only)

    def close(self) -> None:
        self._document.close()


if TYPE_CHECKING:  # mypy checks that a TableReader answers a front door's reads (the Supervisor: dataplane.py)

    def _reads(reader: TableReader) -> ModelTable:
        return reader
