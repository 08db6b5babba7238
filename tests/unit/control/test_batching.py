"""control/batching.py: which requests may share a call, how they are merged along axis 0, and how
the outputs are split back so that each caller gets exactly its own rows."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.control.batching import CHECK_FRAMING_UP_TO, batch_key, merge, split
from gateway.errors import RuntimeFailure
from gateway.wire.packed import PackedBytes, pack_bytes, unpack_bytes
from gateway.wire.request import RequestedOutput, Tensor, WireRequest


def request(rows: int, first: int = 0, columns: int = 3, **changes) -> WireRequest:
    data = np.arange(first, first + rows * columns, dtype=np.float32).reshape(rows, columns)
    tensor = Tensor("x", changes.pop("datatype", "FP32"), [rows, columns], data, changes.pop("input_parameters", {}))
    return WireRequest("m", None, changes.pop("id", f"r{first}"), [tensor], changes.pop("parameters", {}), changes.pop("outputs", None))


def test_requests_that_agree_share_a_key_whatever_their_rows():
    assert batch_key(request(1)) == batch_key(request(5, 100))
    assert batch_key(request(1, parameters={"binary_data_output": True})) == batch_key(request(2))  # only how the answer is written
    asked = [RequestedOutput("y", {"binary_data": True})]
    assert batch_key(request(1, outputs=asked)) == batch_key(request(1, outputs=[RequestedOutput("y")]))


@pytest.mark.parametrize(
    "other",
    [
        {"columns": 4},
        {"datatype": "FP64"},
        {"input_parameters": {"content_type": "np"}},
        {"parameters": {"threshold": 1}},
        {"outputs": [RequestedOutput("y")]},
        {"outputs": [RequestedOutput("y"), RequestedOutput("z")]},
    ],
)
def test_requests_that_differ_do_not_share_a_key(other):
    assert batch_key(request(1)) != batch_key(request(1, **other))


def test_a_request_without_a_batch_axis_or_with_unchecked_bytes_runs_alone():
    scalar = WireRequest("m", None, "r", [Tensor("x", "FP32", [], np.float32(1))])
    assert batch_key(scalar) is None
    two = WireRequest("m", None, "r", [Tensor("a", "FP32", [2], np.zeros(2, np.float32)), Tensor("b", "FP32", [3], np.zeros(3, np.float32))])
    assert batch_key(two) is None  # inputs disagree on the batch axis
    broken = PackedBytes(b"\5\0\0\0ab", 1)  # an element of 5 bytes with 2 of them
    assert batch_key(WireRequest("m", None, "r", [Tensor("s", "BYTES", [1], broken)])) is None
    many = PackedBytes(b"\0\0\0\0" * (CHECK_FRAMING_UP_TO + 1), CHECK_FRAMING_UP_TO + 1)
    assert batch_key(WireRequest("m", None, "r", [Tensor("s", "BYTES", [CHECK_FRAMING_UP_TO + 1], many)])) is None  # too many to check here
    assert batch_key(WireRequest("m", None, "r", [Tensor("s", "BYTES", [1], PackedBytes(b"\2\0\0\0ab", 1))])) is not None


def test_merge_then_split_gives_each_request_its_own_rows():
    requests = [request(1, 0), request(3, 100), request(2, 200)]
    merged = merge(requests)
    assert merged.inputs[0].shape == [6, 3] and merged.id == "r0,r100,r200"
    assert np.array_equal(merged.inputs[0].data, np.concatenate([r.inputs[0].data for r in requests]))
    outputs = [Tensor("y", "FP32", [6, 3], merged.inputs[0].data * 2, {"o": 1})]
    for req, answer in zip(requests, split(outputs, requests)):
        (y,) = answer
        assert y.shape == req.inputs[0].shape and y.parameters == {"o": 1}
        assert np.array_equal(y.data, req.inputs[0].data * 2)


def test_bytes_are_joined_and_split_where_the_worker_says_each_request_starts():
    texts = [[b"a", b"bb"], [b"ccc"], [b"", b"dddd", b"e"]]
    requests = [WireRequest("m", None, f"r{i}", [Tensor("s", "BYTES", [len(t)], pack_bytes(t))]) for i, t in enumerate(texts)]
    merged = merge(requests)
    assert list(unpack_bytes(merged.inputs[0].data, "s")) == [e for t in texts for e in t]
    # the worker packs its output with the bounds of each request's first element
    output = pack_bytes([e.upper() for t in texts for e in t], bounds_at=[0, 2, 3, 6])
    answers = split([Tensor("s", "BYTES", [6], output)], requests)
    assert [list(unpack_bytes(a[0].data, "s")) for a in answers] == [[e.upper() for e in t] for t in texts]
    assert [a[0].shape for a in answers] == [[2], [1], [3]]


def test_outputs_that_do_not_follow_the_batch_axis_cannot_be_split():
    requests = [request(1), request(2, 10)]
    with pytest.raises(RuntimeFailure, match="do not follow the batch axis"):
        split([Tensor("total", "FP32", [1], np.zeros(1, np.float32))], requests)
    with pytest.raises(RuntimeFailure, match="did not say where"):
        split([Tensor("s", "BYTES", [3], pack_bytes([b"a", b"b", b"c"]))], requests)
