"""Bundles (issue 20 items 2 and 4), through a real gateway: the unbatched requests waiting for a
model when a slot frees are sent to its worker as one message, run there one after the other, each
as a lone request, and answered in one message or, for slow requests, as they finish.

A bundle is made to form the same way in most tests: the model's one worker is held by a call;
the requests sent next (a quick model's: they are not sent to a worker that computes) wait in the
pool's queue, in order, and leave together once the held call has replied."""

from __future__ import annotations

import os
import signal
import threading

import grpc
import numpy as np
import pytest
import requests

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from gateway.wire import messages
from tests.conftest import assert_serves_large
from tests.test_pipelining import ROWS, Held, assert_probe_serves_large, echo_concurrently, in_background, large, metric, outputs_of, rest_infer
from tests.test_worker_plane import workers_of, write_repository

PROBE = {"implementation": "tests.runtimes.BatchProbe"}
MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo"},
    "probe": PROBE,
    "held-sync": {"implementation": "tests.runtimes.CancellableSync"},
    "retried": PROBE,
    "not-retried": {**PROBE, "retry_on_worker_death": False},
    "kserve-tag": {"implementation": "tests.runtimes.HeaderTag"},
}


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("bundles"), MODELS)
    return start_gateway(repository, request_timeout=30, restart_backoff=0.1, heartbeat_interval=0.5).wait_ready()


def messages_sent(gateway, model: str) -> float:
    """Messages the pool has sent to the model's workers, each carrying one call or a bundle."""
    return metric(gateway, "gateway_bundle_size_count", model)


def calls_in_messages(gateway, model: str) -> float:
    return metric(gateway, "gateway_bundle_size_sum", model)


def small(value: float) -> np.ndarray:
    return np.full((1, 4), value, np.float32)


def warm(gateway, model: str) -> None:
    """Quick requests, so that the model's recent requests say it is quick (the pool bundles only
    what takes about BUNDLE_SECONDS in all): a held call of an earlier test is then one among many."""
    for i in range(16):
        assert rest_infer(gateway, model, small(i)).status_code == 200


class Bundled:
    """Requests sent while the model's worker is held, in order, each with its own parameters
    (`with_parameters`): a quick model's requests wait in the pool while its worker computes;
    `release()` lets the held call end, and the waiting requests then leave as one bundle."""

    def __init__(self, gateway, model: str, folder, inputs: list[np.ndarray], with_parameters: list[dict], started_line: str = "probe call"):
        self.gateway, self.model = gateway, model
        warm(gateway, model)
        self.held = Held(gateway, model, folder, large(0), started_line)
        self.waiting = []
        for i, (x, parameters) in enumerate(zip(inputs, with_parameters)):
            self.waiting.append(in_background(rest_infer, gateway, model, x, parameters))
            gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", model) == i + 2, what=f"request {i} to queue")
        self.messages, self.calls = messages_sent(gateway, model), calls_in_messages(gateway, model)

    def release(self) -> requests.Response:
        return self.held.release()

    def answers(self) -> list[requests.Response]:
        for thread, _ in self.waiting:
            thread.join(timeout=60)
        return [answer[0] for _, answer in self.waiting]

    def assert_one_message(self) -> None:
        """The waiting requests left in one message (after the held call's)."""
        assert messages_sent(self.gateway, self.model) == self.messages + 1
        assert calls_in_messages(self.gateway, self.model) == self.calls + len(self.waiting)


def test_waiting_requests_leave_as_one_bundle_each_run_alone_and_counted_as_such(gateway, tmp_path):
    """Five requests queued behind a busy worker go as one message; the model runs each alone, in
    their order (its call counter), and the statistics count five executions of batch size 1: a
    bundle is no batch."""
    stats = requests.get(f"{gateway.url}/v2/models/probe/stats", timeout=10).json()["model_stats"][0]
    batch_one = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}.get(1, 0)
    bundle = Bundled(gateway, "probe", tmp_path, [large(i + 1) for i in range(5)], [{}] * 5)
    batch_count = metric(gateway, "gateway_batch_size_count", "probe")
    bundle.release()
    answers = [outputs_of(answer) for answer in bundle.answers()]
    bundle.assert_one_message()
    calls = [answer["call"][0] for answer in answers]
    assert calls == list(range(calls[0], calls[0] + 5))  # one predict each, in their order
    assert all(answer["rows"] == [ROWS] * ROWS for answer in answers)  # each alone: its own rows only
    for i, answer in enumerate(answers):
        assert np.array_equal(np.array(answer["y"], np.float32), (large(i + 1) * 2).ravel())
    assert metric(gateway, "gateway_batch_size_count", "probe") == batch_count + 5  # five calls of one request
    after = requests.get(f"{gateway.url}/v2/models/probe/stats", timeout=10).json()["model_stats"][0]
    executions = after["execution_count"] - stats["execution_count"]
    assert executions == after["inference_count"] - stats["inference_count"] >= 7  # warm-up and held calls, and these five each once
    assert {b["batch_size"] for b in after["batch_stats"]} == {1}
    assert {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}[1] == batch_one + executions
    assert_probe_serves_large(gateway, "probe")


@pytest.mark.parametrize("protocol", ["rest-binary", "grpc"])
def test_under_load_bundles_form_and_every_answer_is_its_own_small_and_large(gateway, protocol):
    """16 clients on one worker, distinct data in every request, small (inline in the message) and
    64 KiB (through shared memory) in turn: bundles form (a message carried several calls), and each
    answer is exactly its request's (no bundle-mate's inputs or outputs in its place)."""
    warm(gateway, "echo")
    messages_before, calls_before = messages_sent(gateway, "echo"), calls_in_messages(gateway, "echo")

    def make_input(number: int, i: int) -> np.ndarray:
        return large(number * 100 + i) if i % 2 else np.arange(16, dtype=np.float32).reshape(1, 16) + number * 1000 + i

    wrong = echo_concurrently(gateway, protocol, 16, 20, make_input, timeout=180)
    assert wrong == []
    calls = calls_in_messages(gateway, "echo") - calls_before
    assert calls == 16 * 20
    assert messages_sent(gateway, "echo") - messages_before < calls  # some message carried a bundle
    assert_serves_large(gateway, "echo")


def test_in_a_bundle_each_request_of_a_kserve_model_gets_its_own_headers(gateway):
    """A KServe model is given the request's headers: 16 clients, each with an x-tag of its own, on one
    worker; bundles form, and every answer carries its own request's tag (no bundle-mate's headers)."""
    model, url = "kserve-tag", f"{gateway.url}/v2/models/kserve-tag/infer"

    def tagged(session: requests.Session, x: np.ndarray, tag: int) -> np.ndarray | None:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
        answer = session.post(url, json=body, headers={"x-tag": str(tag)}, timeout=60)
        return np.array(outputs_of(answer)["x"], np.float32).reshape(x.shape) if answer.status_code == 200 else None

    with requests.Session() as session:
        for i in range(16):  # quick requests: the model is quick, its requests may be bundled
            assert tagged(session, small(i), 0) is not None
    messages_before, calls_before = messages_sent(gateway, model), calls_in_messages(gateway, model)
    wrong: list = []

    def client(number: int) -> None:
        with requests.Session() as session:
            for i in range(20):
                x = large(i) if i % 2 else small(i)
                got = tagged(session, x, number * 1000)
                if got is None or not np.array_equal(got, x + number * 1000):
                    wrong.append((number, i))

    threads = [threading.Thread(target=client, args=(number,)) for number in range(1, 17)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert wrong == []
    calls = calls_in_messages(gateway, model) - calls_before
    assert calls == 16 * 20
    assert messages_sent(gateway, model) - messages_before < calls  # some message carried a bundle
    assert_serves_large(gateway, model, expect=lambda inputs: {"x": inputs["x"] + 7}, headers={"x-tag": "7"})


def test_a_request_of_a_bundle_that_fails_fails_only_itself(gateway, tmp_path):
    """In one bundle, a request the model refuses (a negative input: it raises, 500) fails with its
    own error; its bundle-mates, before and after it, are answered exactly."""
    inputs = [large(1), -large(2), large(3), large(4), large(5)]
    parameters: list[dict] = [{}, {}, {}, {}, {}]
    bundle = Bundled(gateway, "probe", tmp_path, inputs, parameters)
    bundle.release()
    answers = bundle.answers()
    bundle.assert_one_message()
    assert answers[1].status_code == 500 and "negative input" in answers[1].json()["error"], answers[1].text
    for i in (0, 2, 3, 4):
        assert np.array_equal(np.array(outputs_of(answers[i])["y"], np.float32), (inputs[i] * 2).ravel())
    assert_probe_serves_large(gateway, "probe")


def test_an_answer_json_cannot_carry_fails_alone_in_its_bundle(gateway, tmp_path):
    """A request whose answer has a numpy scalar among its parameters (which the reply's JSON header
    cannot carry) fails alone, 500, saying why: its bundle-mates are answered exactly and at once
    (the worker's reply of the bundle was lost, and the call never answered, every request of it
    waiting for its deadline and the worker then killed as hung)."""
    inputs = [large(1), large(2), large(3)]
    deadline = {"timeout": 10_000_000}  # 10 s: the clients get an answer, not a hang, should the call never be answered
    bundle = Bundled(gateway, "probe", tmp_path, inputs, [deadline, {**deadline, "numpy_parameter": True}, deadline])
    bundle.release()
    first, refused, last = bundle.answers()
    bundle.assert_one_message()
    assert refused.status_code == 500 and "not JSON serializable: numpy.float32" in refused.json()["error"], refused.text
    assert np.array_equal(np.array(outputs_of(first)["y"], np.float32), (inputs[0] * 2).ravel())
    assert np.array_equal(np.array(outputs_of(last)["y"], np.float32), (inputs[2] * 2).ravel())
    # each answer's small outputs (inline frames, numbered across the reply) are its own, not the refused one's
    assert outputs_of(last)["call"] == [outputs_of(first)["call"][0] + 2] * ROWS
    assert_probe_serves_large(gateway, "probe")


def test_a_request_asking_for_a_missing_output_fails_alone_in_its_bundle(gateway, tmp_path):
    """The same with a 400: a request of a bundle asks for an output the model does not have."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}

    def missing_output() -> requests.Response:
        return requests.post(f"{gateway.url}/v2/models/probe/infer", json=body, timeout=30)

    warm(gateway, "probe")
    held = Held(gateway, "probe", tmp_path, large(0))
    waiting = []
    for i, send in enumerate([lambda: rest_infer(gateway, "probe", large(6)), missing_output, lambda: rest_infer(gateway, "probe", large(7))]):
        waiting.append(in_background(send))
        gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", "probe") == i + 2, what=f"request {i} to queue")
    messages_before, calls_before = messages_sent(gateway, "probe"), calls_in_messages(gateway, "probe")
    held.release()
    for thread, _ in waiting:
        thread.join(timeout=60)
    first, refused, last = (answer[0] for _, answer in waiting)
    assert (messages_sent(gateway, "probe"), calls_in_messages(gateway, "probe")) == (messages_before + 1, calls_before + 3)
    assert refused.status_code == 400 and "no output named" in refused.json()["error"], refused.text
    assert np.array_equal(np.array(outputs_of(first)["y"], np.float32), (large(6) * 2).ravel())
    assert np.array_equal(np.array(outputs_of(last)["y"], np.float32), (large(7) * 2).ravel())
    assert_probe_serves_large(gateway, "probe")


def test_the_wait_behind_a_bundle_mate_is_measured(gateway, tmp_path):
    """The second request of a bundle waits in the worker while the first (100 ms) runs: that wait is
    in gateway_worker_wait_duration_seconds (one observation per request) and in the statistics
    extension's queue time, which the pool's queue time alone would miss."""

    def queue_ns() -> int:
        stats = requests.get(f"{gateway.url}/v2/models/probe/stats", timeout=10).json()["model_stats"][0]
        return stats["inference_stats"]["queue"]["ns"]

    bundle = Bundled(gateway, "probe", tmp_path, [large(1), large(2)], [{"delay": 0.1}, {}])
    waits, waited = metric(gateway, "gateway_worker_wait_duration_seconds_count", "probe"), metric(gateway, "gateway_worker_wait_duration_seconds_sum", "probe")
    queued, in_pool = queue_ns(), metric(gateway, "gateway_queue_duration_seconds_sum", "probe")
    bundle.release()
    first, second = bundle.answers()
    assert np.array_equal(np.array(outputs_of(second)["y"], np.float32), (large(2) * 2).ravel())
    bundle.assert_one_message()
    assert metric(gateway, "gateway_worker_wait_duration_seconds_count", "probe") == waits + 3  # the held call, then the bundle's two
    assert metric(gateway, "gateway_worker_wait_duration_seconds_sum", "probe") - waited >= 0.1
    # the extension's queue time: the pool's queue (as gateway_queue_duration_seconds has it) and the wait in the worker
    in_pool_ns = (metric(gateway, "gateway_queue_duration_seconds_sum", "probe") - in_pool) * 1e9
    assert queue_ns() - queued - in_pool_ns >= 0.99 * 100_000_000
    assert_probe_serves_large(gateway, "probe")


def test_a_slow_request_does_not_hold_back_the_answer_of_the_one_before_it(gateway, tmp_path):
    """A bundle of a slow request (50 ms, more than BUNDLE_SECONDS) and one that waits for a file:
    the first is answered while the second still waits, in the bundle's first reply; the file is
    created only once that answer has arrived, so with one reply per bundle this would never end."""
    assert messages.BUNDLE_SECONDS < 0.05
    release = tmp_path / "second-release"
    bundle = Bundled(gateway, "probe", tmp_path, [large(1), large(2)], [{"delay": 0.05}, {"await_file": str(release)}])
    bundle.release()
    (first_thread, first), (second_thread, second) = bundle.waiting
    first_thread.join(timeout=30)
    assert not first_thread.is_alive() and second_thread.is_alive()  # answered while its bundle-mate waits
    assert np.array_equal(np.array(outputs_of(first[0])["y"], np.float32), (large(1) * 2).ravel())
    release.touch()
    second_thread.join(timeout=30)
    assert np.array_equal(np.array(outputs_of(second[0])["y"], np.float32), (large(2) * 2).ravel())
    bundle.answers()
    bundle.assert_one_message()
    assert_probe_serves_large(gateway, "probe")


def test_a_deadline_in_a_running_bundle_answers_that_request_and_the_bundle_goes_on(gateway, tmp_path):
    """The second request of a bundle has a deadline that passes while the first runs: 504 for it at
    once, and the bundle is not cancelled (its first request is still waited for): the first is
    answered exactly, and the late one still runs in the worker, answered to nobody."""
    release = tmp_path / "first-release"
    cancels = gateway.log_text().count("the gateway cancelled the call:")
    bundle = Bundled(gateway, "probe", tmp_path, [large(1), large(2)], [{"await_file": str(release)}, {"timeout": 2_000_000}])  # 2 s
    bundle.release()
    (first_thread, _), (late_thread, late) = bundle.waiting
    late_thread.join(timeout=30)
    assert late[0].status_code == 504 and "(it was in a bundle its worker was running)" in late[0].json()["error"], late[0].text
    assert first_thread.is_alive()
    started = gateway.log_text().count("probe call")
    release.touch()
    first = bundle.answers()[0]
    assert np.array_equal(np.array(outputs_of(first)["y"], np.float32), (large(1) * 2).ravel())
    gateway.wait_for(lambda: gateway.log_text().count("probe call") == started + 1, what="the late request to run all the same")
    assert gateway.log_text().count("the gateway cancelled the call:") == cancels
    bundle.assert_one_message()
    assert_probe_serves_large(gateway, "probe")


def test_a_bundle_whose_every_client_left_is_cancelled_in_the_worker(gateway, tmp_path):
    """A bundle of two gRPC requests to a sync model that asks MLModel.cancelled(): both clients go
    away while the first runs; the worker is told, the first stops early (its marker: it raises, as
    the README allows, which is no failure of the runtime to log), the second never runs, and the
    model answers at once after."""
    model = "held-sync"
    warm(gateway, model)
    runtime_raised = gateway.log_text().count("the runtime raised")
    held = Held(gateway, model, tmp_path, large(0), started_line="cancellable sync call started")
    marker, never = tmp_path / "cancelled", tmp_path / "never"
    channel = grpc.insecure_channel(gateway.grpc_url)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    futures = []
    for i, parameters in enumerate(({"await_file": str(tmp_path / "not-created"), "marker": str(marker)}, {"marker": str(never)})):
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="x", datatype="FP32", shape=[ROWS, large(0).shape[1]])
        request.raw_input_contents.append(large(i + 1).tobytes())
        for key, value in parameters.items():
            request.parameters[key].string_param = value
        futures.append(stub.ModelInfer.future(request))
        gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", model) == i + 2, what=f"request {i} to queue")
    messages_before = messages_sent(gateway, model)
    started = gateway.log_text().count("cancellable sync call started")
    assert outputs_of(held.release())
    gateway.wait_for(lambda: gateway.log_text().count("cancellable sync call started") == started + 1, what="the bundle's first request to start")
    assert messages_sent(gateway, model) == messages_before + 1
    for future in futures:
        future.cancel()
    gateway.wait_for(marker.exists, what="the running request to see cancelled()")
    gateway.wait_for(lambda: metric(gateway, "gateway_inflight_requests", model) == 0, what="the bundle to end")
    channel.close()
    assert gateway.log_text().count("cancellable sync call started") == started + 1  # the bundle's first only
    assert not never.exists()
    assert gateway.log_text().count("the runtime raised") == runtime_raised
    assert_serves_large(gateway, model)


@pytest.mark.parametrize("model, retried", [("retried", True), ("not-retried", False)])
def test_a_worker_killed_mid_bundle_after_a_partial_reply(gateway, tmp_path, model, retried):
    """The first request of a bundle has been answered (a reply of its own: it was slow) and the
    second runs when the worker is killed: the first stays answered, the second runs again on the
    replacement (503 when the model opts out of retries), and only it is counted as retried."""
    release = tmp_path / f"{model}-second-release"
    retries = metric(gateway, "gateway_request_retries_total", model)
    (victim,) = workers_of(gateway, model)
    bundle = Bundled(gateway, model, tmp_path, [large(1), large(2)], [{"delay": 0.05}, {"await_file": str(release)}])
    bundle.release()
    (first_thread, first), (second_thread, second) = bundle.waiting
    first_thread.join(timeout=30)
    assert np.array_equal(np.array(outputs_of(first[0])["y"], np.float32), (large(1) * 2).ravel())
    assert second_thread.is_alive()
    os.kill(victim, signal.SIGKILL)
    if retried:
        gateway.wait_for(lambda: metric(gateway, "gateway_request_retries_total", model) == retries + 1, what="the second to be queued again")
        gateway.wait_ready([model], timeout=30)
        release.touch()
        second_thread.join(timeout=30)
        assert np.array_equal(np.array(outputs_of(second[0])["y"], np.float32), (large(2) * 2).ravel())
    else:
        second_thread.join(timeout=30)
        assert second[0].status_code == 503 and "its worker stopped during the request" in second[0].json()["error"], second[0].text
        release.touch()
    assert metric(gateway, "gateway_request_retries_total", model) == retries + retried
    bundle.answers()
    gateway.wait_ready([model], timeout=30)
    assert workers_of(gateway, model) != [victim]
    assert_probe_serves_large(gateway, model)
