"""Adaptive batching through a real gateway: merging, splitting, and what must not merge."""

import json
import threading

import numpy as np
import pytest
import requests

from tests.conftest import assert_serves_large
from tests.test_observability import labels, metrics_of
from tests.test_worker_plane import write_repository

MODELS = {
    "probe": {"implementation": "tests.runtimes.BatchProbe", "max_batch_size": 8},
    "summary": {"implementation": "tests.runtimes.Summary", "max_batch_size": 8},
    "pair": {"implementation": "tests.runtimes.BatchProbe", "parallel_workers": 2, "max_batch_size": 8},
    # MLServer's max_batch_time: a batch waits for max_batch_size requests, at most this long
    "gathering": {"implementation": "tests.runtimes.BatchProbe", "max_batch_size": 4, "max_batch_time": 60},
    "brief": {"implementation": "tests.runtimes.BatchProbe", "max_batch_size": 4, "max_batch_time": 0.1},
}


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    return start_gateway(write_repository(tmp_path_factory.mktemp("batching"), MODELS)).wait_ready()


def body(values, request_id, delay=0.0, width=2, outputs=None, **parameters):
    document = {
        "id": request_id,
        "parameters": {"delay": delay, **parameters},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values), width], "data": [[v] * width for v in values]}],
    }
    if outputs is not None:  # each a name, or a whole requested-output object
        document["outputs"] = [{"name": o} if isinstance(o, str) else o for o in outputs]
    return document


def call(gateway, model, document, results, key):
    response = requests.post(f"{gateway.url}/v2/models/{model}/infer", data=json.dumps(document), timeout=30)
    results[key] = response


def burst_behind_a_busy_worker(gateway, model, documents):
    """Occupy the model's only worker, send `documents` meanwhile, and return every answer."""
    log_line = "probe call"
    before = gateway.log_text().count(log_line)
    results: dict = {}
    blocker = threading.Thread(target=call, args=(gateway, model, body([0], "blocker", delay=1.0), results, "blocker"))
    blocker.start()
    gateway.wait_for(lambda: gateway.log_text().count(log_line) > before, what="the blocking call to start")
    threads = [threading.Thread(target=call, args=(gateway, model, d, results, d["id"])) for d in documents]
    for thread in threads:
        thread.start()
    for thread in [blocker, *threads]:
        thread.join()
    return results


def inflight(gateway, model, version=""):
    return metrics_of(gateway)["gateway_inflight_requests"][labels(model=model, version=version)]


def outputs_of(response):
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_concurrent_requests_share_one_call_and_each_gets_its_own_rows(gateway):
    documents = [body([float(i), float(i) + 0.5], f"req-{i}") for i in range(6)]
    results = burst_behind_a_busy_worker(gateway, "probe", documents)
    calls = set()
    for i in range(6):
        response = results[f"req-{i}"]
        assert response.json()["id"] == f"req-{i}"
        out = outputs_of(response)
        assert out["y"] == [2 * i, 2 * i, 2 * i + 1, 2 * i + 1]  # its own two rows, doubled
        assert {o["name"]: o["shape"] for o in response.json()["outputs"]} == {"y": [2, 2], "call": [2], "rows": [2]}
        assert out["rows"] == [12, 12]  # 6 requests x 2 rows in one call
        calls.add(out["call"][0])
    assert len(calls) == 1


def test_callers_asking_different_outputs_each_get_theirs_and_the_model_keeps_serving(gateway):
    # the probe declares no outputs, so only its worker can tell that "bogus" does not exist
    documents = [
        body([1.0], "all"),
        body([2.0], "only-call", outputs=["call"]),
        body([3.0], "bogus", outputs=["y", "bogus"]),
        body([4.0], "y-json", outputs=["y", "rows"]),
        body([5.0], "y-binary", outputs=[{"name": "y", "parameters": {"binary_data": True}}, "rows"]),
        body([6.0], "y-scaled", outputs=[{"name": "y", "parameters": {"scale": 3}}, "rows"]),
    ]
    results = burst_behind_a_busy_worker(gateway, "probe", documents)
    everything = outputs_of(results["all"])
    assert everything.keys() == {"y", "call", "rows"} and everything["y"] == [2.0, 2.0] and everything["rows"] == [1]
    assert outputs_of(results["only-call"]).keys() == {"call"}
    assert results["bogus"].status_code == 400 and "no output named ['bogus']" in results["bogus"].json()["error"]
    # binary_data only changes how the answer is written: those two ran in one call, each written its own way
    assert outputs_of(results["y-json"]) == {"y": [8.0, 8.0], "rows": [2]}
    binary = results["y-binary"]
    assert binary.status_code == 200, binary.text
    json_length = int(binary.headers["Inference-Header-Content-Length"])
    y, rows = json.loads(binary.content[:json_length])["outputs"]
    assert y["parameters"] == {"binary_data_size": 8} and np.frombuffer(binary.content[json_length:], "<f4").tolist() == [10.0, 10.0]
    assert rows["data"] == [2]
    # another output parameter may change what the runtime computes: that request ran apart
    assert outputs_of(results["y-scaled"]) == {"y": [12.0, 12.0], "rows": [1]}
    after = requests.post(f"{gateway.url}/v2/models/probe/infer", data=json.dumps(body([7.0], "after")), timeout=30)
    assert outputs_of(after)["y"] == [14.0, 14.0]
    assert_probe_serves_large(gateway, "probe")


def assert_probe_serves_large(gateway, model: str) -> None:
    assert_serves_large(gateway, model, expect=lambda inputs: {"y": inputs["x"] * 2})


def test_a_batch_never_holds_more_requests_than_max_batch_size(gateway):
    documents = [body([float(i)], f"req-{i}") for i in range(11)]  # max_batch_size is 8
    results = burst_behind_a_busy_worker(gateway, "probe", documents)
    calls: dict[int, int] = {}
    for i in range(11):
        out = outputs_of(results[f"req-{i}"])
        assert out["y"] == [2 * i, 2 * i]
        calls[out["call"][0]] = out["rows"][0]
    assert sorted(calls.values()) == [3, 8]  # 11 one-row requests: a full batch, then the rest


def test_a_request_of_zero_rows_joins_a_batch_and_gets_zero_rows(gateway):
    documents = [body([1.0], "one"), body([], "none"), body([2.0, 3.0], "two")]
    results = burst_behind_a_busy_worker(gateway, "probe", documents)
    assert outputs_of(results["none"]) == {"y": [], "call": [], "rows": []}
    one, two = outputs_of(results["one"]), outputs_of(results["two"])
    assert one["y"] == [2.0, 2.0] and two["y"] == [4.0, 4.0, 6.0, 6.0]
    assert one["call"] == [two["call"][0]] and one["rows"] == [3]  # the three requests ran as one call


def test_requests_that_cannot_merge_still_succeed_apart(gateway):
    documents = [body([1.0], "narrow-a", width=2), body([2.0], "wide", width=3), body([3.0], "narrow-b", width=2)]
    results = burst_behind_a_busy_worker(gateway, "probe", documents)
    narrow_a, wide, narrow_b = (outputs_of(results[k]) for k in ("narrow-a", "wide", "narrow-b"))
    assert wide["y"] == [4.0, 4.0, 4.0] and narrow_a["y"] == [2.0, 2.0] and narrow_b["y"] == [6.0, 6.0]
    assert narrow_a["call"] == narrow_b["call"] != wide["call"]
    assert narrow_a["rows"] == [2]


def test_requests_of_several_inputs_merge_when_their_first_dimensions_agree(gateway):
    def two_inputs(request_id: str, value: float, z_rows: int) -> dict:
        document = body([value], request_id)
        document["inputs"].append({"name": "z", "datatype": "INT8", "shape": [z_rows, 1], "data": [[0]] * z_rows})
        return document

    # the probe reads x; z comes along. "apart" has one row of x but two of z: no batch axis to merge on
    documents = [two_inputs("a", 1.0, 1), two_inputs("b", 2.0, 1), two_inputs("apart", 3.0, 2), two_inputs("c", 4.0, 1)]
    results = burst_behind_a_busy_worker(gateway, "probe", documents)
    merged = {key: outputs_of(results[key]) for key in ("a", "b", "c")}
    assert [merged[key]["y"] for key in ("a", "b", "c")] == [[2.0, 2.0], [4.0, 4.0], [8.0, 8.0]]
    assert {merged[key]["call"][0] for key in merged} == {merged["a"]["call"][0]} and merged["a"]["rows"] == [3]
    apart = outputs_of(results["apart"])
    assert apart["y"] == [6.0, 6.0] and apart["rows"] == [1] and apart["call"] != merged["a"]["call"]


def test_a_runtime_error_fails_its_batch_and_nothing_else(gateway):
    documents = [body([1.0], "good-1"), body([-1.0], "bad"), body([2.0], "good-2"), body([5.0], "other-shape", width=3)]
    results = burst_behind_a_busy_worker(gateway, "probe", documents)
    for key in ("good-1", "bad", "good-2"):
        assert results[key].status_code == 500
        assert results[key].json() == {"error": "ValueError: negative input"}
    assert outputs_of(results["other-shape"])["y"] == [10.0, 10.0, 10.0]
    assert outputs_of(results["blocker"])["y"] == [0.0, 0.0]
    assert_probe_serves_large(gateway, "probe")


def test_a_lone_request_does_not_wait_without_max_batch_time(gateway):
    # max_batch_size 8 and no max_batch_time: had the request waited for company (for a full
    # batch, or for any time at all), the client would time out
    response = requests.post(f"{gateway.url}/v2/models/probe/infer", data=json.dumps(body([4.0], "alone")), timeout=10)
    assert outputs_of(response)["rows"] == [1]


def test_with_max_batch_time_a_batch_waits_for_max_batch_size_requests(gateway):
    # the worker is idle: the first request waits at the gateway (queued, in flight, no call of the
    # model) until three more have come, and the four leave as one call of four rows
    before = gateway.log_text().count("probe call")
    results: dict = {}
    first = threading.Thread(target=call, args=(gateway, "gathering", body([0.0], "first"), results, "first"))
    first.start()
    gateway.wait_for(lambda: inflight(gateway, "gathering") == 1, timeout=10, what="the first request to queue")
    assert gateway.log_text().count("probe call") == before  # it is waiting, not running
    threads = [threading.Thread(target=call, args=(gateway, "gathering", body([float(i)], f"req-{i}"), results, i)) for i in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in [first, *threads]:
        thread.join()
    answers = [outputs_of(results[key]) for key in ("first", 1, 2, 3)]
    assert [a["rows"] for a in answers] == [[4]] * 4
    assert len({a["call"][0] for a in answers}) == 1
    assert [a["y"] for a in answers] == [[0.0, 0.0], [2.0, 2.0], [4.0, 4.0], [6.0, 6.0]]


def test_with_max_batch_time_a_partial_batch_leaves_when_its_time_is_up(gateway):
    # max_batch_time 0.1 s, max_batch_size 4: a lone request waits, then leaves alone
    response = requests.post(f"{gateway.url}/v2/models/brief/infer", data=json.dumps(body([4.0], "alone")), timeout=10)
    assert outputs_of(response)["rows"] == [1]
    assert_probe_serves_large(gateway, "brief")


def test_a_lone_request_goes_to_an_idle_worker_while_its_sibling_is_busy(gateway, tmp_path):
    # the first call holds its worker until the second call has started: had the lone second
    # request waited for company the first would give up and fail
    started = tmp_path / "second-call-started"
    before = gateway.log_text().count("probe call")
    results: dict = {}
    first = threading.Thread(target=call, args=(gateway, "pair", body([1.0], "first", await_file=str(started)), results, "first"))
    first.start()
    gateway.wait_for(lambda: gateway.log_text().count("probe call") > before, what="the first call to start")
    call(gateway, "pair", body([2.0], "second", create_file=str(started)), results, "second")
    first.join()
    assert outputs_of(results["first"]) == {"y": [2.0, 2.0], "call": [1], "rows": [1]}
    assert outputs_of(results["second"]) == {"y": [4.0, 4.0], "call": [1], "rows": [1]}  # the other worker's first call, alone


def test_outputs_that_ignore_the_batch_axis_are_a_clear_error(gateway):
    results: dict = {}
    document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    threads = [threading.Thread(target=call, args=(gateway, "summary", document, results, i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results.values())
    # the first call ran alone and is fine; the others queued behind it and were merged
    assert statuses[0] == 200
    merged = [r for r in results.values() if r.status_code != 200]
    assert merged and all("do not follow the batch axis" in r.json()["error"] for r in merged)
    # alone, it is fine: one number, the sum of its input
    assert_serves_large(gateway, "summary", expect=lambda inputs: {"sum": np.array([inputs["x"].sum()], dtype=np.float64)})
