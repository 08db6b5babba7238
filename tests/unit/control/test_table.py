"""The shared model table (control/seqlock.py, control/table.py): one writer, readers in other
processes, real memfds and real mappings.

- a document round-trips, whatever JSON it is (hypothesis), and whatever size: the file grows, and a
  reader attached before it grew reads the grown document;
- a reader never takes a write in progress (deterministic: the writer's header held odd) nor a
  torn copy, and says so clearly if the writer stays mid-write;
- a reader in another process, started with pass_fds, reading while this process publishes
  thousands of documents of growing size, then many small ones, sees only whole documents, in order,
  and the last one;
- TableReader answers what the supervisor answers, by the same rules, for a table of 2,000 models.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.control import seqlock
from gateway.control.models import ModelEntry
from gateway.control.seqlock import DocumentReader, DocumentWriter
from gateway.control.table import TableReader, find_version, repository_index, table_document
from gateway.errors import NotFound, Unavailable
from gateway.settings import ModelParameters, ModelSettings
from gateway.types import MetadataTensor, State
from tests.conftest import ROOT

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=["Cs"])),  # orjson, as JSON, takes no lone surrogates
    lambda children: st.lists(children) | st.dictionaries(st.text(st.characters(blacklist_categories=["Cs"])), children),
    max_leaves=50,
)


@pytest.fixture
def writer():
    writer = DocumentWriter({"first": True}, name="test-table")
    yield writer
    writer.close()


@pytest.fixture
def reader(writer):
    reader = DocumentReader(writer.read_fd)
    yield reader
    reader.close()


@settings(max_examples=200, deadline=None)
@given(documents=st.lists(JSON | st.binary(min_size=1, max_size=100_000).map(bytes.hex), min_size=1, max_size=5))
def test_documents_round_trip_in_order(documents):
    writer = DocumentWriter(None, name="test-table")
    reader = DocumentReader(writer.read_fd)
    try:
        for document in documents:
            generation = writer.publish(document)
            assert reader.read() == document and reader.generation == generation
            assert not reader.changed()
    finally:
        reader.close()
        writer.close()


def test_a_reader_attached_before_the_file_grew_reads_the_grown_document(writer, reader):
    assert reader.read() == {"first": True}
    first_size = os.fstat(writer.fd).st_size
    large = {"models": [{"name": f"model-{i}", "metadata": {"platform": "x" * 500}} for i in range(2000)]}  # about 1.1 MB
    writer.publish(large)
    assert os.fstat(writer.fd).st_size > first_size
    assert reader.read() == large
    writer.publish({"small": "again"})  # the file keeps its size; the reader its larger mapping
    assert reader.read() == {"small": "again"}


def test_a_read_unchanged_since_the_last_costs_no_parse(writer, reader):
    document = reader.read()
    assert reader.read() is document  # the same object: not parsed again
    writer.publish({"second": True})
    assert reader.read() == {"second": True}


def test_readers_cannot_write_or_shrink_the_table(writer):
    with pytest.raises(PermissionError):
        mmap.mmap(writer.read_fd, 64, access=mmap.ACCESS_WRITE)
    with pytest.raises(PermissionError):
        os.ftruncate(writer.fd, 64)  # sealed: a reader's mapping never outlives the file's end


def test_a_descriptor_of_something_else_is_refused(tmp_path):
    fd = os.memfd_create("not-a-table")
    try:
        os.ftruncate(fd, 4096)
        with pytest.raises(ValueError, match="not a shared document"):
            DocumentReader(fd)
    finally:
        os.close(fd)


def mid_write(writer: DocumentWriter) -> mmap.mmap:
    """Put the header where a writer leaves it mid-write: the generation odd, the document half
    written (a mapping of its own, as another process's would be)."""
    raw = mmap.mmap(writer.fd, os.fstat(writer.fd).st_size)
    seqlock.GENERATION.pack_into(raw, seqlock.GENERATION_AT, writer.generation + 1)
    raw[seqlock.DOCUMENT : seqlock.DOCUMENT + 9] = b'{"half":['
    return raw


def test_a_reader_waits_out_a_write_in_progress_and_takes_the_new_document(writer, reader):
    raw = mid_write(writer)
    finisher = threading.Timer(0.2, writer.publish, args=[{"second": "whole"}])
    finisher.start()
    try:
        assert reader.read() == {"second": "whole"}  # neither the half-written bytes nor the old document
    finally:
        finisher.join()
        raw.close()


def test_a_writer_stuck_mid_write_is_reported_not_waited_for_forever(writer, reader, monkeypatch):
    monkeypatch.setattr(seqlock, "STALLED_AFTER", 0.2)
    raw = mid_write(writer)
    try:
        with pytest.raises(Unavailable, match="stayed mid-write"):
            reader.read()
        writer.publish({"second": "whole"})
        assert reader.read() == {"second": "whole"}
    finally:
        raw.close()


def test_a_copy_that_does_not_match_its_checksum_is_not_taken(writer, reader, monkeypatch):
    """What a reader would copy on a machine that reorders stores: the generation even, the bytes not
    the document it announces."""
    monkeypatch.setattr(seqlock, "STALLED_AFTER", 0.2)
    writer.publish({"n": 1})
    raw = mmap.mmap(writer.fd, os.fstat(writer.fd).st_size)
    try:
        raw[seqlock.DOCUMENT : seqlock.DOCUMENT + 3] = b'{"m'
        with pytest.raises(Unavailable):
            reader.read()
    finally:
        raw.close()


# --- a reader in another process -------------------------------------------------------

READER = """
import json, os, sys
from gateway.control import seqlock

retries, sched_yield = 0, os.sched_yield
def counted_yield():
    global retries
    retries += 1
    sched_yield()
seqlock.os.sched_yield = counted_yield  # counts the reads retried (mid-write, or copied while written)

reader = seqlock.DocumentReader(int(sys.argv[1]))
seen, bad, last = 0, [], -1
while last < int(sys.argv[2]):
    try:
        document = reader.read()
    except Exception as exc:
        bad.append(repr(exc)[:200])
        continue
    n = document["n"]
    if n == last:
        continue
    seen += 1
    items = document["items"]
    if n < last or len(items) != document["count"] or not all(item.startswith(f"{n}:") for item in items):
        bad.append(n)
    last = n
print(json.dumps({"seen": seen, "bad": bad, "last": last, "retries": retries}))
"""


def stamped(n: int, size: int) -> dict:
    """A document that vouches for itself: every item names it, and it says how many it has."""
    items = [f"{n}:{i}" for i in range(size)]
    return {"n": n, "count": len(items), "items": items}


def test_a_reader_in_another_process_sees_only_whole_documents_while_the_table_grows():
    growing, small = 2000, 20_000
    count = growing + small
    writer = DocumentWriter(stamped(0, 1), name="test-table")
    first_size = os.fstat(writer.fd).st_size
    child = subprocess.Popen(
        [sys.executable, "-c", READER, str(writer.read_fd), str(count)],
        pass_fds=[writer.read_fd],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)  # attached before the table grows (a slower start only means fewer documents seen)
        for n in range(1, growing + 1):
            writer.publish(stamped(n, 1 + n * 30_000 // growing))  # from 1 item to 30,000: 64 KiB to 512 KiB
        for n in range(growing + 1, count + 1):
            writer.publish(stamped(n, n % 5))  # small ones: the header is rewritten more often than a copy takes
        grown_size = os.fstat(writer.fd).st_size
        out, _ = child.communicate(timeout=120)
    finally:
        child.kill()
        writer.close()
    result = json.loads(out)
    assert grown_size >= 8 * first_size
    assert result["bad"] == [] and result["last"] == count, result
    assert result["seen"] > 10, result  # it read while documents were being written, not only the last
    print(f"reader in another process: {result}")


# --- TableReader --------------------------------------------------------------------


def entry(name: str, version: str | None, state: State, **fields) -> ModelEntry:
    made = ModelEntry(ModelSettings(name=name, implementation="tests.runtimes.Echo", parameters=ModelParameters(version=version)))
    made.state = state
    for field, value in fields.items():
        setattr(made, field, value)
    return made


def big_table() -> list[ModelEntry]:
    """2,000 model versions with metadata: 500 models of 4 versions ("1", "2", "10", none), some not ready."""
    entries = []
    for i in range(500):
        for version in ("1", "2", "10", None):
            tensor = MetadataTensor(name="x", datatype="FP32", shape=[-1, i % 7 + 1])
            state = State.READY if (i + len(version or "")) % 5 else State.UNAVAILABLE
            metadata = {"name": f"model-{i}", "platform": "described", "inputs": [tensor.model_dump(mode="json")], "outputs": []}
            entries.append(entry(f"model-{i}", version, state, reason="" if state == State.READY else "load() failed", metadata=metadata, inputs={"x": tensor}))
    return entries


def test_the_reader_answers_what_the_table_holds_for_2000_models():
    entries = big_table()
    models: dict = {}
    for e in entries:
        models.setdefault(e.name, {})[e.version] = e
    writer = DocumentWriter(table_document(False, entries), name="test-table")
    reader = TableReader(writer.read_fd)
    try:
        assert os.fstat(writer.fd).st_size > seqlock.FIRST_SIZE  # it grew to hold them
        assert reader.ready is False
        assert len(reader.entries()) == 2000
        assert reader.index() == repository_index(entries, False) and reader.index(True) == repository_index(entries, True)
        for e in entries:
            view = reader.models[e.name][e.version]  # get(name, None) is the newest version
            assert (view.name, view.version, view.state, view.reason, view.wanted) == (e.name, e.version, e.state, e.reason, e.wanted)
            assert view.model_metadata() == e.model_metadata() and view.inputs == e.inputs and view.outputs == e.outputs
        assert reader.get("model-3").version == find_version(models, "model-3", None).version == "10"  # the newest by number
        assert set(reader.models["model-3"]) == {"1", "2", "10", None}
        with pytest.raises(NotFound, match="model 'nope' not found"):
            reader.get("nope")
        with pytest.raises(NotFound, match=r"model 'model-3' has no version '3'; it has \['', '1', '10', '2'\]"):
            reader.get("model-3", "3")
        view = reader.get("model-3", "1")
        assert view.inputs is view.inputs  # parsed once per table, not per request
        writer.publish(table_document(True, entries[:1]))
        assert reader.ready is True and [v.name for v in reader.entries()] == ["model-0"]  # no stale copy
    finally:
        reader.close()
        writer.close()
