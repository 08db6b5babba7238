"""Entry point: a KServe script's server (`gateway.kserve.ModelServer.start`).

The script's process has built and loaded its models. It forks a fork server holding them
(workers/forkserver.py), which forks each model's workers, then becomes the front door
(gateway/frontdoor/server.py). The fork comes first, while nothing else runs here: a thread
or an event loop cannot cross a fork, and the front door starts both.

`ModelServer.start` imports this module by name (the SDK imports no entry point).
"""

from __future__ import annotations

import logging
import os
import socket

from workers.forkserver import fork_hazards, serve_forks
from workers.kserve import ServedKServe
from workers.worker import die_with_parent

from . import logs
from .control.forkserver import Preloaded
from .kserve.logging import logger
from .kserve.model import BaseKServeModel
from .kserve.model_server import ModelServer
from .settings import ModelSettings, ServerSettings


def serve(server: ModelServer) -> None:
    """Serve the models registered with `server` until it is stopped (README, "Coming from KServe")."""
    hazards = fork_hazards()
    if hazards:
        raise RuntimeError(
            f"ModelServer.start() forks the model workers from this process, which cannot be done safely now: "
            f"{'; '.join(hazards)}. Start threads in the model's start() instead (it runs in each worker), "
            "and call start() outside of an event loop"
        )
    settings = ServerSettings.for_script(
        {"metrics_port": 0, "metrics_on_http": True, "model_repository": None},
        {
            "http_port": server.http_port,
            "grpc_port": server.grpc_port,
            "enable_grpc": server.enable_grpc,
            "enable_docs_url": server.enable_docs_url,
            "shutdown_grace": server.grace_period,
        },
    )
    kserve_fields = logging._srcfile, logging.logProcesses
    logs.configure(settings.log_level, settings.log_format, front_door=1 if settings.frontdoor_workers > 1 else None)
    logging._srcfile, logging.logProcesses = kserve_fields  # KServe's log format names the process and the file: keep them
    models = server.registered_models.get_models()
    served = {name: (ServedKServe(model, name, server.setup_event_loop), None) for name, model in models.items()}
    described = [
        ModelSettings(name=name, implementation=_import_path(model), load_once=True, parallel_workers=server.workers) for name, model in models.items()
    ]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the fork server: never returns
        try:
            ours.close()
            die_with_parent(parent)
            serve_forks(theirs, served)
        finally:
            os._exit(1)
    theirs.close()
    logger.info("the models are held by the fork server (pid %d), which forks %d worker(s) for each", pid, server.workers)
    from .frontdoor import server as frontdoor  # only now: nothing of the front door in the fork server

    frontdoor.run(settings, Preloaded(ours, pid, described, server.setup_event_loop))


def _import_path(model: BaseKServeModel) -> str:
    """Where the model's class is defined (shown as its implementation; the fork server holds the
    script's models, nothing imports them by name)."""
    return f"{type(model).__module__}.{type(model).__qualname__}"
