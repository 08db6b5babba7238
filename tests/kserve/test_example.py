"""The README's "Coming from KServe" script (examples/kserve_model.py), run as it is documented and
called as a KServe user would: V1 REST, V2 REST (JSON, and binary with tritonclient.http), V2 gRPC
(tritonclient.grpc)."""

import sys

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.conftest import ROOT, assert_serves_large

SCRIPT = ROOT / "examples" / "kserve_model.py"
ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 8.0]]


@pytest.fixture(scope="module")
def server(start_gateway):
    def command(gateway):
        ports = ["--http_port", str(gateway.http_port), "--grpc_port", str(gateway.grpc_port)]
        return [sys.executable, str(SCRIPT), "--model_name", "scaler", "--workers", "2", "--factor", "3", *ports]

    return start_gateway(ROOT, command=command, drain_delay=0.5).wait_ready()


def test_v1_rest(server):
    answer = requests.post(f"{server.url}/v1/models/scaler:predict", json={"instances": ROWS}, headers={"x-request-id": "r-1"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": (np.array(ROWS) * 3).tolist()}
    assert (answer.headers["x-scaled-by"], answer.headers["x-request-id"]) == ("3.0", "r-1")
    assert requests.get(f"{server.url}/v1/models/scaler").json() == {"name": "scaler", "ready": True}


def test_v2_rest_json(server):
    body = {"inputs": [{"name": "rows", "datatype": "FP32", "shape": [2, 4], "data": ROWS}]}
    answer = requests.post(f"{server.url}/v2/models/scaler/infer", json=body)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("scaled", "FP32", [2, 4])
    assert output["data"] == (np.array(ROWS) * 3).ravel().tolist()
    assert answer.headers["x-scaled-by"] == "3.0"


def test_v2_rest_binary_and_grpc(server):
    rows = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("rows", [1000, 4], "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    result = client.infer("scaler", [tensor], outputs=[httpclient.InferRequestedOutput("scaled", binary_data=True)])
    np.testing.assert_array_equal(result.as_numpy("scaled"), rows * 3)

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("rows", [1000, 4], "FP32")
    tensor.set_data_from_numpy(rows)
    np.testing.assert_array_equal(grpc.infer("scaler", [tensor]).as_numpy("scaled"), rows * 3)


def test_bad_rows_are_the_clients_fault(server):
    answer = requests.post(f"{server.url}/v1/models/scaler:predict", json={"instances": [[1, 2, 3]]})
    assert (answer.status_code, answer.json()) == (400, {"error": "expected rows of 4 features, got shape [1, 3]"})
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("rows", [2, 3], "FP32")
    tensor.set_data_from_numpy(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(Exception, match="expected rows of 4 features") as raised:
        grpc.infer("scaler", [tensor])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    rows = np.arange(4096 * 4, dtype=np.float32).reshape(4096, 4)
    assert_serves_large(server, "scaler", {"rows": rows}, expect=lambda inputs: {"scaled": inputs["rows"] * 3})
