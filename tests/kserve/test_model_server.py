"""gateway.kserve.ModelServer: KServe's command line, constructor, model registration, loop handlers."""

import argparse
import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest

from gateway.kserve import Model, ModelRepository, ModelServer, PredictorConfig, context, errors, model_server
from gateway.kserve.logging import logger

from ..conftest import ROOT

# KServe 0.21's model_server.parser, flag by flag (dest: default), with no argument given
KSERVE_DEFAULTS = {
    "http_port": 8080,
    "grpc_port": 8081,
    "workers": 1,
    "max_threads": 4,
    "max_asyncio_workers": None,
    "enable_grpc": True,
    "enable_docs_url": False,
    "enable_latency_logging": True,
    "configure_logging": True,
    "log_config_file": None,
    "access_log_format": None,
    "event_loop": "auto",
    "timeout_keep_alive": 65,
    "model_name": "model",
    "predictor_host": None,
    "protocol": "v1",
    "predictor_protocol": "v1",
    "predictor_use_ssl": False,
    "predictor_request_timeout_seconds": 600,
    "grpc_max_send_message_length": 8388608,
    "grpc_max_receive_message_length": 8388608,
    "predictor_request_retries": 0,
    "enable_predictor_health_check": False,
    "ssl_certfile": None,
    "ssl_keyfile": None,
}


@pytest.fixture(autouse=True)
def fresh_context(monkeypatch):
    monkeypatch.delenv("KSERVE_TLS_CERT_FILE", raising=False)
    monkeypatch.delenv("KSERVE_TLS_KEY_FILE", raising=False)
    yield
    context.set_predictor_config(None)


def test_parser_has_kserves_flags_and_defaults():
    assert vars(model_server.parser.parse_args([])) == KSERVE_DEFAULTS
    assert model_server.parser.add_help is False  # a parent parser: the script's parser adds -h


def test_scripts_extend_the_parser_and_kserve_spellings_parse():
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", default="/mnt/models")
    args = parser.parse_args(
        [
            "--model_name",
            "iris",
            "--workers",
            "4",
            "--enable_grpc",
            "false",
            "--enable_docs_url",
            "YES",
            "--event-loop",
            "uvloop",
            "--timeout-keep-alive",
            "5",
            "--predictor_protocol",
            "grpc-v2",
            "--enable_predictor_health_check",
            "--model_dir",
            "/m",
        ]
    )
    assert (args.model_name, args.workers, args.enable_grpc, args.enable_docs_url) == ("iris", 4, False, True)
    assert (args.event_loop, args.timeout_keep_alive, args.predictor_protocol, args.enable_predictor_health_check, args.model_dir) == (
        "uvloop",
        5,
        "grpc-v2",
        True,
        "/m",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--enable_grpc", "maybe"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--predictor_protocol", "v3"])


def test_args_and_the_constructor_defaults_come_from_the_command_line():
    """As in KServe, `args` is parsed at import, so the script's own command line sets ModelServer's defaults."""
    script = textwrap.dedent(
        """
        from gateway.kserve import ModelServer, model_server
        from gateway.kserve.context import get_predictor_config
        server = ModelServer()
        config = get_predictor_config()
        print(model_server.args.model_name, server.workers, server.http_port, server.enable_grpc,
              config.predictor_host, config.predictor_protocol, config.predictor_request_timeout_seconds)
        """
    )
    argv = [
        "--model_name",
        "m1",
        "--workers",
        "3",
        "--http_port",
        "9001",
        "--enable_grpc",
        "false",
        "--predictor_host",
        "p:80",
        "--predictor_protocol",
        "v2",
        "--predictor_request_timeout_seconds",
        "9",
        "--unknown_to_kserve",
        "x",
    ]
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["m1", "3", "9001", "False", "p:80", "v2", "9"]


def test_constructor_keeps_its_settings_and_sets_the_predictor_config():
    server = ModelServer(http_port=9000, grpc_port=9001, workers=2, grace_period=5, enable_latency_logging=False)
    assert (server.http_port, server.grpc_port, server.workers, server.grace_period, server.enable_latency_logging) == (9000, 9001, 2, 5, False)
    assert isinstance(server.registered_models, ModelRepository)
    config = context.get_predictor_config()
    assert (config.predictor_host, config.predictor_protocol, config.predictor_base_url) == (None, "v1", "http://None")

    mine = PredictorConfig("predictor.local:8080", "grpc-v2", predictor_use_ssl=True)
    ModelServer(predictor_config=mine)
    assert context.get_predictor_config() is mine
    assert (mine.protocol, mine.use_ssl, mine.timeout, mine.retries, mine.predictor_base_url) == ("grpc-v2", True, 600, 0, "https://predictor.local:8080")


def test_tls_moves_the_default_port_to_8443_as_kserve():
    assert ModelServer(ssl_certfile="c.pem", ssl_keyfile="k.pem").http_port == 8443
    assert ModelServer(http_port=9000, ssl_certfile="c.pem", ssl_keyfile="k.pem").http_port == 9000


def test_register_model_under_its_name_or_another():
    server = ModelServer()
    model = Model("iris")
    server.register_model(model)
    server.register_model(model, name="iris-alias")
    assert server.registered_models.get_models() == {"iris": model, "iris-alias": model}
    nameless = Model("x")
    nameless.name = ""
    with pytest.raises(ValueError, match="model.name must be provided"):
        server.register_model(nameless)


def test_start_checks_and_registers_the_models():
    """What start() does before it forks (serving itself: tests/kserve/test_serving.py, in subprocesses)."""
    server = ModelServer(enable_latency_logging=True)
    ready, not_ready = Model("ready"), Model("not-ready")
    ready.load()
    server._register_and_check_atleast_one_model_is_ready([ready, not_ready])
    assert list(server.registered_models.get_models()) == ["ready"]  # a model not ready is not served
    assert ready.enable_latency_logging is True and not_ready.enable_latency_logging is False

    with pytest.raises(errors.NoModelReady, match="Model with name not-ready is not ready"):
        ModelServer().start([not_ready])
    with pytest.raises(RuntimeError, match="Unknown model collection type"):
        ModelServer().start(ready)
    with pytest.raises(RuntimeError, match="should be 'BaseKServeModel'"):
        ModelServer().start([ready, object()])
    with pytest.raises(RuntimeError, match="none is serving"):
        server.stop(15)


def test_event_loop_exception_handlers(caplog):
    server = ModelServer(max_asyncio_workers=3)
    loop = asyncio.new_event_loop()
    try:
        server.setup_event_loop(loop)
        assert loop.get_exception_handler() == server.default_exception_handler
        assert loop._default_executor._max_workers == 3
        logger.addHandler(caplog.handler)  # KServe's logging config stops "kserve" at its own handler
        try:
            with caplog.at_level(logging.ERROR):
                loop.call_exception_handler({"message": "task failed", "exception": ValueError("boom")})
        finally:
            logger.removeHandler(caplog.handler)
        messages = [r.getMessage() for r in caplog.records]
        assert "Caught exception: boom" in messages and "message: task failed" in messages

        seen = []
        server.register_exception_handler(lambda loop, ctx: seen.append(ctx["message"]))
        server.setup_event_loop(loop)
        loop.call_exception_handler({"message": "custom"})
        assert seen == ["custom"]
    finally:
        loop.close()


def test_model_repository_unloads_by_stopping_the_model():
    class Engine(Model):
        def __init__(self, name):
            super().__init__(name)
            self.engine = True
            self.calls = []

        def stop(self):
            self.calls.append("stop")

        def stop_engine(self):
            self.calls.append("stop_engine")

    repository = ModelRepository()
    model = Engine("e")
    model.load()
    repository.update(model)
    assert repository.get_model("e") is model and repository.get_model("nope") is None
    assert asyncio.run(repository.is_model_ready("e")) is True
    assert asyncio.run(repository.is_model_ready("nope")) is False
    repository.unload("e")
    assert model.calls == ["stop", "stop_engine"] and repository.get_models() == {}
    with pytest.raises(KeyError):
        repository.unload("e")
