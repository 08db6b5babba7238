"""`ModelServer().start([models])` serves a KServe script through the gateway: a real script
(tests/kserve/script.py) in a subprocess, called with requests and tritonclient over V1 REST,
V2 REST (JSON and binary) and V2 gRPC; its workers forked from a fork server holding the
models the script loaded."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT, assert_serves_large

SCRIPT = Path(__file__).with_name("script.py")
WORKERS = 3
BIG = 64 * 1024 * 1024  # the "info" model's weights (script.BIG_MIB)


def script_command(*extra):
    def command(gateway):
        return [sys.executable, str(SCRIPT), "--http_port", str(gateway.http_port), "--grpc_port", str(gateway.grpc_port), *extra]

    return command


@pytest.fixture(scope="module")
def server(start_gateway):
    return start_gateway(ROOT, command=script_command("--workers", str(WORKERS)), drain_delay=0.5).wait_ready()


def _status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _memory(pid: int) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) * 1024
    return fields


def _info(server) -> dict:
    answer = requests.post(f"{server.url}/v1/models/info:predict", json={"instances": []}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_workers_are_forked_from_the_models_the_script_loaded(server):
    info = _info(server)
    fork_server = info["ppid"]
    # loaded once, by the script; started in the worker, after the fork
    assert (info["loaded_in"], info["load_calls"], info["started_in"], info["threads_at_start"]) == (server.process.pid, 1, info["pid"], 1)
    assert info["weights_sum"] == BIG // 8
    # the fork server is the script's child, and forks from one thread (no loop, nothing else running)
    assert int(_status(fork_server)["PPid"]) == server.process.pid
    assert _status(fork_server)["Threads"] == "1"
    assert info["pid"] in _children(fork_server) and len(_children(fork_server)) == 2 * WORKERS  # echo's and info's


def test_the_workers_share_the_loaded_weights(server):
    """Each worker holds the 64 MiB of weights without a copy: the whole forked tree costs about one."""
    fork_server = _info(server)["ppid"]
    tree = [fork_server, *_children(fork_server)]
    for pid in tree:
        private = _memory(pid)["Private_Clean"] + _memory(pid)["Private_Dirty"]
        assert private < BIG / 2, f"process {pid} holds {private} private bytes"
    # the weights once, and an interpreter's own memory per process (under 24 MiB); 7 copies without sharing
    assert sum(_memory(pid)["Pss"] for pid in tree) < BIG + len(tree) * 24 * 1024 * 1024 < len(tree) * BIG


def test_v1(server):
    assert requests.get(f"{server.url}/v1/models").json() == {"models": ["echo", "info"]}
    assert requests.get(f"{server.url}/v1/models/echo").json() == {"name": "echo", "ready": True}
    missing = requests.get(f"{server.url}/v1/models/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Model with name nope does not exist."})
    rows = [[1, 2.5], [3, 4]]
    answer = requests.post(f"{server.url}/v1/models/echo:predict", json={"instances": rows}, headers={"X-Probe": "p1"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": rows, "probe": "p1"}
    assert answer.headers["x-echo"] == "yes" and answer.headers["content-type"] == "application/json"
    malformed = requests.post(f"{server.url}/v1/models/echo:predict", data=b'{"instances": [', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"].startswith("Unrecognized request format: ")
    unknown_verb = requests.post(f"{server.url}/v1/models/echo:train", json={})
    assert unknown_verb.status_code == 404
    no_explainer = requests.post(f"{server.url}/v1/models/echo:explain", json={"instances": rows})
    assert no_explainer.status_code == 501
    # a large V1 body goes through shared memory both ways
    large = np.arange(8192, dtype=np.float64).reshape(1024, 8).tolist()
    assert requests.post(f"{server.url}/v1/models/echo:predict", json={"instances": large}).json()["predictions"] == large


def test_v2_rest_json_and_binary_and_grpc(server):
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    text = np.array([b"caf\xc3\xa9", b"tea"], dtype=object)
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    inputs = [httpclient.InferInput("x", [4, 6], "FP32"), httpclient.InferInput("text", [2], "BYTES")]
    inputs[0].set_data_from_numpy(x, binary_data=True)
    inputs[1].set_data_from_numpy(text, binary_data=True)
    result = client.infer("echo", inputs, headers={"x-probe": "binary"})
    np.testing.assert_array_equal(result.as_numpy("x"), x)
    assert result.as_numpy("text").tolist() == text.tolist()
    assert result.get_response()["parameters"] == {"probe": "binary"}

    body = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    answer = requests.post(f"{server.url}/v2/models/echo/infer", json=body, headers={"x-probe": "json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [{"name": "x", "datatype": "INT64", "shape": [2, 2], "data": [1, 2, 3, 4]}]
    assert answer.json()["parameters"] == {"probe": "json"} and answer.headers["x-echo"] == "yes"

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("x", [4, 6], "FP32")
    tensor.set_data_from_numpy(x)
    result = grpc.infer("echo", [tensor], headers={"x-probe": "grpc"})
    np.testing.assert_array_equal(result.as_numpy("x"), x)
    assert result.get_response().parameters["probe"].string_param == "grpc"


def test_as_string_gives_the_strings_of_a_bytes_input_as_it_arrived(server):
    """`InferInput.as_string()` in a served model, over REST binary, REST JSON and gRPC: it read the
    list a worker's input makes only when first asked for, and so found no strings at all."""
    words = np.array([f"caf\u00e9 {i}".encode() for i in range(4096)], dtype=object)  # 45 KiB: through shared memory
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("text", [len(words)], "BYTES")
    tensor.set_data_from_numpy(words, binary_data=True)
    assert client.infer("echo", [tensor], parameters={"as_string": True}).as_numpy("text").tolist() == words.tolist()

    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["caf\u00e9", "tea"]}], "parameters": {"as_string": True}}
    answer = requests.post(f"{server.url}/v2/models/echo/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == ["caf\u00e9", "tea"]

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("text", [len(words)], "BYTES")
    tensor.set_data_from_numpy(words)
    assert grpc.infer("echo", [tensor], parameters={"as_string": True}).as_numpy("text").tolist() == words.tolist()


@pytest.mark.parametrize(
    "error, status, code, message",
    [
        ("InvalidInput", 400, "INVALID_ARGUMENT", "asked to raise InvalidInput"),
        ("InferenceError", 500, "INVALID_ARGUMENT", "asked to raise InferenceError"),
        ("ModelNotReady", 503, "UNAVAILABLE", "Model with name scaler is not ready."),
        ("UnsupportedProtocol", 501, "INVALID_ARGUMENT", "Unsupported protocol asked to raise UnsupportedProtocol."),
        ("NotImplementedError", 501, "UNIMPLEMENTED", "asked to raise NotImplementedError"),
        ("ValueError", 500, "INTERNAL", "ValueError : asked to raise ValueError"),
    ],
)
def test_errors_keep_kserve_statuses_over_rest_and_grpc(server, error, status, code, message):
    v1 = requests.post(f"{server.url}/v1/models/echo:predict", json={"instances": [], "raise": error})
    assert (v1.status_code, v1.json()) == (status, {"error": message})
    body = {"parameters": {"raise": error}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}
    v2 = requests.post(f"{server.url}/v2/models/echo/infer", json=body)
    assert (v2.status_code, v2.json()) == (status, {"error": message})
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("x", [1], "FP32")
    tensor.set_data_from_numpy(np.ones(1, dtype=np.float32))
    with pytest.raises(InferenceServerException) as raised:
        grpc.infer("echo", [tensor], parameters={"raise": error})
    assert (raised.value.status(), raised.value.message()) == (f"StatusCode.{code}", message)
    assert_serves_large(server, "echo")


@pytest.mark.parametrize(
    "hazard, reason", [("thread", "1 thread(s) besides the main one are running (model-poller)"), ("loop", "an asyncio event loop is running")]
)
def test_start_refuses_to_fork_with_a_thread_or_a_loop_running(hazard, reason):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--http_port", "0", "--grpc_port", "0", "--hazard", hazard],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode != 0
    assert "ModelServer.start() forks the model workers from this process, which cannot be done safely now" in done.stderr
    assert reason in done.stderr


def test_sigterm_stops_the_workers_and_the_fork_server(server):
    """Last: stops the module's server."""
    fork_server = _info(server)["ppid"]
    tree = [fork_server, *_children(fork_server)]
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    for pid in tree:
        assert not Path(f"/proc/{pid}").exists() or _status(pid)["State"].startswith("Z"), f"process {pid} is left running"
