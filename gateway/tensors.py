"""The internal request form shared by every front door, and tensor conversions.

REST (JSON or binary) and gRPC requests are parsed into `InferRequest`, whose
tensors hold numpy arrays. BYTES tensors hold `PackedBytes` (their wire form)
from the front door through shared memory to the worker and back; the worker
unpacks them into the object array of `bytes` a runtime sees. Everything here
validates before it allocates: the element count of a declared shape is
checked against the data (and against the size limit) first.
"""

from __future__ import annotations

import itertools
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .errors import BadRequest, RuntimeFailure, shown

NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
DATATYPES = frozenset(NUMPY_DTYPES)
_LENGTH = struct.Struct("<I")
# Shapes numpy can describe: at most 32 dimensions (numpy 1's limit; numpy 2 allows 64), and even
# an empty tensor's other dimensions may hold no more elements than numpy can count in bytes.
MAX_RANK = 32
MAX_EXTENT = 2**60
# What one BYTES element costs where it is unpacked, besides its own length: its 4-byte length prefix,
# and, in the object array of bytes a worker hands its runtime, a Python bytes object (a 33-byte
# header, rounded up by the allocator) and an 8-byte pointer: 45-56 bytes measured (docs/PERFORMANCE.md).
BYTES_ELEMENT_COST = 64


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
class InferRequest:
    model_name: str
    model_version: str | None
    id: str
    inputs: list[Tensor]
    parameters: dict = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    headers: dict[str, str] | None = None  # the HTTP headers (gRPC metadata), for runtimes that take them (KServe's)
    from_grpc: bool = False  # KServe's models see BYTES as str from REST, as bytes from gRPC


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str | None
    id: str
    outputs: list[Tensor]
    parameters: dict = field(default_factory=dict)


def check_datatype(datatype: Any, where: str) -> str:
    if isinstance(datatype, str) and datatype in DATATYPES:
        return datatype
    if datatype == "BF16":
        raise BadRequest(f"{where}: datatype BF16 is not supported (numpy has no bfloat16); send FP32 or FP16")
    raise BadRequest(f"{where}: unknown datatype {shown(datatype)}; expected one of {', '.join(sorted(DATATYPES))}")


def element_count(shape: Any, where: str) -> int:
    """Number of elements of a declared shape; Python ints, so no overflow."""
    if not isinstance(shape, (list, tuple)):
        raise BadRequest(f"{where}: shape must be a list of integers, got {shown(shape)}")
    if len(shape) > MAX_RANK:
        raise BadRequest(f"{where}: shape has {len(shape)} dimensions, more than the {MAX_RANK} a tensor may have")
    count = extent = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise BadRequest(f"{where}: shape must be a list of non-negative integers, got {shown(list(shape))}")
        count *= dim
        extent *= max(dim, 1)
    if count == 0 and extent > MAX_EXTENT:  # else the size limit refuses it, with a better reason
        raise BadRequest(f"{where}: shape {list(shape)} has no elements, but its other dimensions are too large for any tensor")
    return count


def check_size(datatype: str, count: int, max_bytes: int, where: str, content: int = 0) -> None:
    """Refuse a tensor larger than the limit, before anything is allocated for it.

    A BYTES element counts as what it costs where it is unpacked: BYTES_ELEMENT_COST plus
    its length (`content`: the lengths of all elements, as far as they are known yet)."""
    if datatype == "BYTES":
        cost = count * BYTES_ELEMENT_COST + content
        if cost > max_bytes:
            raise BadRequest(
                f"{where}: {count} BYTES elements{f' of {content} bytes' if content else ''} count as {cost} bytes "
                f"({BYTES_ELEMENT_COST} bytes an element plus its length), over the limit of {max_bytes} bytes (setting max_tensor_bytes)"
            )
    elif count * NUMPY_DTYPES[datatype].itemsize > max_bytes:
        raise BadRequest(
            f"{where}: declared shape holds {count} elements ({count * NUMPY_DTYPES[datatype].itemsize} bytes), "
            f"over the limit of {max_bytes} bytes (setting max_tensor_bytes)"
        )


# Parameters with a meaning, and the type that meaning needs: the binary tensor extension's, and the
# fields of gateway.types.Parameters, which the worker builds from every parameters map.
_PARAMETER_TYPES = {"content_type": str, "binary_data": bool, "binary_data_output": bool, "binary_data_size": int}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


def check_parameters(parameters: dict, where: str) -> dict:
    """Parameter values are strings, numbers or booleans (V2), and a known key has its own type.

    A null value counts as absent (pydantic-based clients write unset fields as null)."""
    checked = {}
    for key, value in parameters.items():
        if value is None:
            continue
        if key == "headers":  # gateway.types.Parameters.headers: a server's record of HTTP headers, never a scalar
            raise BadRequest(f"parameter 'headers' of {where} is reserved and cannot be sent")
        if type(value) not in (str, int, float, bool):
            raise BadRequest(f"parameter {shown(key)} of {where} must be a string, number or boolean, got {shown(value)}")
        expected = _PARAMETER_TYPES.get(key)
        if expected is not None and type(value) is not expected:
            raise BadRequest(f"parameter {key!r} of {where} must be {_TYPE_NAMES[expected]}, got {shown(value)}")
        checked[key] = value
    return checked


# --- BYTES on the wire: each element is a 4-byte little-endian length, then its bytes.


@dataclass(slots=True, eq=False)
class PackedBytes:
    """The data of a BYTES tensor in its wire form, from the front door to the worker and back.

    Only the worker unpacks it (`unpack_bytes`, which checks the framing) into the object
    array a runtime sees, and only a JSON answer decodes it: every other hop (the binary
    extension, gRPC raw contents, shared memory, batching) moves the buffer as it is.
    `count` is the number of elements the tensor's shape declares; `framed`: whether the
    framing is known to hold exactly those (packed here, or checked). `bounds`, on a batched
    call's output: the byte offsets where each batch-mate's rows start, and the end."""

    buffer: bytes | bytearray | memoryview
    count: int
    bounds: list[int] | None = None
    framed: bool = False

    @property
    def nbytes(self) -> int:  # as a numpy array's
        return len(self.buffer)

    @property
    def size(self) -> int:  # as a numpy array's: its elements
        return self.count

    def check_framing(self) -> bool:
        """Whether the buffer holds exactly `count` elements (walking their lengths once)."""
        if not self.framed:
            walked, end = count_bytes_elements(self.buffer, 0, self.count + 1)
            self.framed = walked == self.count and end == len(self.buffer)
        return self.framed


_PACK_BLOCK = 65536  # elements packed at a time: the temporary arrays stay small


def pack_bytes(items: list, bounds_at: list[int] | None = None) -> PackedBytes:
    """Pack bytes (or str, UTF-8 encoded; anything else as its str()) elements; `bounds_at`: element indices whose byte offsets to
    keep as `bounds` (the count itself: the end). Vectorised, a block at a time: the per-element work
    is taking each length, and no temporary array is longer than a block."""
    if set(map(type, items)) - {bytes}:  # anything but bytes-like elements is written as its UTF-8 str()
        items = [bytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else str(item).encode() for item in items]
    count, size = len(items), _LENGTH.size
    out = np.empty(sum(map(len, items)) + size * count, dtype=np.uint8)
    wanted = sorted(set(bounds_at or ()))
    offsets = {count: out.size}
    pos = 0
    for first in range(0, count, _PACK_BLOCK):
        block = items[first : first + _PACK_BLOCK]
        lengths = np.fromiter(map(len, block), dtype=np.int64, count=len(block))
        starts = np.cumsum(lengths + size) - lengths - size  # of each element, in the block's region
        region = out[pos : pos + int(starts[-1] + lengths[-1]) + size]
        prefixes = lengths.astype("<u4").view(np.uint8).reshape(-1, size)
        content = np.frombuffer(b"".join(block), dtype=np.uint8)
        if lengths.min() == lengths.max():  # equal lengths: a table of rows
            rows = region.reshape(len(block), -1)
            rows[:, :size] = prefixes
            rows[:, size:] = content.reshape(len(block), -1)
        else:
            is_content = np.ones(region.size, dtype=bool)
            for i in range(size):
                region[starts + i] = prefixes[:, i]
                is_content[starts + i] = False
            region[is_content] = content
        offsets.update((i, pos + int(starts[i - first])) for i in wanted if first <= i < first + len(block))
        pos += region.size
    bounds = None if bounds_at is None else [offsets[i] for i in bounds_at]
    return PackedBytes(out.data.cast("B"), count, bounds, framed=True)


def unpack_bytes(packed: PackedBytes, where: str) -> np.ndarray:
    """The elements as a flat object array of bytes, the framing checked: exactly `count`
    elements, each within the buffer, nothing left over."""
    array = np.empty(packed.count, dtype=object)
    array[:] = next(_unpack_in_steps(packed, packed.count or 1, where), [])
    return array


def _unpack_in_steps(packed: PackedBytes, step: int, where: str) -> Iterator[list[bytes]]:
    """The elements, `step` at a time, the framing checked as in unpack_bytes."""
    raw = bytes(packed.buffer)  # slicing bytes makes each element in one step
    count, end, pos = packed.count, len(raw), 0
    unpack_from, size = _LENGTH.unpack_from, _LENGTH.size
    for first in range(0, count, step):
        elements = [b""] * min(step, count - first)
        i = length = 0
        try:
            for i in range(len(elements)):
                (length,) = unpack_from(raw, pos)
                start = pos + size
                pos = start + length
                elements[i] = raw[start:pos]
        except struct.error:  # fewer than 4 bytes left for the next length
            if pos <= end:
                raise BadRequest(
                    f"{where}: BYTES data holds {first + i} elements, the shape declares {count} "
                    "(each is a 4-byte little-endian length, then its bytes)"
                ) from None
            i -= 1
        if pos > end:
            raise BadRequest(f"{where}: BYTES element {first + i} of length {length} overruns its buffer by {pos - end} bytes")
        if first + len(elements) == count and pos < end:  # checked before the last step is given
            break
        yield elements
    if pos < end:  # also when no step was made (no elements)
        raise BadRequest(f"{where}: {end - pos} bytes left over after the {count} BYTES elements the shape declares")


def decode_bytes_in_steps(packed: PackedBytes, step: int, where: str) -> Iterator[list[str]]:
    """Packed BYTES as strings for a JSON answer, `step` at a time; bytes that are not UTF-8 are
    refused, never changed."""
    for elements in _unpack_in_steps(packed, step, where):
        try:
            yield list(map(bytes.decode, elements))
        except UnicodeDecodeError:
            raise BadRequest(f"{where} holds bytes that are not UTF-8, which JSON cannot carry; {BINARY_PLEASE}") from None


def count_bytes_elements(buffer: bytes | memoryview, start: int, stop_at: int) -> tuple[int, int]:
    """Walk the length prefixes from byte `start` for at most `stop_at` elements: (elements, next offset).
    The framing is not checked here (the worker does): the count is only what a shape needs."""
    unpack_from, size, end = _LENGTH.unpack_from, _LENGTH.size, len(buffer)
    pos, walked = start, 0
    while walked < stop_at and pos + size <= end:
        pos += size + unpack_from(buffer, pos)[0]
        walked += 1
    return walked, pos


def raw_bytes(tensor: Tensor) -> memoryview | bytes:
    """The tensor's bytes as they travel raw (binary extension, gRPC raw contents, workers)."""
    if tensor.datatype == "BYTES":
        return tensor.data.buffer
    # a flat byte view: memoryview.cast refuses shapes with a zero in them
    return memoryview(np.ascontiguousarray(tensor.data).reshape(-1).view(np.uint8))


def array_from_raw(datatype: str, shape: list[int], buf: memoryview | bytes, where: str) -> np.ndarray | PackedBytes:
    """A numpy view (no copy) of raw tensor bytes, checked against the shape. BYTES stay packed,
    checked only as far as it takes no look at the elements: the count's length prefixes fit."""
    count = element_count(shape, where)
    if datatype == "BYTES":
        if count * _LENGTH.size > len(buf):
            raise BadRequest(f"{where}: {len(buf)} bytes of BYTES data cannot hold the {count} elements the shape declares (4 bytes each at least)")
        return PackedBytes(buf, count)
    dtype = NUMPY_DTYPES[datatype]
    if len(buf) != count * dtype.itemsize:
        raise BadRequest(
            f"{where}: {len(buf)} bytes of data, but shape {shape} of {datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


# --- JSON data: flat or nested lists, read in row-major order; only the element count must match
# the shape (as Triton reads them). The rules for each element are the same whatever part of the
# data a call converts, so a large body converted in chunks (gateway/largejson.py) gets the same
# arrays, and the same refusals, as the whole data at once.

_LARGEST = {datatype: float(np.finfo(dtype).max) for datatype, dtype in NUMPY_DTYPES.items() if dtype.kind == "f"}


MAX_NESTING = 64  # levels of lists JSON data may have: more than any tensor's rank


def flatten(data: list, where: str) -> list:
    """The scalars of nested lists, in row-major order (no recursion: any depth up to MAX_NESTING)."""
    return _scalars(data, where)[0]


def _scalars(data: list, where: str) -> tuple[list, set]:
    """flatten(), and the types of the scalars (found on the way)."""
    depth = 1  # of the lists in `data`'s elements' level
    while True:
        kinds = set(map(type, data))
        if list not in kinds:
            return data, kinds
        if depth == MAX_NESTING:
            raise _too_deep(where)
        if kinds != {list}:
            flat = _flatten_mixed(data, depth, where)
            return flat, set(map(type, flat))
        data = list(itertools.chain.from_iterable(data))  # one level at a time, in C
        depth += 1


def _flatten_mixed(data: list, depth: int, where: str) -> list:
    """flatten() for lists beside scalars on one level."""
    flat, stack = [], [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                if depth + len(stack) > MAX_NESTING:
                    raise _too_deep(where)
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _too_deep(where: str) -> BadRequest:
    return BadRequest(f"{where}: data nested more than {MAX_NESTING} lists deep")


def json_bytes_elements(values: list, where: str, kinds: set | None = None) -> list[bytes]:
    """Flat JSON BYTES values: strings, UTF-8 encoded (bytes pass: runtimes and codecs give them).
    `kinds`: the values' types, if known."""
    kinds = set(map(type, values)) if kinds is None else kinds
    if kinds <= {str}:
        return list(map(str.encode, values))
    if kinds <= {str, bytes}:
        return [item.encode() if type(item) is str else item for item in values]
    wrong = next(item for item in values if type(item) not in (str, bytes))
    raise BadRequest(f"{where}: BYTES data must be strings, got {type(wrong).__name__}")


def json_numbers(values: list, datatype: str, where: str, kinds: set | None = None) -> np.ndarray:
    """Flat JSON numbers as a 1-D array of `datatype`, never silently changing a value: BOOL takes
    true/false (and 0/1), integer types integers within their range, float types numbers that
    their type can hold (not overflowing to infinity). A boolean is not a number. `kinds`: the
    values' types, if known."""
    target = NUMPY_DTYPES[datatype]
    if not values:
        return np.empty(0, dtype=target)
    kinds = set(map(type, values)) if kinds is None else kinds
    if str in kinds:
        # numpy would make every element a string as long as the longest: a few KiB of JSON, GiBs of memory
        raise BadRequest(f"{where}: {datatype} data must be {'true/false' if datatype == 'BOOL' else 'numbers'}, got strings")
    parsed = np.array(values)
    kind = parsed.dtype.kind
    if datatype == "BOOL":
        if kind == "b" or (kind in "iu" and np.isin(parsed, (0, 1)).all()):
            return parsed.astype(target)
        raise BadRequest(f"{where}: BOOL data must be true/false")
    if bool in kinds:
        raise BadRequest(f"{where}: {datatype} data must be numbers, got true/false")
    # integers beyond 64 bits, which numpy reads as floats or objects: the exact Python ints are used
    # (a float datatype needs them only where numpy could not read them at all)
    exact = (kind == "O" or (kind == "f" and target.kind != "f")) and kinds == {int}
    if target.kind == "f":
        if exact:
            parsed = np.array([float(v) if abs(v) < 2**1024 else math.copysign(math.inf, v) for v in values])
        elif kind not in "iuf":
            raise BadRequest(f"{where}: {datatype} data must be numbers")
        # a number beyond the type's range would silently become infinity: two reductions tell whether
        # any value is near enough to look closer (gRPC's typed contents may hold infinities and NaN,
        # which stay what they are)
        largest = _LARGEST[datatype]
        if (target.itemsize < 8 or exact) and (float(parsed.max()) > largest or float(parsed.min()) < -largest):
            with np.errstate(over="ignore"):
                overflow = np.isinf(parsed.astype(target)) & np.isfinite(parsed)
            if overflow.any():
                raise BadRequest(
                    f"{where}: {datatype} data out of range: {values[int(np.argmax(overflow))]} would become infinity "
                    f"(the largest {datatype} is {largest})"
                )
        return parsed.astype(target)
    info = np.iinfo(target)
    if exact:
        if min(values) < info.min or max(values) > info.max:
            raise BadRequest(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
        return np.array(values, dtype=target)
    if kind not in "iu":
        what = "fractional numbers" if kind == "f" else "non-integers"
        raise BadRequest(f"{where}: {datatype} data must be integers, got {what}")
    if parsed.min() < info.min or parsed.max() > info.max:
        raise BadRequest(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
    return parsed.astype(target)


def _json_values(datatype: str, shape: list[int], data: Any, where: str) -> tuple[int, list, set]:
    """(the shape's element count, the scalars of the data, their types)."""
    count = element_count(shape, where)
    values, kinds = _scalars(data if isinstance(data, list) else [data], where)
    if len(values) != count:
        raise BadRequest(f"{where}: data holds {len(values)} elements, shape {shape} needs {count}")
    return count, values, kinds


def array_from_json(datatype: str, shape: list[int], data: Any, where: str) -> np.ndarray:
    """JSON data (or a list a runtime or codec gives) as an array of the shape; BYTES: an object array of bytes."""
    count, values, kinds = _json_values(datatype, shape, data, where)
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = json_bytes_elements(values, where, kinds)
        return array.reshape(shape)
    return json_numbers(values, datatype, where, kinds).reshape(shape)


def data_from_json(datatype: str, shape: list[int], data: Any, where: str, max_bytes: int) -> np.ndarray | PackedBytes:
    """A front door's tensor data from JSON (or gRPC typed contents): BYTES packed at once, as they then travel."""
    if datatype != "BYTES":
        return array_from_json(datatype, shape, data, where)
    count, values, kinds = _json_values(datatype, shape, data, where)
    packed = pack_bytes(json_bytes_elements(values, where, kinds))
    check_size(datatype, count, max_bytes, where, content=len(packed.buffer) - _LENGTH.size * count)
    return packed


def data_from_raw(datatype: str, shape: list[int], buf: memoryview | bytes, where: str, max_bytes: int) -> np.ndarray | PackedBytes:
    """A front door's tensor data from raw bytes (binary extension, gRPC raw contents). BYTES are
    checked in O(1): their length prefixes fit, and what their elements will cost."""
    data = array_from_raw(datatype, shape, buf, where)
    if type(data) is PackedBytes:
        check_size(datatype, data.count, max_bytes, where, content=len(buf) - _LENGTH.size * data.count)
    return data


class DataBuilder:
    """A tensor's data built from consecutive pieces of its flat JSON values (a large JSON body,
    many gRPC typed contents), by the rules of `data_from_json`: each piece is converted as it
    comes, and a piece that brings more elements than the shape declares is refused at once."""

    def __init__(self, datatype: str, shape: list[int], where: str, max_bytes: int):
        self.datatype, self.shape, self.where, self.max_bytes = datatype, shape, where, max_bytes
        self.count = element_count(shape, where)
        self.filled = self.content = 0
        self._parts: list = []
        self._out = None if datatype == "BYTES" else np.empty(self.count, dtype=NUMPY_DTYPES[datatype])

    def add(self, values: list) -> None:
        end = self.filled + len(values)
        if end > self.count:
            raise BadRequest(f"{self.where}: data holds more than the {self.count} elements of shape {self.shape}")
        if self._out is not None:
            self._out[self.filled : end] = json_numbers(values, self.datatype, self.where)
        else:
            encoded = json_bytes_elements(values, self.where)
            self.content += sum(map(len, encoded))
            check_size("BYTES", self.count, self.max_bytes, self.where, self.content)
            self._parts.append(pack_bytes(encoded).buffer)
        self.filled = end

    def finish(self) -> np.ndarray | PackedBytes:
        if self.filled != self.count:
            raise BadRequest(f"{self.where}: data holds {self.filled} elements, shape {self.shape} needs {self.count}")
        if self._out is not None:
            return self._out.reshape(self.shape)
        return PackedBytes(b"".join(self._parts), self.count, framed=True)


BINARY_PLEASE = "request it as binary data (output parameter binary_data: true)"


def json_data(tensor: Tensor) -> Any:
    """Tensor contents for a JSON body: a flat list (or flat array orjson writes).

    What JSON cannot carry (bytes that are not UTF-8, NaN, infinities) is refused, never
    changed: the client asked for a form that cannot hold the output, and binary can."""
    if tensor.datatype == "BYTES":
        return next(decode_bytes_in_steps(tensor.data, tensor.data.count or 1, f"output {shown(tensor.name)}"), [])
    flat = np.ascontiguousarray(tensor.data).ravel()
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        raise BadRequest(f"output {shown(tensor.name)} holds NaN or infinity, which JSON cannot carry; {BINARY_PLEASE}")
    return flat


def array_from_output(name: str, datatype: str, shape: list[int], data: Any, bounds_at: list[int] | None = None) -> np.ndarray | PackedBytes:
    """Turn what a runtime returned (list or array) into an array of the declared type and shape;
    BYTES (str or bytes elements) are packed, with the offsets of `bounds_at` (see pack_bytes)."""
    where = f"output {name!r}"
    count = element_count(shape, where)
    if datatype == "BYTES":
        flat = data.ravel().tolist() if isinstance(data, np.ndarray) else flatten(data if isinstance(data, list) else [data], where)
        if len(flat) != count:
            raise RuntimeFailure(f"{where} holds {len(flat)} elements, its shape {shape} needs {count}")
        return pack_bytes(flat, bounds_at)
    array = np.asarray(data, dtype=NUMPY_DTYPES[datatype])
    if array.size != count:
        raise RuntimeFailure(f"{where} holds {array.size} elements, its shape {shape} needs {count}")
    return array.reshape(shape)

