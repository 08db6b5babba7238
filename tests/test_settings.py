"""Settings files and environment variables."""

import json

import pytest

from gateway.settings import ConfigError, ModelSettings, ServerSettings, scan_model_settings


def test_defaults_file_and_environment(tmp_path, monkeypatch):
    assert ServerSettings.from_folder(tmp_path).http_port == 8080
    (tmp_path / "settings.json").write_text(json.dumps({"http_port": 9000, "grpc_port": 9001}))
    settings = ServerSettings.from_folder(tmp_path)
    assert (settings.http_port, settings.grpc_port, settings.model_repository) == (9000, 9001, tmp_path)
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "9100")
    assert ServerSettings.from_folder(tmp_path).http_port == 9100  # the environment wins


def test_unknown_or_invalid_server_setting_is_an_error(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"http_prot": 1}))
    with pytest.raises(ConfigError, match="http_prot"):
        ServerSettings.from_folder(tmp_path)
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(ConfigError, match="settings.json"):
        ServerSettings.from_folder(tmp_path)


def test_model_settings_mlserver_style(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "implementation": "runtime.Model",
                "parameters": {"uri": "./weights.bin", "version": "3", "extra": {"k": 1}},
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                "max_batch_size": 8,
                "max_batch_time": 0.01,
                "warm_workers": True,
            }
        )
    )
    (settings,), unusable = scan_model_settings(tmp_path)
    assert unusable == []
    assert settings.name == "my-model"  # from the folder
    assert settings.version == "3"
    assert settings.uri == str(folder / "weights.bin")
    assert settings.parameters.extra == {"k": 1}
    assert settings.inputs[0].shape == [-1, 2]
    assert settings.max_batch_size == 8
    assert settings.max_batch_time == 0.01
    assert settings.model_extra == {"warm_workers": True}  # an MLServer field the gateway has no use for


def test_a_bad_settings_file_spoils_only_its_own_model(tmp_path):
    def write(folder: str, text: str | bytes) -> None:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model-settings.json").write_bytes(text.encode() if isinstance(text, str) else text)

    write("a", json.dumps({"name": "twin", "implementation": "x.Y"}))
    write("b", json.dumps({"name": "twin", "implementation": "x.Y"}))
    write("c", json.dumps({"name": "twin", "implementation": "x.Y", "parameters": {"version": "2"}}))
    write("not-json", '{"name": "named", "implementation": ')
    write("invalid", json.dumps({"name": "no-runtime", "parameters": {"version": "7"}}))
    write("binary", b'{"name": "\xff"}')  # not UTF-8
    write("good", json.dumps({"implementation": "x.Y"}))
    usable, unusable = scan_model_settings(tmp_path)
    assert sorted((s.name, s.version) for s in usable) == [("good", None), ("twin", "2")]
    failures = {(u.name, u.version): u for u in unusable}
    assert sorted(failures) == [("binary", None), ("no-runtime", "7"), ("not-json", None), ("twin", None)]
    assert failures["twin", None].paths == [tmp_path / "a" / "model-settings.json", tmp_path / "b" / "model-settings.json"]
    assert "defined more than once" in failures["twin", None].reason
    assert str(tmp_path / "not-json" / "model-settings.json") in failures["not-json", None].reason  # unreadable name: the folder's
    assert "implementation" in failures["no-runtime", "7"].reason


def test_model_settings_need_an_implementation(tmp_path):
    (tmp_path / "model-settings.json").write_text(json.dumps({"name": "m"}))
    with pytest.raises(ConfigError, match="implementation"):
        ModelSettings.from_file(tmp_path / "model-settings.json")


@pytest.mark.parametrize(
    "parameters, shape, message",
    [
        ({"features": ["a", "b"]}, [-1, 3], "input 'x': with 2 features its shape must be [-1, 2], not [-1, 3]"),
        ({"features": ["a", "a"]}, [-1, 2], "input 'x': parameters.features names a feature twice"),
        ({"features": "a,b"}, [-1, 2], "input 'x': parameters.features must be a non-empty list of feature names"),
        ({"features": ["a", "b"]}, [-1], "input 'x': with 2 features its shape must be [-1, 2], not [-1]"),
    ],
)
def test_a_bad_feature_schema_is_an_error_at_start(tmp_path, parameters, shape, message):
    # MLRun's infer_dict orders rows by it: a wrong one would fail every such request
    (tmp_path / "m").mkdir()
    inputs = [{"name": "x", "datatype": "FP32", "shape": shape, "parameters": parameters}]
    (tmp_path / "m" / "model-settings.json").write_text(json.dumps({"implementation": "x.Y", "inputs": inputs}))
    usable, (unusable,) = scan_model_settings(tmp_path)
    assert usable == [] and message in unusable.reason
    inputs[0].update(shape=[-1, 2], parameters={"features": ["a", "b"]})
    (tmp_path / "m" / "model-settings.json").write_text(json.dumps({"implementation": "x.Y", "inputs": inputs}))
    (settings,), _ = scan_model_settings(tmp_path)
    assert settings.inputs[0].parameters.model_extra == {"features": ["a", "b"]}


def test_the_data_folder_is_resolved_against_the_config_folder_and_must_exist(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("GATEWAY_DATA_FOLDER", "data")
    assert ServerSettings.from_folder(tmp_path).data_folder == tmp_path / "data"
    monkeypatch.setenv("GATEWAY_DATA_FOLDER", "missing")
    with pytest.raises(ConfigError, match="environment variable GATEWAY_DATA_FOLDER: data_folder: .*missing is not a folder"):
        ServerSettings.from_folder(tmp_path)
    monkeypatch.delenv("GATEWAY_DATA_FOLDER")
    assert ServerSettings.from_folder(tmp_path).data_folder is None  # off by default


def test_frontdoor_workers_default_and_fixed_ports(tmp_path, monkeypatch):
    monkeypatch.delenv("GATEWAY_FRONTDOOR_WORKERS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(2)))
    assert ServerSettings.from_folder(tmp_path).frontdoor_workers == 1  # 2 cores: one front door
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert ServerSettings.from_folder(tmp_path).frontdoor_workers == 4  # half the cores, at most 4
    monkeypatch.setenv("GATEWAY_FRONTDOOR_WORKERS", "2")
    monkeypatch.setenv("GATEWAY_METRICS_PORT", "0")  # no metrics port: nothing to share
    assert ServerSettings.from_folder(tmp_path).frontdoor_workers == 2
    monkeypatch.setenv("GATEWAY_GRPC_PORT", "0")  # each front door would get a port of its own
    with pytest.raises(ConfigError, match="frontdoor_workers above 1 needs fixed ports.*grpc_port is 0"):
        ServerSettings.from_folder(tmp_path)
