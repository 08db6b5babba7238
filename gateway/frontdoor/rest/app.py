"""The V2 REST front door (Sanic).

Handlers only translate HTTP to the data plane and back; every error leaves
as `{"error": "..."}` with its status, never as a framework page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager
from typing import Awaitable, Callable, Optional, Sequence, cast

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from sanic import Request, Sanic
from sanic.exceptions import RequestCancelled, SanicException
from sanic.response import HTTPResponse

from ... import logs
from ...errors import SHOWN_LIMIT, BadRequest, GatewayError, NotFound, Unavailable, answer_for, shown
from ...protocol import HEADER_LENGTH
from ...wire.request import WireRequest, WireResponse
from ..access import Access, rest_scope
from ..dataplane import DataPlane, StreamCall, V1Answer, v1_part
from . import apidoc, mlrun
from .apidoc.spec import REQUEST_TIMEOUT_HEADER  # seconds the client waits, for clients that cannot set the `timeout` parameter
from .body import (
    RenderedResponse,
    build_infer_request,
    parse_header_length,
    parse_raw_request,
    read_json_body,
    render_infer_response,
    request_of,
)
from .connection import TimedHttp
from .largejson import LARGE_JSON

log = logging.getLogger("gateway.rest")


SSE = "text/event-stream"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}  # no proxy holds events back


def _sse(rendered: RenderedResponse) -> list[bytes | bytearray]:
    """One server-sent event: `data: <JSON>` and a blank line (orjson writes no newline)."""
    return [b"data: ", rendered.body, *rendered.chunks, b"\n\n"]


def _json(document, status: int = 200, headers: Optional[dict] = None) -> HTTPResponse:
    return HTTPResponse(orjson.dumps(document), status=status, headers=headers, content_type="application/json")


def _request_headers(request: Request) -> dict[str, str]:
    """The request's HTTP headers as KServe's hooks get them: lower-case names (the last of repeated ones)."""
    return {name.lower(): value for name, value in request.headers.items()}


def _response_headers(headers: Optional[dict]) -> dict[str, str]:
    """A model's response headers, less those the server itself writes (the body's framing)."""
    return {str(k): str(v) for k, v in (headers or {}).items() if str(k).lower() not in _FRAMING_HEADERS}


_FRAMING_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding", "connection"})
V1_VERBS = ("predict", "explain")
V1_CHUNKS = "application/octet-stream"  # the content type of a streamed V1 answer


def _json_body(request: Request) -> dict:
    """An optional JSON object body (empty body: {})."""
    if not request.body:
        return {}
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


async def metrics_endpoint(request: Request) -> HTTPResponse:
    """GET /metrics: the Prometheus exposition (on the metrics port, and on the REST port if configured)."""
    dataplane: DataPlane = request.app.ctx.dataplane
    return HTTPResponse(await dataplane.metrics(), content_type=CONTENT_TYPE_LATEST)


async def on_error(request: Request, exc: Exception) -> HTTPResponse:
    """Every error as `{"error": ...}` with its status (the REST port's and the metrics port's)."""
    if isinstance(exc, SanicException):  # its headers: Allow for a 405, as RFC 9110 asks
        return _json({"error": str(exc)}, exc.status_code, exc.headers)
    if not isinstance(exc, GatewayError):
        log.exception("unexpected error on %s %s", request.method, request.path)
    status, _, message = answer_for(exc)
    headers = dict(getattr(exc, "headers", {}))  # a 401's WWW-Authenticate
    retry_after = getattr(exc, "retry_after", None)  # a full queue: when to try again
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return _json({"error": message}, status, headers or None)


def guard(app: Sanic, access: Access) -> None:
    """Check each request's bearer token for its route's scope (gateway/frontdoor/access.py), once the route is
    known and before its body is read: a client without a valid token never gets a body buffered.
    Call it once every route is added: a route without a scope stops the gateway here."""
    scopes = {route.name: rest_scope(route.name.removeprefix(f"{app.name}.")) for route in app.router.routes}
    protected = {name: scope for name, scope in scopes.items() if access.protects(scope)}
    if not protected:
        return

    @app.signal("http.routing.after")
    async def check_token(request: Request, route, **_) -> None:
        scope = protected.get(route.name)
        if scope is not None:
            access.check(scope, request.headers.get("authorization"))


def _header_timeout(request: Request) -> Optional[float]:
    """The Request-Timeout header: seconds (a decimal number above 0), or None if absent."""
    value = request.headers.get(REQUEST_TIMEOUT_HEADER)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise BadRequest(f"{REQUEST_TIMEOUT_HEADER} must be a number of seconds above 0, got {shown(value)}")
    return seconds


def create_app(dataplane: DataPlane, access: Access, name: str = "gateway") -> Sanic:
    app = Sanic(name, configure_logging=False)
    app.ctx.dataplane = dataplane  # the metrics endpoint's
    settings = dataplane.settings
    app.config.REQUEST_MAX_SIZE = settings.max_request_bytes
    app.config.RESPONSE_TIMEOUT = settings.request_timeout + 30  # type: ignore[assignment]  # Sanic takes seconds as a float too
    # read by connection.TimedHttp (Sanic's REQUEST_TIMEOUT restarts with every byte: see there)
    app.config.HEADER_TIMEOUT = settings.header_timeout
    app.config.BODY_TIMEOUT = settings.body_timeout
    app.config.KEEP_ALIVE_TIMEOUT = 75
    # Sanic pauses reading a body every REQUEST_BUFFER_SIZE bytes (64 KiB by default): too often for tensors
    app.config.REQUEST_BUFFER_SIZE = 1024 * 1024

    def route(handler, uri: str, methods: tuple[str, ...], versioned: bool = True, name: Optional[str] = None) -> None:
        name = name or handler.__name__
        app.add_route(handler, uri, methods=methods, name=name)
        if versioned:
            app.add_route(handler, uri.replace("<model>", "<model>/versions/<version>"), methods=methods, name=f"{name}_version")

    async def server_metadata(request: Request) -> HTTPResponse:
        return _json(dataplane.server_metadata())

    async def live(request: Request) -> HTTPResponse:
        return _json({"live": True})

    async def ready(request: Request) -> HTTPResponse:
        is_ready = dataplane.server_ready()
        return _json({"ready": is_ready}, 200 if is_ready else 503)

    async def list_models(request: Request) -> HTTPResponse:
        return _json({"models": dataplane.model_names()})

    async def model_metadata(request: Request, model: str, version: Optional[str] = None) -> HTTPResponse:
        return _json(dataplane.model_metadata(model, version))

    async def model_ready(request: Request, model: str, version: Optional[str] = None) -> HTTPResponse:
        state, reason = dataplane.model_state(model, version)
        if state == "READY":
            return _json({"name": model, "ready": True})
        return _json({"name": model, "ready": False, "state": state, "reason": reason}, 503)

    async def _parse(request: Request, model: Optional[str], version: Optional[str], verb: Optional[str]) -> tuple[WireRequest, str]:
        """The request a body holds, and its verb (infer, infer_dict, explain). `model` and `verb`
        are None where the URL names none (POST /): the body names them then, as MLRun's clients do."""
        if model is not None:
            dataplane.check_model_exists(model, version)
        value = request.headers.get(HEADER_LENGTH)
        header_length = None if value is None else parse_header_length(value)
        body = request.body
        if len(body) >= LARGE_JSON:
            await asyncio.sleep(0)  # Sanic has just joined the body in one step: let others in before the next
        binary = header_length is None and mlrun.is_binary_body(request.headers.get("content-type"))
        if header_length == 0 or binary:  # the bytes of the model's one input
            if model is None:
                raise BadRequest("POST / takes a JSON body that names its model; send raw and binary bodies to /v2/models/{model}/infer")
            declared = dataplane.declared_inputs(model, version)
            if binary:
                tensor = mlrun.binary_tensor(body, declared, settings.max_tensor_bytes)
                return WireRequest(model, version, "", [tensor], {}), verb or "infer"
            return await parse_raw_request(body, model, version, declared, settings.max_tensor_bytes), verb or "infer"
        parsed = await read_json_body(body, header_length)
        model, version, verb = mlrun.resolve_target(parsed.document, model, version, verb)
        dataplane.check_model_exists(model, version)  # the body may have named it, or its version
        request.ctx.model = (model, version)
        if not mlrun.is_mlrun_form(parsed.document, verb):
            return await build_infer_request(parsed, model, version, settings.max_tensor_bytes, dataplane.check_request), verb
        if parsed.binary or parsed.large is not None:
            raise BadRequest(f"MLRun's forms of inputs (plain lists, rows of features, data_url) are JSON bodies of less than {LARGE_JSON} bytes")
        inputs = await mlrun.mlrun_inputs(
            parsed.document, verb, lambda: dataplane.declared_inputs(model, version), settings.data_folder, settings.max_tensor_bytes
        )
        if isinstance(inputs, list):  # V2 tensors, from a data_url file
            parsed.document = {**parsed.document, "inputs": inputs}
            return await build_infer_request(parsed, model, version, settings.max_tensor_bytes, dataplane.check_request), verb
        return request_of(parsed.document, model, version, [inputs]), verb

    async def _send(request: Request, rendered: RenderedResponse) -> Optional[HTTPResponse]:
        json_body = rendered.json_length is None
        content_type = "application/json" if json_body else "application/octet-stream"
        headers = _response_headers(rendered.headers)
        if not json_body:
            headers[HEADER_LENGTH] = str(rendered.json_length)
        if not rendered.chunks:
            return HTTPResponse(rendered.body, content_type=content_type, headers=headers)
        # large: the parts go out as writes of their own
        response = await request.respond(headers={**headers, "content-length": str(rendered.size)}, content_type=content_type)
        await response.send(rendered.body)
        for chunk in rendered.chunks:
            await response.send(chunk)
        await response.eof()
        return None

    async def _serve(request: Request, model: Optional[str], version: Optional[str], verb: Optional[str]) -> Optional[HTTPResponse]:
        parsed, verb = await _parse(request, model, version, verb)
        parsed.bound_by(_header_timeout(request))
        if dataplane.takes_headers(parsed.model_name, parsed.model_version):
            parsed.headers = _request_headers(request)
        # rendered while the outputs may view the worker's shared memory, into bytes the answer owns
        async with (dataplane.explain if verb == "explain" else dataplane.infer)(parsed) as response:
            rendered = await render_infer_response(response, parsed)
        return await _send(request, rendered)

    async def infer(request: Request, model: str, version: Optional[str] = None) -> Optional[HTTPResponse]:
        return await _serve(request, model, version, "infer")

    async def explain(request: Request, model: str, version: Optional[str] = None) -> Optional[HTTPResponse]:
        return await _serve(request, model, version, "explain")

    async def infer_dict(request: Request, model: str, version: Optional[str] = None) -> Optional[HTTPResponse]:
        return await _serve(request, model, version, "infer_dict")

    async def infer_named_in_body(request: Request) -> Optional[HTTPResponse]:
        """MLRun's route for clients that cannot put the model in a URL: the body's model and operation."""
        return await _serve(request, None, None, None)

    async def _answer_with_stream(
        request: Request,
        stream: AbstractAsyncContextManager[StreamCall],
        parts_of: Callable[[WireResponse], Awaitable[Sequence[bytes | bytearray] | HTTPResponse]],
        content_type: str,
        headers: Optional[dict],
        on_error_after_first_part: Callable[[HTTPResponse, str, int], Awaitable[None]],
    ) -> Optional[HTTPResponse]:
        """Answer with a model's stream (SSE's and V1's): each response's parts (`parts_of`) are sent as it
        comes, the status and headers with the first. An error before the first part is an ordinary error
        answer; one after it goes to `on_error_after_first_part` (the sent answer, the error's message, the
        responses sent), which ends the answer its own way. If `parts_of` makes an HTTPResponse, the model
        answered at once: that is the answer. A stream is counted once, at its end, with its responses."""
        sent, whole, status, call = None, None, 200, None
        try:
            async with stream as call:
                call.end_input()
                async for response in call:
                    parts = await parts_of(response)
                    if isinstance(parts, HTTPResponse):
                        whole = parts  # the model answered at once: its one response, then the stream ends
                        continue
                    if sent is None:
                        request.ctx.accounted_at_end = True  # answered() runs at respond(): a stream is counted once, at its end
                        sent = await request.respond(headers=headers, content_type=content_type)
                    for part in parts:
                        await sent.send(part)  # waits while the client is slow to read: the generator waits with it
        except asyncio.CancelledError as exc:
            status, _, _ = answer_for(exc)  # the client went away: the generator has been cancelled
            raise
        except Exception as exc:
            if sent is None:
                raise  # nothing sent yet: an ordinary error answer
            if not isinstance(exc, GatewayError):
                log.exception("unexpected error in a stream of %s", request.path)
            status, _, message = answer_for(exc)
            await on_error_after_first_part(sent, message, call.responses if call is not None else 0)
            return None
        finally:
            if sent is not None:
                _account(request, status, call.responses if call is not None else 0)
        if whole is not None:
            return whole
        if sent is None:  # the stream ended without a response: an empty body
            sent = await request.respond(headers=headers, content_type=content_type)
        await sent.eof()
        return None

    async def infer_stream(request: Request, model: str, version: Optional[str] = None) -> Optional[HTTPResponse]:
        """Server-sent events, one `data: <response JSON>` each, as MLServer sends them. An error before
        the first event is an ordinary JSON error answer; after it, a last event `data: {"error": ...}`."""
        parsed, _ = await _parse(request, model, version, "infer")
        if not dataplane.streams(parsed.model_name, parsed.model_version):
            # as MLServer: a model without predict_stream answers with one event, its predict's answer
            if dataplane.takes_headers(parsed.model_name, parsed.model_version):
                parsed.headers = _request_headers(request)
            async with dataplane.infer(parsed) as response:
                event = _sse(await render_infer_response(response, parsed, json_only=True))
            sent = await request.respond(headers=SSE_HEADERS, content_type=SSE)
            await sent.send(b"".join(event))
            await sent.eof()
            return None

        async def events(response: WireResponse) -> Sequence[bytes | bytearray]:
            return _sse(await render_infer_response(response, parsed, json_only=True))

        async def error_event(sent: HTTPResponse, message: str, responses: int) -> None:
            await sent.send(b"data: " + orjson.dumps({"error": message}) + b"\n\n")
            await sent.eof()

        return await _answer_with_stream(request, dataplane.stream(parsed), events, SSE, SSE_HEADERS, error_event)

    # --- KServe's V1 protocol (models of gateway.kserve; errors as KServe answers them)

    def _v1_model(model: str) -> None:
        """KServe's answers (kserve.errors.ModelNotFound, ModelNotReady) for a model that is not there."""
        try:
            state, _ = dataplane.model_state(model)
        except NotFound:
            raise NotFound(f"Model with name {model if len(model) <= SHOWN_LIMIT else shown(model)} does not exist.") from None
        if state != "READY":
            raise Unavailable(f"Model with name {model} is not ready.")

    async def v1_models(request: Request) -> HTTPResponse:
        return _json({"models": dataplane.model_names()})

    async def v1_model_ready(request: Request, model: str) -> HTTPResponse:
        _v1_model(model)
        return _json({"name": model, "ready": True})

    async def v1_verb(request: Request, target: str) -> Optional[HTTPResponse]:
        """POST /v1/models/{name}:predict and :explain (one route: the verb is part of the last segment)."""
        model, _, verb = target.rpartition(":")
        request.ctx.model = (model, None)  # for the access line and the request metrics
        if verb not in V1_VERBS or not model:
            raise NotFound(f"no such V1 endpoint: {shown(request.path)}; use /v1/models/{{name}}:predict or :explain")
        _v1_model(model)
        if verb == "predict" and dataplane.v1_streams(model):
            return await _v1_stream(request, model)
        timeout = _header_timeout(request)
        return _v1_response(await dataplane.v1(model, request.body, _request_headers(request), explain=verb == "explain", timeout=timeout))

    async def _v1_stream(request: Request, model: str) -> Optional[HTTPResponse]:
        """A V1 predict of a model that may stream. An async iterator's chunks are the body as they
        come (chunked), as KServe's StreamingResponse sends them, without the model's response headers;
        their content type is application/octet-stream (KServe's says none: Sanic always writes one). An error before the first chunk is an ordinary error answer; after it, the
        connection is cut (as KServe), so that the client sees a body that did not end. A whole
        answer is answered as usual."""

        async def chunk_or_whole(response: WireResponse) -> Sequence[bytes] | HTTPResponse:
            part = v1_part(response)
            return _v1_response(part) if isinstance(part, V1Answer) else [part]

        async def cut_connection(sent: HTTPResponse, message: str, responses: int) -> None:
            log.warning("V1 stream of model %s failed after %d chunk(s), connection cut: %s", model, responses, message)
            cast(asyncio.Transport, request.transport).abort()  # no last chunk: the body did not end

        stream = dataplane.v1_stream(model, request.body, _request_headers(request))
        return await _answer_with_stream(request, stream, chunk_or_whole, V1_CHUNKS, None, cut_connection)

    def _v1_response(answer: V1Answer) -> HTTPResponse:
        return HTTPResponse(answer.body, content_type=answer.content_type, headers=_response_headers(answer.headers))

    async def statistics(request: Request, model: Optional[str] = None, version: Optional[str] = None) -> HTTPResponse:
        return _json({"model_stats": await dataplane.statistics(model, version)})

    async def repository_index(request: Request) -> HTTPResponse:
        body = _json_body(request)
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise BadRequest("ready must be true or false")
        return _json(dataplane.repository_index(ready))

    async def repository_load(request: Request, model: str) -> HTTPResponse:
        await dataplane.load_model(model)
        return _json({})

    async def repository_unload(request: Request, model: str) -> HTTPResponse:
        await dataplane.unload_model(model)
        return _json({})

    route(server_metadata, "/", ("GET",), versioned=False)
    app.add_route(server_metadata, "/v2", methods=("GET",), name="server_metadata_v2")
    app.add_route(server_metadata, "/v2/health", methods=("GET",), name="server_metadata_health")  # as MLRun
    route(live, "/v2/health/live", ("GET",), versioned=False)
    route(ready, "/v2/health/ready", ("GET",), versioned=False)
    route(list_models, "/v2/models", ("GET",), versioned=False)
    route(model_metadata, "/v2/models/<model>", ("GET",))
    route(model_ready, "/v2/models/<model>/ready", ("GET",))
    route(infer, "/v2/models/<model>/infer", ("POST",))
    route(explain, "/v2/models/<model>/explain", ("POST",))
    route(infer_dict, "/v2/models/<model>/infer_dict", ("POST",))
    # MLRun's names of the same operations, and its route for a model named in the body
    app.add_route(infer, "/v2/models/<model>/predict", methods=("POST",), name="predict")
    app.add_route(infer, "/v2/models/<model>/versions/<version>/predict", methods=("POST",), name="predict_version")
    app.add_route(infer_dict, "/v2/models/<model>/predict_dict", methods=("POST",), name="predict_dict")
    app.add_route(infer_dict, "/v2/models/<model>/versions/<version>/predict_dict", methods=("POST",), name="predict_dict_version")
    app.add_route(infer_named_in_body, "/", methods=("POST",), name="infer_named_in_body")
    route(infer_stream, "/v2/models/<model>/infer_stream", ("POST",))
    # MLServer's names for LLM clients: generate is infer, generate_stream is infer_stream
    route(infer, "/v2/models/<model>/generate", ("POST",), name="generate")
    route(infer_stream, "/v2/models/<model>/generate_stream", ("POST",), name="generate_stream")
    route(statistics, "/v2/models/<model>/stats", ("GET",))
    app.add_route(statistics, "/v2/models/stats", methods=("GET",), name="statistics_all")

    app.add_route(v1_models, "/v1/models", methods=("GET",), name="v1_models")
    app.add_route(v1_model_ready, "/v1/models/<model>", methods=("GET",), name="v1_model_ready")
    app.add_route(v1_verb, "/v1/models/<target>", methods=("POST",), name="v1_verb")

    route(repository_index, "/v2/repository/index", ("POST",), versioned=False)
    route(repository_load, "/v2/repository/models/<model>/load", ("POST",), versioned=False)
    route(repository_unload, "/v2/repository/models/<model>/unload", ("POST",), versioned=False)
    if settings.metrics_on_http:
        route(metrics_endpoint, "/metrics", ("GET",), versioned=False)
    apidoc.register(app, settings)  # /openapi.json, /docs: a route added above must be described there
    guard(app, access)

    # inference routes: counted in the request metrics of their model
    inference = ("infer", "explain", "infer_dict", "predict", "predict_dict", "generate", "infer_stream", "generate_stream")
    counted = {f"{app.name}.{handler}{suffix}" for handler in inference for suffix in ("", "_version")} | {f"{app.name}.infer_named_in_body"}
    counted.add(f"{app.name}.v1_verb")

    def _account(request: Request, status: int, responses: Optional[int] = None) -> None:
        # Sanic stamps perft0 once a request's headers are read, before its body: so the latency
        # includes receiving the body (a request middleware would run after it), at no extra cost.
        # A request whose headers never all came (timed out, or the client left) counts from the first wait for them.
        stream = cast(TimedHttp, request.stream)  # our connections' (GatewayProtocol)
        elapsed = int((time.perf_counter() - stream.began()) * 1e9)
        # the model a request named in its URL, or in its body (POST /)
        model, version = getattr(request.ctx, "model", None) or (request.match_info.get("model"), request.match_info.get("version"))
        inference = request.route is not None and request.route.name in counted
        dataplane.answered("rest", request.method, request.path, status, status, elapsed, model, version, inference, responses)
        logs.REQUEST_ID.set(None)  # the requests of a keep-alive connection share a task, and so a context
        if dataplane.draining:
            stream.keep_alive = False  # Connection: close, so that a kept-alive client moves to another server

    @app.on_response
    def answered(request: Request, response: HTTPResponse) -> None:
        if not getattr(request.ctx, "accounted_at_end", False):  # a stream is accounted for when it ends
            _account(request, response.status)

    @app.exception(RequestCancelled)  # type: ignore[arg-type]  # a CancelledError, which Sanic routes to handlers too
    async def on_client_gone(request: Request, exc: RequestCancelled) -> HTTPResponse:
        # the client closed its connection before its answer: nothing can be sent, but the access line
        # and the metrics (answered) count it as the client's doing
        status, _, message = answer_for(exc)
        return _json({"error": message}, status)

    app.exception(Exception)(on_error)
    return app
