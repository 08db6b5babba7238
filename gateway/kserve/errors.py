"""KServe's errors (`kserve.errors`), each carrying the status KServe answers it with.

A KServe script raises and catches these by KServe's names and bases (`InvalidInput`
is a `ValueError`, `ModelNotReady` a `RuntimeError`, ...). Each is also a
`gateway.errors.GatewayError`, so the gateway answers it as KServe 0.21 does:
`http_status` is the status of KServe's REST exception handlers, `grpc_code` the
status code of its gRPC exception interceptor. Errors KServe registers no handler
for answer 500 over REST (with KServe's "Type : message" body) and INTERNAL over gRPC.

KServe's FastAPI handler functions (`invalid_input_handler`, ...) are not here:
the gateway's front doors answer these errors themselves.
"""

from __future__ import annotations

from typing import Optional

from ..errors import GatewayError


class _KServeError(GatewayError):
    """The gateway's view of a KServe error: its message is what KServe's handler answers."""

    @property
    def message(self) -> str:
        return str(self)


class _Unhandled(_KServeError):
    """An error KServe has no handler for: its generic handler answers 500 with the type's name."""

    @property
    def message(self) -> str:
        return f"{type(self).__name__} : {self}"


class ModelMissingError(_Unhandled):
    """A model file is missing at `path` (raised by model servers' `load()`)."""

    def __init__(self, path):
        self.path = path

    def __str__(self):
        return str(self.path)


class InferenceError(RuntimeError, _KServeError):
    """Inference failed: 500 over REST, INVALID_ARGUMENT over gRPC (as KServe)."""

    http_status = 500
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, reason, status=None, debug_details=None):
        self.reason = reason
        self.status = status
        self.debug_details = debug_details

    def __str__(self):
        text = super().__str__() if self.reason is None else str(self.reason)
        return text if self.status is None else f"[{self.status}] {text}"


class InvalidInput(ValueError, _KServeError):
    """Invalid input arguments: 400 Bad Request."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, reason):
        self.reason = reason

    def __str__(self):
        return str(self.reason)


class ModelNotFound(_KServeError):
    """The requested model does not exist: 404 Not Found."""

    http_status = 404
    grpc_code = "NOT_FOUND"

    def __init__(self, model_name=None):
        self.reason = f"Model with name {model_name} does not exist."

    def __str__(self):
        return self.reason


class WorkersShouldBeLessThanMaxWorkersError(_Unhandled):
    def __init__(self, max_workers=None):
        self.reason = f"Workers cannot be greater than {max_workers}"

    def __str__(self):
        return self.reason


class ModelNotReady(RuntimeError, _KServeError):
    """The model exists but is not ready: 503 Service Unavailable."""

    http_status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, model_name: str, detail: Optional[str] = None):
        self.model_name = model_name
        self.error_msg = f"Model with name {self.model_name} is not ready."
        if detail:
            self.error_msg = f"{self.error_msg} {detail}"

    def __str__(self):
        return self.error_msg


class UnsupportedProtocol(_KServeError):
    """501 over REST, INVALID_ARGUMENT over gRPC (as KServe)."""

    http_status = 501
    grpc_code = "INVALID_ARGUMENT"

    def __init__(self, protocol_version=None):
        self.reason = f"Unsupported protocol {protocol_version}."

    def __str__(self):
        return self.reason


class ServerNotReady(RuntimeError, _KServeError):
    http_status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, detail: Optional[str] = None):
        self.error_msg = "Server is not ready."
        if detail:
            self.error_msg = f"{self.error_msg} {detail}"

    def __str__(self):
        return self.error_msg


class ServerNotLive(RuntimeError, _KServeError):
    http_status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, detail: Optional[str] = None):
        self.error_msg = "Server is not live."
        if detail:
            self.error_msg = f"{self.error_msg} {detail}"

    def __str__(self):
        return self.error_msg


class NoModelReady(RuntimeError, _Unhandled):
    """`ModelServer.start` was given models of which none is ready."""

    def __init__(self, models: list, detail: Optional[str] = None):
        self.models = models
        self.detail = detail

    def __str__(self):
        names = [model.name for model in self.models]
        if len(names) == 1:
            text = f"Model with name {names[0]} is not ready."
        else:
            text = f"Models with names {','.join(names)} are not ready."
        return f"{text} {self.detail}" if self.detail else text
