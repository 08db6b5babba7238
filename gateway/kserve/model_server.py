"""KServe's `ModelServer` and its command line (`kserve.model_server`).

`parser` has every flag of KServe 0.21's, with its names and defaults, so a script
can extend it (`argparse.ArgumentParser(parents=[model_server.parser])`); `args`
is the command line parsed with it when this module is imported (unknown flags are
left to the script), and the `ModelServer()` defaults come from it, as in KServe.

What the flags mean on the gateway: `--workers` is the number of worker processes
per model (KServe: uvicorn processes); `--max_threads`, `--max_asyncio_workers`,
`--event-loop`, `--timeout-keep-alive` and `--access_log_format` tune KServe's uvicorn
and grpc servers, which the gateway does not have.

`start()` serves the script's models with the gateway: each from `workers` worker
processes forked from a fork server that holds the models as the script loaded them
(workers/forkserver.py), this process being the front door (gateway/server.py).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import signal
from typing import Any, Callable, Dict, List, Optional

from . import context
from .constants.constants import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    KSERVE_TLS_CERT_FILE_ENV,
    KSERVE_TLS_KEY_FILE_ENV,
    MAX_GRPC_MESSAGE_LENGTH,
)
from .errors import NoModelReady
from .logging import configure_logging, logger
from .model import BaseKServeModel
from .model_repository import ModelRepository
from .predictor_config import PredictorConfig
from .utils.utils import cpu_count, strtobool

parser = argparse.ArgumentParser(add_help=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
# the model server's own arguments
parser.add_argument("--http_port", default=DEFAULT_HTTP_PORT, type=int, help="The port of the REST server.")
parser.add_argument("--grpc_port", default=DEFAULT_GRPC_PORT, type=int, help="The port of the gRPC server.")
parser.add_argument("--workers", default=1, type=int, help="The number of worker processes serving each model.")
parser.add_argument("--max_threads", default=4, type=int, help="KServe: the gRPC server's threads (accepted, unused by the gateway).")
parser.add_argument("--max_asyncio_workers", default=None, type=int, help="The size of the event loop's default thread pool (default: min(32, CPUs + 4)).")
parser.add_argument("--enable_grpc", default=True, type=strtobool, help="Serve gRPC.")
parser.add_argument("--enable_docs_url", default=False, type=strtobool, help="Serve the API's documentation (Swagger UI) at /docs.")
parser.add_argument(
    "--enable_latency_logging", default=True, type=strtobool, help="Log one line per request with the preprocess/predict/postprocess latencies."
)
parser.add_argument("--configure_logging", default=True, type=strtobool, help="Configure KServe's loggers when the ModelServer is built.")
parser.add_argument("--log_config_file", default=None, type=str, help="A logging configuration file (.json, .yaml/.yml, or fileConfig format).")
parser.add_argument("--access_log_format", default=None, type=str, help="KServe: uvicorn's access log format (accepted, unused by the gateway).")
parser.add_argument(
    "--event-loop",
    dest="event_loop",
    default="auto",
    type=str,
    choices=["auto", "asyncio", "uvloop"],
    help="KServe: uvicorn's event loop (accepted; the gateway always runs uvloop).",
)
parser.add_argument(
    "--timeout-keep-alive",
    dest="timeout_keep_alive",
    default=65,
    type=int,
    help="Seconds an idle keep-alive connection stays open (longer than a proxy's idle timeout).",
)
# the model's arguments
parser.add_argument("--model_name", default="model", type=str, help="The name of the model on the endpoint paths.")
parser.add_argument("--predictor_host", default=None, type=str, help="The predictor a transformer sends requests to (host[:port]).")
parser.add_argument(
    "--protocol",
    default="v1",
    type=str,
    choices=["v1", "v2", "grpc-v2"],
    help="Deprecated: use --predictor_protocol.",
)
parser.add_argument(
    "--predictor_protocol",
    default="v1",
    type=str,
    choices=["v1", "v2", "grpc-v2"],
    help="The protocol a transformer speaks to its predictor.",
)
parser.add_argument("--predictor_use_ssl", default=False, type=strtobool, help="Use TLS to the predictor.")
parser.add_argument("--predictor_request_timeout_seconds", default=600, type=int, help="Timeout of a request to the predictor.")
parser.add_argument("--grpc_max_send_message_length", default=MAX_GRPC_MESSAGE_LENGTH, type=int, help="The largest gRPC message sent.")
parser.add_argument("--grpc_max_receive_message_length", default=MAX_GRPC_MESSAGE_LENGTH, type=int, help="The largest gRPC message received.")
parser.add_argument("--predictor_request_retries", default=0, type=int, help="Retries of a failed request to the predictor.")
parser.add_argument(
    "--enable_predictor_health_check",
    action="store_true",
    help="A transformer is ready only while its predictor is.",
)
parser.add_argument(
    "--ssl_certfile",
    default=os.environ.get(KSERVE_TLS_CERT_FILE_ENV),
    type=str,
    help=f"The certificate for serving HTTPS (default: ${KSERVE_TLS_CERT_FILE_ENV}).",
)
parser.add_argument(
    "--ssl_keyfile",
    default=os.environ.get(KSERVE_TLS_KEY_FILE_ENV),
    type=str,
    help=f"The private key for serving HTTPS (default: ${KSERVE_TLS_KEY_FILE_ENV}).",
)
# without abbreviations: a flag of the program importing this (`gateway start --config`) must not
# be taken for one of KServe's (--configure_logging); a script's own parser keeps them
parser.allow_abbrev = False
args, _ = parser.parse_known_args()
parser.allow_abbrev = True


class ModelServer:
    def __init__(
        self,
        http_port: int = args.http_port,
        grpc_port: int = args.grpc_port,
        workers: int = args.workers,
        max_threads: int = args.max_threads,
        max_asyncio_workers: Optional[int] = args.max_asyncio_workers,
        registered_models: Optional[ModelRepository] = None,
        enable_grpc: bool = args.enable_grpc,
        enable_docs_url: bool = args.enable_docs_url,
        enable_latency_logging: bool = args.enable_latency_logging,
        access_log_format: Optional[str] = args.access_log_format,
        event_loop: str = args.event_loop,
        timeout_keep_alive: int = args.timeout_keep_alive,
        grace_period: int = 30,
        predictor_config: Optional[PredictorConfig] = None,
        ssl_certfile: Optional[str] = args.ssl_certfile,
        ssl_keyfile: Optional[str] = args.ssl_keyfile,
    ):
        """KServe's model server; every default comes from the command line (`args`).

        workers: worker processes per model. grace_period: seconds in-flight requests get to
        finish when the server stops. predictor_config: where a transformer forwards to
        (default: from the --predictor_* flags). With a certificate and key and the default
        port, the REST port becomes 8443, as in KServe."""
        self.registered_models = ModelRepository() if registered_models is None else registered_models
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        if self.ssl_certfile and self.ssl_keyfile and http_port == DEFAULT_HTTP_PORT:
            http_port = DEFAULT_HTTPS_PORT
            logger.info("SSL enabled, switching listen port to %d", http_port)
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.workers = workers
        self.event_loop = event_loop
        self.max_threads = max_threads
        self.max_asyncio_workers = max_asyncio_workers
        self.timeout_keep_alive = timeout_keep_alive
        self.enable_grpc = enable_grpc
        self.enable_docs_url = enable_docs_url
        self.enable_latency_logging = enable_latency_logging
        self.access_log_format = access_log_format
        self.grace_period = grace_period
        self._serving_pid: Optional[int] = None
        if args.configure_logging and not logger.handlers:
            configure_logging(args.log_config_file)
        self._custom_exception_handler: Optional[Callable[[asyncio.AbstractEventLoop, Dict[str, Any]], None]] = None
        if predictor_config is None:
            predictor_config = PredictorConfig(
                predictor_host=args.predictor_host,
                predictor_protocol=args.predictor_protocol,
                predictor_use_ssl=args.predictor_use_ssl,
                predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
                predictor_request_retries=args.predictor_request_retries,
                predictor_health_check=args.enable_predictor_health_check,
            )
        context.set_predictor_config(predictor_config)

    def start(self, models: List[BaseKServeModel]) -> None:
        """Serve `models` (the ready ones; at least one must be) and every model registered before,
        until the server is stopped (SIGTERM, SIGINT or `stop()`); returns then.

        This process forks a fork server first, which holds the loaded models and forks
        `workers` worker processes for each (and any replacement): the models are loaded
        once and their memory is shared. So nothing may run besides this thread when
        `start()` is called: a thread (started by a model's load(), say) or a running event
        loop is refused with RuntimeError saying which. Per worker, a model's `start()` (and
        `start_engine()`) runs after the fork, and `stop()` (`stop_engine()`) when it stops.
        This process then serves REST (V1 and V2, /metrics) on `http_port` and V2 gRPC on
        `grpc_port` with the gateway's front door."""
        self._register_and_check_atleast_one_model_is_ready(models)
        # the serving side is an entry point of its own, imported here and not at the top: a worker
        # imports this module too and must not hold the front door; only a script's process calls
        # start() (the one allowed exception of tests/test_layers.py)
        from ..script import serve

        self._serving_pid = os.getpid()
        try:
            serve(self)
        finally:
            self._serving_pid = None

    def stop(self, sig: int) -> None:
        """Stop serving as the signal `sig` does: SIGINT at once, any other as SIGTERM (answer not
        ready for drain_delay, then close the listeners; in-flight requests get `grace_period`).
        Each worker then runs its model's `stop()`. Only in the process that called `start()`."""
        if self._serving_pid != os.getpid():
            raise RuntimeError("ModelServer.stop() stops the server started by start() in this process; none is serving")
        os.kill(os.getpid(), signal.SIGINT if sig == signal.SIGINT else signal.SIGTERM)

    def setup_event_loop(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        """Give a serving event loop (default: the running one) the exception handler and a
        default thread pool of `max_asyncio_workers` threads (default min(32, CPUs + 4)).
        Called in each serving process, never before a fork: the pool's threads would not survive it."""
        loop = loop or asyncio.get_running_loop()
        loop.set_exception_handler(self._custom_exception_handler or self.default_exception_handler)
        if self.max_asyncio_workers is None:
            self.max_asyncio_workers = min(32, cpu_count() + 4)
        logger.info(f"Setting max asyncio worker threads as {self.max_asyncio_workers}")
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=self.max_asyncio_workers))

    def register_exception_handler(self, handler: Callable[[asyncio.AbstractEventLoop, Dict[str, Any]], None]) -> None:
        """Use `handler(loop, context)` as the serving event loops' exception handler instead of
        `default_exception_handler` (see asyncio's `call_exception_handler` for `context`)."""
        self._custom_exception_handler = handler

    def default_exception_handler(self, loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
        """Log the exception and message on the "kserve" logger, then hand over to asyncio's default."""
        if "exception" in context:
            logger.error(f"Caught exception: {context.get('exception')}")
        logger.error(f"message: {context.get('message')}")
        loop.default_exception_handler(context)

    def register_model(self, model: BaseKServeModel, name: Optional[str] = None) -> None:
        """Serve `model` under `name` (default: its own name; another name serves the same model)."""
        if not model.name:
            raise ValueError("Failed to register model, model.name must be provided.")
        name = name or model.name
        self.registered_models.update(model, name)
        logger.info("Registering model: %s", name)

    def _register_and_check_atleast_one_model_is_ready(self, models: List[BaseKServeModel]) -> None:
        """Register the ready models (models not ready are not served) and pass them the latency
        logging flag; fail if there are models and none is ready. The models' `start()` and
        `start_engine()` are left to the serving processes: threads they create would not survive a fork."""
        if not isinstance(models, list):
            raise RuntimeError("Unknown model collection type")
        for model in models:
            if not isinstance(model, BaseKServeModel):
                raise RuntimeError("Model type should be 'BaseKServeModel'")
        ready = [model for model in models if model.ready]
        for model in ready:
            self.register_model(model)
            model.enable_latency_logging = self.enable_latency_logging
        if models and not ready:
            raise NoModelReady(models)
