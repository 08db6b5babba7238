"""Errors with a protocol meaning.

Raise one of these anywhere on the request path (parsing, dispatch, or inside a
runtime) and each front door turns it into its own status: an HTTP status with
`{"error": message}` over REST, the matching status code over gRPC.
"""


class GatewayError(Exception):
    http_status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotFound(GatewayError):
    http_status = 404
    grpc_code = "NOT_FOUND"


class Unavailable(GatewayError):
    http_status = 503
    grpc_code = "UNAVAILABLE"


class Timeout(GatewayError):
    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class RuntimeFailure(GatewayError):
    """The model runtime itself raised: a 500 with the runtime's message."""


class NotSupported(GatewayError):
    http_status = 501
    grpc_code = "UNIMPLEMENTED"


BY_STATUS = {cls.http_status: cls for cls in (BadRequest, NotFound, Unavailable, Timeout, RuntimeFailure, NotSupported)}


def from_status(status: int, message: str) -> GatewayError:
    """Rebuild an error that crossed a process boundary as (status, message)."""
    return BY_STATUS.get(status, RuntimeFailure)(message)
