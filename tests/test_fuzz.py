"""Thousands of malformed requests per front door (REST JSON, REST binary, gRPC), made by mutating
valid ones (tests/fuzzing.py), sent four at a time to a real gateway. Each one is the client's
fault, so it must get a 4xx / INVALID_ARGUMENT / NOT_FOUND (or succeed, if the mutation left it
valid), never a 5xx, INTERNAL or UNKNOWN; no worker may restart, the gateway must stay ready
throughout, and every model must answer a large request correctly afterwards.

Deterministic: case i of a door is a pure function of (SEED, door, i); a failure names the seed,
the case and its body, and `python -m tests.fuzzing DOOR INDEX --seed SEED` prints it again."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests

from tests import fuzzing
from tests.conftest import assert_serves_large
from tests.test_observability import metrics_of
from tests.test_worker_plane import children, write_repository

SEED = fuzzing.DEFAULT_SEED
CASES = 2500  # per front door: each a valid request mutated, of which over 2,000 are refused (some stay valid)
CLIENTS = 4  # at once: some requests queue, so that the batching model merges them


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("fuzz"), fuzzing.MODELS)
    return start_gateway(repository, request_timeout=20).wait_ready()


class Readiness:
    """Polls /v2/health/ready every 50 ms in a thread: what it answered other than 200, and the
    longest time between two ready answers."""

    def __init__(self, gateway):
        self.url = f"{gateway.url}/v2/health/ready"
        self.not_ready: list[str] = []
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        last = time.monotonic()
        with requests.Session() as session:
            while not self._stop.wait(0.05):
                try:
                    response = session.get(self.url, timeout=10)
                    ready = response.status_code == 200
                    if not ready:
                        self.not_ready.append(f"{response.status_code} {response.text}")
                except requests.RequestException as exc:
                    ready = False
                    self.not_ready.append(repr(exc))
                if ready:
                    now = time.monotonic()
                    self.longest_gap, last = max(self.longest_gap, now - last), now

    def __enter__(self) -> "Readiness":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def worker_pids(gateway) -> set[int]:
    return {pid for pid, command in children(gateway.process.pid).items() if "-m workers" in command}


def server_errors_and_restarts(gateway) -> tuple[float, float]:
    found = metrics_of(gateway)
    server_errors = sum(v for k, v in found["gateway_requests_total"].items() if dict(k)["outcome"] == "server_error")
    return server_errors, sum(found["gateway_worker_restarts_total"].values())


def run_cases(gateway, door: str) -> list[str]:
    """Send every case of the door; the failures, each described so that it can be reproduced."""
    local = threading.local()

    def send(index: int) -> str | None:
        case = fuzzing.case(door, index, SEED)
        if door == "grpc":
            if not hasattr(local, "channel"):
                local.channel = grpc.insecure_channel(gateway.grpc_url)
            answers = fuzzing.send_grpc(local.channel, case)
            bad = [(code, details[:300]) for code, details in answers if code not in fuzzing.GRPC_ACCEPTABLE]
        else:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            status, text = fuzzing.send_rest(local.session, gateway.url, case)
            bad = [] if fuzzing.rest_acceptable(status) else [(status, text)]
        return f"seed {SEED} {door} case {index}: {bad} for {case.describe()}" if bad else None

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [failure for failure in pool.map(send, range(CASES)) if failure]


# one large, correct request per model after each door's cases
LARGE_X = np.arange(16 * 1024, dtype=np.float32).reshape(-1, 4)
LARGE_TEXT = np.array([f"row {i} ".encode() * 8 for i in range(1024)], dtype=object)


def assert_every_model_serves(gateway) -> None:
    assert_serves_large(gateway, "echo")
    assert_serves_large(gateway, "batched")
    assert_serves_large(gateway, "declared", {"x": LARGE_X})
    assert_serves_large(gateway, "text", {"s": LARGE_TEXT})


@pytest.mark.parametrize("door", fuzzing.DOORS)
def test_malformed_requests_are_refused_and_harm_nothing(gateway, door):
    workers = worker_pids(gateway)
    server_errors, restarts = server_errors_and_restarts(gateway)
    peak_memory = gateway.peak_memory()
    with Readiness(gateway) as readiness:
        failures = run_cases(gateway, door)
    assert not failures, f"{len(failures)} of {CASES} cases failed; the first ones:\n" + "\n".join(failures[:3])
    assert readiness.not_ready == []
    # no case is over 1 MiB: none may make the front door allocate much more
    assert gateway.peak_memory() - peak_memory < 100 * 2**20
    # gRPC stream replies carry their errors in error_message: the metrics count them by status
    assert server_errors_and_restarts(gateway) == (server_errors, restarts)
    assert worker_pids(gateway) == workers
    assert_every_model_serves(gateway)
    assert "Traceback" not in gateway.log_text()
