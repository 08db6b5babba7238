"""Transformer mode between real servers: tests/kserve/transformer.py (preprocess x10, no predict)
in front of the README's example script as its predictor (x3), over each predictor protocol:
v1 (REST V1), v2 (REST V2, binary tensors), grpc-v2 (gRPC)."""

import sys

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.conftest import ROOT, assert_serves_large

PREDICTOR = ROOT / "examples" / "kserve_model.py"
TRANSFORMER = ROOT / "tests" / "kserve" / "transformer.py"
ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 8.0]]


def _ports(gateway):
    return ["--http_port", str(gateway.http_port), "--grpc_port", str(gateway.grpc_port)]


@pytest.fixture(scope="module")
def servers(start_gateway):
    predictor = start_gateway(
        ROOT, command=lambda g: [sys.executable, str(PREDICTOR), "--model_name", "scaler", "--factor", "3", *_ports(g)], drain_delay=0.5
    ).wait_ready()

    def transformer(protocol: str, host: str, *extra):
        command = [sys.executable, str(TRANSFORMER), "--model_name", "scaler", "--predictor_protocol", protocol, "--predictor_host", host, *extra]
        return start_gateway(ROOT, command=lambda g: [*command, *_ports(g)], drain_delay=0.5)

    rest_host, grpc_host = predictor.url.removeprefix("http://"), predictor.grpc_url
    started = {
        "v1": transformer("v1", rest_host, "--explainer_host", rest_host),
        "v2": transformer("v2", rest_host),
        "grpc-v2": transformer("grpc-v2", grpc_host),
    }
    return {protocol: server.wait_ready() for protocol, server in started.items()}


def test_v1_transformer(servers):
    answer = requests.post(f"{servers['v1'].url}/v1/models/scaler:predict", json={"instances": ROWS})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": (np.array(ROWS) * 30).tolist(), "transformed": True}
    assert answer.headers["x-scaled-by"] == "3.0"  # the predictor's answer headers come along


def test_v2_transformer_over_binary_rest(servers):
    rows = np.random.default_rng(1).normal(size=(4096, 4)).astype(np.float32)
    client = httpclient.InferenceServerClient(servers["v2"].url.removeprefix("http://"))
    tensor = httpclient.InferInput("rows", [4096, 4], "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    result = client.infer("scaler", [tensor], outputs=[httpclient.InferRequestedOutput("scaled", binary_data=True)])
    np.testing.assert_allclose(result.as_numpy("scaled"), rows * 30, rtol=1e-6)
    assert result.get_response()["parameters"] == {"transformed": True}


def test_grpc_v2_transformer(servers):
    rows = np.array(ROWS, dtype=np.float32)
    grpc = grpcclient.InferenceServerClient(servers["grpc-v2"].grpc_url)
    tensor = grpcclient.InferInput("rows", [2, 4], "FP32")
    tensor.set_data_from_numpy(rows)
    result = grpc.infer("scaler", [tensor])
    np.testing.assert_allclose(result.as_numpy("scaled"), rows * 30)
    assert result.get_response().parameters["transformed"].bool_param is True


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc-v2"])
def test_the_predictors_refusal_keeps_its_status(servers, protocol):
    server = servers[protocol]
    if protocol == "v1":
        answer = requests.post(f"{server.url}/v1/models/scaler:predict", json={"instances": [[1, 2, 3]]})
    else:
        body = {"inputs": [{"name": "rows", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
        answer = requests.post(f"{server.url}/v2/models/scaler/infer", json=body)
    assert answer.status_code == 400, answer.text
    assert "expected rows of 4 features, got shape [1, 3]" in answer.json()["error"]
    rows = np.arange(4096 * 4, dtype=np.float32).reshape(4096, 4)
    if protocol != "v1":
        assert_serves_large(server, "scaler", {"rows": rows}, expect=lambda inputs: {"scaled": inputs["rows"] * 30})


def test_explain_goes_to_the_explainer(servers):
    """The example has no explainer: its 501 comes back through the transformer's explain."""
    answer = requests.post(f"{servers['v1'].url}/v1/models/scaler:explain", json={"instances": ROWS})
    assert answer.status_code == 501, answer.text
    assert "answered 501: model 'scaler' has no explainer" in answer.json()["error"]
