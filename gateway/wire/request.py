"""The internal request form: what a front door parses a request into, the pool queues and
batches, and the worker reads back out of a message.

`WireRequest` is not the SDK's `gateway.types.InferenceRequest` (the pydantic model a runtime
sees): it holds numpy arrays (views of the request body or of shared memory) and BYTES in their
packed wire form (`PackedBytes`), and is turned into an InferenceRequest only in the worker.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import BadRequest, shown
from .packed import PackedBytes


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: "np.ndarray | PackedBytes"
    parameters: dict = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict = field(default_factory=dict)


@dataclass(slots=True)
class WireRequest:
    model_name: str
    model_version: str | None
    id: str
    inputs: list[Tensor]
    parameters: dict = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    headers: dict[str, str] | None = None  # the HTTP headers (gRPC metadata), for runtimes that take them (KServe's)
    from_grpc: bool = False  # KServe's models see BYTES as str from REST, as bytes from gRPC
    # when the client stops waiting, in time.monotonic() seconds (None: the server's request_timeout)
    deadline: float | None = None
    # the seconds the client gave for that deadline, as its error states them
    timeout: float | None = None
    # Triton's priority level: lower is served first; 0: the model's default_priority_level
    priority: int = 0

    def bound_by(self, seconds: float | None) -> None:
        """The request ends at the latest `seconds` from now (None: no bound): the earliest deadline wins."""
        if seconds is not None:
            deadline = time.monotonic() + seconds
            if self.deadline is None or deadline < self.deadline:
                self.deadline, self.timeout = deadline, seconds


@dataclass(slots=True)
class WireResponse:
    model_name: str
    model_version: str | None
    id: str
    outputs: list[Tensor]
    parameters: dict = field(default_factory=dict)


def raw_bytes(tensor: Tensor) -> memoryview | bytes | bytearray:
    """The tensor's bytes as they travel raw (binary extension, gRPC raw contents, workers)."""
    data = tensor.data
    if type(data) is PackedBytes:
        return data.buffer
    # a flat byte view: memoryview.cast refuses shapes with a zero in them
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8).data


# Parameters with a meaning, and the type that meaning needs: the binary tensor extension's, the
# schedule policy extension's (priority, timeout), and the fields of gateway.types.Parameters, which the worker builds from every parameters map.
_PARAMETER_TYPES = {
    "content_type": str,
    "binary_data": bool,
    "binary_data_output": bool,
    "binary_data_size": int,
    "priority": int,  # Triton's schedule policy: read by the data plane, never passed to the model
    "timeout": int,
}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


def check_parameters(parameters: dict, where: str) -> dict:
    """Parameter values are strings, finite numbers or booleans (V2), and a known key has its own type.

    A null value counts as absent (pydantic-based clients write unset fields as null)."""
    checked = {}
    for key, value in parameters.items():
        if value is None:
            continue
        if key == "headers":  # gateway.types.Parameters.headers: a server's record of HTTP headers, never a scalar
            raise BadRequest(f"parameter 'headers' of {where} is reserved and cannot be sent")
        if type(value) not in (str, int, float, bool):
            raise BadRequest(f"parameter {shown(key)} of {where} must be a string, number or boolean, got {shown(value)}")
        if type(value) is float and not math.isfinite(value):  # gRPC's double_param may hold them; JSON would make them null
            raise BadRequest(
                f"parameter {shown(key)} of {where} must be a finite number, got {value} (parameters reach the model as JSON, which has no NaN or infinity)"
            )
        expected = _PARAMETER_TYPES.get(key)
        if expected is not None and type(value) is not expected:
            raise BadRequest(f"parameter {key!r} of {where} must be {_TYPE_NAMES[expected]}, got {shown(value)}")
        checked[key] = value
    return checked
