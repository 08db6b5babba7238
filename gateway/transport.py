"""The messages between the gateway and its worker processes (ZeroMQ multipart).

Every message is `[kind, header, *tensor buffers]`: `header` is a small JSON
document describing the tensors, and each tensor's raw bytes travel as a frame
of their own, so they are never pickled nor turned into JSON. Both sides use
only the functions below; the worker side builds numpy views of the frames.

Kinds, gateway -> worker: INFER, EXPLAIN, STOP.
Kinds, worker -> gateway: READY (loaded; header has metadata), FAILED (load
failed; header has the reason), REPLY (outputs), ERROR (status and message).
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from .errors import GatewayError, from_status
from .tensors import InferRequest, InferResponse, RequestedOutput, Tensor, array_from_raw, raw_bytes

INFER = b"infer"
EXPLAIN = b"explain"
STOP = b"stop"
READY = b"ready"
FAILED = b"failed"
REPLY = b"reply"
ERROR = b"error"


def _describe(tensor: Tensor) -> dict:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape, "parameters": tensor.parameters}


def _views(descriptions: list[dict], buffers: Sequence[Any]) -> list[Tensor]:
    return [
        Tensor(d["name"], d["datatype"], d["shape"], array_from_raw(d["datatype"], d["shape"], buf, d["name"]), d["parameters"])
        for d, buf in zip(descriptions, buffers)
    ]


def _buffer(frame: Any) -> memoryview:
    # zmq.Frame (received with copy=False) exposes its bytes without a copy
    return frame.buffer if hasattr(frame, "buffer") else memoryview(frame)


def request_frames(kind: bytes, seq: int, request: InferRequest) -> list:
    header = {
        "seq": seq,
        "id": request.id,
        "parameters": request.parameters,
        "inputs": [_describe(t) for t in request.inputs],
        "outputs": None if request.outputs is None else [{"name": o.name, "parameters": o.parameters} for o in request.outputs],
    }
    return [kind, orjson.dumps(header), *(raw_bytes(t) for t in request.inputs)]


def parse_request(frames: Sequence[Any], model_name: str, model_version: str | None) -> tuple[int, InferRequest]:
    header = orjson.loads(_buffer(frames[1]))
    outputs = header["outputs"]
    request = InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=header["id"],
        inputs=_views(header["inputs"], [_buffer(f) for f in frames[2:]]),
        parameters=header["parameters"],
        outputs=None if outputs is None else [RequestedOutput(o["name"], o["parameters"]) for o in outputs],
    )
    return header["seq"], request


def reply_frames(seq: int, outputs: list[Tensor], parameters: dict) -> list:
    header = {"seq": seq, "parameters": parameters, "outputs": [_describe(t) for t in outputs]}
    return [REPLY, orjson.dumps(header), *(raw_bytes(t) for t in outputs)]


def error_frames(seq: int, error: GatewayError) -> list:
    return [ERROR, orjson.dumps({"seq": seq, "status": error.http_status, "message": error.message})]


def parse_reply(frames: Sequence[Any]) -> tuple[int, tuple[list[Tensor], dict] | GatewayError]:
    """(seq, (outputs, parameters)) for REPLY, (seq, error) for ERROR."""
    header = orjson.loads(_buffer(frames[1]))
    if bytes(_buffer(frames[0])) == ERROR:
        return header["seq"], from_status(header["status"], header["message"])
    return header["seq"], (_views(header["outputs"], [_buffer(f) for f in frames[2:]]), header["parameters"])


def control_frames(kind: bytes, payload: dict | None = None) -> list:
    """READY / FAILED / STOP: a kind and a small JSON payload."""
    return [kind, orjson.dumps(payload or {})]


def parse_control(frames: Sequence[Any]) -> dict:
    return orjson.loads(_buffer(frames[1]))
