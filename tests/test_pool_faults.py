"""The pool's invariant: whatever step of a call's dispatch raises (merging a batch, building its
message, placing its tensors, reading the reply, splitting the outputs, rendering the answer),
only that call's requests fail, with the status the error deserves, and the worker takes the
next request at once.

A real supervisor, real worker processes, real ZeroMQ and shared memory, run in this test
process on a loop of its own; each test makes one step raise and then asks for a correct
answer of a size that travels through shared memory."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pytest

from gateway.control import pool as pool_module
from gateway.control import processes as processes_module
from gateway.control.models import Supervisor
from gateway.errors import BadRequest, GatewayError
from gateway.settings import ServerSettings
from gateway.wire import messages
from gateway.wire.request import Tensor, WireRequest
from tests.conftest import ROOT
from tests.test_worker_plane import write_repository

LARGE = 64 * 1024  # elements of INT32: 256 KiB, placed in the arenas, not inline
REQUEST_TIMEOUT = 30.0
PROMPT = 10.0  # a freed worker answers well within this; a stuck one only after REQUEST_TIMEOUT


class Loop:
    """An event loop in a thread, running a supervisor of real workers."""

    def __init__(self, repository):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = ServerSettings(
            model_repository=repository, request_timeout=REQUEST_TIMEOUT, heartbeat_interval=0.5, restart_backoff=0.1, log_level="WARNING"
        )
        self.supervisor = self.run(self._start(settings), timeout=120)

    async def _start(self, settings: ServerSettings) -> Supervisor:
        supervisor = Supervisor(settings)
        await supervisor.start()
        return supervisor

    def run(self, coroutine, timeout: float = PROMPT):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.supervisor.stop(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    os.environ["PYTHONPATH"] = str(ROOT)  # the workers import tests.runtimes
    repository = write_repository(tmp_path_factory.mktemp("faults"), {"echo": {"implementation": "tests.runtimes.Echo", "max_batch_size": 4}})
    harness = Loop(repository)
    yield harness
    harness.close()


def request(value: int, elements: int = LARGE) -> WireRequest:
    data = np.full((1, elements), value, dtype=np.int32)
    return WireRequest("echo", None, f"r{value}", [Tensor("x", "INT32", [1, elements], data)])


def copy_outputs(outputs, parameters) -> list[np.ndarray]:
    return [np.array(t.data) for t in outputs]  # the outputs may view the worker's arena: keep copies


async def infer(pool, value: int, render=copy_outputs) -> list[np.ndarray]:
    async with pool.call(messages.INFER, request(value)) as reply:
        return render(reply.outputs, reply.parameters)


async def outcomes(pool, values: list[int]) -> list:
    """Submit the requests at once: the first goes to the idle worker, the others queue and merge
    (a batching model sends a busy worker only a full batch, of max_batch_size 4)."""
    return await asyncio.gather(*(infer(pool, v) for v in values), return_exceptions=True)


def assert_serves_correctly(harness, pool, worker_before) -> None:
    """The same worker, not a replacement, answers a large request promptly and exactly."""
    (output,) = harness.run(infer(pool, 7))
    assert output.shape == (1, LARGE) and (output == 7).all()
    assert pool.workers == [worker_before] and worker_before.idle  # no call in flight, no slot lent


def failing(error: Exception):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.fixture
def pool(harness):
    return harness.supervisor.get("echo").pool


@pytest.mark.parametrize(
    "error, status",
    [(ValueError("planted"), 500), (BadRequest("planted refusal"), 400)],
    ids=["bug", "refusal"],
)
@pytest.mark.parametrize(
    "step",
    ["request_frames", "place", "parse_answer", "split", "merge"],
)
def test_a_failing_step_fails_only_its_call_and_frees_the_worker(harness, pool, monkeypatch, step, error, status):
    worker = pool.workers[0]
    target = {
        "request_frames": (messages, "request_frames"),
        "place": (messages, "_place"),
        "parse_answer": (messages, "parse_answer"),
        "split": (pool_module, "split"),
        "merge": (pool_module, "merge"),
    }[step]
    monkeypatch.setattr(*target, failing(error))
    batched = step in ("split", "merge")
    results = harness.run(outcomes(pool, [1, 2, 3] if batched else [1]))
    monkeypatch.undo()
    failed = results[1:] if batched else results
    if batched:  # the first call ran alone, before the others queued behind it
        assert isinstance(results[0], list) and (results[0][0] == 1).all()
    for result in failed:
        assert isinstance(result, GatewayError), result
        assert result.http_status == status and "planted" in result.message
    assert_serves_correctly(harness, pool, worker)


def test_a_failing_render_gives_the_arena_back(harness, pool):
    worker = pool.workers[0]

    def refuse(outputs, parameters):
        assert worker.slots[0].lent  # the large output views its slot's output region while it is rendered
        raise BadRequest("planted: cannot render")

    with pytest.raises(BadRequest):
        harness.run(infer(pool, 1, render=refuse))
    assert_serves_correctly(harness, pool, worker)


def test_a_worker_that_cannot_start_fails_its_load_with_the_reason(harness, monkeypatch, caplog):
    """The process of a worker cannot even be started (its exec fails): the load ends at once,
    the model UNAVAILABLE with the reason, logged and in the repository index; the next load,
    once processes start again, serves it."""
    supervisor = harness.supervisor
    write_repository(supervisor.settings.model_repository, {"unstartable": {"implementation": "tests.runtimes.Echo"}})

    async def exec_fails(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", args[0])

    monkeypatch.setattr(processes_module.asyncio, "create_subprocess_exec", exec_fails)
    with caplog.at_level("ERROR", logger="gateway.supervisor"), pytest.raises(BadRequest, match="a worker could not be started"):
        harness.run(supervisor.load_model("unstartable"))
    monkeypatch.undo()
    (item,) = [i for i in supervisor.index() if i["name"] == "unstartable"]
    assert item["state"] == "UNAVAILABLE" and "could not be started" in item["reason"] and "No such file" in item["reason"]
    assert any("unstartable" in r.getMessage() and "could not be started" in r.getMessage() for r in caplog.records)
    assert supervisor.get("unstartable").pool.workers == []

    harness.run(supervisor.load_model("unstartable"), timeout=60)
    pool = supervisor.get("unstartable").pool
    assert_serves_correctly(harness, pool, pool.workers[0])
    harness.run(supervisor.unload_model("unstartable"), timeout=60)
