"""REST inference bodies: JSON, the binary tensor data extension, and back.

A binary body is a JSON header of `Inference-Header-Content-Length` bytes
followed by the raw tensors in input order. Binary inputs become numpy views
of the request body (no copy); every size is checked before use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import orjson

from .errors import BadRequest, shown
from .tensors import (
    MAX_RANK,
    NUMPY_DTYPES,
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    array_from_json,
    array_from_raw,
    check_datatype,
    check_parameters,
    check_size,
    element_count,
    json_data,
    raw_bytes,
    unpack_bytes,
)
from .types import MetadataTensor

HEADER_LENGTH = "Inference-Header-Content-Length"


def _load_json(body: bytes | memoryview) -> dict:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("the request body must be a JSON object")
    return document


def _parameters(value: Any, where: str) -> dict:
    """A parameters object (absent: empty), its values checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"parameters of {where} must be a JSON object")
    return check_parameters(value, where)


def _request_id(document: dict) -> str:
    value = document.get("id")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("id must be a string")
    return value


def _requested_outputs(document: dict) -> Optional[list[RequestedOutput]]:
    outputs = document.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise BadRequest("outputs must be a list")
    requested = []
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each requested output needs a name")
        requested.append(RequestedOutput(item["name"], _parameters(item.get("parameters"), f"output {shown(item['name'])}")))
    return requested


def _request(document: dict, model_name: str, model_version: Optional[str], tensors: list[Tensor]) -> InferRequest:
    """The request around parsed input tensors: id, parameters and requested outputs from the document."""
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=_request_id(document),
        inputs=tensors,
        parameters=_parameters(document.get("parameters"), "the request"),
        outputs=_requested_outputs(document),
    )


def parse_header_length(value: str) -> int:
    """Inference-Header-Content-Length: plain decimal digits only (int() would take "+5", "1_0" and "5 " too)."""
    if not (value.isascii() and value.isdigit()):
        raise BadRequest(f"{HEADER_LENGTH} must be a non-negative decimal integer, got {shown(value)}")
    digits = value.lstrip("0") or "0"
    if len(digits) > 20:  # longer than any body; int() refuses past 4,300 digits
        raise BadRequest(f"{HEADER_LENGTH} is {shown(value)}, longer than any body")
    return int(digits)


def parse_infer_request(
    body: bytes,
    header_length: Optional[int],
    model_name: str,
    model_version: Optional[str],
    max_tensor_bytes: int,
) -> InferRequest:
    """Parse a JSON or binary-extension inference body (not the raw single-input form)."""
    if header_length is None:
        document, binary = _load_json(body), memoryview(b"")
    else:
        if header_length > len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes")
        view = memoryview(body)
        document, binary = _load_json(view[:header_length]), view[header_length:]

    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("inputs must be a non-empty list")
    tensors: list[Tensor] = []
    offset = 0
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each input needs a name")
        name = item["name"]
        where = f"input {shown(name)}"
        datatype = check_datatype(item.get("datatype"), where)
        shape = item.get("shape")
        count = element_count(shape, where)
        check_size(datatype, count, max_tensor_bytes, where)
        parameters = _parameters(item.get("parameters"), where)
        size = parameters.pop("binary_data_size", None)
        if size is not None:
            if "data" in item:
                raise BadRequest(f"{where} has both data and binary_data_size")
            if size < 0:
                raise BadRequest(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise BadRequest(
                    f"{where}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} bytes left): truncated body?"
                )
            data = array_from_raw(datatype, shape, binary[offset : offset + size], where)
            offset += size
        elif "data" in item:
            data = array_from_json(datatype, shape, item["data"], where)
        else:
            raise BadRequest(f"{where} has neither data nor binary_data_size")
        tensors.append(Tensor(name, datatype, list(shape), data, parameters))
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data follow the inputs that no input claims")
    if len({t.name for t in tensors}) != len(tensors):
        raise BadRequest("input names must be unique")

    return _request(document, model_name, model_version, tensors)


def parse_raw_request(
    body: bytes, model_name: str, model_version: Optional[str], declared: list[MetadataTensor], max_tensor_bytes: int
) -> InferRequest:
    """`Inference-Header-Content-Length: 0`: the body is the bytes of the model's single input."""
    if len(declared) != 1:
        raise BadRequest("a raw binary request needs a model that declares exactly one input")
    spec = declared[0]
    datatype = spec.datatype.value
    if len(body) > max_tensor_bytes:
        raise BadRequest(f"raw input of {len(body)} bytes is over the limit of {max_tensor_bytes} bytes")
    if datatype == "BYTES":
        count = _count_bytes_elements(body)
        data = unpack_bytes(body, count, f"input {spec.name!r}")
    else:
        itemsize = NUMPY_DTYPES[datatype].itemsize
        if len(body) % itemsize:
            raise BadRequest(f"raw input of {len(body)} bytes is not a whole number of {datatype} elements")
        count = len(body) // itemsize
        data = None
    shape = _resolve_shape(spec.shape, count, spec.name)
    if data is None:
        data = array_from_raw(datatype, shape, memoryview(body), f"input {spec.name!r}")
    else:
        data = data.reshape(shape)
    return InferRequest(model_name, model_version, "", [Tensor(spec.name, datatype, shape, data, {})], {"binary_data_output": True})


def _count_bytes_elements(body: bytes) -> int:
    view, pos, count = memoryview(body), 0, 0
    while pos + 4 <= len(view):
        pos += 4 + int.from_bytes(view[pos : pos + 4], "little")
        count += 1
    return count


def _resolve_shape(declared: list[int], count: int, name: str) -> list[int]:
    known = 1
    for dim in declared:
        if dim != -1:
            known *= dim
    wildcards = declared.count(-1)
    if wildcards > 1 or (wildcards == 0 and known != count) or (wildcards == 1 and (known == 0 or count % known)):
        raise BadRequest(f"raw input of {count} elements does not fit input {name!r} of shape {declared}")
    return [count // known if dim == -1 else dim for dim in declared]


def parse_infer_dict(
    body: bytes, model_name: str, model_version: Optional[str], declared: list[MetadataTensor], max_tensor_bytes: int
) -> InferRequest:
    """MLRun's infer_dict: `{"inputs": [{input_name: value, ...}, ...]}`, one dict per row.

    Each declared input becomes one tensor whose first dimension is the rows."""
    document = _load_json(body)
    rows = document.get("inputs")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise BadRequest("infer_dict takes inputs as a non-empty list of objects, one per row")
    if not declared:
        raise BadRequest(f"model {model_name!r} declares no inputs, so infer_dict cannot order the row fields")
    names = [spec.name for spec in declared]
    for i, row in enumerate(rows):
        if set(row) != set(names):
            raise BadRequest(f"row {i} has fields {shown(sorted(row))}, the model takes {names}")
    tensors = []
    for spec in declared:
        where = f"input {spec.name!r}"
        column = [row[spec.name] for row in rows]
        shape = [len(rows), *_row_shape(column, where)]
        check_size(spec.datatype.value, element_count(shape, where), max_tensor_bytes, where)
        tensors.append(Tensor(spec.name, spec.datatype.value, shape, array_from_json(spec.datatype.value, shape, column, where), {}))
    return _request(document, model_name, model_version, tensors)


def _row_shape(column: list, where: str) -> tuple[int, ...]:
    """The shape of each row's value, which must be the same for every row: rows that
    disagree would fill the tensor with elements of other rows."""
    shapes = {_nested_shape(value, where) for value in column}
    if len(shapes) > 1:
        raise BadRequest(f"{where}: the rows' values have different shapes {shown(sorted(shapes))}")
    return shapes.pop()


def _nested_shape(value: Any, where: str) -> tuple[int, ...]:
    """The shape of nested lists of equal lengths (a scalar: ()), level by level, without numpy:
    numpy would turn a list holding one long string into as many copies of its length."""
    shape: list[int] = []
    level = [value]
    while level and isinstance(level[0], list):
        if not all(isinstance(item, list) and len(item) == len(level[0]) for item in level):
            raise BadRequest(f"{where}: a row's value is a ragged nested list")
        if len(shape) == MAX_RANK - 1:
            raise BadRequest(f"{where}: a row's value is nested deeper than a tensor's {MAX_RANK} dimensions")
        shape.append(len(level[0]))
        level = [item for items in level for item in items]
    if any(isinstance(item, list) for item in level):
        raise BadRequest(f"{where}: a row's value is a ragged nested list")
    return tuple(shape)


# Binary bodies at least this large are sent as header and body writes of their
# own, sparing the copy of the whole body into the HTTP header's buffer.
STREAM_ABOVE = 1024 * 1024


@dataclass(slots=True)
class RenderedResponse:
    """A response body that owns its bytes: it outlives the worker's shared memory."""

    body: bytes  # what is sent first: the JSON document, with small binary outputs joined to it
    chunks: list[bytes]  # large binary outputs, sent after `body`
    json_length: Optional[int]  # the JSON document's length when binary data follows; None: a JSON body

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(c) for c in self.chunks)


def render_infer_response(response: InferResponse, request: InferRequest) -> RenderedResponse:
    """Render outputs (which may view shared memory) into bytes the response owns."""
    binary_default = bool(request.parameters.get("binary_data_output", False))
    per_output = {o.name: o.parameters for o in request.outputs or ()}
    outputs, chunks = [], []
    for tensor in response.outputs:
        wanted = per_output.get(tensor.name, {})
        description: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if wanted.get("binary_data", binary_default):
            raw = raw_bytes(tensor)
            description["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            if tensor.parameters:
                description["parameters"] = tensor.parameters
            description["data"] = json_data(tensor)
        outputs.append(description)
    document: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        document["model_version"] = response.model_version
    document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"] = outputs
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return RenderedResponse(header, [], None)
    if sum(len(c) for c in chunks) < STREAM_ABOVE:
        return RenderedResponse(b"".join([header, *chunks]), [], len(header))  # one copy, one write
    return RenderedResponse(header, [bytes(c) for c in chunks], len(header))
