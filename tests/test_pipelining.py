"""Pipelined workers (issue 20 item 1), through a real gateway: a worker has two call slots, so it
is given its next call while it computes one; the call waits in the worker and runs in its turn.
Each slot has its own regions of the worker's arenas, a call waiting in the worker can be cancelled
without touching the one running, both calls of a killed worker run again, and batches still form
under load."""

from __future__ import annotations

import json
import os
import signal
import threading

import grpc
import numpy as np
import pytest
import requests

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from tests.conftest import SHARED_MEMORY_BYTES, assert_serves_large
from tests.test_observability import labels, metrics_of
from tests.test_worker_plane import workers_of, write_repository

PROBE = {"implementation": "tests.runtimes.BatchProbe"}
MODELS = {
    "probe": PROBE,  # one worker: which call ran when, and holding a call on a file
    "echo": {"implementation": "tests.runtimes.Echo"},
    "held-sync": {"implementation": "tests.runtimes.CancellableSync"},
    "retried": PROBE,  # retry_on_worker_death: true (the default)
    "batched": {**PROBE, "max_batch_size": 8},
    "streamer": {"implementation": "tests.runtimes.Streamer"},
    "stubborn-pair": {"implementation": "tests.runtimes.Stubborn", "parallel_workers": 2},  # sync, never asks cancelled()
}
ROWS = 16
LARGE = SHARED_MEMORY_BYTES // 4 // ROWS  # FP32 columns: a [16, LARGE] request is 64 KiB, through shared memory


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("pipelining"), MODELS)
    return start_gateway(repository, request_timeout=30, restart_backoff=0.1, heartbeat_interval=0.5).wait_ready()


def large(value: float) -> np.ndarray:
    """64 KiB of FP32 that no other request carries."""
    return (np.arange(ROWS * LARGE, dtype=np.float32).reshape(ROWS, LARGE) % 1000) + np.float32(value * 1000)


def rest_infer(gateway, model: str, x: np.ndarray, parameters: dict | None = None, timeout: float = 30) -> requests.Response:
    body: dict = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return requests.post(f"{gateway.url}/v2/models/{model}/infer", json=body, timeout=timeout)


def in_background(function, *args) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    return thread, result


def metric(gateway, name: str, model: str, **extra) -> float:
    return metrics_of(gateway)[name].get(labels(model=model, version="", **extra), 0.0)


def calls_sent(gateway, model: str) -> float:
    """Calls the pool has sent to the model's workers (each observes one batch size)."""
    return metric(gateway, "gateway_batch_size_count", model)


def probe_started(gateway) -> int:
    return gateway.log_text().count("probe call")


def outputs_of(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def assert_probe_serves_large(gateway, model: str) -> None:
    assert_serves_large(gateway, model, expect=lambda inputs: {"y": inputs["x"] * 2})


class Held:
    """A call that holds the model's one worker until `release()` (it waits for a file)."""

    def __init__(self, gateway, model: str, folder, x: np.ndarray, started_line: str = "probe call"):
        self.file = folder / f"{model}-release"
        self.file.unlink(missing_ok=True)
        before = gateway.log_text().count(started_line)
        self.thread, self.result = in_background(rest_infer, gateway, model, x, {"await_file": str(self.file)})
        gateway.wait_for(lambda: gateway.log_text().count(started_line) > before, what=f"the held call of {model} to start")

    def release(self) -> requests.Response:
        self.file.touch()
        self.thread.join(timeout=30)
        return self.result[0]


def test_a_worker_is_given_its_next_call_while_it_computes_and_runs_it_next(gateway, tmp_path):
    """The second request is sent to the worker while the first still computes (it cannot end: it
    waits for a file the test creates only afterwards), and runs as the worker's very next call.
    Each slot's tensors are its own: the second call's inputs, placed while the first computes on
    its own, leave the first's untouched."""
    first = Held(gateway, "probe", tmp_path, large(1))
    sent = calls_sent(gateway, "probe")
    second, answer = in_background(rest_infer, gateway, "probe", large(2))
    gateway.wait_for(lambda: calls_sent(gateway, "probe") == sent + 1, what="the second call to be sent to the busy worker")
    assert first.thread.is_alive()  # still computing: it waits for the file
    first_answer = outputs_of(first.release())
    second.join(timeout=30)
    second_answer = outputs_of(answer[0])
    assert second_answer["call"][0] == first_answer["call"][0] + 1  # in order: the worker's next call
    assert np.array_equal(np.array(first_answer["y"], np.float32), (large(1) * 2).ravel())
    assert np.array_equal(np.array(second_answer["y"], np.float32), (large(2) * 2).ravel())


def _echo_rest(gateway, x: np.ndarray, model: str = "echo") -> np.ndarray:
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(gateway.address, network_timeout=30) as client:
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput("x", binary_data=True)])
        return result.as_numpy("x")


def _echo_grpc(stub, x: np.ndarray) -> np.ndarray:
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    response = stub.ModelInfer(request, timeout=30)
    return np.frombuffer(response.raw_output_contents[0], np.float32).reshape(x.shape)


def echo_concurrently(gateway, protocol: str, clients: int, rounds: int, make_input, timeout: float = 120) -> list:
    """`clients` threads echo `make_input(client, round)` `rounds` times each over `protocol`
    (rest-binary or grpc) through the echo model; returns the (client, round) answered wrong."""
    wrong: list = []
    channel = grpc.insecure_channel(gateway.grpc_url)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)

    def client(number: int) -> None:
        for i in range(rounds):
            x = make_input(number, i)
            got = _echo_rest(gateway, x) if protocol == "rest-binary" else _echo_grpc(stub, x)
            if got.shape != x.shape or not np.array_equal(got, x):
                wrong.append((number, i))

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=timeout)
    finally:
        channel.close()
    return wrong


@pytest.mark.parametrize("protocol", ["rest-binary", "grpc"])
def test_concurrent_large_requests_through_one_worker_each_get_their_own_answer(gateway, protocol):
    """8 clients, 64 KiB of distinct data per request, one worker with two slots: every answer is
    its own request's, exactly (no slot's tensors overwritten by the other's call)."""
    wrong = echo_concurrently(gateway, protocol, 8, 15, lambda number, i: large(number * 100 + i))
    assert wrong == []
    assert_serves_large(gateway, "echo")


def test_a_deadline_of_a_call_waiting_in_the_worker_answers_it_unrun_and_frees_its_slot(gateway, tmp_path):
    """The second call waits in the worker behind a held one; its deadline passes: 504 at once, and
    the worker answers its CANCEL without running it and without touching the running call, so the
    slot takes a third call while the first still runs."""
    cancels = gateway.log_text().count("the gateway cancelled the call:")
    unrun = gateway.log_text().count("answered, not run")
    first = Held(gateway, "probe", tmp_path, large(3))
    started = probe_started(gateway)
    late = rest_infer(gateway, "probe", large(4), {"timeout": 300_000})  # 0.3 s
    assert late.status_code == 504 and "(it was waiting in its worker for the call before it)" in late.json()["error"], late.text
    gateway.wait_for(lambda: gateway.log_text().count("answered, not run") == unrun + 1, what="the worker to answer the cancel")
    sent = calls_sent(gateway, "probe")
    third, answer = in_background(rest_infer, gateway, "probe", large(5))
    gateway.wait_for(lambda: calls_sent(gateway, "probe") == sent + 1, what="the freed slot to take the third call")
    assert first.thread.is_alive()
    assert np.array_equal(np.array(outputs_of(first.release())["y"], np.float32), (large(3) * 2).ravel())  # not cancelled
    third.join(timeout=30)
    assert np.array_equal(np.array(outputs_of(answer[0])["y"], np.float32), (large(5) * 2).ravel())
    assert probe_started(gateway) == started + 1  # the third only: the late one never ran
    assert gateway.log_text().count("the gateway cancelled the call:") == cancels  # the running call was left alone
    assert_probe_serves_large(gateway, "probe")


def test_a_cancel_of_the_call_waiting_behind_a_sync_predict_is_not_taken_for_the_running_one(gateway, tmp_path):
    """A sync predict blocks its worker's loop and asks MLModel.cancelled(): the CANCEL of the call
    waiting behind it, read there, answers that call and leaves cancelled() false for the running one."""
    marker = tmp_path / "cancelled"
    held_x = np.ones((ROWS, LARGE), np.float32)
    first = Held(gateway, "held-sync", tmp_path, held_x, started_line="cancellable sync call started")
    started = gateway.log_text().count("cancellable sync call started")
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="held-sync")
        request.inputs.add(name="x", datatype="FP32", shape=[ROWS, LARGE])
        request.raw_input_contents.append(large(6).tobytes())
        request.parameters["marker"].string_param = str(marker)
        before = gateway.log_text().count("answered, not run")
        sent = calls_sent(gateway, "held-sync")
        call = stub.ModelInfer.future(request)
        gateway.wait_for(lambda: calls_sent(gateway, "held-sync") == sent + 1, what="the second call to reach the worker")
        call.cancel()  # the client goes away
        gateway.wait_for(lambda: gateway.log_text().count("answered, not run") == before + 1, what="the waiting call to be answered")
    assert first.thread.is_alive() and not marker.exists()
    response = first.release()
    assert response.status_code == 200, response.text
    assert np.array_equal(np.array(response.json()["outputs"][0]["data"], np.float32), held_x.ravel())
    assert gateway.log_text().count("cancellable sync call started") == started and not marker.exists()
    assert_serves_large(gateway, "held-sync")


def test_a_killed_worker_with_two_calls_in_flight_runs_both_again(gateway, tmp_path):
    """SIGKILL while one call runs and another waits in the worker: the replacement runs both, in
    their order, each answered with its own rows."""
    (victim,) = workers_of(gateway, "retried")
    retries = metric(gateway, "gateway_request_retries_total", "retried")
    first = Held(gateway, "retried", tmp_path, large(7))
    sent = calls_sent(gateway, "retried")
    second, answer = in_background(rest_infer, gateway, "retried", large(8))
    gateway.wait_for(lambda: calls_sent(gateway, "retried") == sent + 1, what="the second call to reach the worker")
    os.kill(victim, signal.SIGKILL)
    gateway.wait_for(lambda: metric(gateway, "gateway_request_retries_total", "retried") == retries + 2, what="both calls to be queued again")
    gateway.wait_ready(["retried"], timeout=30)
    first_answer = outputs_of(first.release())  # its file now exists: it ends at once on the replacement
    second.join(timeout=30)
    second_answer = outputs_of(answer[0])
    assert np.array_equal(np.array(first_answer["y"], np.float32), (large(7) * 2).ravel())
    assert np.array_equal(np.array(second_answer["y"], np.float32), (large(8) * 2).ravel())
    assert workers_of(gateway, "retried") != [victim]
    assert_probe_serves_large(gateway, "retried")


def test_batches_still_form_under_load_and_a_lone_request_does_not_wait(gateway):
    """32 clients on one worker with two slots: requests that come while both slots are taken are
    merged (a batch of more than one request is observed); a lone request then runs at once, alone
    (no max_batch_time: it waits for no company; were it to, its client would time out)."""
    rows_seen: list[int] = []
    errors: list = []

    def client(number: int) -> None:
        for i in range(10):
            x = np.full((1, 4), number * 10 + i, np.float32)
            response = rest_infer(gateway, "batched", x, {"delay": 0.01})
            if response.status_code != 200 or outputs_of(response)["y"] != (x * 2).ravel().tolist():
                errors.append(response.text)
            else:
                rows_seen.append(outputs_of(response)["rows"][0])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(rows_seen) == 320
    assert max(rows_seen) > 1
    assert metric(gateway, "gateway_batch_size_sum", "batched") == 320
    assert metric(gateway, "gateway_batch_size_count", "batched") < 320
    lone = rest_infer(gateway, "batched", np.ones((1, 4), np.float32), timeout=10)
    assert outputs_of(lone)["rows"] == [1]
    assert_probe_serves_large(gateway, "batched")


def test_a_streaming_worker_takes_no_other_call_until_its_stream_ends(gateway):
    """A stream holds its worker for its life: a request that comes meanwhile waits in the
    gateway's queue (its second slot stays empty), and runs once the client has left the stream."""
    sent = calls_sent(gateway, "streamer")
    document = {"parameters": {"count": 100_000, "delay": 0.01, "size": 4}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    with requests.post(f"{gateway.url}/v2/models/streamer/infer_stream", data=json.dumps(document), stream=True, timeout=30) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith(b"data:"))  # it streams
        assert calls_sent(gateway, "streamer") == sent + 1  # the stream's call
        waiting, answer = in_background(_echo_rest, gateway, large(9), "streamer")
        gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", "streamer") == 2, what="the request to queue")
        for _ in range(20):  # the stream goes on, and the request still waits
            next(line for line in lines if line.startswith(b"data:"))
        assert waiting.is_alive() and calls_sent(gateway, "streamer") == sent + 1  # not sent to the worker
    waiting.join(timeout=30)
    assert np.array_equal(answer[0], large(9))
    assert_serves_large(gateway, "streamer")


def test_a_batching_model_sends_a_busy_worker_only_a_full_batch(gateway, tmp_path):
    """While the one worker computes, a partial batch stays in the queue, gaining company, and runs
    as one call once the running call has replied; a full batch (max_batch_size, 8) is sent to the
    worker at once, to wait in it."""
    x = np.ones((1, 4), np.float32)
    for requests_sent, sent_at_once in ((3, False), (8, True)):
        held = Held(gateway, "batched", tmp_path, large(10))
        sent = calls_sent(gateway, "batched")
        waiting = [in_background(rest_infer, gateway, "batched", x * i) for i in range(requests_sent)]
        gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", "batched") == requests_sent + 1, what="the requests to arrive")
        if sent_at_once:
            gateway.wait_for(lambda: calls_sent(gateway, "batched") == sent + 1, what="the full batch to be sent to the busy worker")
        else:
            assert calls_sent(gateway, "batched") == sent  # they wait in the queue
        assert held.thread.is_alive()
        assert np.array_equal(np.array(outputs_of(held.release())["y"], np.float32), (large(10) * 2).ravel())
        for i, (thread, answer) in enumerate(waiting):
            thread.join(timeout=30)
            out = outputs_of(answer[0])
            assert out["y"] == (x * i * 2).ravel().tolist() and out["rows"] == [requests_sent]  # one call of them all
        assert calls_sent(gateway, "batched") == sent + 1
    assert_probe_serves_large(gateway, "batched")


def test_requests_of_other_shapes_do_not_make_a_partial_batch_full(gateway, tmp_path):
    """While the one worker computes, 4 requests of one shape and 4 of another wait: 8 requests, as
    many as max_batch_size, but two partial batches (requests of different shapes cannot merge), which
    stay in the queue gaining company; once the held call has replied they run as two calls, one per shape."""
    held = Held(gateway, "batched", tmp_path, large(11))
    sent = calls_sent(gateway, "batched")
    shapes = [(1, 4)] * 4 + [(1, 6)] * 4
    waiting = [in_background(rest_infer, gateway, "batched", np.full(shape, i, np.float32)) for i, shape in enumerate(shapes)]
    gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", "batched") == len(shapes) + 1, what="the requests to arrive")
    assert calls_sent(gateway, "batched") == sent  # none is sent to the busy worker
    assert np.array_equal(np.array(outputs_of(held.release())["y"], np.float32), (large(11) * 2).ravel())
    for i, (thread, answer) in enumerate(waiting):
        thread.join(timeout=30)
        out = outputs_of(answer[0])
        assert out["y"] == [i * 2.0] * shapes[i][1] and out["rows"] == [4]  # in a call with the 3 others of its shape
    assert calls_sent(gateway, "batched") == sent + 2
    assert_probe_serves_large(gateway, "batched")


def test_no_call_waits_in_a_worker_behind_one_whose_requests_are_all_gone(gateway):
    """Two workers of a sync model that never asks cancelled(), both computing: the first a request
    whose deadline has passed (cancelled, yet it computes on for 12 s), the second one of 6 s. A request
    that comes meanwhile must not be sent to wait behind work nobody waits for: it waits in the queue
    and runs on the second worker once that one is free."""
    model = "stubborn-pair"
    sent = calls_sent(gateway, model)
    doomed, doomed_answer = in_background(rest_infer, gateway, model, np.full((1, 1), 12.0, np.float32), {"timeout": 300_000})
    gateway.wait_for(lambda: calls_sent(gateway, model) == sent + 1, what="the doomed request to reach its worker")
    busy, busy_answer = in_background(rest_infer, gateway, model, np.full((1, 1), 6.0, np.float32))
    gateway.wait_for(lambda: calls_sent(gateway, model) == sent + 2, what="the other request to reach the other worker")
    doomed.join(timeout=30)
    assert doomed_answer[0].status_code == 504, doomed_answer[0].text
    late, late_answer = in_background(rest_infer, gateway, model, np.zeros((1, 1), np.float32))
    gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", model) == 2, what="the late request to arrive")
    assert busy.is_alive()  # both workers still compute when it comes
    late.join(timeout=30)
    busy.join(timeout=30)
    assert outputs_of(late_answer[0])["pid"] == outputs_of(busy_answer[0])["pid"]
    assert_serves_large(gateway, model, inputs={"x": np.zeros((ROWS, LARGE), np.float32)})
