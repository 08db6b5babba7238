"""A model whose load() fails is not ready, says why, and takes nothing else down."""

import os

import pytest
import requests

from gateway.control.table import TableReader
from gateway.types import State
from tests.conftest import ROOT, assert_serves_large


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


def test_a_front_door_in_another_process_reads_what_the_gateway_answers(gateway):
    """The model table the gateway publishes for its other front doors (control/table.py), opened
    here as a front door given it would, through the gateway's own descriptor of it: it says what
    the gateway answers over REST, failed loads included, and a repository operation's result is in
    it as soon as the operation has answered."""
    fds = f"/proc/{gateway.process.pid}/fd"
    (table_fd,) = {os.readlink(f"{fds}/{fd}"): fd for fd in os.listdir(fds) if os.readlink(f"{fds}/{fd}").startswith("/memfd:gateway-models")}.values()
    fd = os.open(f"{fds}/{table_fd}", os.O_RDONLY)
    reader = TableReader(fd)
    try:
        assert reader.index() == requests.post(f"{gateway.url}/v2/repository/index", json={}).json()
        assert reader.ready is False and requests.get(f"{gateway.url}/v2/health/ready").status_code == 503
        for model in ("echo", "broken-load", "false-load"):
            view = reader.get(model)
            assert view.model_metadata() == requests.get(f"{gateway.url}/v2/models/{model}").json()
            ready = requests.get(f"{gateway.url}/v2/models/{model}/ready").json()
            assert (view.state.value, view.reason) == (ready.get("state", "READY"), ready.get("reason", ""))  # READY says only ready
        assert requests.post(f"{gateway.url}/v2/repository/models/echo/unload").status_code == 200
        assert (reader.get("echo").state, reader.get("echo").reason) == (State.UNAVAILABLE, "unloaded")
        assert requests.post(f"{gateway.url}/v2/repository/models/echo/load").status_code == 200
        assert reader.get("echo").state == State.READY
    finally:
        reader.close()
        os.close(fd)
    assert_serves_large(gateway, "echo")
