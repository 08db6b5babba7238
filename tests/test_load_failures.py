"""A model whose load() fails is not ready, says why, and takes nothing else down."""

import pytest
import requests

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def gateway(start_gateway):
    gateway = start_gateway(ROOT / "tests" / "repo-faults").wait_ready(["echo"])
    for model in ("broken-load", "false-load"):
        gateway.wait_for(lambda: requests.get(f"{gateway.url}/v2/models/{model}/ready").json()["state"] == "UNAVAILABLE")
    return gateway


@pytest.mark.parametrize(
    "model, reason",
    [("broken-load", "FileNotFoundError: weights.bin is missing"), ("false-load", "load() returned False")],
)
def test_failed_load_is_unavailable_with_its_reason(gateway, model, reason):
    response = requests.get(f"{gateway.url}/v2/models/{model}/ready")
    assert response.status_code == 503
    assert response.json() == {"name": model, "ready": False, "state": "UNAVAILABLE", "reason": reason}
    infer = requests.post(f"{gateway.url}/v2/models/{model}/infer", json={"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]})
    assert infer.status_code == 503
    assert reason in infer.json()["error"]
    assert reason in gateway.log_text()
    # its metadata still comes from its model-settings.json
    metadata = requests.get(f"{gateway.url}/v2/models/{model}")
    assert metadata.status_code == 200 and metadata.json()["name"] == model


def test_server_not_ready_but_other_models_serve(gateway):
    response = requests.get(f"{gateway.url}/v2/health/ready")
    assert (response.status_code, response.json()) == (503, {"ready": False})
    assert requests.get(f"{gateway.url}/v2/health/live").json() == {"live": True}
    answer = requests.post(f"{gateway.url}/v2/models/echo/infer", json={"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [4]}]})
    assert answer.json()["outputs"][0]["data"] == [4]
