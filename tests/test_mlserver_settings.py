"""MLServer's settings: settings.json files and MLSERVER_* variables as MLServer's docs give them load
unchanged, each setting mapped to ours or ignored with a reason; MLSERVER_MODEL_* variables fill in
model settings; ModelSettings(implementation=<class>) and parallel_workers 0 as MLServer takes them.

tests/mlserver_settings/: `custom`, `kafka` and `streaming` hold the settings.json of MLServer 1.7.1's
docs/examples of those names, unchanged; `defaults.json` is what MLServer 1.7.1 writes for
`Settings().model_dump(mode="json")`: every one of its settings, at its default."""

import asyncio
import json
import logging
import shutil

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from gateway import MLModel, mlserver_settings
from gateway.codecs import NumpyCodec
from gateway.settings import ConfigError, ModelSettings, ServerSettings
from gateway.types import InferenceRequest, InferenceResponse, RequestInput
from tests.conftest import ROOT

EXAMPLES = ROOT / "tests" / "mlserver_settings"


def from_folder(folder, settings: dict):
    (folder / "settings.json").write_text(json.dumps(settings))
    return ServerSettings.from_folder(folder)


def warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_every_mlserver_setting_is_known_and_its_defaults_load(tmp_path, caplog):
    defaults = json.loads((EXAMPLES / "defaults.json").read_text())
    assert mlserver_settings.SERVER_SETTINGS == set(defaults)  # each has its row in the table
    shutil.copy(EXAMPLES / "defaults.json", tmp_path / "settings.json")
    settings = ServerSettings.from_folder(tmp_path)
    assert (settings.http_port, settings.grpc_port, settings.metrics_port, settings.host) == (8080, 8081, 8082, "0.0.0.0")
    assert (settings.server_name, settings.server_version) == ("mlserver", "1.7.1")
    assert (settings.log_level, settings.log_format, settings.access_log) == ("DEBUG", "text", True)  # debug: true
    assert (settings.model_repository, settings.parallel_workers, settings.worker_stop_grace) == (tmp_path, 1, 5)
    assert settings.grpc_max_message_bytes == ServerSettings().grpc_max_message_bytes  # null: our default
    # of MLServer's defaults, only gzip asks for what the gateway does not do
    assert warnings(caplog) == [f"{tmp_path / 'settings.json'}: MLServer setting gzip_enabled=True is ignored: the gateway does not compress responses"]


@pytest.mark.parametrize(
    "example, expected, warned",
    [
        ("custom", {"log_level": "DEBUG", "access_log": True}, []),
        ("kafka", {"log_level": "DEBUG"}, ["MLServer setting kafka_enabled='true' is ignored: the gateway has no Kafka server"]),
        ("streaming", {"log_level": "INFO", "access_log": False, "parallel_workers": 1}, []),
    ],
)
def test_the_settings_files_of_mlservers_examples_load(example, expected, warned, caplog):
    settings = ServerSettings.from_folder(EXAMPLES / example)
    assert {key: getattr(settings, key) for key in expected} == expected
    assert [message.split(": ", 1)[1] for message in warnings(caplog)] == warned


def test_mlserver_names_map_to_ours_and_ours_win(tmp_path, caplog):
    settings = from_folder(
        tmp_path,
        {
            "grpc_max_message_length": 1000,
            "model_repository_root": "models",
            "parallel_workers_timeout": 7,
            "use_structured_logging": "true",
            "metrics_endpoint": None,  # MLServer: no metrics server
            "cors_settings": {"allow_origins": ["*"]},
            "extensions": [],
        },
    )
    assert settings.grpc_max_message_bytes == 1000
    assert settings.model_repository == tmp_path / "models"
    assert (settings.worker_stop_grace, settings.log_format, settings.metrics_port) == (7, "json", 0)
    assert [message.split(": ", 1)[1] for message in warnings(caplog)] == [
        "MLServer setting cors_settings={'allow_origins': ['*']} is ignored: the gateway sends no CORS headers"
    ]
    caplog.clear()
    settings = from_folder(tmp_path, {"grpc_max_message_length": 1000, "grpc_max_message_bytes": 2000, "debug": True, "log_level": "warning"})
    assert (settings.grpc_max_message_bytes, settings.log_level) == (2000, "WARNING")
    assert len(warnings(caplog)) == 2 and all("is overridden by" in message for message in warnings(caplog))


def test_mlserver_variables_rank_below_settings_json_and_gateway_variables(tmp_path, monkeypatch, caplog):
    for variable, value in {
        "MLSERVER_HTTP_PORT": "9001",
        "MLSERVER_GRPC_PORT": "9002",
        "MLSERVER_GRPC_MAX_MESSAGE_LENGTH": "4096",
        "MLSERVER_MODEL_REPOSITORY_ROOT": str(tmp_path / "elsewhere"),
        "MLSERVER_PARALLEL_WORKERS": "0",
        "MLSERVER_DEBUG": "false",
        "MLSERVER_EXTENSIONS": "[]",  # JSON, as pydantic-settings reads a list
        "MLSERVER_KAFKA_ENABLED": "false",
        # set in MLServer's image, not settings: nothing to say about them
        "MLSERVER_MODELS_DIR": "/mnt/models",
        "MLSERVER_ENV_TARBALL": "/mnt/models/environment.tar.gz",
    }.items():
        monkeypatch.setenv(variable, value)
    settings = from_folder(tmp_path, {"grpc_port": 9100})
    assert (settings.http_port, settings.grpc_port, settings.grpc_max_message_bytes) == (9001, 9100, 4096)  # settings.json > MLSERVER_*
    assert (settings.model_repository, settings.parallel_workers, settings.access_log) == (tmp_path / "elsewhere", 1, False)
    assert warnings(caplog) == []
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "9200")
    monkeypatch.setenv("GATEWAY_GRPC_MAX_MESSAGE_BYTES", "8192")
    settings = from_folder(tmp_path, {})
    assert (settings.http_port, settings.grpc_max_message_bytes) == (9200, 8192)  # GATEWAY_* > MLSERVER_*
    monkeypatch.setenv("MLSERVER_DEBUG", "perhaps")
    with pytest.raises(ConfigError, match="environment variable MLSERVER_DEBUG: debug: Input should be a valid boolean"):
        from_folder(tmp_path, {})


def test_parallel_workers_zero_is_one_worker_and_negative_is_refused(tmp_path):
    assert ServerSettings(parallel_workers=0).parallel_workers == 1
    assert ModelSettings(implementation="x.Y", parallel_workers=0).parallel_workers == 1
    with pytest.raises(ConfigError, match="parallel_workers: Input should be greater than or equal to 0"):
        from_folder(tmp_path, {"parallel_workers": -1})


def test_mlserver_model_variables_fill_in_what_model_settings_leave_out(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSERVER_MODEL_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("MLSERVER_MODEL_URI", "./weights.bin")
    monkeypatch.setenv("MLSERVER_MODEL_EXTRA", '{"factor": 3}')
    monkeypatch.setenv("MLSERVER_MODEL_HUGGINGFACE_TASK", "question-answering")  # a runtime's own: not ours
    path = tmp_path / "model-settings.json"
    path.write_text(json.dumps({"implementation": "runtime.Model", "parameters": {"version": "2"}}))
    settings = ModelSettings.from_file(path)
    assert (settings.max_batch_size, settings.version, settings.uri, settings.parameters.extra) == (4, "2", str(tmp_path / "weights.bin"), {"factor": 3})
    path.write_text(json.dumps({"implementation": "runtime.Model", "max_batch_size": 8, "parameters": {"extra": {"factor": 5}}}))
    settings = ModelSettings.from_file(path)
    assert (settings.max_batch_size, settings.parameters.extra) == (8, {"factor": 5})  # the file's own values win
    monkeypatch.setenv("MLSERVER_MODEL_EXTRA", "{not json")
    with pytest.raises(ConfigError, match="environment variable MLSERVER_MODEL_EXTRA: not JSON"):
        ModelSettings.from_file(path)


class SumModel(MLModel):
    """As MLServer's own tests write a runtime and its settings in one file."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        total = NumpyCodec.decode_input(payload.inputs[0]).sum(axis=-1, keepdims=True)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("total", total)])


def test_model_settings_take_a_runtime_class():
    settings = ModelSettings(name="sum-model", implementation=SumModel)
    assert settings.implementation == f"{__name__}.SumModel"
    model = SumModel(settings)
    request = InferenceRequest(inputs=[RequestInput(name="x", datatype="INT32", shape=[2, 2], data=[1, 2, 3, 4])])
    response = asyncio.run(model.predict(request))
    assert (model.name, response.outputs[0].data.root) == ("sum-model", [3, 7])


# --- a real gateway, started as MLServer is: `start FOLDER`, ports in MLSERVER_* variables --------


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlserver-folder")
    shutil.copy(EXAMPLES / "streaming" / "settings.json", folder / "settings.json")  # debug off, parallel_workers 0, gzip off
    shutil.copytree(ROOT / "tests" / "mlserver_examples" / "sum-model", folder / "sum-model")
    return start_gateway(folder, args=[folder], port_prefix="MLSERVER_").wait_ready()


def test_an_mlserver_folder_starts_unchanged(gateway):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    questions = [" ".join(rng.choice(words, 8)) for _ in range(600)]
    context = [" ".join(rng.choice(words, 8)) for _ in range(600)]
    expected = [[len(set(q.split()) & set(c.split()))] for q, c in zip(questions, context)]
    body = {
        "inputs": [
            {"name": "questions", "datatype": "BYTES", "shape": [600], "data": questions},
            {"name": "context", "datatype": "BYTES", "shape": [600], "data": context},
        ]
    }
    assert len(json.dumps(body)) > 16 * 1024  # the tensors travel through shared memory
    answer = requests.post(f"{gateway.url}/v2/models/sum-model/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [row[0] for row in expected]
    client = grpcclient.InferenceServerClient(gateway.grpc_url)  # on MLSERVER_GRPC_PORT
    inputs = []
    for name, values in (("questions", questions), ("context", context)):
        inputs.append(grpcclient.InferInput(name, [len(values)], "BYTES"))
        inputs[-1].set_data_from_numpy(np.array([v.encode() for v in values], dtype=object))
    assert client.infer("sum-model", inputs).as_numpy("output-0").tolist() == expected
    client.close()
    log = gateway.log_text()
    assert "parallel_workers is 0 (MLServer: inference in the main process): the gateway runs 1 worker process" in log
    assert "model sum-model (version None) is ready with 1 worker(s)" in log
    assert "MLServer setting" not in log  # gzip off is how the gateway works: nothing to warn about
    assert "gateway.access" not in log  # debug off: no access log


def test_mlservers_settings_classes_have_their_names():
    from gateway.settings import CORSSettings, ModelParameters, Settings

    settings = Settings(http_port=9000, debug=False, grpc_max_message_length=1024, cors_settings=CORSSettings(allow_origins=["*"]))
    assert (settings.http_port, settings.log_level, settings.access_log, settings.grpc_max_message_bytes) == (9000, "INFO", False, 1024)
    model = ModelSettings(name="m", implementation=SumModel, max_batch_time=0.5, parameters=ModelParameters(uri="./w.bin", format="x"))
    assert (model.max_batch_time, model.parameters.uri, model.parameters.model_extra) == (0.5, "./w.bin", {"format": "x"})
