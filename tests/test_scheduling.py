"""A request's life in its model's queue, through real clients and real worker processes
(issue 18): retry on worker death, deadlines, cancellation into the worker, load shedding
and priority levels."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from tests.conftest import SHARED_MEMORY_BYTES, assert_serves_large
from tests.test_observability import labels, metrics_of
from tests.test_worker_plane import workers_of, write_repository

PROBE = {"implementation": "tests.runtimes.BatchProbe"}
MODELS = {
    # two workers under steady load: one is killed
    "steady": {"implementation": "tests.runtimes.SlowEcho", "parallel_workers": 2},
    # one worker: a request of a killed worker waits for its replacement
    "solo": {"implementation": "tests.runtimes.SlowEcho"},
    # a runtime with side effects: no second run
    "once": {"implementation": "tests.runtimes.SlowEcho", "retry_on_worker_death": False},
    "cancel-async": {"implementation": "tests.runtimes.CancellableAsync"},
    "cancel-sync": {"implementation": "tests.runtimes.CancellableSync"},
    "probe": PROBE,  # one worker, no batching: deadlines of queued requests, priority order
    "batched": {**PROBE, "max_batch_size": 4},
    "bounded": {**PROBE, "max_queue_size": 1},
    "kserve-sleepy": {"implementation": "tests.runtimes.SleepyV1"},
}


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("scheduling"), MODELS)
    gateway = start_gateway(repository, request_timeout=30, restart_backoff=0.1, heartbeat_interval=0.5)
    return gateway.wait_ready()


@pytest.fixture
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


LARGE = np.arange(SHARED_MEMORY_BYTES // 4, dtype=np.float32).reshape(16, -1)  # through shared memory


def rest_infer(gateway, model: str, x: np.ndarray = LARGE, parameters: dict | None = None, headers: dict | None = None, timeout: float = 30):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return requests.post(f"{gateway.url}/v2/models/{model}/infer", json=body, headers=headers, timeout=timeout)


def grpc_request(model: str, x: np.ndarray = LARGE, **parameters) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.astype(np.float32).tobytes())
    for key, value in parameters.items():
        field = {bool: "bool_param", int: "int64_param", float: "double_param", str: "string_param"}[type(value)]
        setattr(request.parameters[key], field, value)
    return request


def counter(gateway, name: str, model: str, **extra) -> float:
    return metrics_of(gateway)[name].get(labels(model=model, version="", **extra), 0.0)


def log_count(gateway, text: str) -> int:
    return gateway.log_text().count(text)


# --- retry on worker death ------------------------------------------------------------------


def test_kill_9_under_steady_load_fails_no_request(gateway):
    """REST and gRPC clients keep the two workers of `steady` busy; one worker is killed with SIGKILL:
    its in-flight request runs again on its sibling, and not one request fails."""
    failures: list = []
    served = [0]
    stop = threading.Event()
    x = np.ones((4, 4096), np.float32)  # 64 KiB: through shared memory

    def rest_client() -> None:
        while not stop.is_set():
            response = rest_infer(gateway, "steady", x, {"delay": 0.05})
            if response.status_code != 200 or not np.array_equal(np.array(response.json()["outputs"][0]["data"]), x.ravel()):
                failures.append(("rest", response.status_code, response.text[:200]))
            served[0] += 1

    def grpc_client() -> None:
        client = grpcclient.InferenceServerClient(gateway.grpc_url)
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        while not stop.is_set():
            try:
                result = client.infer("steady", [tensor], parameters={"delay": "0.05"})  # tritonclient sends no float parameters
                if not np.array_equal(result.as_numpy("x"), x):
                    failures.append(("grpc", "wrong answer"))
            except InferenceServerException as exc:
                failures.append(("grpc", exc.status(), exc.message()[:200]))
            served[0] += 1
        client.close()

    retries_before = counter(gateway, "gateway_request_retries_total", "steady")
    threads = [threading.Thread(target=target) for target in (rest_client, rest_client, grpc_client, grpc_client)]
    for thread in threads:
        thread.start()
    try:
        gateway.wait_for(lambda: served[0] >= 20, what="steady load")
        victim = workers_of(gateway, "steady")[0]
        os.kill(victim, signal.SIGKILL)
        gateway.wait_for(lambda: len(workers_of(gateway, "steady")) == 2 and victim not in workers_of(gateway, "steady"), timeout=30, what="the replacement")
        gateway.wait_ready(["steady"])
        at_restart = served[0]
        gateway.wait_for(lambda: served[0] >= at_restart + 20, what="load after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    # the kill hit requests in flight (4 clients on 2 workers: one always runs on each), and they ran again
    assert counter(gateway, "gateway_request_retries_total", "steady") > retries_before
    assert "will run again" in gateway.log_text()
    assert_serves_large(gateway, "steady")


def test_a_request_runs_again_on_the_restarted_worker_but_only_once(gateway):
    """The only worker dies: its request runs again on the replacement; that one dies too: 503."""
    started = lambda: log_count(gateway, "slow echo call with 16 rows")  # noqa: E731
    before = started()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(rest_infer(gateway, "solo", parameters={"delay": 30})))
    thread.start()
    for run in (1, 2):
        gateway.wait_for(lambda: started() == before + run, timeout=30, what=f"run {run} of the request")
        (worker,) = workers_of(gateway, "solo")
        os.kill(worker, signal.SIGKILL)
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert result[0].status_code == 503 and "stopped during the request again" in result[0].json()["error"]
    gateway.wait_ready(["solo"], timeout=30)
    assert_serves_large(gateway, "solo")


def test_a_model_that_opts_out_fails_the_request_of_a_killed_worker(gateway):
    (victim,) = workers_of(gateway, "once")
    result: list = []
    thread = threading.Thread(target=lambda: result.append(rest_infer(gateway, "once", parameters={"delay": 30})))
    before = log_count(gateway, "slow echo call with 16 rows")
    thread.start()
    gateway.wait_for(lambda: log_count(gateway, "slow echo call with 16 rows") > before, what="the call to start")
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert result[0].status_code == 503 and "stopped during the request" in result[0].json()["error"]
    gateway.wait_ready(["once"], timeout=30)
    # it ran once: the replacement never saw it
    assert log_count(gateway, "slow echo call with 16 rows") == before + 1
    assert_serves_large(gateway, "once")


# --- deadlines --------------------------------------------------------------------------------


class Blocker:
    """Two requests that hold the one worker of a BatchProbe model until `release()`: one runs; the
    other (a shape no other request of the tests has, so that it joins no batch) takes the worker's
    second call slot if the model does not batch (a partial batch would wait in the queue instead).
    Either way what comes meanwhile waits in the gateway's queue."""

    IN_FLIGHT = 2  # its requests, in the model's gateway_inflight_requests

    def __init__(self, gateway, model: str, folder: Path):
        self.started, self.release_file = folder / f"{model}-started", folder / f"{model}-release"
        self.started.unlink(missing_ok=True)
        self.release_file.unlink(missing_ok=True)
        self.result: list = []
        parameters = {"create_file": str(self.started), "await_file": str(self.release_file)}
        self.threads = [threading.Thread(target=lambda: self.result.append(rest_infer(gateway, model, np.ones((1, 4), np.float32), parameters)))]
        self.threads[0].start()
        gateway.wait_for(self.started.exists, what="the blocking request to start")
        self.threads.append(threading.Thread(target=lambda: self.result.append(rest_infer(gateway, model, np.ones((1, 3), np.float32), parameters))))
        self.threads[1].start()
        inflight = lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model=model, version="")]  # noqa: E731
        gateway.wait_for(lambda: inflight() == self.IN_FLIGHT, what="the second blocking request to reach the worker's free slot")

    def release(self) -> None:
        self.release_file.touch()
        for thread in self.threads:
            thread.join(timeout=30)
        assert [r.status_code for r in self.result] == [200, 200], [r.text for r in self.result]


def probe_calls(gateway) -> int:
    return log_count(gateway, "probe call")


def test_a_queued_request_past_its_deadline_is_dropped_without_reaching_the_worker(gateway, stub, tmp_path):
    blocker = Blocker(gateway, "probe", tmp_path)
    calls = probe_calls(gateway)
    small = np.ones((1, 4), np.float32)
    # REST: Triton's timeout parameter (microseconds), then the Request-Timeout header (seconds)
    by_parameter = rest_infer(gateway, "probe", small, {"timeout": 300_000})
    assert by_parameter.status_code == 504, by_parameter.text
    # the time left when the request reached its model's queue: a little under what the client gave
    assert re.search(r"did not answer within 0\.(29\d*|3) s", by_parameter.json()["error"]) and "waiting for a worker" in by_parameter.json()["error"]
    by_header = rest_infer(gateway, "probe", small, headers={"Request-Timeout": "0.25"})
    assert by_header.status_code == 504 and re.search(r"within 0\.(24\d*|25) s", by_header.json()["error"])
    # gRPC: the call's deadline
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(grpc_request("probe", small), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # tritonclient's own timeout argument (the parameter, in microseconds), over both protocols
    for module, url, status in ((httpclient, gateway.url.removeprefix("http://"), "504"), (grpcclient, gateway.grpc_url, "StatusCode.DEADLINE_EXCEEDED")):
        tensor = module.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(small)
        with module.InferenceServerClient(url) as client, pytest.raises(InferenceServerException) as refused:
            client.infer("probe", [tensor], timeout=200_000)
        assert refused.value.status() == status and "did not answer within 0.2 s" in refused.value.message()
    blocker.release()
    assert_serves_large(gateway, "probe", expect=lambda inputs: {"y": inputs["x"] * 2})
    # the worker ran the blocker's second request and the last one only: none of the five expired ones
    assert probe_calls(gateway) == calls + 2
    assert counter(gateway, "gateway_requests_total", "probe", protocol="rest", outcome="deadline_exceeded") >= 2


def test_a_kserve_v1_request_keeps_its_request_timeout_header(gateway):
    """KServe's V1 routes take the Request-Timeout header as V2's do: a predict that runs past it is
    answered 504 at once; a bad value is a 400; then the model answers (a body through shared memory)."""
    url = f"{gateway.url}/v1/models/kserve-sleepy:predict"
    started = time.monotonic()
    late = requests.post(url, json={"instances": [5]}, headers={"Request-Timeout": "0.3"}, timeout=30)
    assert late.status_code == 504 and re.search(r"within 0\.(29\d*|3) s", late.json()["error"]) and "running" in late.json()["error"], late.text
    assert time.monotonic() - started < 3
    bad = requests.post(url, json={"instances": [0]}, headers={"Request-Timeout": "soon"}, timeout=30)
    assert bad.status_code == 400 and "Request-Timeout must be a number of seconds" in bad.json()["error"], bad.text
    instances = [0.01] + list(range(5000))  # a body of over 16 KiB: through the worker's shared memory
    answer = requests.post(url, json={"instances": instances}, headers={"Request-Timeout": "10"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["predictions"] == instances, answer.text[:300]


@pytest.mark.parametrize(
    "headers, parameters, error",
    [
        ({"Request-Timeout": "soon"}, None, "Request-Timeout must be a number of seconds"),
        ({"Request-Timeout": "0"}, None, "Request-Timeout must be a number of seconds"),
        ({"Request-Timeout": "inf"}, None, "Request-Timeout must be a number of seconds"),
        (None, {"timeout": -1}, "parameter 'timeout' must be 0"),
        (None, {"timeout": "1s"}, "parameter 'timeout' of the request must be an integer"),
        (None, {"priority": -2}, "parameter 'priority' must be 0"),
        (None, {"priority": 1.5}, "parameter 'priority' of the request must be an integer"),
    ],
)
def test_a_bad_deadline_or_priority_is_a_400(gateway, headers, parameters, error):
    response = rest_infer(gateway, "probe", np.ones((1, 4), np.float32), parameters, headers)
    assert response.status_code == 400 and error in response.json()["error"], response.text
    assert_serves_large(gateway, "probe", expect=lambda inputs: {"y": inputs["x"] * 2})


def test_the_schedule_parameters_do_not_reach_the_model_nor_split_a_batch(gateway, tmp_path):
    """priority and timeout are the gateway's: requests that differ only in them still batch."""
    blocker = Blocker(gateway, "batched", tmp_path)
    results: list = []
    threads = [
        threading.Thread(target=lambda p=p: results.append(rest_infer(gateway, "batched", np.ones((1, 4), np.float32), p)))
        for p in ({"timeout": 20_000_000}, {"priority": 2}, {})
    ]
    for thread in threads:
        thread.start()
    gateway.wait_for(
        lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model="batched", version="")] == Blocker.IN_FLIGHT + 3, what="requests to queue"
    )
    blocker.release()
    for thread in threads:
        thread.join(timeout=30)
    assert [r.status_code for r in results] == [200] * 3
    assert {tuple(o["data"]) for r in results for o in r.json()["outputs"] if o["name"] == "rows"} == {(3,)}


# --- cancellation into the worker -------------------------------------------------------------


@pytest.mark.parametrize("model", ["cancel-async", "cancel-sync"])
def test_a_cancelled_grpc_call_stops_its_predict_and_the_worker_serves_at_once(gateway, stub, tmp_path, model):
    marker = tmp_path / "cancelled"
    (worker,) = workers_of(gateway, model)
    cancelled_before = counter(gateway, "gateway_requests_total", model, protocol="grpc", outcome="cancelled")
    call = stub.ModelInfer.future(grpc_request(model, seconds=60.0, marker=str(marker)))
    time.sleep(0.5)  # the call reaches the worker, whose predict would run a minute
    assert not call.done()
    call.cancel()
    gateway.wait_for(marker.exists, timeout=10, what="predict to learn of its cancellation")
    assert marker.read_text() == str(worker)
    # at once: were predict still running, this would wait out its minute (and time out after 10 s)
    assert_serves_large(gateway, model, timeout=10)
    assert workers_of(gateway, model) == [worker]
    gateway.wait_for(lambda: counter(gateway, "gateway_requests_total", model, protocol="grpc", outcome="cancelled") == cancelled_before + 1)
    assert counter(gateway, "gateway_requests_total", model, protocol="grpc", outcome="server_error") == 0


def test_a_deadline_that_passes_while_running_cancels_the_predict(gateway, tmp_path):
    marker = tmp_path / "deadline"
    response = rest_infer(gateway, "cancel-async", parameters={"seconds": 60.0, "marker": str(marker), "timeout": 500_000})
    assert response.status_code == 504 and "(it was running)" in response.json()["error"]
    gateway.wait_for(marker.exists, timeout=10, what="predict to be cancelled")
    assert_serves_large(gateway, "cancel-async", timeout=10)


def test_a_cancelled_request_leaves_its_batch_running_for_the_others(gateway, stub, tmp_path):
    """Two requests share a call; one is cancelled: the call runs on, and the other gets its own rows."""
    blocker = Blocker(gateway, "batched", tmp_path)
    cancels = log_count(gateway, "the gateway cancelled the call")
    gone = stub.ModelInfer.future(grpc_request("batched", np.full((2, 4), 5, np.float32), delay=1.0))
    kept: list = []
    thread = threading.Thread(target=lambda: kept.append(rest_infer(gateway, "batched", np.full((1, 4), 7, np.float32), {"delay": 1.0})))
    thread.start()
    gateway.wait_for(
        lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model="batched", version="")] == Blocker.IN_FLIGHT + 2, what="requests to queue"
    )
    calls = probe_calls(gateway)
    blocker.release()
    gateway.wait_for(lambda: probe_calls(gateway) > calls + 1, what="the batch to start")  # after the blocker's second call
    gone.cancel()
    thread.join(timeout=30)
    outputs = {o["name"]: o["data"] for o in kept[0].json()["outputs"]}
    assert outputs["y"] == [14.0] * 4 and outputs["rows"] == [3]  # its row of a 3-row call, doubled
    assert log_count(gateway, "the gateway cancelled the call") == cancels  # the call was not stopped
    assert_serves_large(gateway, "batched", expect=lambda inputs: {"y": inputs["x"] * 2})


# --- load shedding and priority ---------------------------------------------------------------


def test_a_full_queue_refuses_with_503_and_retry_after(gateway, stub, tmp_path):
    blocker = Blocker(gateway, "bounded", tmp_path)
    shed_before = counter(gateway, "gateway_requests_shed_total", "bounded")
    queued: list = []
    thread = threading.Thread(target=lambda: queued.append(rest_infer(gateway, "bounded", np.ones((1, 4), np.float32))))
    thread.start()
    gateway.wait_for(
        lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model="bounded", version="")] == Blocker.IN_FLIGHT + 1, what="one request to queue"
    )
    refused = rest_infer(gateway, "bounded", np.ones((1, 4), np.float32))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "max_queue_size" in refused.json()["error"]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(grpc_request("bounded", np.ones((1, 4), np.float32)))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "max_queue_size" in caught.value.details()
    assert dict(caught.value.trailing_metadata())["grpc-retry-pushback-ms"] == "1000"
    assert counter(gateway, "gateway_requests_shed_total", "bounded") == shed_before + 2
    blocker.release()
    thread.join(timeout=30)
    assert queued[0].status_code == 200  # what was queued is served
    assert_serves_large(gateway, "bounded", expect=lambda inputs: {"y": inputs["x"] * 2})


def test_a_higher_priority_overtakes_those_queued_before_it(gateway, stub, tmp_path):
    blocker = Blocker(gateway, "probe", tmp_path)
    results: dict = {}

    def over_rest(name: str, priority: int) -> None:
        response = rest_infer(gateway, "probe", np.ones((1, 4), np.float32), {"priority": priority})
        results[name] = response.json()["outputs"][1]["data"][0]

    def over_grpc(name: str, priority: int) -> None:  # tritonclient's own priority argument (a uint64 parameter)
        tensor = grpcclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
        with grpcclient.InferenceServerClient(gateway.grpc_url) as client:
            results[name] = int(client.infer("probe", [tensor], priority=priority).as_numpy("call")[0])

    def send(name: str, priority: int) -> threading.Thread:
        thread = threading.Thread(target=over_grpc if name == "bulk-2" else over_rest, args=(name, priority))
        thread.start()
        return thread

    inflight = lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model="probe", version="")]  # noqa: E731
    threads = []
    for queued, (name, priority) in enumerate([("bulk-1", 3), ("bulk-2", 3), ("default", 0), ("interactive", 1)], start=Blocker.IN_FLIGHT + 1):
        threads.append(send(name, priority))
        gateway.wait_for(lambda: inflight() == queued, what=f"{name} to queue")  # one at a time: their order is known
    blocker.release()
    for thread in threads:
        thread.join(timeout=30)
    # priority 0 is the model's default level (1): it and the interactive one, in their order, then the bulk, in theirs
    assert sorted(results, key=results.get) == ["default", "interactive", "bulk-1", "bulk-2"]
    assert_serves_large(gateway, "probe", expect=lambda inputs: {"y": inputs["x"] * 2})
