"""Wires the gateway together and runs it: one front-door process serving REST
(Sanic on uvloop), with the model workers in processes of their own."""

from __future__ import annotations

import logging

from sanic import Sanic

from .dataplane import DataPlane
from .grpc import server as grpc_server
from .rest import create_app
from .settings import ServerSettings
from .supervisor import Supervisor

log = logging.getLogger("gateway")


def build(settings: ServerSettings) -> Sanic:
    supervisor = Supervisor(settings)
    dataplane = DataPlane(settings, supervisor)
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
        await grpc_server.stop(app.ctx.grpc)

    @app.after_server_stop
    async def stop_models(app: Sanic) -> None:
        await supervisor.stop()
        log.info("gateway stopped")

    return app


def run(settings: ServerSettings) -> None:
    app = build(settings)
    log.info("REST on http://%s:%d", settings.host, settings.http_port)
    app.run(
        host=settings.host,
        port=settings.http_port,
        single_process=True,
        access_log=False,
        motd=False,
        debug=False,
    )
