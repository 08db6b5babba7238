"""Codec errors, as `mlserver.codecs.errors`. Each is a `GatewayError`, so raised on the request
path it answers with its status: 400 (INVALID_ARGUMENT) when the request is at fault, 500 when
the runtime's own payload or signature is."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import BadRequest, RuntimeFailure


class CodecNotFound(BadRequest):
    def __init__(
        self,
        name: Optional[str] = None,
        payload_type: Optional[str] = None,
        is_input: bool = False,
        is_request: bool = False,
    ):
        what = ""
        if name:
            what = f"with name '{name}'"
            if payload_type:
                what = f"{what} and type {payload_type}"
        elif payload_type:
            what = f"with type {payload_type}"
        if is_input:
            field = "input request" if is_request else "input field"
        else:
            field = "output response" if is_request else "output field"
        super().__init__(f"Codec not found for {field} {what}".rstrip())
        if not is_input:
            # nothing could encode what the runtime returned: the runtime's fault
            self.http_status, self.grpc_code = RuntimeFailure.http_status, RuntimeFailure.grpc_code


class CodecError(BadRequest):
    def __init__(self, msg: str):
        super().__init__(f"There was an error encoding / decoding the payload: {msg}")


class OutputNotFound(RuntimeFailure):
    def __init__(self, output_idx: int, output_type: type, output_hints: List[Any]):
        expected = ", ".join(f"'{hint}'" for hint in output_hints)
        super().__init__(f"Unexpected output value at position '{output_idx}' ({output_type}). Expected outputs are {expected} outputs.")


class InputsNotFound(BadRequest):
    def __init__(self, inputs: List[Any], input_hints: Dict[str, Any]):
        names = ", ".join(f"'{request_input.name}'" for request_input in inputs)
        available = ", ".join(f"'{name}'" for name in input_hints)
        super().__init__(f"Input {names} was not found. Available inputs are {available}.")
