"""grpc.health.v1.Health: what Kubernetes gRPC probes, load balancers and grpcurl ask.

Service names (`service` in the request):
- "" and "inference.GRPCInferenceService": the whole server, SERVING exactly when it is ready
  (`DataPlane.server_ready`, the rule of REST /v2/health/ready and gRPC ServerReady): not while
  models load, while one that should be served is not ready, nor while the gateway drains;
- "<model>": that model's newest version, and "<model>/<version>": that version, SERVING when it
  is READY (as /v2/models/<model>[/versions/<version>]/ready), NOT_SERVING while it loads, has
  failed or was unloaded;
- any other name is unknown: Check answers NOT_FOUND, Watch SERVICE_UNKNOWN (and goes on
  watching: a model loaded later becomes known), as the health-checking protocol says.

With inference tokens (gateway/frontdoor/access.py), the whole server's status stays open for
probes; a model's, an unknown name's and List need the inference token (UNAUTHENTICATED).

Watch reads the status every WATCH_INTERVAL and sends it when it changed: the states it follows
are set in many places (the supervisor's model table, the gateway's draining flag), and a
read of them costs a dictionary lookup. When the gateway stops, every Watch ends with
UNAVAILABLE, so that open watches do not hold its shutdown grace up to its end.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Optional

import grpc

from ... import logs
from ...errors import GatewayError, NotFound
from ...protocol.generated import health_pb2 as pb
from ...types import State
from ..access import Access, health_scope
from ..dataplane import DataPlane
from .handlers import authorization, check_parsed, method_handlers

SERVICE = "grpc.health.v1.Health"
SERVER_NAMES = ("", "inference.GRPCInferenceService")  # the whole server
WATCH_INTERVAL = 0.25  # seconds between two reads of a watched status


class HealthServicer:
    services = (SERVICE,)

    def __init__(self, dataplane: DataPlane, access: Access):
        self.dataplane = dataplane
        self.access = access
        self._closed = asyncio.Event()

    def check_token(self, rpc: str, request: pb.HealthCheckRequest | pb.HealthListRequest, context: grpc.aio.ServicerContext) -> None:
        whole_server = getattr(request, "service", None) in SERVER_NAMES
        self.access.check(health_scope(rpc, whole_server), authorization(context))

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [method_handlers(self, pb.DESCRIPTOR.services_by_name["Health"], pb)]

    def close(self) -> None:
        """The gateway stops: end every Watch."""
        self._closed.set()

    def status(self, service: str) -> Optional[pb.HealthCheckResponse.ServingStatus]:
        """The service's ServingStatus; None for a name this server does not know."""
        if service in SERVER_NAMES:
            return pb.HealthCheckResponse.SERVING if self.dataplane.server_ready() else pb.HealthCheckResponse.NOT_SERVING
        name, _, version = service.partition("/")
        try:
            state, _ = self.dataplane.model_state(name, version or None)
        except NotFound:
            return None
        return pb.HealthCheckResponse.SERVING if state == State.READY.value else pb.HealthCheckResponse.NOT_SERVING

    def names(self) -> list[str]:
        """Every service name this server knows: the server's, each model's and each model version's."""
        models = self.dataplane.repository_index()
        versions = [f"{model['name']}/{model['version']}" for model in models if model["version"]]
        return [*SERVER_NAMES, *sorted({model["name"] for model in models}), *versions]

    async def Check(self, request: pb.HealthCheckRequest, context: grpc.aio.ServicerContext) -> pb.HealthCheckResponse:  # type: ignore[return]  # context.abort raises
        started, code = time.perf_counter_ns(), grpc.StatusCode.OK
        try:
            check_parsed(request)
            self.check_token("Check", request, context)
            status = self.status(request.service)
            if status is None:
                code = grpc.StatusCode.NOT_FOUND
                await context.abort(code, f"unknown service {request.service!r}: ask for '' (the server), a model's name, or name/version")
            return pb.HealthCheckResponse(status=status)
        except GatewayError as exc:  # a malformed request, or no valid token
            code = getattr(grpc.StatusCode, exc.grpc_code)
            await context.abort(code, exc.message)
        finally:
            logs.access("grpc", "Check", f"/{SERVICE}/Check", code.name, time.perf_counter_ns() - started, None, None)

    async def List(self, request: pb.HealthListRequest, context: grpc.aio.ServicerContext) -> pb.HealthListResponse:  # type: ignore[return]  # context.abort raises
        started, code = time.perf_counter_ns(), grpc.StatusCode.OK
        try:
            check_parsed(request)
            self.check_token("List", request, context)
            statuses = {name: pb.HealthCheckResponse(status=status) for name in self.names() if (status := self.status(name)) is not None}
            return pb.HealthListResponse(statuses=statuses)
        except GatewayError as exc:
            code = getattr(grpc.StatusCode, exc.grpc_code)
            await context.abort(code, exc.message)
        finally:
            logs.access("grpc", "List", f"/{SERVICE}/List", code.name, time.perf_counter_ns() - started, None, None)

    async def Watch(self, request: pb.HealthCheckRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.HealthCheckResponse]:
        try:
            check_parsed(request)
            self.check_token("Watch", request, context)
        except GatewayError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), exc.message)
        sent = None
        while True:
            status = self.status(request.service)
            status = pb.HealthCheckResponse.SERVICE_UNKNOWN if status is None else status
            if status != sent:
                yield pb.HealthCheckResponse(status=status)
                sent = status
            if self._closed.is_set():  # its last status read after the gateway began to stop: the server's is NOT_SERVING
                break
            try:
                await asyncio.wait_for(self._closed.wait(), WATCH_INTERVAL)
            except asyncio.TimeoutError:
                pass
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the gateway is stopping")
