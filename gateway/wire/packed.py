"""BYTES tensors in their wire form: each element a 4-byte little-endian length, then its bytes.

BYTES travel packed from the front door through shared memory to the worker and back
(`PackedBytes`); only the worker unpacks them, into the object array of `bytes` a runtime sees,
and only a JSON answer decodes them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import BadRequest

_LENGTH = struct.Struct("<I")
LENGTH_BYTES = _LENGTH.size  # the length prefix of each element


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
    array[:] = next(unpack_in_steps(packed, packed.count or 1, where), [])
    return array


def unpack_in_steps(packed: PackedBytes, step: int, where: str) -> Iterator[list[bytes]]:
    """The elements, `step` at a time, the framing checked as in unpack_bytes (a large answer is
    written a step at a time)."""
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
                    f"{where}: BYTES data holds {first + i} elements, the shape declares {count} (each is a 4-byte little-endian length, then its bytes)"
                ) from None
            i -= 1
        if pos > end:
            raise BadRequest(f"{where}: BYTES element {first + i} of length {length} overruns its buffer by {pos - end} bytes")
        if first + len(elements) == count and pos < end:  # checked before the last step is given
            break
        yield elements
    if pos < end:  # also when no step was made (no elements)
        raise BadRequest(f"{where}: {end - pos} bytes left over after the {count} BYTES elements the shape declares")


def count_bytes_elements(buffer: bytes | bytearray | memoryview, start: int, stop_at: int) -> tuple[int, int]:
    """Walk the length prefixes from byte `start` for at most `stop_at` elements: (elements, next offset).
    The framing is not checked here (the worker does): the count is only what a shape needs."""
    unpack_from, size, end = _LENGTH.unpack_from, _LENGTH.size, len(buffer)
    pos, walked = start, 0
    while walked < stop_at and pos + size <= end:
        pos += size + unpack_from(buffer, pos)[0]
        walked += 1
    return walked, pos
