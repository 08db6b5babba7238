"""wire/packed.py: BYTES in their wire form (a 4-byte little-endian length, then the bytes), packed
and unpacked, the framing checked exactly."""

from __future__ import annotations

import struct

import pytest

from gateway.errors import BadRequest
from gateway.wire.packed import PackedBytes, count_bytes_elements, pack_bytes, unpack_bytes, unpack_in_steps


def framed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def test_packing_is_the_wire_form_and_unpacking_gives_it_back():
    elements = [b"", b"a", "é".encode(), b"\0" * 5]
    packed = pack_bytes(elements)
    assert bytes(packed.buffer) == framed(*elements) and packed.count == 4 and packed.framed
    assert list(unpack_bytes(packed, "x")) == elements
    assert list(unpack_bytes(pack_bytes(["é", 7]), "x")) == ["é".encode(), b"7"]  # str UTF-8, anything else its str()


def test_bounds_are_the_byte_offsets_of_the_elements_asked_for():
    packed = pack_bytes([b"ab", b"", b"cde"], bounds_at=[0, 1, 3])
    assert packed.bounds == [0, 6, 17]  # where elements 0 and 1 start, and the end


@pytest.mark.parametrize(
    "buffer, count, refusal",
    [
        (framed(b"ab") + b"\1\0", 2, "holds 1 elements, the shape declares 2"),
        (framed(b"ab")[:-1], 1, "overruns its buffer by 1"),
        (framed(b"ab", b"c"), 1, "5 bytes left over"),  # "c" and its 4-byte length
        (b"\0\0", 0, "2 bytes left over"),
    ],
)
def test_broken_framing_is_refused(buffer, count, refusal):
    with pytest.raises(BadRequest, match=refusal):
        unpack_bytes(PackedBytes(buffer, count), "x")


def test_unpacking_in_steps_checks_the_end_before_the_last_step():
    packed = PackedBytes(framed(b"a", b"b", b"c") + b"!", 3)
    steps = unpack_in_steps(packed, 2, "x")
    assert next(steps) == [b"a", b"b"]
    with pytest.raises(BadRequest, match="left over"):
        next(steps)


def test_counting_and_checking_the_framing():
    buffer = framed(b"a", b"bc", b"")
    assert count_bytes_elements(buffer, 0, 10) == (3, len(buffer))
    assert count_bytes_elements(buffer, 0, 2) == (2, 11)
    assert PackedBytes(buffer, 3).check_framing()
    assert not PackedBytes(buffer, 2).check_framing() and not PackedBytes(buffer + b"x", 3).check_framing()
