"""The internal request form shared by every front door, and tensor conversions.

REST (JSON or binary) and gRPC requests are parsed into `InferRequest`, whose
tensors hold numpy arrays (BYTES: object arrays of `bytes`). Everything here
validates before it allocates: the element count of a declared shape is
checked against the data (and against the size limit) first.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
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


def check_size(datatype: str, count: int, max_bytes: int, where: str) -> None:
    """Refuse a declared tensor larger than the limit, before anything is allocated.

    A BYTES element counts as its 4-byte length prefix, the least it takes."""
    itemsize = _LENGTH.size if datatype == "BYTES" else NUMPY_DTYPES[datatype].itemsize
    if count * itemsize > max_bytes:
        raise BadRequest(
            f"{where}: declared shape holds {count} elements ({count * itemsize} bytes), "
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

def pack_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.ravel():
        if isinstance(item, str):
            item = item.encode()
        elif not isinstance(item, (bytes, bytearray, memoryview)):
            item = str(item).encode()
        parts.append(_LENGTH.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def unpack_bytes(buf: memoryview | bytes, count: int, where: str) -> np.ndarray:
    view = memoryview(buf)
    end = len(view)
    # each element has a 4-byte length prefix: a declared count the buffer cannot hold is refused unallocated
    if count * _LENGTH.size > end:
        raise BadRequest(f"{where}: {end} bytes of BYTES data cannot hold the {count} elements the shape declares (4 bytes each at least)")
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > end:
            raise BadRequest(f"{where}: BYTES data holds {i} elements, shape declares {count}")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if pos + length > end:
            raise BadRequest(f"{where}: BYTES element {i} of length {length} overruns its buffer")
        out[i] = bytes(view[pos : pos + length])
        pos += length
    if pos != end:
        raise BadRequest(f"{where}: {end - pos} bytes left over after the {count} BYTES elements")
    return out


def raw_bytes(tensor: Tensor) -> memoryview | bytes:
    """The tensor's bytes as they travel raw (binary extension, gRPC raw contents, workers)."""
    if tensor.datatype == "BYTES":
        return pack_bytes(tensor.data)
    # a flat byte view: memoryview.cast refuses shapes with a zero in them
    return memoryview(np.ascontiguousarray(tensor.data).reshape(-1).view(np.uint8))


def array_from_raw(datatype: str, shape: list[int], buf: memoryview | bytes, where: str) -> np.ndarray:
    """A numpy view (no copy) of raw tensor bytes, checked against the shape."""
    count = element_count(shape, where)
    if datatype == "BYTES":
        return unpack_bytes(buf, count, where).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    if len(buf) != count * dtype.itemsize:
        raise BadRequest(
            f"{where}: {len(buf)} bytes of data, but shape {shape} of {datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


# --- JSON data: flat or nested row-major lists.

def _flatten(data: Any, out: list) -> None:
    """Append the leaves of nested lists, row-major; iterative, so that no depth can exhaust the stack."""
    pending = [iter(data)]
    while pending:
        for item in pending[-1]:
            if isinstance(item, list):
                pending.append(iter(item))
                break
            out.append(item)
        else:
            pending.pop()


def _leaf_types(data: list) -> set[type]:
    """The types of the elements of nested lists (with `list` among them if they are ragged), one
    level at a time at C speed: no Python loop per element."""
    level = data
    while True:
        types = set(map(type, level))
        if types != {list}:
            return types
        level = list(itertools.chain.from_iterable(level))


def array_from_json(datatype: str, shape: list[int], data: Any, where: str) -> np.ndarray:
    count = element_count(shape, where)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat: list = []
        _flatten(data, flat)
        if len(flat) != count:
            raise BadRequest(f"{where}: data holds {len(flat)} elements, shape {shape} needs {count}")
        array = np.empty(count, dtype=object)
        for i, item in enumerate(flat):
            if isinstance(item, str):
                array[i] = item.encode()
            elif isinstance(item, bytes):
                array[i] = item
            else:
                raise BadRequest(f"{where}: BYTES data must be strings, got {type(item).__name__}")
        return array.reshape(shape)
    if str in _leaf_types(data):
        # numpy would make every element a string as long as the longest: a few KiB of JSON, GiBs of memory
        raise BadRequest(f"{where}: {datatype} data must be numbers, got strings")
    try:
        parsed = np.array(data)
    except ValueError:
        raise BadRequest(f"{where}: data is a ragged nested list, or nested deeper than {MAX_RANK} levels") from None
    if parsed.size != count:
        raise BadRequest(f"{where}: data holds {parsed.size} elements, shape {shape} needs {count}")
    if count == 0:
        return np.zeros(shape, dtype=NUMPY_DTYPES[datatype])
    if datatype == "UINT64" and parsed.dtype.kind == "f":
        # numpy reads ints above 2**63 as float64, losing digits: convert the exact Python ints
        flat: list = []
        _flatten(data, flat)
        if all(type(x) is int and 0 <= x < 2**64 for x in flat):
            return np.array(flat, dtype=NUMPY_DTYPES[datatype]).reshape(shape)
    return _convert(parsed, datatype, where).reshape(shape)


def _convert(parsed: np.ndarray, datatype: str, where: str) -> np.ndarray:
    """Convert JSON numbers to the declared datatype without silently changing a value."""
    target = NUMPY_DTYPES[datatype]
    kind = parsed.dtype.kind
    if datatype == "BOOL":
        if kind == "b":
            return parsed
        if kind in "iu" and np.isin(parsed, (0, 1)).all():
            return parsed.astype(target)
        raise BadRequest(f"{where}: BOOL data must be true/false")
    if target.kind == "f":
        if kind not in "iuf":
            raise BadRequest(f"{where}: {datatype} data must be numbers")
        # a number beyond a narrower type's range would silently become infinity: two reductions tell
        # whether any value is near enough to look closer (gRPC's typed contents may hold infinities
        # and NaN, which stay what they are)
        largest = float(np.finfo(target).max)
        if target.itemsize < 8 and (float(parsed.max()) > largest or float(parsed.min()) < -largest):
            with np.errstate(over="ignore"):
                overflow = np.isinf(parsed.astype(target)) & np.isfinite(parsed)
            if overflow.any():
                raise BadRequest(
                    f"{where}: {datatype} data out of range: {parsed[overflow][0]} would become infinity "
                    f"(the largest {datatype} is {largest})"
                )
        return parsed.astype(target)
    # integer targets
    if kind not in "iu":
        what = "fractional numbers" if kind == "f" else "non-integers"
        raise BadRequest(f"{where}: {datatype} data must be integers, got {what}")
    info = np.iinfo(target)
    if parsed.min() < info.min or parsed.max() > info.max:
        raise BadRequest(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
    return parsed.astype(target)


def json_data(tensor: Tensor) -> Any:
    """Tensor contents for a JSON body: a flat list (or flat array orjson writes).

    What JSON cannot carry (bytes that are not UTF-8, NaN, infinities) is refused, never
    changed: the client asked for a form that cannot hold the output, and binary can."""
    binary_please = "request it as binary data (output parameter binary_data: true)"
    if tensor.datatype == "BYTES":
        flat = tensor.data.ravel().tolist()
        try:
            return [item.decode() if isinstance(item, (bytes, bytearray)) else str(item) for item in flat]
        except UnicodeDecodeError:
            raise BadRequest(f"output {shown(tensor.name)} holds bytes that are not UTF-8, which JSON cannot carry; {binary_please}") from None
    flat = np.ascontiguousarray(tensor.data).ravel()
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        raise BadRequest(f"output {shown(tensor.name)} holds NaN or infinity, which JSON cannot carry; {binary_please}")
    return flat


def array_from_output(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """Turn what a runtime returned (list or array) into an array of the declared type and shape."""
    where = f"output {name!r}"
    count = element_count(shape, where)
    if datatype == "BYTES":
        if isinstance(data, np.ndarray):
            flat = data.ravel().tolist()
        else:
            flat = []
            _flatten(data if isinstance(data, list) else [data], flat)
        if len(flat) != count:
            raise RuntimeFailure(f"{where} holds {len(flat)} elements, its shape {shape} needs {count}")
        array = np.empty(count, dtype=object)
        array[:] = [x.encode() if isinstance(x, str) else bytes(x) for x in flat]
        return array.reshape(shape)
    array = np.asarray(data, dtype=NUMPY_DTYPES[datatype])
    if array.size != count:
        raise RuntimeFailure(f"{where} holds {array.size} elements, its shape {shape} needs {count}")
    return array.reshape(shape)

