"""wire/messages.py: a request and a reply framed on one side and read back on the other, over a
real shared-memory arena, without a socket: placement (inline below INLINE_BELOW, in the arena
from it, aligned, side by side, inline again when the arena is full), the header's fields, the
error kinds, and a worker's call slots (each a region of each arena)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.errors import BadRequest, NotFound, RuntimeFailure, Timeout, Unavailable
from gateway.wire import messages
from gateway.wire.arena import ALIGNMENT, Arena, Region
from gateway.wire.packed import PackedBytes, pack_bytes, unpack_bytes
from gateway.wire.request import RequestedOutput, Tensor, WireRequest

SMALL = messages.INLINE_BELOW // 4 - 1  # FP32 elements: one byte group under the inline limit
AT_LIMIT = messages.INLINE_BELOW // 4  # exactly INLINE_BELOW bytes: placed in the arena


@pytest.fixture
def arena():
    arena = Arena(1 << 20, "test:messages")
    yield arena
    arena.close()


def fp32(name: str, elements: int, start: float = 0) -> Tensor:
    return Tensor(name, "FP32", [1, elements], np.arange(start, start + elements, dtype=np.float32).reshape(1, elements), {"p": name})


def round_trip(request: WireRequest, arena: Arena | Region | None, batch: list[int] | None = None) -> tuple[dict, WireRequest]:
    frames = messages.request_frames(messages.INFER, 7, request, arena, batch=batch)
    assert frames[0] == messages.INFER
    header = messages.request_header(frames)
    return header, messages.parse_request(header, frames, arena, request.model_name, request.model_version)


def test_small_tensors_travel_inline_and_large_ones_in_the_arena_aligned_side_by_side(arena):
    # b: a size that is no multiple of the alignment; c: exactly the inline limit
    request = WireRequest(
        "m", "1", "r1", [fp32("a", SMALL), fp32("b", AT_LIMIT + 1, 10), fp32("c", AT_LIMIT, 20)], {"q": 1}, [RequestedOutput("y", {"binary_data": True})]
    )
    header, parsed = round_trip(request, arena, batch=[1])
    a, b, c = header["inputs"]
    assert "frame" in a and "shm" not in a
    assert b["shm"] == [0, (AT_LIMIT + 1) * 4]
    assert c["shm"][0] >= b["shm"][0] + b["shm"][1] and c["shm"][0] % ALIGNMENT == 0  # after b, never over it
    assert header["seq"] == 7 and header["slot"] == 0 and header["batch"] == [1] and header["id"] == "r1"
    assert (parsed.id, parsed.parameters, parsed.model_version) == ("r1", {"q": 1}, "1")
    assert parsed.outputs == [RequestedOutput("y", {"binary_data": True})]
    for sent, got in zip(request.inputs, parsed.inputs):
        assert (got.name, got.datatype, got.shape, got.parameters) == (sent.name, sent.datatype, sent.shape, sent.parameters)
        assert np.array_equal(got.data, sent.data) and not got.data.flags.writeable  # read-only views


def test_the_arena_view_is_the_arena_itself_no_copy(arena):
    _, parsed = round_trip(WireRequest("m", None, "r", [fp32("x", AT_LIMIT)]), arena)
    arena.buf[0:4] = np.float32(42).tobytes()
    assert parsed.inputs[0].data[0, 0] == 42


def test_without_room_in_the_arena_a_large_tensor_travels_inline():
    small_arena = Arena(AT_LIMIT * 4 + 8, "test:full")
    try:
        request = WireRequest("m", None, "r", [fp32("a", AT_LIMIT), fp32("b", AT_LIMIT, 5)])
        header, parsed = round_trip(request, small_arena)
        assert "shm" in header["inputs"][0] and "frame" in header["inputs"][1]
        assert all(np.array_equal(g.data, s.data) for g, s in zip(parsed.inputs, request.inputs))
    finally:
        small_arena.close()


def test_bytes_stay_packed_and_keep_their_bounds(arena):
    packed = pack_bytes([b"x" * 9000, b"", "é".encode(), b"y" * 9000], bounds_at=[0, 2, 4])
    header, parsed = round_trip(WireRequest("m", None, "r", [Tensor("s", "BYTES", [4], packed)]), arena)
    (got,) = parsed.inputs
    assert type(got.data) is PackedBytes and "shm" in header["inputs"][0]
    assert got.data.bounds == packed.bounds and got.data.count == 4
    assert list(unpack_bytes(got.data, "s")) == [b"x" * 9000, b"", "é".encode(), b"y" * 9000]


def read_reply(frames: list, arena: Arena | Region | None) -> tuple:
    header = messages.reply_header(frames)
    return (header["seq"], *messages.parse_reply(header, frames, arena))


def test_a_reply_says_whether_its_outputs_view_the_arena(arena):
    small = [fp32("y", 4)]
    seq, (outputs, parameters), in_arena, report = read_reply(messages.reply_frames(3, small, {"k": "v"}, arena, {"times": [1, 2, 3]}), arena)
    assert (seq, parameters, in_arena, report) == (3, {"k": "v"}, False, {"times": [1, 2, 3]})
    assert np.array_equal(outputs[0].data, small[0].data)
    _, (outputs, _), in_arena, _ = read_reply(messages.reply_frames(4, [fp32("y", AT_LIMIT)], {}, arena, {}), arena)
    assert in_arena and outputs[0].shape == [1, AT_LIMIT]


@pytest.mark.parametrize("error", [BadRequest("b"), NotFound("n"), Unavailable("u"), Timeout("t"), RuntimeFailure("r")])
def test_an_error_crosses_as_its_own_kind(error):
    seq, result, in_arena, report = read_reply(messages.error_frames(9, error, {"log": {}}), None)
    assert (seq, type(result), result.message, in_arena, report) == (9, type(error), error.message, False, {"log": {}})


def test_each_slot_places_its_tensors_in_its_own_region_of_the_arena():
    """Double buffering: a call placed in one slot leaves the other slot's tensors as they were,
    and the worker reads each call from the region its header names."""
    arena = Arena(messages.SLOTS * (1 << 20), "test:slots", regions=messages.SLOTS)
    try:
        regions = arena.regions
        assert len(regions) == messages.SLOTS == 2
        assert all(region.size == 1 << 20 for region in regions)
        first = WireRequest("m", None, "a", [fp32("x", AT_LIMIT, 1)])
        second = WireRequest("m", None, "b", [fp32("x", AT_LIMIT, 5)])
        frames = [messages.request_frames(messages.INFER, seq, request, regions[seq], seq) for seq, request in enumerate((first, second))]
        parsed = []
        for message in frames:
            header = messages.request_header(message)
            parsed.append(messages.parse_request(header, message, regions[header["slot"]], "m", None))
        assert [p.inputs[0].data[0, 0] for p in parsed] == [1, 5]  # slot 1's placement did not overwrite slot 0's
        assert np.array_equal(parsed[0].inputs[0].data, first.inputs[0].data) and np.array_equal(parsed[1].inputs[0].data, second.inputs[0].data)
        del parsed
    finally:
        arena.close()


def test_control_messages_carry_a_small_payload():
    frames = messages.control_frames(messages.READY, {"metadata": {"name": "m"}})
    assert frames[0] == messages.READY and messages.parse_control(frames) == {"metadata": {"name": "m"}}
    assert messages.parse_control(messages.control_frames(messages.PING)) == {}
