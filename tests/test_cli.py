"""`gateway --version`, `gateway start [FOLDER]` and its flags, and the order in which settings
win (flags > GATEWAY_* > settings.json > MLSERVER_* > defaults), through real `gateway start` processes."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import requests

from gateway.cli import FLAGS
from gateway.version import __version__
from tests.conftest import ROOT
from tests.test_examples import iris_rows


def gateway_command(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    """`gateway ...` run to its end (a start that fails, --help, --version)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=environment)


def test_version():
    done = gateway_command("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"gateway {__version__}")


def test_start_help_lists_the_flags_and_the_order_of_precedence():
    done = gateway_command("start", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for flag, _ in FLAGS.values():
        assert flag in text
    assert "--no-access-log" in text and "FOLDER" in text.upper()
    assert "these flags, GATEWAY_<SETTING> environment variables, settings.json, MLSERVER_<SETTING> environment variables, the default" in text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A config folder as `mlserver start FOLDER` takes it: settings.json and a model folder."""
    folder = tmp_path_factory.mktemp("start-folder")
    shutil.copytree(ROOT / "config" / "iris-mlp", folder / "iris-mlp")
    settings = {"server_name": "from-file", "server_version": "from-file", "parallel_workers": 1, "log_format": "text"}
    (folder / "settings.json").write_text(json.dumps(settings))
    return folder


@pytest.fixture(scope="module")
def gateway(start_gateway, folder):
    # each setting is given at several levels; the one that wins shows which level does
    env = {
        "MLSERVER_SERVER_NAME": "from-mlserver-env",
        "MLSERVER_SERVER_VERSION": "from-mlserver-env",
        "MLSERVER_PARALLEL_WORKERS": "4",
        "MLSERVER_DEBUG": "false",  # MLServer's debug off: no access log (and log level INFO)
        "GATEWAY_SERVER_NAME": "from-gateway-env",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_PARALLEL_WORKERS": "3",
        "GATEWAY_ENABLE_DOCS_URL": "false",
    }
    # the folder as mlserver's: positional; --model-repository relative to where the command runs
    args = [folder, "--workers", "2", "--enable-docs-url", "--model-repository", os.path.relpath(folder, ROOT)]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("GATEWAY_ACCESS_LOG", raising=False)
        return start_gateway(folder, args=args, env=env).wait_ready()


def log_lines(gateway) -> list[dict]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]


def test_each_setting_comes_from_the_highest_level_that_gives_it(gateway):
    metadata = requests.get(f"{gateway.url}/v2").json()
    assert metadata["name"] == "from-gateway-env"  # GATEWAY_* > settings.json > MLSERVER_*
    assert metadata["version"] == "from-file"  # settings.json > MLSERVER_*
    assert requests.get(f"{gateway.url}/docs").status_code == 200  # flag > GATEWAY_*
    lines = log_lines(gateway)  # GATEWAY_LOG_FORMAT=json > settings.json's text
    assert lines and len(lines) == len(gateway.log_text().splitlines())
    ready = [line["message"] for line in lines if "is ready with" in line["message"]]
    assert ready == ["model iris-mlp (version 1) is ready with 2 worker(s)"]  # --workers > every other level
    iris_rows(gateway)
    # MLSERVER_DEBUG=false > the default: no access line, though requests were served
    assert not [line for line in log_lines(gateway) if line["logger"] == "gateway.access"]


def test_start_refuses_bad_values_naming_where_they_came_from(folder, tmp_path):
    done = gateway_command("start", str(folder), "--http-port", "eighty")
    assert done.returncode == 2
    assert "command-line flag --http-port: http_port: Input should be a valid integer" in done.stderr
    done = gateway_command("start", str(folder), "--workers", "2", GATEWAY_PARALLEL_WORKERS="-1", MLSERVER_GRPC_PORT="x")
    assert done.returncode == 2 and "environment variable MLSERVER_GRPC_PORT: grpc_port" in done.stderr
    done = gateway_command("start", str(folder), "--config", str(tmp_path))
    assert done.returncode == 2 and "two folders given" in done.stderr
    # a typo in our own settings.json stays fatal; MLServer's keys do not
    (tmp_path / "settings.json").write_text(json.dumps({"http_prot": 9000, "kafka_enabled": True}))
    done = gateway_command("start", "--config", str(tmp_path))
    assert done.returncode == 2
    assert re.search(r"settings.json: http_prot: Extra inputs are not permitted", done.stderr), done.stderr
    assert "MLServer setting kafka_enabled=True is ignored: the gateway has no Kafka server" in done.stderr
