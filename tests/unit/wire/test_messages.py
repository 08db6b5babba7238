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
    frames = messages.request_frames(messages.INFER, 7, [request], arena, batch=batch)
    assert frames[0] == messages.INFER
    header = messages.request_header(frames)
    (described,) = header["requests"]
    return {**header, **described}, messages.parse_request(described, frames, arena, request.model_name, request.model_version)


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


def reply_of(seq: int, outputs: list[Tensor], parameters: dict, arena: Arena | Region | None, report: dict, times=None) -> list:
    answers = messages.Answers(seq, arena)
    answers.add(0, outputs, parameters, times)
    return answers.frames(report)


def read_reply(frames: list, arena: Arena | Region | None) -> tuple:
    """(seq, (outputs, parameters) or error, in_arena, times, report) of a one-answer REPLY."""
    header = messages.reply_header(frames)
    (answer,) = header["answers"]
    return (header["seq"], *messages.parse_answer(answer, frames, arena), answer.get("times"), header["report"])


def test_a_reply_says_whether_its_outputs_view_the_arena(arena):
    small = [fp32("y", 4)]
    seq, (outputs, parameters), in_arena, times, report = read_reply(reply_of(3, small, {"k": "v"}, arena, {"log": {}}, [1, 2, 3]), arena)
    assert (seq, parameters, in_arena, times, report) == (3, {"k": "v"}, False, [1, 2, 3], {"log": {}})
    assert np.array_equal(outputs[0].data, small[0].data)
    _, (outputs, _), in_arena, _, _ = read_reply(reply_of(4, [fp32("y", AT_LIMIT)], {}, arena, {}), arena)
    assert in_arena and outputs[0].shape == [1, AT_LIMIT]


@pytest.mark.parametrize("error", [BadRequest("b"), NotFound("n"), Unavailable("u"), Timeout("t"), RuntimeFailure("r")])
def test_an_error_keeps_its_kind_in_an_answer_and_for_a_whole_call(error):
    answers = messages.Answers(9, None)
    answers.fail(0, error)
    seq, result, in_arena, times, report = read_reply(answers.frames({"log": {}}), None)
    assert (seq, type(result), result.message, in_arena, times, report) == (9, type(error), error.message, False, None, {"log": {}})
    frames = messages.error_frames(9, error, {"log": {}})
    assert frames[0] == messages.ERROR
    result = messages.call_error(messages.reply_header(frames))
    assert (type(result), result.message, result.http_status, result.grpc_code) == (type(error), error.message, error.http_status, error.grpc_code)


def test_a_bundle_places_its_requests_one_after_the_other_and_is_answered_in_parts(arena):
    """A bundle's inputs follow one another in the region (inline the small ones, numbered across
    the message); its answers, sent in two REPLYs, never overlap in the output region: the first
    REPLY's outputs, still read by the gateway, are intact after the second is written."""
    requests = [WireRequest("m", None, f"r{i}", [fp32("x", AT_LIMIT if i % 2 else SMALL, 100 * i)], {"i": i}) for i in range(4)]
    frames = messages.request_frames(messages.INFER, 5, requests, arena, slot=1)
    header = messages.request_header(frames)
    assert (header["seq"], header["slot"], header["batch"]) == (5, 1, None)
    parsed = [messages.parse_request(d, frames, arena, "m", None) for d in header["requests"]]
    assert [p.id for p in parsed] == ["r0", "r1", "r2", "r3"] and [p.parameters for p in parsed] == [{"i": i} for i in range(4)]
    for sent, got in zip(requests, parsed):
        assert np.array_equal(got.inputs[0].data, sent.inputs[0].data)
    shm = [d["inputs"][0]["shm"] for d in header["requests"][1::2]]
    assert shm[1][0] >= shm[0][0] + shm[0][1]  # the second large input after the first, not over it
    assert [d["inputs"][0]["frame"] for d in header["requests"][0::2]] == [0, 1]

    out = Arena(1 << 20, "test:answers")
    try:
        answers = messages.Answers(5, out)
        answers.add(0, [fp32("y", AT_LIMIT, 1)], {}, [1, 1, 1])
        answers.fail(1, BadRequest("refused"))
        first = answers.frames({})
        assert len(answers) == 0
        answers.add(2, [fp32("y", AT_LIMIT, 2)], {"second": True}, [2, 2, 2])
        answers.add(3, [fp32("y", 4, 3)], {}, [3, 3, 3])
        second = answers.frames({})
        got = {}
        for message in (first, second):
            for answer in messages.reply_header(message)["answers"]:
                got[answer["index"]] = messages.parse_answer(answer, message, out)
        assert isinstance(got[1][0], BadRequest) and got[1][0].message == "refused"
        (y0,), _ = got[0][0]
        (y2,), parameters = got[2][0]
        (y3,), _ = got[3][0]
        assert got[0][1] and got[2][1] and not got[3][1]  # the small one inline
        assert np.array_equal(y0.data, fp32("y", AT_LIMIT, 1).data) and np.array_equal(y2.data, fp32("y", AT_LIMIT, 2).data)
        assert parameters == {"second": True} and np.array_equal(y3.data, fp32("y", 4, 3).data)
        del y0, y2, y3, got
    finally:
        out.close()


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
        frames = [messages.request_frames(messages.INFER, seq, [request], regions[seq], seq) for seq, request in enumerate((first, second))]
        parsed = []
        for message in frames:
            header = messages.request_header(message)
            parsed.append(messages.parse_request(header["requests"][0], message, regions[header["slot"]], "m", None))
        assert [p.inputs[0].data[0, 0] for p in parsed] == [1, 5]  # slot 1's placement did not overwrite slot 0's
        assert np.array_equal(parsed[0].inputs[0].data, first.inputs[0].data) and np.array_equal(parsed[1].inputs[0].data, second.inputs[0].data)
        del parsed
    finally:
        arena.close()


def test_control_messages_carry_a_small_payload():
    frames = messages.control_frames(messages.READY, {"metadata": {"name": "m"}})
    assert frames[0] == messages.READY and messages.parse_control(frames) == {"metadata": {"name": "m"}}
    assert messages.parse_control(messages.control_frames(messages.PING)) == {}
