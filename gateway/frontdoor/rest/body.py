"""REST inference bodies: JSON, the binary tensor data extension, and back.

A binary body is a JSON header of `Inference-Header-Content-Length` bytes
followed by the raw tensors in input order. Binary inputs become numpy views
of the request body (no copy); every size is checked before use.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import orjson

from ...errors import BadRequest, shown
from ...protocol import HEADER_LENGTH
from ...types import MetadataTensor
from ...wire.datatypes import BYTES_ELEMENT_COST, NUMPY_DTYPES
from ...wire.packed import PackedBytes, count_bytes_elements, unpack_in_steps
from ...wire.request import RequestedOutput, Tensor, WireRequest, WireResponse, check_parameters, raw_bytes
from ..inputs import RequestInputs
from . import largejson


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


def request_of(document: dict, model_name: str, model_version: Optional[str], tensors: list[Tensor]) -> WireRequest:
    """The request around parsed input tensors: id, parameters and requested outputs from the document."""
    return WireRequest(
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


@dataclass(slots=True)
class JsonBody:
    """A JSON body, or the JSON header of a binary one, and the binary data after it."""

    document: dict
    binary: memoryview
    large: Optional[largejson.LargeDocument]  # LARGE_JSON bytes of JSON or more: the document lacks its data values


async def read_json_body(body: bytes, header_length: Optional[int], large_from: int = largejson.LARGE_JSON) -> JsonBody:
    """The JSON of a body (not the raw single-input form). From `large_from` bytes of JSON on, only
    what is not data is parsed (largejson.py); `build_infer_request` reads the data."""
    json_end = _json_end(body, header_length)
    if json_end >= large_from:
        large = await largejson.scan(body, json_end)
        return JsonBody(large.document, memoryview(body)[json_end:], large)
    return JsonBody(largejson.load_json_object(body if header_length is None else memoryview(body)[:json_end]), memoryview(body)[json_end:], None)


async def build_infer_request(
    body: JsonBody, model_name: str, model_version: Optional[str], max_tensor_bytes: int, check: Callable[[WireRequest], None]
) -> WireRequest:
    """The V2 request a body holds. A large one's data is converted only once everything else
    passed, `check` included (the model's declared inputs), in chunks, yielding to the event loop between them."""
    request, pending = _build_request(body.document, body.binary, model_name, model_version, max_tensor_bytes, body.large)
    if body.large is None:
        return request
    check(request)
    for tensor, value in pending:
        tensor.data = await body.large.read(value, tensor.datatype, tensor.shape, f"input {shown(tensor.name)}", max_tensor_bytes)
    await body.large.check_unclaimed({value for _, value in pending})
    return request


def _json_end(body: bytes, header_length: Optional[int]) -> int:
    if header_length is None:
        return len(body)
    if header_length > len(body):
        raise BadRequest(f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes")
    return header_length


def _build_request(
    document: dict,
    binary: memoryview,
    model_name: str,
    model_version: Optional[str],
    max_tensor_bytes: int,
    large: Optional[largejson.LargeDocument],
) -> tuple[WireRequest, list[tuple[Tensor, int]]]:
    """The request a parsed document describes; with `large`, the data values it left out are
    returned to be read (their tensors' data is None until then)."""
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("inputs must be a non-empty list")
    built = RequestInputs(max_tensor_bytes)
    pending: list[tuple[Tensor, int]] = []
    offset = 0
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each input needs a name")
        declared = built.declare(item["name"], item.get("datatype"), item.get("shape"))
        where = declared.where
        parameters = _parameters(item.get("parameters"), where)
        size = parameters.pop("binary_data_size", None)
        if size is not None:
            if "data" in item:
                raise BadRequest(f"{where} has both data and binary_data_size")
            if size < 0:
                raise BadRequest(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise BadRequest(f"{where}: binary_data_size {size} runs past the end of the body ({len(binary) - offset} bytes left): truncated body?")
            built.from_raw(declared, binary[offset : offset + size], parameters)
            offset += size
        elif "data" in item:
            value = None if large is None else large.value_of(item["data"])  # a large document's data value, read later
            if value is None:
                built.from_json(declared, item["data"], parameters)
            else:
                pending.append((built.later(declared, parameters), value))
        else:
            raise BadRequest(f"{where} has neither data nor binary_data_size")
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data follow the inputs that no input claims")
    return request_of(document, model_name, model_version, built.finish()), pending


# raw BYTES bodies have their elements counted (for the shape) this many at a time between yields
COUNT_STEP = 65536


async def parse_raw_request(body: bytes, model_name: str, model_version: Optional[str], declared: list[MetadataTensor], max_tensor_bytes: int) -> WireRequest:
    """`Inference-Header-Content-Length: 0`: the body is the bytes of the model's single input."""
    if len(declared) != 1:
        raise BadRequest("a raw binary request needs a model that declares exactly one input")
    spec = declared[0]
    datatype = spec.datatype.value
    if len(body) > max_tensor_bytes:
        raise BadRequest(f"raw input of {len(body)} bytes is over the limit of {max_tensor_bytes} bytes")
    if datatype == "BYTES":
        # the shape needs the element count: walk the length prefixes (the worker checks the framing),
        # a step at a time, never further than the elements the size limit lets through
        most = max_tensor_bytes // BYTES_ELEMENT_COST + 1
        count, pos = 0, 0
        while pos < len(body) and count < most:
            walked, pos = count_bytes_elements(body, pos, min(COUNT_STEP, most - count))
            if not walked:
                break
            count += walked
            if pos < len(body):
                await asyncio.sleep(0)
    else:
        itemsize = NUMPY_DTYPES[datatype].itemsize
        if len(body) % itemsize:
            raise BadRequest(f"raw input of {len(body)} bytes is not a whole number of {datatype} elements")
        count = len(body) // itemsize
    built = RequestInputs(max_tensor_bytes)
    built.from_raw(built.declare(spec.name, datatype, _resolve_shape(spec.shape, count, spec.name)), memoryview(body), {})
    return WireRequest(model_name, model_version, "", built.finish(), {"binary_data_output": True})


def _resolve_shape(declared: list[int], count: int, name: str) -> list[int]:
    known = 1
    for dim in declared:
        if dim != -1:
            known *= dim
    wildcards = declared.count(-1)
    if wildcards > 1 or (wildcards == 0 and known != count) or (wildcards == 1 and (known == 0 or count % known)):
        raise BadRequest(f"raw input of {count} elements does not fit input {name!r} of shape {declared}")
    return [count // known if dim == -1 else dim for dim in declared]


BINARY_PLEASE = "request it as binary data (output parameter binary_data: true)"


def json_data(tensor: Tensor) -> Any:
    """Tensor contents for a JSON body: a flat list (or flat array orjson writes).

    What JSON cannot carry (bytes that are not UTF-8, NaN, infinities) is refused, never
    changed: the client asked for a form that cannot hold the output, and binary can."""
    data = tensor.data
    if type(data) is PackedBytes:
        return next(decode_bytes_in_steps(data, data.count or 1, f"output {shown(tensor.name)}"), [])
    flat = np.ascontiguousarray(data).ravel()
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        raise BadRequest(f"output {shown(tensor.name)} holds NaN or infinity, which JSON cannot carry; {BINARY_PLEASE}")
    return flat


def decode_bytes_in_steps(packed: PackedBytes, step: int, where: str) -> Iterator[list[str]]:
    """Packed BYTES as strings for a JSON answer, `step` at a time; bytes that are not UTF-8 are
    refused, never changed."""
    for elements in unpack_in_steps(packed, step, where):
        try:
            yield list(map(bytes.decode, elements))
        except UnicodeDecodeError:
            raise BadRequest(f"{where} holds bytes that are not UTF-8, which JSON cannot carry; {BINARY_PLEASE}") from None


# Binary bodies at least this large are sent as header and body writes of their
# own, sparing the copy of the whole body into the HTTP header's buffer.
STREAM_ABOVE = 1024 * 1024
# A response is rendered in steps, yielding to the event loop between them, when it has more
# than this many elements to write as JSON, or bytes to copy out of shared memory.
JSON_STEP = 65536
COPY_STEP = 16 * 1024 * 1024


@dataclass(slots=True)
class RenderedResponse:
    """A response body that owns its bytes: it outlives the worker's shared memory."""

    body: bytes  # what is sent first: the JSON document, with small binary outputs joined to it
    chunks: list[bytes | bytearray]  # what is sent after `body`, a write each: large binary outputs, or a large JSON's parts
    json_length: Optional[int]  # the JSON document's length when binary data follows; None: a JSON body
    headers: Optional[dict] = None  # HTTP headers: the response's parameters.headers (MLServer's; KServe's response_headers)

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(c) for c in self.chunks)


async def render_infer_response(response: WireResponse, request: WireRequest, json_only: bool = False) -> RenderedResponse:
    """Render outputs (which may view shared memory) into bytes the response owns.

    `json_only`: every output as JSON whatever the request asked (a server-sent event is text).
    A large answer is rendered in steps, yielding to the event loop between them. The response's
    parameters.headers leave as HTTP headers, not in the document."""
    headers = response.parameters.pop("headers", None) if response.parameters else None
    binary_default = bool(request.parameters.get("binary_data_output", False)) and not json_only
    per_output = {} if json_only else {o.name: o.parameters for o in request.outputs or ()}
    plan, copied, written = [], 0, 0
    for tensor in response.outputs:
        binary = bool(per_output.get(tensor.name, {}).get("binary_data", binary_default))
        plan.append((tensor, binary))
        if binary:
            copied += tensor.data.nbytes
        else:
            written += tensor.data.size
    if copied > COPY_STEP or written > JSON_STEP:
        return await _render_in_steps(response, plan, headers)
    outputs, chunks = [], []
    for tensor, binary in plan:
        description = _description(tensor)
        if binary:
            raw = raw_bytes(tensor)
            description["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            description["data"] = json_data(tensor)
        outputs.append(description)
    header = orjson.dumps(_document(response, outputs), option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return RenderedResponse(header, [], None, headers)
    if sum(len(c) for c in chunks) < STREAM_ABOVE:
        return RenderedResponse(b"".join([header, *chunks]), [], len(header), headers)  # one copy, one write
    return RenderedResponse(header, [bytes(c) for c in chunks], len(header), headers)


def _description(tensor: Tensor) -> dict[str, Any]:
    description: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
    if tensor.parameters:
        description["parameters"] = tensor.parameters
    return description


def _document(response: WireResponse, outputs: list) -> dict[str, Any]:
    document: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        document["model_version"] = response.model_version
    document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"] = outputs
    return document


async def _render_in_steps(response: WireResponse, plan: list[tuple[Tensor, bool]], headers: Optional[dict] = None) -> RenderedResponse:
    """The same bytes as render_infer_response's one step: the JSON written as orjson writes it,
    each JSON output's data spliced in, JSON_STEP elements at a time; each part a write of its own."""
    parts = [orjson.dumps(_document(response, []))[: -len(b"]}")]]  # ends with "outputs":[
    binary: list[bytearray] = []
    for i, (tensor, as_binary) in enumerate(plan):
        description = _description(tensor)
        if i:
            parts.append(b",")
        if as_binary:
            raw = raw_bytes(tensor)
            description["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
            parts.append(orjson.dumps(description))
            binary.append(await _copy(raw))
        else:
            parts += [orjson.dumps(description)[:-1], b',"data":', *await _json_text(tensor), b"}"]
    parts.append(b"]}")
    return RenderedResponse(parts[0], [*parts[1:], *binary], sum(map(len, parts)) if binary else None, headers)


async def _copy(raw: memoryview | bytes | bytearray) -> bytearray:
    out = bytearray(len(raw))
    for start in range(0, len(raw), COPY_STEP):
        out[start : start + COPY_STEP] = raw[start : start + COPY_STEP]
        await asyncio.sleep(0)
    return out


async def _json_text(tensor: Tensor) -> list[bytes]:
    """The data of an output as a JSON array, in parts of JSON_STEP elements."""
    data = tensor.data
    pieces: Iterator[Any]
    if type(data) is PackedBytes:
        pieces = decode_bytes_in_steps(data, JSON_STEP, f"output {shown(tensor.name)}")
    else:
        flat = np.ascontiguousarray(data).ravel()
        pieces = (json_data(Tensor(tensor.name, tensor.datatype, [], flat[i : i + JSON_STEP])) for i in range(0, flat.size, JSON_STEP))
    parts = [b"["]
    for piece in pieces:
        if len(parts) > 1:
            parts.append(b",")
        parts.append(orjson.dumps(piece, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1])
        await asyncio.sleep(0)
    parts.append(b"]")
    return parts
