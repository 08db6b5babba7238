"""wire/datatypes.py: shapes, sizes and the conversions of JSON values and raw bytes into tensor
data, never changing a value silently."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.errors import BadRequest, RuntimeFailure
from gateway.wire.datatypes import (
    BYTES_ELEMENT_COST,
    DataBuilder,
    array_from_json,
    array_from_output,
    array_from_raw,
    check_datatype,
    check_size,
    data_from_json,
    element_count,
    flatten,
    json_numbers,
)
from gateway.wire.packed import PackedBytes, unpack_bytes


def test_element_count_and_the_shapes_it_refuses():
    assert element_count([2, 3, 4], "x") == 24 and element_count([], "x") == 1 and element_count([5, 0], "x") == 0
    for shape in ([-1], [2, "3"], "2", [1.0], [True, 2], [1] * 33):
        with pytest.raises(BadRequest):
            element_count(shape, "x")
    with pytest.raises(BadRequest, match="no elements"):
        element_count([0, 2**40, 2**40], "x")  # empty, but its other dimensions no tensor could have


def test_datatypes_known_and_refused():
    assert check_datatype("FP16", "x") == "FP16"
    with pytest.raises(BadRequest, match="BF16 is not supported"):
        check_datatype("BF16", "x")
    with pytest.raises(BadRequest, match="unknown datatype"):
        check_datatype("fp32", "x")


def test_size_limits_count_bytes_elements_at_their_unpacked_cost():
    check_size("FP32", 256, 1024, "x")
    with pytest.raises(BadRequest, match="over the limit"):
        check_size("FP32", 257, 1024, "x")
    check_size("BYTES", 16, 16 * BYTES_ELEMENT_COST, "x")
    with pytest.raises(BadRequest, match="BYTES elements"):
        check_size("BYTES", 16, 16 * BYTES_ELEMENT_COST, "x", content=1)


@pytest.mark.parametrize(
    "values, datatype, expected",
    [
        ([0, 255], "UINT8", [0, 255]),
        ([-128, 127], "INT8", [-128, 127]),
        ([2**63 - 1, -(2**63)], "INT64", [2**63 - 1, -(2**63)]),
        ([2**64 - 1], "UINT64", [2**64 - 1]),  # beyond int64: the exact Python ints
        ([True, False, 1, 0], "BOOL", [True, False, True, False]),
        ([1, 2.5], "FP16", [1, 2.5]),
        ([65504.0], "FP16", [65504.0]),  # the largest FP16
    ],
)
def test_json_numbers_take_what_their_type_holds(values, datatype, expected):
    assert json_numbers(values, datatype, "x").tolist() == expected


@pytest.mark.parametrize(
    "values, datatype, refusal",
    [
        ([256], "UINT8", "out of range"),
        ([-129], "INT8", "out of range"),
        ([2**64], "UINT64", "out of range"),
        ([1.5], "INT32", "fractional"),
        ([True], "INT32", "true/false"),
        ([2], "BOOL", "true/false"),
        (["1"], "FP32", "got strings"),
        ([70000.0], "FP16", "would become infinity"),
        ([2**1024], "FP64", "would become infinity"),
    ],
)
def test_json_numbers_refuse_what_would_change(values, datatype, refusal):
    with pytest.raises(BadRequest, match=refusal):
        json_numbers(values, datatype, "x")


def test_nested_json_data_is_read_in_row_major_order_and_counted_against_the_shape():
    assert array_from_json("INT32", [2, 2], [[1, 2], [3, 4]], "x").tolist() == [[1, 2], [3, 4]]
    assert array_from_json("INT32", [2, 2], [1, [2, [3]], 4], "x").tolist() == [[1, 2], [3, 4]]  # only the count must match
    with pytest.raises(BadRequest, match="holds 3 elements"):
        array_from_json("INT32", [2, 2], [1, 2, 3], "x")
    deep: list = [1]
    for _ in range(70):
        deep = [deep]
    with pytest.raises(BadRequest, match="nested more than"):
        flatten(deep, "x")


def test_json_bytes_are_packed_at_once_and_their_size_checked():
    packed = data_from_json("BYTES", [2], ["ab", "é"], "x", 1 << 20)
    assert type(packed) is PackedBytes and list(unpack_bytes(packed, "x")) == [b"ab", "é".encode()]
    with pytest.raises(BadRequest, match="BYTES data must be strings"):
        data_from_json("BYTES", [1], [3], "x", 1 << 20)


def test_raw_bytes_are_viewed_not_copied_and_must_fit_the_shape():
    raw = bytearray(np.arange(6, dtype="<i4").tobytes())
    array = array_from_raw("INT32", [2, 3], memoryview(raw), "x")
    raw[0] = 9
    assert array[0, 0] == 9 and array.shape == (2, 3)
    with pytest.raises(BadRequest, match="needs 24"):
        array_from_raw("INT32", [2, 3], memoryview(raw)[:20], "x")
    with pytest.raises(BadRequest, match="cannot hold the 3 elements"):
        array_from_raw("BYTES", [3], b"\0" * 11, "x")


def test_data_built_in_pieces_is_the_data_built_at_once():
    builder = DataBuilder("INT16", [2, 3], "x", 1 << 20)
    builder.add([1, 2])
    builder.add([3, 4, 5, 6])
    assert builder.finish().tolist() == data_from_json("INT16", [2, 3], [1, 2, 3, 4, 5, 6], "x", 1 << 20).tolist()
    with pytest.raises(BadRequest, match="more than the 6 elements"):
        builder.add([7])
    short = DataBuilder("BYTES", [3], "x", 1 << 20)
    short.add(["a"])
    with pytest.raises(BadRequest, match="holds 1 elements"):
        short.finish()


def test_a_runtime_output_must_hold_what_its_shape_says():
    assert array_from_output("y", "FP64", [2], [1, 2]).dtype == np.float64
    assert array_from_output("y", "BYTES", [2], ["a", b"b"], bounds_at=[0, 1, 2]).bounds == [0, 5, 10]
    with pytest.raises(RuntimeFailure, match="holds 3 elements"):
        array_from_output("y", "FP32", [2], [1, 2, 3])
