"""A model defined by MLSERVER_MODEL_* variables alone, as MLServer serves a repository without any
model-settings.json: a real gateway started on an empty folder."""

import json
import threading

import pytest
import requests

from gateway.settings import ConfigError, ModelSettings, scan_model_settings
from tests.test_batching import body, call, inflight, outputs_of

VARIABLES = {
    "MLSERVER_MODEL_NAME": "from-env",
    "MLSERVER_MODEL_IMPLEMENTATION": "tests.runtimes.BatchProbe",  # imported from the current folder, as MLServer does
    "MLSERVER_MODEL_VERSION": "3",
    "MLSERVER_MODEL_MAX_BATCH_SIZE": "2",
    "MLSERVER_MODEL_MAX_BATCH_TIME": "60",
}


def test_without_model_settings_files_the_variables_define_one_model(tmp_path, monkeypatch):
    assert scan_model_settings(tmp_path) == ([], [])  # no variables: no model
    for name, value in VARIABLES.items():
        monkeypatch.setenv(name, value)
    (settings,), unusable = scan_model_settings(tmp_path)
    assert unusable == []
    assert (settings.name, settings.implementation, settings.version, settings.max_batch_size, settings.max_batch_time) == (
        "from-env",
        "tests.runtimes.BatchProbe",
        "3",
        2,
        60.0,
    )
    # a folder with a model-settings.json is served from its files (the variables fill in what they leave out)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model-settings.json").write_text(json.dumps({"implementation": "tests.runtimes.Echo"}))
    (settings,), _ = scan_model_settings(tmp_path)
    assert (settings.name, settings.implementation) == ("from-env", "tests.runtimes.Echo")


def test_a_model_of_the_variables_needs_a_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSERVER_MODEL_IMPLEMENTATION", "tests.runtimes.Echo")
    with pytest.raises(ConfigError, match="MLSERVER_MODEL_IMPLEMENTATION defines a model, but MLSERVER_MODEL_NAME does not name it"):
        ModelSettings.from_environment()
    usable, (unusable,) = scan_model_settings(tmp_path)  # listed as unusable, with the reason: the server is not ready
    assert usable == [] and "MLSERVER_MODEL_NAME does not name it" in unusable.reason


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    return start_gateway(tmp_path_factory.mktemp("empty"), env=VARIABLES).wait_ready()


def test_a_gateway_serves_the_model_of_the_variables_with_its_batching(gateway):
    assert requests.get(f"{gateway.url}/v2/models").json() == {"models": ["from-env:3"]}
    # MLSERVER_MODEL_MAX_BATCH_TIME: the first request waits for a second, and the two run as one call
    results: dict = {}
    first = threading.Thread(target=call, args=(gateway, "from-env", body([1.0], "first"), results, "first"))
    first.start()
    gateway.wait_for(lambda: inflight(gateway, "from-env", "3") == 1, timeout=10, what="the first request to queue")
    call(gateway, "from-env", body([2.0], "second"), results, "second")
    first.join()
    assert outputs_of(results["first"]) == {"y": [2.0, 2.0], "call": [1], "rows": [2]}
    assert outputs_of(results["second"]) == {"y": [4.0, 4.0], "call": [1], "rows": [2]}
