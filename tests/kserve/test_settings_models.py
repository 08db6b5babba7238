"""KServe models named by `implementation` in model-settings.json, beside MLModel runtimes in one
folder, and `load_once` (load in a fork server, fork the workers) for both kinds."""

import json
import re
import textwrap
from pathlib import Path

import pytest
import requests

from tests.conftest import assert_serves_large

KSERVE_MODEL = """
import os
import threading

import numpy as np
from gateway.kserve import InferOutput, InferResponse, Model


class Doubler(Model):
    def load(self):
        self.loaded_in = os.getpid()
        self.ready = True
        return True

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, dict):
            return {"predictions": [2 * x for x in payload["instances"]], "pid": os.getpid(), "ppid": os.getppid(), "loaded_in": self.loaded_in}
        x = payload.inputs[0].as_numpy()
        output = InferOutput(payload.inputs[0].name, list(x.shape), payload.inputs[0].datatype)
        output.set_data_from_numpy(x * 2)
        return InferResponse(payload.id, self.name, [output])


class Threaded(Doubler):
    def load(self):
        threading.Thread(target=threading.Event().wait, name="poller", daemon=True).start()
        return super().load()
"""

MLMODEL = """
import os

from gateway import MLModel
from gateway.codecs import NumpyCodec
from gateway.types import InferenceResponse


class Echo(MLModel):
    async def load(self):
        self.loaded_in = os.getpid()
        return True

    async def predict(self, payload):
        x = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        parameters = {"pid": os.getpid(), "loaded_in": self.loaded_in}
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output(payload.inputs[0].name, x)], parameters=parameters)
"""

MODELS = {
    "kserve-doubler": {"implementation": "models.Doubler"},
    "kserve-doubler-once": {"implementation": "models.Doubler", "load_once": True, "parallel_workers": 2},
    "mlmodel-echo": {"implementation": "runtime.Echo"},
    "mlmodel-echo-once": {"implementation": "runtime.Echo", "load_once": True, "parallel_workers": 2},
    "kserve-threaded-once": {"implementation": "models.Threaded", "load_once": True},
}


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    for name, settings in MODELS.items():
        (folder / name).mkdir()
        (folder / name / "model-settings.json").write_text(json.dumps({"name": name, **settings}))
        (folder / name / "models.py").write_text(textwrap.dedent(KSERVE_MODEL))
        (folder / name / "runtime.py").write_text(textwrap.dedent(MLMODEL))
    return start_gateway(folder, drain_delay=0.5).wait_ready([name for name in MODELS if "threaded" not in name])


def _ppid(pid: int) -> int:
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("PPid:")))


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_kserve_models_and_mlmodel_runtimes_in_one_folder(gateway):
    answer = requests.post(f"{gateway.url}/v1/models/kserve-doubler:predict", json={"instances": [1, 2.5]}).json()
    assert answer["predictions"] == [2, 5.0]
    assert answer["loaded_in"] == answer["pid"] and answer["ppid"] == gateway.process.pid  # loaded by its worker
    assert_serves_large(gateway, "kserve-doubler", expect=lambda inputs: {"x": inputs["x"] * 2})
    assert_serves_large(gateway, "mlmodel-echo")
    refused = requests.post(f"{gateway.url}/v1/models/mlmodel-echo:predict", json={"instances": [1]})
    assert refused.status_code == 400 and "speaks V2 only" in refused.json()["error"]


def test_load_once_forks_the_workers_of_either_kind(gateway):
    answer = requests.post(f"{gateway.url}/v1/models/kserve-doubler-once:predict", json={"instances": [3]}).json()
    assert answer["predictions"] == [6]
    fork_server = answer["loaded_in"]
    assert answer["ppid"] == fork_server != answer["pid"]  # loaded once, in the process that forked the worker
    assert _ppid(fork_server) == gateway.process.pid
    assert len(_children(fork_server)) == 2  # parallel_workers
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
    answer = requests.post(f"{gateway.url}/v2/models/mlmodel-echo-once/infer", json=body).json()
    assert answer["parameters"]["loaded_in"] != answer["parameters"]["pid"]
    assert _ppid(answer["parameters"]["pid"]) == answer["parameters"]["loaded_in"]
    assert_serves_large(gateway, "mlmodel-echo-once")
    assert_serves_large(gateway, "kserve-doubler-once", expect=lambda inputs: {"x": inputs["x"] * 2})


def test_load_once_refuses_a_model_whose_load_left_a_thread(gateway):
    # its load fails after it has run (the fixture waits for the others only): wait for the refusal
    url = f"{gateway.url}/v2/models/kserve-threaded-once/ready"
    gateway.wait_for(lambda: requests.get(url, timeout=10).json().get("state") not in ("UNKNOWN", "LOADING"), what="the refusal")
    ready = requests.get(url, timeout=10)
    assert ready.status_code == 503
    reason = ready.json()["reason"]
    assert "load_once: the model cannot be forked after load():" in reason
    assert re.search(r"\d+ thread\(s\) besides the main one are running \([^)]*poller", reason), reason
    assert_serves_large(gateway, "kserve-doubler-once", expect=lambda inputs: {"x": inputs["x"] * 2})
