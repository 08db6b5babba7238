"""Metrics, statistics and logs, through a real gateway and its worker processes.

Each test sends its requests to models of its own, so the exact values it
checks do not depend on the order the tests run in."""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from gateway.settings import ServerSettings
from tests.conftest import SHARED_MEMORY_BYTES, assert_serves_large
from tests.test_worker_plane import workers_of, write_repository

ECHO = {"implementation": "tests.runtimes.Echo"}
MODELS = {
    "echo": ECHO,
    "failing": {"implementation": "tests.runtimes.Failing"},
    "burst": {"implementation": "tests.runtimes.BatchProbe", "max_batch_size": 4},
    "scored": {"implementation": "tests.runtimes.Scored", "parallel_workers": 2},
    "stats-echo": ECHO,
    "logged": {"implementation": "tests.runtimes.Failing"},
    "logged-batch": {"implementation": "tests.runtimes.BatchProbe", "max_batch_size": 4},
    "versioned-1": {"name": "versioned", "implementation": "tests.runtimes.Versioned", "parameters": {"version": "1"}},
    "versioned-2": {"name": "versioned", "implementation": "tests.runtimes.Versioned", "parameters": {"version": "2"}},
}
LOADED = [
    ("echo", ""),
    ("failing", ""),
    ("burst", ""),
    ("scored", ""),
    ("stats-echo", ""),
    ("logged", ""),
    ("logged-batch", ""),
    ("versioned", "1"),
    ("versioned", "2"),
]


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = tmp_path_factory.mktemp("repository")
    for folder, settings in MODELS.items():
        write_repository(repository, {folder: {"name": folder, **settings}})
    # no heartbeat while the module runs: what a worker reports must come with the message it belongs to
    # (a reply, READY), not with a later ping's answer
    gateway = start_gateway(repository, log_format="json", metrics_on_http=True, restart_backoff=0.1, heartbeat_interval=600, heartbeat_timeout=3600)
    return gateway.wait_ready()


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """sample name -> {labels (sorted (name, value) pairs): value}, parsed by prometheus-client."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[labels(**sample.labels)] = sample.value
    return samples


def labels(**values: str) -> tuple:
    return tuple(sorted(values.items()))


def metrics_of(gateway) -> dict[str, dict[tuple, float]]:
    return scrape(f"http://127.0.0.1:{gateway.metrics_port}/metrics")


def infer(gateway, model: str, data: list, request_id: str | None = None, **extra) -> requests.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(data)], "data": data}], **extra}
    if request_id:
        body["id"] = request_id
    return requests.post(f"{gateway.url}/v2/models/{model}/infer", json=body, timeout=30)


def grpc_input(values) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("x", [len(values)], "FP32")
    tensor.set_data_from_numpy(np.array(values, dtype=np.float32))
    return tensor


def only_models(samples: dict[tuple, float], models: set[str]) -> dict[tuple, float]:
    return {key: value for key, value in samples.items() if dict(key)["model"] in models}


# --- Prometheus metrics


def test_metrics_after_a_known_sequence(gateway):
    # REST: 3 successes, a malformed body, an unknown model, 2 runtime failures
    for value in (1, 2, 3):
        assert infer(gateway, "echo", [value]).status_code == 200
    assert requests.post(f"{gateway.url}/v2/models/echo/infer", data=b"{not json", timeout=10).status_code == 400
    assert infer(gateway, "nope", [1]).status_code == 404
    assert [infer(gateway, "failing", [1]).status_code for _ in range(2)] == [500, 500]

    # gRPC: 2 unary successes, a runtime failure, an unknown model, and a stream of 2
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    for value in (1, 2):
        client.infer("echo", [grpc_input([value])])
    for model, code in (("failing", "StatusCode.INTERNAL"), ("nope", "StatusCode.NOT_FOUND")):
        with pytest.raises(Exception, match=code):
            client.infer(model, [grpc_input([1])])
    answers: list = []
    client.start_stream(callback=lambda result, error: answers.append(error or result))
    for value in (1, 2):
        client.async_stream_infer("echo", [grpc_input([value])])
    client.stop_stream()  # waits for the answers
    assert len(answers) == 2 and all(isinstance(a, grpcclient.InferResult) for a in answers)
    client.close()

    # a burst of 8 concurrent requests to one worker: while the first one runs (0.3 s), the others queue and leave in batches
    with ThreadPoolExecutor(8) as pool:
        burst = pool.map(lambda v: infer(gateway, "burst", [v], parameters={"delay": 0.3}), range(8))
        assert [r.status_code for r in burst] == [200] * 8

    # a worker restart, then a request whose tensors go through shared memory (64 KiB in, 64 KiB out)
    (worker,) = workers_of(gateway, "echo")
    os.kill(worker, signal.SIGKILL)
    echo = labels(model="echo", version="")
    gateway.wait_for(
        lambda: (
            (m := metrics_of(gateway))["gateway_worker_restarts_total"][echo] == 1
            and m["gateway_model_state"][labels(model="echo", version="", state="READY")] == 1
        ),
        what="the echo worker's replacement",
    )
    assert infer(gateway, "echo", [0.5] * 16384).status_code == 200

    found = metrics_of(gateway)

    def request_key(model: str, protocol: str, outcome: str) -> tuple:
        return labels(model=model, version="", protocol=protocol, outcome=outcome)

    def model_key(model: str, **extra: str) -> tuple:
        return labels(model=model, version="", **extra)

    # every loaded model has its full label set from the start, and a request for an unknown model counts as model ""
    requests_total = found["gateway_requests_total"]
    assert set(requests_total) == {
        labels(model=m, version=v, protocol=p, outcome=o)
        for m, v in LOADED + [("", "")]
        for p in ("rest", "grpc")
        for o in ("success", "client_error", "server_error", "cancelled", "deadline_exceeded")
    }
    ours = {"echo", "failing", "burst", ""}
    assert nonzero(only_models(requests_total, ours)) == {
        request_key("echo", "rest", "success"): 4,
        request_key("echo", "rest", "client_error"): 1,
        request_key("echo", "grpc", "success"): 4,
        request_key("failing", "rest", "server_error"): 2,
        request_key("failing", "grpc", "server_error"): 1,
        request_key("burst", "rest", "success"): 8,
        request_key("", "rest", "client_error"): 1,
        request_key("", "grpc", "client_error"): 1,
    }
    # one latency observation per request
    assert nonzero(only_models(found["gateway_request_duration_seconds_count"], ours)) == {
        model_key("echo", protocol="rest"): 5,
        model_key("echo", protocol="grpc"): 4,
        model_key("failing", protocol="rest"): 2,
        model_key("failing", protocol="grpc"): 1,
        model_key("burst", protocol="rest"): 8,
        model_key("", protocol="rest"): 1,
        model_key("", protocol="grpc"): 1,
    }
    # requests that reached a model's queue; worker calls; successful calls timed in the worker
    assert nonzero(only_models(found["gateway_queue_duration_seconds_count"], ours)) == {
        model_key("echo"): 8,
        model_key("failing"): 3,
        model_key("burst"): 8,
    }
    statistics = {s["name"]: s for s in requests.get(f"{gateway.url}/v2/models/stats", timeout=10).json()["model_stats"]}
    burst_calls = statistics["burst"]["execution_count"]
    assert 3 <= burst_calls < 8  # batches of up to 4 formed
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in statistics["burst"]["batch_stats"]) == 8
    assert nonzero(only_models(found["gateway_batch_size_count"], ours)) == {model_key("echo"): 8, model_key("failing"): 3, model_key("burst"): burst_calls}
    assert nonzero(only_models(found["gateway_batch_size_sum"], ours)) == {model_key("echo"): 8, model_key("failing"): 3, model_key("burst"): 8}
    assert nonzero(only_models(found["gateway_inference_duration_seconds_count"], ours)) == {model_key("echo"): 8, model_key("burst"): burst_calls}
    assert found["gateway_inference_duration_seconds_sum"][model_key("echo")] > 0
    # histogram buckets are cumulative and end with every observation
    assert found["gateway_queue_duration_seconds_bucket"][model_key("echo", le="+Inf")] == 8

    assert set(found["gateway_inflight_requests"].values()) == {0}
    assert nonzero(found["gateway_worker_restarts_total"]) == {model_key("echo"): 1}
    assert found["gateway_model_state"] == {
        labels(model=m, version=v, state=state): float(state == "READY") for m, v in LOADED for state in ("READY", "UNAVAILABLE", "LOADING", "UNLOADING")
    }
    # the new echo worker's arenas hold exactly the 64 KiB written into each; the others wrote nothing there
    assert nonzero(found["gateway_shared_memory_bytes"]) == {model_key("echo"): 2 * 65536}
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def nonzero(samples: dict[tuple, float]) -> dict[tuple, float]:
    return {key: value for key, value in samples.items() if value}


def test_metrics_are_also_on_the_http_port_when_configured(gateway):
    on_http = scrape(f"{gateway.url}/metrics")
    assert set(on_http) == set(metrics_of(gateway))


# --- custom metrics from runtimes


def test_custom_metrics_from_a_runtime(gateway):
    scored = labels(model="scored", version="")
    assert infer(gateway, "scored", [1, 2, 3]).status_code == 200
    # what predict() logged came with its reply (this gateway sends no heartbeat to carry it later)
    assert metrics_of(gateway)["test_input_elements_sum"] == {scored: 3}
    assert infer(gateway, "scored", [1, 2, 3, 4, 5]).status_code == 200
    assert infer(gateway, "scored", [-1, -2]).status_code == 500  # logged, then failed: still counted
    response = requests.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics", timeout=10)
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["test_input_elements"].type == "histogram"
    assert families["test_input_elements"].documentation == "Elements in the request's first input"
    assert families["test_loads"].documentation == "Custom metric test_loads"  # logged without registering
    found = metrics_of(gateway)
    assert found["test_input_elements_count"] == {scored: 3}
    assert found["test_input_elements_sum"] == {scored: 10}
    assert found["test_input_elements_bucket"][labels(model="scored", version="", le="2.5")] == 1
    # logged in load(), outside any request, by each of the two worker processes: each came with its READY
    assert found["test_loads_count"] == {scored: 2}
    large = {"x": np.ones(SHARED_MEMORY_BYTES // 4, dtype=np.float32)}
    assert_serves_large(gateway, "scored", large, expect=lambda inputs: {"n": np.array([inputs["x"].size], dtype=np.int64)})


def test_the_metrics_sdk_checks_names_and_values():
    with pytest.raises(ValueError, match="invalid metric name"):
        metrics.register("no-dashes", "x")
    with pytest.raises(ValueError, match="invalid metric name"):
        metrics.register("gateway_mine", "the gateway's own prefix")
    with pytest.raises(TypeError, match="not a number"):
        metrics.log(sdk_check="3")
    metrics.register("sdk_check", "checked")
    metrics.register("sdk_check", "a second registration is ignored")
    metrics.log(sdk_check=np.float32(2.5))
    metrics.log(sdk_check=1)
    assert metrics.take_report() == {"register": {"sdk_check": "checked"}, "log": {"sdk_check": [2.5, 1.0]}}
    assert metrics.take_report() == {}


# --- the statistics extension


def test_statistics_over_rest_and_grpc(gateway):
    before_ms = time.time_ns() // 1_000_000
    for value in (1, 2, 3):
        assert infer(gateway, "stats-echo", [value]).status_code == 200
    # a request the worker refuses: it failed after reaching the model
    assert infer(gateway, "stats-echo", [1], outputs=[{"name": "nope"}]).status_code == 400
    http = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    (stats,) = http.get_inference_statistics("stats-echo")["model_stats"]
    assert before_ms <= stats["last_inference"] <= time.time_ns() // 1_000_000
    assert (stats["name"], stats["version"], stats["inference_count"], stats["execution_count"]) == ("stats-echo", "", 3, 3)
    counts = {stage: duration["count"] for stage, duration in stats["inference_stats"].items()}
    assert counts == {"success": 3, "fail": 1, "queue": 4, "compute_input": 3, "compute_infer": 3, "compute_output": 3}
    ns = {stage: duration["ns"] for stage, duration in stats["inference_stats"].items()}
    assert all(ns.values())
    # the worker's stages happen inside the requests' time in the gateway
    assert ns["success"] > ns["compute_input"] + ns["compute_infer"] + ns["compute_output"]
    (batch,) = stats["batch_stats"]
    assert batch["batch_size"] == 1 and batch["compute_infer"] == stats["inference_stats"]["compute_infer"]

    # gRPC answers the same (tritonclient gives uint64 as strings in JSON)
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    (over_grpc,) = client.get_inference_statistics("stats-echo", as_json=True)["model_stats"]
    assert int(over_grpc["inference_count"]) == 3 and int(over_grpc["inference_stats"]["fail"]["count"]) == 1
    assert int(over_grpc["inference_stats"]["success"]["ns"]) == ns["success"]

    # all versions of a model, one version, every model; unknown ones
    assert [s["version"] for s in http.get_inference_statistics("versioned")["model_stats"]] == ["1", "2"]
    assert [s["version"] for s in http.get_inference_statistics("versioned", "2")["model_stats"]] == ["2"]
    assert {(s["name"], s["version"]) for s in http.get_inference_statistics()["model_stats"]} == set(LOADED)
    assert len(client.get_inference_statistics().model_stats) == len(LOADED)
    assert requests.get(f"{gateway.url}/v2/models/nope/stats", timeout=10).status_code == 404
    with pytest.raises(Exception, match="StatusCode.NOT_FOUND"):
        client.get_inference_statistics("versioned", "3")
    assert "statistics" in http.get_server_metadata()["extensions"]
    assert "statistics" in client.get_server_metadata().extensions
    http.close()
    client.close()
    assert_serves_large(gateway, "stats-echo")


# --- logs


def log_lines(gateway) -> list[dict]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]


def test_access_lines_and_the_request_id_across_processes(gateway):
    assert infer(gateway, "logged", [1], request_id="follow-me").status_code == 500
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    with pytest.raises(Exception, match="bad luck"):
        client.infer("logged", [grpc_input([1])], request_id="grpc-follow-me")
    client.close()

    def lines_of(request_id: str) -> list[dict]:
        return [line for line in log_lines(gateway) if line.get("request_id") == request_id]

    gateway.wait_for(lambda: any(line["logger"] == "gateway.access" for line in lines_of("grpc-follow-me")), what="the access lines")
    rest = lines_of("follow-me")
    # the worker's own log line of that request carries its id, and says which worker it is
    (raised,) = [line for line in rest if line["logger"] == "gateway.worker"]
    assert raised["message"] == "the runtime raised" and raised["worker"].startswith("logged:") and "bad luck" in raised["exception"]
    (access,) = [line for line in rest if line["logger"] == "gateway.access"]
    assert {k: access[k] for k in ("protocol", "method", "path", "status", "model", "version")} == {
        "protocol": "rest",
        "method": "POST",
        "path": "/v2/models/logged/infer",
        "status": 500,
        "model": "logged",
        "version": None,
    }
    assert access["latency_ms"] > 0
    (grpc_access,) = [line for line in lines_of("grpc-follow-me") if line["logger"] == "gateway.access"]
    assert (grpc_access["protocol"], grpc_access["method"], grpc_access["status"], grpc_access["model"]) == ("grpc", "ModelInfer", "INTERNAL", "logged")
    # requests that are not inferences get access lines too, without a request id
    requests.get(f"{gateway.url}/v2/health/live", timeout=10)
    gateway.wait_for(lambda: any(line.get("path") == "/v2/health/live" and "request_id" not in line for line in log_lines(gateway)))
    assert_serves_large(gateway, "logged", parameters={"succeed": True})


def test_a_batched_call_logs_every_request_id(gateway):
    started = "probe call 1 started"  # this model's worker's first call (the burst's worker prints the same)
    before = gateway.log_text().count(started)
    with ThreadPoolExecutor(3) as pool:
        # b0 holds the worker for 0.5 s; b1 and b2 arrive meanwhile and leave together, and fail together
        first = pool.submit(infer, gateway, "logged-batch", [1], "b0", parameters={"delay": 0.5})
        gateway.wait_for(lambda: gateway.log_text().count(started) > before, what="the first call")
        batched = [pool.submit(infer, gateway, "logged-batch", [-1], rid, parameters={"delay": 0.5}) for rid in ("b1", "b2")]
        assert first.result().status_code == 200 and [f.result().status_code for f in batched] == [500, 500]
    # ids compared whole: a generated id (a random hex prefix) may hold "b1" too
    (raised,) = [line for line in log_lines(gateway) if line["logger"] == "gateway.worker" and "b1" in line.get("request_id", "").split(",")]
    assert sorted(raised["request_id"].split(",")) == ["b1", "b2"] and raised["message"] == "the runtime raised"

    # each caller still has its own access line
    def access() -> dict:
        return {
            line["request_id"]: line["status"]
            for line in log_lines(gateway)
            if line["logger"] == "gateway.access" and line.get("path") == "/v2/models/logged-batch/infer"
        }

    # the access line is written once the response has been sent, so a client can be a little ahead of it
    gateway.wait_for(lambda: len(access()) == 3, timeout=10, what="three access lines")
    assert access() == {"b0": 200, "b1": 500, "b2": 500}
    assert_serves_large(gateway, "logged-batch", expect=lambda inputs: {"y": inputs["x"] * 2})


def test_log_settings():
    assert ServerSettings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(ValueError, match="unknown log level"):
        ServerSettings(log_level="loud")
    with pytest.raises(ValueError):
        ServerSettings(log_format="xml")
    defaults = ServerSettings()
    assert (defaults.log_format, defaults.access_log, defaults.metrics_port, defaults.metrics_on_http) == ("text", True, 8082, False)
