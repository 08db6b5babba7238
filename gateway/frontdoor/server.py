"""Wires the gateway together and runs it: one front-door process serving REST
(Sanic on uvloop), gRPC and /metrics on its event loop, with the model workers
in processes of their own; with `frontdoor_workers` above 1, that process (the
main one, `build`) and the relay front doors (`build_relay`, gateway/relay.py)
serve the same ports (docs/ARCHITECTURE.md, "Several front doors").

How it stops (README, "Stopping"):

1. SIGTERM: the gateway drains. For `drain_delay` seconds it still serves every
   request, but answers not ready (REST 503, gRPC ServerReady false), so that a
   load balancer or Kubernetes stops sending, and every REST answer closes its
   connection, so that kept-alive clients reconnect elsewhere. SIGINT skips the delay.
2. The listeners close (Sanic's own stop, app.stop()); in-flight requests get
   `shutdown_grace` seconds to finish.
3. At the end of the grace, requests still queued or running are failed (503 /
   UNAVAILABLE; supervisor.cut_off, or in a relay front door MainProcess.fail_all),
   their answers leave, and what is left of the connections is cut `CUT_OFF_MARGIN` later.
4. The main process waits for the relay front doors to exit (each went through 1-3
   at the same time: the main passes the signals on), then the workers stop: an
   idle one calls its runtime's unload(), one still busy is killed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import Any, Awaitable, Callable, Optional

from sanic import Sanic

from ..control import stats
from ..control.forkserver import Preloaded
from ..control.models import Supervisor
from ..control.table import ModelTable
from ..settings import ConfigError, ServerSettings
from .access import Access
from .dataplane import DataPlane
from .grpc import server as grpc_server
from .hub import RELAYED_SIGNALS, RelayFrontDoors, RelayHub, endpoint_in
from .relayed import MainProcess, RelayDataPlane
from .rest.app import create_app, guard, metrics_endpoint, on_error
from .rest.connection import GatewayProtocol
from .tls import TLS

log = logging.getLogger("gateway")

CUT_OFF_MARGIN = 1.0  # seconds past shutdown_grace for the answers of the requests cut off at its end to leave
RELAY_EXIT_MARGIN = 5.0  # seconds past that for a relay front door to exit, before it is killed
LISTEN_BACKLOG = 100  # Sanic's


class PortUnavailable(Exception):
    """A port the settings name cannot be listened on; the message says which and why."""


class Stopping:
    """A front door's stop, in the order of the module docstring, and what each signal does to it.

    `cut_off(why)` fails the requests still running at the end of the grace; `forward(signum)`, in the
    main process with relay front doors, passes each signal on to them. `signals`: what each signal
    received means (SIGTERM or SIGINT), None: ignored. A relay front door shares the main process's
    process group, so it ignores SIGTERM and SIGINT (a terminal's Ctrl-C, a group kill) and takes
    them from the main process only, as RELAYED_SIGNALS."""

    def __init__(
        self,
        app: Sanic,
        dataplane: DataPlane,
        settings: ServerSettings,
        cut_off: Callable[[str], None],
        forward: Callable[[int], None],
        signals: dict[int, Optional[int]],
    ):
        self.app, self.dataplane, self.settings, self._cut_off_requests, self._forward = app, dataplane, settings, cut_off, forward
        self._signals = signals
        self.closing = False  # the listeners are closed (or closing): in-flight requests have their grace
        self._skip_delay = asyncio.Event()
        self._drain_task: Optional[asyncio.Task] = None  # held: the loop keeps only a weak reference to a task
        self._cut_off: Optional[asyncio.TimerHandle] = None

    def take_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for received, meaning in self._signals.items():
            if meaning is None:
                loop.add_signal_handler(received, _ignore)
            else:
                loop.add_signal_handler(received, self.on_signal, meaning)

    def on_signal(self, signum: int) -> None:
        self._forward(signum)
        name = signal.Signals(signum).name
        if self.closing:
            if signum == signal.SIGINT:
                log.warning("%s: stopping at once", name)
                self.cut_off(f"the gateway was told to stop at once ({name})")
            else:
                log.info("%s: already stopping", name)
        elif self.dataplane.draining:
            if signum == signal.SIGINT:
                log.info("%s: closing the listeners now", name)
                self._skip_delay.set()
            else:
                log.info("%s: already draining", name)
        else:
            self.dataplane.draining = True
            delay = self.settings.drain_delay if signum == signal.SIGTERM else 0.0
            self._drain_task = asyncio.get_running_loop().create_task(self._drain(name, delay))

    async def _drain(self, name: str, delay: float) -> None:
        if delay:
            log.info("%s: draining; ready answers 503 for %g s while requests are served, then the listeners close", name, delay)
            try:
                await asyncio.wait_for(self._skip_delay.wait(), delay)
            except asyncio.TimeoutError:
                pass
        log.info("%s: closing the listeners; in-flight requests get up to %g s (shutdown_grace)", name, self.settings.shutdown_grace)
        self.app.stop(terminate=False)  # Sanic's own stop: what its signal handlers would do

    def listeners_closing(self) -> None:
        """Sanic is about to close its listeners (whatever stopped it): the grace starts."""
        self.closing = True
        self.dataplane.draining = True
        self.take_signals()  # Sanic has put the default handlers back: a second SIGINT must not raise in the middle
        grace = self.settings.shutdown_grace
        why = f"the gateway is stopping: the request did not finish within shutdown_grace, {grace} s"
        self._cut_off = asyncio.get_running_loop().call_later(grace, self.cut_off, why)

    def cut_off(self, why: str) -> None:
        if self._cut_off is not None:
            self._cut_off.cancel()
        self._cut_off_requests(why)


def build(settings: ServerSettings, access: Access, tls: Optional[TLS], preloaded: Optional[Preloaded] = None) -> Sanic:
    """The main process: the model table, the pools, the registry, front door 1 and, with
    frontdoor_workers above 1, the relay front doors and the hub they connect to."""
    supervisor = Supervisor(settings, preloaded)
    dataplane = DataPlane(settings, supervisor)
    stats.watch(supervisor.gauges)
    relays = RelayFrontDoors(settings) if settings.frontdoor_workers > 1 else None
    hub: Optional[RelayHub] = None

    async def load_models() -> None:
        try:
            await supervisor.start()
        except Exception:  # a task's exception is otherwise never seen; the server stays not ready
            log.exception("the model repository could not be loaded")

    async def start(app: Sanic) -> None:
        nonlocal hub
        if preloaded is not None and preloaded.setup_loop is not None:
            preloaded.setup_loop(asyncio.get_running_loop())
        # load in the background: the server answers live (and ready: false) while models load
        app.add_task(load_models(), name="load-models")
        if relays is not None:
            supervisor.processes.start()
            hub = RelayHub(dataplane, endpoint_in(supervisor.processes.socket_folder), relays.members)
            dataplane.counts_in = hub.sync
            relays.start(hub, supervisor.table.read_fd)

    async def stop() -> None:
        if relays is not None and hub is not None:
            # their in-flight requests run here: the workers stop only once the relay front doors are gone
            await relays.stop(settings.shutdown_grace + CUT_OFF_MARGIN + RELAY_EXIT_MARGIN)
            await hub.close()
        await supervisor.stop()
        log.info("gateway stopped")

    forward = relays.signal if relays is not None else _ignore
    return _front_door(dataplane, access, tls, start, stop, supervisor.cut_off, forward, {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGINT})


def build_relay(settings: ServerSettings, access: Access, tls: Optional[TLS], number: int, main: MainProcess, table: ModelTable) -> Sanic:
    """A relay front door: the same REST and gRPC front doors, its requests run by the main process."""
    dataplane = RelayDataPlane(settings, table, main)

    async def start(app: Sanic) -> None:
        main.connect()

    async def stop() -> None:
        await main.close()
        log.info("front door %d stopped", number)

    signals: dict[int, Optional[int]] = {signal.SIGTERM: None, signal.SIGINT: None, **{relayed: meaning for meaning, relayed in RELAYED_SIGNALS.items()}}
    return _front_door(dataplane, access, tls, start, stop, main.fail_all, _ignore, signals)


def _front_door(
    dataplane: DataPlane,
    access: Access,
    tls: Optional[TLS],
    start: Callable[[Sanic], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    cut_off: Callable[[str], None],
    forward: Callable[[int], None],
    signals: dict[int, Optional[int]],
) -> Sanic:
    """REST and gRPC on one Sanic loop, and their stop (the module docstring); `start` runs before
    they serve, `stop` once their in-flight requests are done."""
    settings = dataplane.settings
    app = create_app(dataplane, access)
    # how long Sanic waits for busy connections once its listener closed, before it cuts them
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = settings.shutdown_grace + CUT_OFF_MARGIN
    stopping = Stopping(app, dataplane, settings, cut_off, forward, signals)

    @app.before_server_start
    async def starting(app: Sanic) -> None:
        await start(app)
        if access.files:
            app.add_task(access.watch(), name="watch-token-files")
        if tls is not None:
            app.add_task(tls.watch(), name="watch-tls-files")
        # the gRPC front door runs on Sanic's loop, in this process (see gateway/frontdoor/grpc/__init__.py)
        app.ctx.grpc = await grpc_server.start(dataplane, settings, access, tls) if settings.enable_grpc else None

    @app.after_server_start
    async def take_signals(app: Sanic) -> None:
        stopping.take_signals()  # in place of Sanic's, which would close the listeners at once

    @app.before_server_stop
    async def listeners_closing(app: Sanic) -> None:
        stopping.listeners_closing()
        # not awaited here: gRPC calls go on while Sanic waits for its REST connections. Its grace ends
        # after the cut-off, so that the calls cut off are answered UNAVAILABLE, not cancelled
        if app.ctx.grpc is not None:
            grace = settings.shutdown_grace + CUT_OFF_MARGIN
            app.ctx.grpc_stopped = asyncio.get_running_loop().create_task(grpc_server.stop(app.ctx.grpc, grace))

    @app.after_server_stop
    async def stopped(app: Sanic) -> None:
        if app.ctx.grpc is not None:
            await app.ctx.grpc_stopped
        await stop()

    return app


def _ignore(*_: object) -> None:
    pass


def metrics_app(app: Sanic, access: Access) -> Sanic:
    """The metrics port: a second Sanic app served by the same process and loop as `app`."""
    metrics_only = Sanic(f"{app.name}-metrics", configure_logging=False)
    metrics_only.ctx.dataplane = app.ctx.dataplane
    metrics_only.config.update({key: app.config[key] for key in ("HEADER_TIMEOUT", "BODY_TIMEOUT")})  # for TimedHttp
    metrics_only.add_route(metrics_endpoint, "/metrics", methods=("GET",))
    metrics_only.exception(Exception)(on_error)
    guard(metrics_only, access)
    return metrics_only


def listen(host: str, port: int, setting: str, reuse_port: bool = False) -> socket.socket:
    """A socket listening on host:port, bound before anything starts: a port in use stops the
    gateway with one line naming it and its setting. `reuse_port`: shared by every front-door
    process (SO_REUSEPORT: the kernel spreads new connections over them)."""
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)  # an IPv6 address, or IPv4 / a host name (as Sanic's bind_socket)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
        except BaseException:
            sock.close()
            raise
        return sock
    except OSError as exc:
        raise PortUnavailable(f"cannot listen on {host}:{port} ({setting}): {exc.strerror or exc}") from None


def run(settings: ServerSettings, preloaded: Optional[Preloaded] = None) -> None:
    """Serve until stopped; `preloaded`: a KServe script's models (gateway/kserve/model_server.py)."""
    _serve(settings, lambda access, tls: build(settings, access, tls, preloaded), None)


def run_relay(settings: ServerSettings, number: int, main: MainProcess, table: ModelTable) -> None:
    """Serve as relay front door `number` (gateway/relay.py) until stopped."""
    _serve(settings, lambda access, tls: build_relay(settings, access, tls, number, main, table), number)


def _serve(settings: ServerSettings, make_app: Callable[[Access, Optional[TLS]], Sanic], relay_number: Optional[int]) -> None:
    try:
        access, tls = Access(settings), TLS.load(settings)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    if relay_number is None:  # said once, by the main process
        log.info("bearer tokens: %s", access.describe())
        if tls is None and access.digests:
            log.warning("bearer tokens are checked but TLS is off: they cross the network in clear unless a proxy or service mesh encrypts it (tls_cert_file)")
    shared = settings.frontdoor_workers > 1
    try:
        if shared and relay_number is None:
            # SO_REUSEPORT would let this gateway share a port with another process of the same user (another
            # gateway started on the same ports): the main process, which starts before its relays, first
            # checks that no one holds them, binding without it
            ports = {"http_port": settings.http_port, "metrics_port": settings.metrics_port, "grpc_port": settings.grpc_port if settings.enable_grpc else 0}
            for setting, port in ports.items():
                if port:
                    listen(settings.host, port, setting).close()
        rest_socket = listen(settings.host, settings.http_port, "http_port", shared)
        metrics_socket = listen(settings.host, settings.metrics_port, "metrics_port", shared) if settings.metrics_port else None
        if settings.enable_grpc:  # grpc binds a socket of its own when it starts: this only checks that it will be able to
            listen(settings.host, settings.grpc_port, "grpc_port", shared).close()
    except PortUnavailable as exc:
        log.error("%s", exc)
        sys.exit(1)
    app = make_app(access, tls)
    options: dict[str, Any] = {"single_process": True, "access_log": False, "motd": False, "debug": False, "protocol": GatewayProtocol}
    scheme = "http"
    if tls is not None:  # every port, the metrics port too (docs/SECURITY.md)
        options["ssl"], scheme = tls.ssl_context(), "https"
        if relay_number is None:
            log.info("%s on every port", tls.describe())
    app.prepare(sock=rest_socket, **options)
    if metrics_socket is not None:
        metrics_app(app, access).prepare(sock=metrics_socket, **options)
    if relay_number is None:
        log.info("REST on %s://%s:%d", scheme, settings.host, settings.http_port)
        if settings.enable_grpc:
            log.info("gRPC on %s:%d (messages up to %d bytes)", settings.host, settings.grpc_port, settings.grpc_max_message_bytes)
        if metrics_socket is not None:
            log.info("metrics on %s://%s:%d/metrics", scheme, settings.host, settings.metrics_port)
        if shared:
            log.info("front door 1 of %d (the main process; the others relay to it)", settings.frontdoor_workers)
    else:
        grpc = f", gRPC on {settings.host}:{settings.grpc_port}" if settings.enable_grpc else ""
        metrics = f", metrics on {settings.metrics_port}" if metrics_socket is not None else ""
        log.info(
            "front door %d of %d serving REST on %s://%s:%d%s%s",
            relay_number,
            settings.frontdoor_workers,
            scheme,
            settings.host,
            settings.http_port,
            grpc,
            metrics,
        )
    Sanic.serve_single(app)
