"""Errors with a protocol meaning.

Raise one of these anywhere on the request path (parsing, dispatch, or inside a
runtime) and each front door turns it into its own status: an HTTP status with
`{"error": message}` over REST, the matching status code over gRPC. Each class
names both (`http_status`, `grpc_code`); `answer_for` is the one table both front
doors read, for these and for everything else that can end a request.

A message that quotes what the client sent (a name, a shape, a parameter)
quotes it through `shown`, so that no request can make its own error message
long.
"""

import asyncio
import reprlib

SHOWN_LIMIT = 100  # characters of a client's value that an error message quotes

# containers are shown a few levels and items deep: a list nested 1,000 deep must not exhaust the stack
_shortened = reprlib.Repr()
_shortened.maxlevel = 3
_shortened.maxlist = _shortened.maxtuple = _shortened.maxdict = _shortened.maxset = 8
_shortened.maxstring = _shortened.maxother = SHOWN_LIMIT


def shown(value: object) -> str:
    """A value the client sent, as an error message quotes it: its repr, cut after SHOWN_LIMIT characters.

    A message echoes the client's text to help it find its mistake, never in full: a 10,000-character
    input name would make the answer that long, and a gRPC status message travels in a trailer
    that clients refuse past 8 KiB (they would see RESOURCE_EXHAUSTED instead of the error)."""
    if isinstance(value, str) and len(value) > SHOWN_LIMIT:
        return f"{value[:SHOWN_LIMIT]!r}... ({len(value)} characters)"
    text = _shortened.repr(value)
    return text if len(text) <= SHOWN_LIMIT else text[:SHOWN_LIMIT] + "..."


class GatewayError(Exception):
    http_status = 500
    grpc_code = "INTERNAL"
    headers: dict[str, str] = {}  # sent with the REST answer

    def __init__(self, message: str):
        super().__init__(message)
        self._message = message

    @property
    def message(self) -> str:
        """What the client is told; read-only, so that a subclass may compute it (gateway.kserve.errors)."""
        return self._message


class BadRequest(GatewayError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(GatewayError):
    """No valid bearer token for what was called (gateway/frontdoor/access.py)."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    headers = {"www-authenticate": 'Bearer realm="inference-gateway"'}  # RFC 6750


class NotFound(GatewayError):
    http_status = 404
    grpc_code = "NOT_FOUND"


class Unavailable(GatewayError):
    http_status = 503
    grpc_code = "UNAVAILABLE"


class Timeout(GatewayError):
    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class Cancelled(GatewayError):
    """The request was cancelled (its client went away, or its deadline passed) while its call ran:
    what a worker answers a call it was told to stop. 499: nginx's "client closed request"."""

    http_status = 499
    grpc_code = "CANCELLED"


class QueueFull(Unavailable):
    """The model's queue holds max_queue_size requests already: the client should come back later."""

    retry_after = 1  # seconds (the Retry-After header; gRPC's retry pushback)


class RuntimeFailure(GatewayError):
    """The model runtime itself raised: a 500 with the runtime's message."""


class AnswerTooLarge(GatewayError):
    """An answer larger than the protocol may send (gRPC: grpc_max_message_bytes): the server's limit, not the client's fault."""

    grpc_code = "RESOURCE_EXHAUSTED"


class NotSupported(GatewayError):
    http_status = 501
    grpc_code = "UNIMPLEMENTED"


BY_STATUS = {cls.http_status: cls for cls in (BadRequest, NotFound, Unavailable, Timeout, Cancelled, RuntimeFailure, NotSupported)}


def from_status(status: int, message: str, grpc_code: str | None = None) -> GatewayError:
    """Rebuild an error that crossed a process boundary as (status, message, gRPC code): the code
    is carried apart, as a runtime's errors may pair them otherwise than ours do (KServe's
    InferenceError: 500 over REST, INVALID_ARGUMENT over gRPC)."""
    error = BY_STATUS.get(status, RuntimeFailure)(message)
    error.http_status = status
    if grpc_code is not None:
        error.grpc_code = grpc_code
    return error


CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client gone before its answer; a cancelled gRPC call counts the same


def answer_for(exc: BaseException) -> tuple[int, str, str]:
    """What a request that ended with `exc` is answered: (REST status, gRPC status code name, message).

    A GatewayError: its own status and code; the client gone or its deadline passed
    (asyncio.CancelledError, Sanic's RequestCancelled): 499 / CANCELLED, the client's doing (a 4xx for
    the metrics), though nothing can be sent; anything else: a bug of ours, 500 / INTERNAL."""
    if isinstance(exc, GatewayError):
        return exc.http_status, exc.grpc_code, exc.message
    if isinstance(exc, asyncio.CancelledError):
        return CLIENT_CLOSED_REQUEST, "CANCELLED", "the client closed the connection before its answer"
    return 500, "INTERNAL", f"internal error: {type(exc).__name__}: {exc}"
