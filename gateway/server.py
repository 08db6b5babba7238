"""Wires the gateway together and runs it: one front-door process serving REST
(Sanic on uvloop), gRPC and /metrics on its event loop, with the model workers
in processes of their own."""

from __future__ import annotations

import asyncio
import logging
import sys

from sanic import Sanic

from . import observability
from .dataplane import DataPlane
from .grpc import server as grpc_server
from .rest import create_app, metrics_endpoint
from .settings import ServerSettings
from .supervisor import Supervisor

log = logging.getLogger("gateway")


def build(settings: ServerSettings) -> Sanic:
    supervisor = Supervisor(settings)
    dataplane = DataPlane(settings, supervisor)
    observability.watch(supervisor)
    app = create_app(dataplane)

    @app.before_server_start
    async def start_models(app: Sanic) -> None:
        # load in the background: the server answers live (and ready: false) while models load
        app.add_task(supervisor.start(), name="load-models")

    @app.before_server_start
    async def start_grpc(app: Sanic) -> None:
        # the gRPC front door runs on Sanic's loop, in this process (see gateway/grpc/__init__.py)
        app.ctx.grpc = await grpc_server.start(dataplane, settings)

    @app.before_server_stop
    async def stop_grpc(app: Sanic) -> None:
        # not awaited here: in-flight gRPC calls finish while Sanic drains REST, within one shutdown_grace
        app.ctx.grpc_stopped = asyncio.get_running_loop().create_task(grpc_server.stop(app.ctx.grpc, settings.shutdown_grace))

    @app.after_server_stop
    async def stop_models(app: Sanic) -> None:
        await app.ctx.grpc_stopped
        await supervisor.stop()
        log.info("gateway stopped")

    return app


def metrics_app(app: Sanic) -> Sanic:
    """The metrics port: a second Sanic app served by the same process and loop as `app`."""
    metrics_only = Sanic(f"{app.name}-metrics", configure_logging=False)
    metrics_only.add_route(metrics_endpoint, "/metrics", methods=("GET",))
    metrics_only.ctx.unbound = False

    @app.after_server_start
    async def check_metrics_port(app: Sanic) -> None:
        # Sanic only warns when a second app cannot bind its port: stop in order instead (workers too)
        if metrics_only.state.server_info[0].server is None:
            log.error("the metrics port could not be bound (see the error above); stopping")
            metrics_only.ctx.unbound = True
            app.stop()

    return metrics_only


def run(settings: ServerSettings) -> None:
    app = build(settings)
    options = {"host": settings.host, "single_process": True, "access_log": False, "motd": False, "debug": False}
    log.info("REST on http://%s:%d", settings.host, settings.http_port)
    app.prepare(port=settings.http_port, **options)
    metrics = metrics_app(app) if settings.metrics_port else None
    if metrics is not None:
        log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
        metrics.prepare(port=settings.metrics_port, **options)
    Sanic.serve_single(app)
    if metrics is not None and metrics.ctx.unbound:
        sys.exit(1)
