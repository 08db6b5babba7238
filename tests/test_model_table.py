"""The model table a front door in another process reads (control/table.py's TableReader over the
supervisor's shared memory) agrees with the supervisor's own, across start, a failed settings file,
repository loads and unloads, a failed load, a worker lost and restarted, and stop: each model
version's fields, readiness, the index, the default version and NotFound's messages, and what a
DataPlane answers over either. A repository operation's result is readable through the table as
soon as the operation returns (checked in the task that awaited it).

A real supervisor of real worker processes in this process (tests/test_pool_faults.py's harness):
its own model table is what the shared copy must agree with; the reader maps the table through its
own descriptor, as a front door given it with pass_fds does."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from gateway.control.table import TableReader
from gateway.errors import BadRequest, NotFound
from gateway.frontdoor.dataplane import DataPlane
from gateway.types import State
from tests.conftest import ROOT
from tests.test_pool_faults import Loop
from tests.test_worker_plane import children

TENSOR = {"name": "x", "datatype": "INT32", "shape": [-1, -1]}
MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo", "inputs": [TENSOR], "outputs": [TENSOR]},
    "described": {"implementation": "tests.runtimes.Described"},
    "versioned-1": {"name": "versioned", "implementation": "tests.runtimes.Versioned", "parameters": {"version": "1"}},
    "versioned-10": {"name": "versioned", "implementation": "tests.runtimes.Versioned", "parameters": {"version": "10"}},
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    for folder_name, settings in MODELS.items():
        (folder / folder_name).mkdir()
        (folder / folder_name / "model-settings.json").write_text(json.dumps({"name": folder_name, **settings}))
    (folder / "later").mkdir()
    (folder / "later" / "model-settings.json").write_text("{not json")  # fails alone, until fixed
    return folder


@pytest.fixture(scope="module")
def harness(repository):
    os.environ["PYTHONPATH"] = str(ROOT)
    harness = Loop(repository)
    harness.reader = TableReader(os.dup(harness.supervisor.table.read_fd))  # its own descriptor, as a child's
    yield harness
    if not harness.supervisor.table.closed:
        harness.close()


def disagreements(supervisor, reader: TableReader) -> list:
    """What the shared table answers otherwise than the supervisor (run on the supervisor's loop)."""
    found = []
    if reader.ready != supervisor.ready:
        found.append(("ready", supervisor.ready, reader.ready))
    for ready_only in (False, True):
        if reader.index(ready_only) != supervisor.index(ready_only):
            found.append(("index", ready_only, supervisor.index(ready_only), reader.index(ready_only)))
    fields = ("name", "version", "state", "reason", "wanted", "has_explain", "has_stream", "kserve", "v1_stream", "inputs", "outputs")
    held = {(e.name, e.version) for e in supervisor.entries()}
    if {(v.name, v.version) for v in reader.entries()} != held:
        found.append(("entries", held, reader.entries()))
        return found
    for entry in supervisor.entries():
        view = reader.models[entry.name][entry.version]
        for field in fields:
            if getattr(view, field) != getattr(entry, field):
                found.append((entry.name, entry.version, field, getattr(entry, field), getattr(view, field)))
        if view.model_metadata() != entry.model_metadata():
            found.append((entry.name, entry.version, "metadata", entry.model_metadata(), view.model_metadata()))
    for name in supervisor.models:
        if reader.get(name).version != supervisor.get(name).version:
            found.append(("default version", name))
    for name, version in [("nope", None), ("versioned", "3")]:
        messages = []
        for table in (supervisor, reader):
            try:
                table.get(name, version)
            except NotFound as exc:
                messages.append(exc.message)
        if len(set(messages)) != 1 or len(messages) != 2:
            found.append(("NotFound", messages))
    # a DataPlane reading the shared table answers what one reading the supervisor answers
    main, other = DataPlane(supervisor.settings, supervisor), DataPlane(supervisor.settings, supervisor)
    other.table = reader
    for ask in ("server_ready", "model_names", "repository_index"):
        if getattr(main, ask)() != getattr(other, ask)():
            found.append(("dataplane", ask))
    for name in supervisor.models:
        if (main.model_metadata(name), main.model_state(name)) != (other.model_metadata(name), other.model_state(name)):
            found.append(("dataplane", name))
    return found


def check(harness, operation=None):
    """Run the repository operation, then compare at once, in the task that awaited it."""

    async def run():
        error = None
        if operation is not None:
            try:
                await operation
            except BadRequest as exc:
                error = exc
        return error, disagreements(harness.supervisor, harness.reader)

    error, found = harness.run(run(), timeout=120)
    assert found == []
    return error


def test_after_start_the_shared_table_agrees_with_the_supervisor(harness):
    check(harness)
    assert harness.reader.get("later").state == State.UNAVAILABLE and "later" in harness.reader.get("later").reason
    assert harness.reader.get("versioned").version == "10" and harness.reader.get("echo").inputs["x"].shape == [-1, -1]
    assert harness.reader.ready is False  # a settings file failed


def test_a_fixed_settings_file_loaded(harness, repository):
    (repository / "later" / "model-settings.json").write_text(json.dumps({"name": "later", "implementation": "tests.runtimes.Echo"}))
    check(harness, harness.supervisor.load_model("later"))
    assert harness.reader.get("later").state == State.READY and harness.reader.ready is True


def test_unload_and_load_again(harness):
    before = harness.reader.generation
    check(harness, harness.supervisor.unload_model("echo"))
    view = harness.reader.get("echo")
    assert (view.state, view.reason, view.wanted) == (State.UNAVAILABLE, "unloaded", False) and harness.reader.generation > before
    assert harness.reader.ready is True  # unloaded on purpose: not expected
    check(harness, harness.supervisor.load_model("echo"))
    assert harness.reader.get("echo").state == State.READY


def test_a_failed_load(harness, repository):
    (repository / "broken").mkdir()
    (repository / "broken" / "model-settings.json").write_text(json.dumps({"name": "broken", "implementation": "tests.runtimes.BrokenLoad"}))
    error = check(harness, harness.supervisor.load_model("broken"))
    assert error is not None and "weights.bin is missing" in error.message
    assert "weights.bin is missing" in harness.reader.get("broken").reason and harness.reader.ready is False
    check(harness, harness.supervisor.unload_model("broken"))
    assert harness.reader.ready is True


def test_a_lost_worker_shows_and_its_restart_too(harness):
    (victim,) = [pid for pid, cmd in children(os.getpid()).items() if "--identity echo:" in cmd]
    os.kill(victim, signal.SIGKILL)
    states, deadline = set(), time.monotonic() + 30
    while time.monotonic() < deadline:
        view = harness.reader.get("echo")
        states.add((view.state, view.reason.split(" (")[0]))
        if view.state == State.READY and len(states) > 1:
            break
        time.sleep(0.005)
    assert (State.UNAVAILABLE, "its worker stopped") in states and view.state == State.READY
    check(harness)


def test_stop_shows_every_model_stopped(harness):
    harness.close()
    assert harness.reader.ready is False
    assert {(v.state, v.reason) for v in harness.reader.entries()} == {(State.UNAVAILABLE, "the gateway stopped")}
    harness.reader.close()
