"""The V2 datatypes, their checks, and tensor data from what requests and runtimes hold.

A tensor's data is a numpy array of its datatype, or for BYTES the packed wire form
(`packed.PackedBytes`). Data comes from JSON values (REST bodies, gRPC typed contents, what
a runtime or codec returns) or from raw bytes (the binary extension, gRPC raw contents, shared
memory). Everything here validates before it allocates: the element count of a declared shape
is checked against the data (and against the size limit) first, and no value is ever silently
changed (an integer out of range, a number a float type would turn into infinity).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..errors import BadRequest, RuntimeFailure, shown
from .packed import LENGTH_BYTES, PackedBytes, pack_bytes

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
# Shapes numpy can describe: at most 32 dimensions (numpy 1's limit; numpy 2 allows 64), and even
# an empty tensor's other dimensions may hold no more elements than numpy can count in bytes.
MAX_RANK = 32
MAX_EXTENT = 2**60
# What one BYTES element costs where it is unpacked, besides its own length: its 4-byte length prefix,
# and, in the object array of bytes a worker hands its runtime, a Python bytes object (a 33-byte
# header, rounded up by the allocator) and an 8-byte pointer: 45-56 bytes measured (docs/PERFORMANCE.md).
BYTES_ELEMENT_COST = 64


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
    count = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise BadRequest(f"{where}: shape must be a list of non-negative integers, got {shown(list(shape))}")
        count *= dim
    if count == 0 and math.prod(max(dim, 1) for dim in shape) > MAX_EXTENT:  # else the size limit refuses it, with a better reason
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


def array_from_raw(datatype: str, shape: list[int], buf: memoryview | bytes, where: str) -> np.ndarray | PackedBytes:
    """A numpy view (no copy) of raw tensor bytes, checked against the shape. BYTES stay packed,
    checked only as far as it takes no look at the elements: the count's length prefixes fit."""
    count = element_count(shape, where)
    if datatype == "BYTES":
        if count * LENGTH_BYTES > len(buf):
            raise BadRequest(f"{where}: {len(buf)} bytes of BYTES data cannot hold the {count} elements the shape declares (4 bytes each at least)")
        return PackedBytes(buf, count)
    dtype = NUMPY_DTYPES[datatype]
    if len(buf) != count * dtype.itemsize:
        raise BadRequest(f"{where}: {len(buf)} bytes of data, but shape {shape} of {datatype} needs {count * dtype.itemsize}")
    return np.ndarray(shape, dtype, buf)  # a view of buf, read-only if buf is (one array, not frombuffer's and reshape's two)


# --- JSON data: flat or nested lists, read in row-major order; only the element count must match
# the shape (as Triton reads them). The rules for each element are the same whatever part of the
# data a call converts, so a large body converted in chunks (gateway/frontdoor/rest/largejson.py) gets the same
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
        largest = _LARGEST[datatype]
        if exact:
            parsed = np.array([_as_float(v, datatype, largest, where) for v in values])
        elif kind not in "iuf":
            raise BadRequest(f"{where}: {datatype} data must be numbers")
        # a number beyond the type's range would silently become infinity: two reductions tell whether
        # any value is near enough to look closer (gRPC's typed contents may hold infinities and NaN,
        # which stay what they are)
        if (target.itemsize < 8 or exact) and (float(parsed.max()) > largest or float(parsed.min()) < -largest):
            with np.errstate(over="ignore"):
                overflow = np.isinf(parsed.astype(target)) & np.isfinite(parsed)
            if overflow.any():
                raise BadRequest(
                    f"{where}: {datatype} data out of range: {values[int(np.argmax(overflow))]} would become infinity (the largest {datatype} is {largest})"
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


def _as_float(value: int, datatype: str, largest: float, where: str) -> float:
    """An integer beyond 64 bits as a float; one beyond every float is refused (it would become infinity)."""
    try:
        return float(value)
    except OverflowError:
        raise BadRequest(f"{where}: {datatype} data out of range: {shown(value)} would become infinity (the largest {datatype} is {largest})") from None


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
    check_size(datatype, count, max_bytes, where, content=len(packed.buffer) - LENGTH_BYTES * count)
    return packed


def data_from_raw(datatype: str, shape: list[int], buf: memoryview | bytes, where: str, max_bytes: int) -> np.ndarray | PackedBytes:
    """A front door's tensor data from raw bytes (binary extension, gRPC raw contents). BYTES are
    checked in O(1): their length prefixes fit, and what their elements will cost."""
    data = array_from_raw(datatype, shape, buf, where)
    if type(data) is PackedBytes:
        check_size(datatype, data.count, max_bytes, where, content=len(buf) - LENGTH_BYTES * data.count)
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
