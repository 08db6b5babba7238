"""Pure pieces, called directly: a large JSON body read in chunks gives what a small one gives (the
same arrays, or a refusal both ways), a large answer rendered in steps is the same bytes as one
rendered at once, and BYTES pack and unpack exactly."""

from __future__ import annotations

import asyncio
import json
import string

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.frontdoor.rest import body as restbody
from gateway.frontdoor.rest import largejson
from gateway.wire.packed import PackedBytes, pack_bytes, unpack_bytes
from gateway.wire.request import Tensor, WireRequest, WireResponse

DATATYPES = ["BOOL", "UINT8", "INT8", "INT32", "UINT64", "INT64", "FP16", "FP32", "FP64", "BYTES"]


@pytest.fixture
def small_steps(monkeypatch):
    """Chunks and windows of a few bytes, so that every body is cut everywhere."""
    monkeypatch.setattr(largejson, "CHUNK", 7)
    monkeypatch.setattr(largejson, "WINDOW", 5)
    monkeypatch.setattr(largejson, "HEADER_LIMIT", 1 << 30)


def outcome(parse) -> object:
    """What a parse gives: each input's (name, datatype, shape, data), or that it was refused."""
    try:
        request = parse()
    except BadRequest:
        return "refused"
    return [(t.name, t.datatype, t.shape, _comparable(t.data)) for t in request.inputs]


def _comparable(data) -> object:
    if isinstance(data, PackedBytes):
        return ("packed", bytes(data.buffer), data.count)
    return (data.dtype.str, data.shape, data.tobytes())


def both_ways(body: bytes) -> tuple[object, object]:
    def parse(large_from: int):
        async def run():
            parsed = await restbody.read_json_body(body, None, large_from)
            return await restbody.build_infer_request(parsed, "m", None, 1 << 30, lambda request: None)

        return asyncio.run(run())

    return outcome(lambda: parse(len(body) + 1)), outcome(lambda: parse(0))


scalars = st.one_of(
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(alphabet=string.printable + 'é€"\\[],', max_size=6),
)
nested = st.recursive(scalars, lambda children: st.lists(children, max_size=5), max_leaves=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    datatype=st.sampled_from(DATATYPES),
    data=st.lists(nested, max_size=8),
    shape_delta=st.sampled_from([0, 0, 0, -1, 1]),
    spaces=st.sampled_from(["", " ", "\n  "]),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    junk=st.sampled_from(["", ",", "]", "[", '"', "}", "{", ":", "x", ",,"]),
)
def test_a_large_body_parses_as_a_small_one(small_steps, datatype, data, shape_delta, spaces, cut, junk):
    count = sum(1 for _ in _leaves(data))
    document = {"id": "r", "inputs": [{"name": "x", "datatype": datatype, "shape": [max(0, count + shape_delta)], "data": data}]}
    text = json.dumps(document, ensure_ascii=False, indent=len(spaces) or None).encode()
    if cut is not None:  # a byte of junk somewhere: most such bodies are malformed, both ways
        position = text.find(b'"data"') + cut % max(1, len(text) - text.find(b'"data"'))
        text = text[:position] + junk.encode() + text[position:]
    small, large = both_ways(text)
    assert small == large


def _leaves(data):
    for item in data:
        if isinstance(item, list):
            yield from _leaves(item)
        else:
            yield item


@pytest.mark.parametrize(
    "text",
    [
        # data elsewhere than an input's: read (or refused) as a full parse would
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [1, 2]}], "extra": {"data": [3, [4]]}}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [1, 2]}], "extra": {"data": [3, [4}}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1, 2], "data": [7]}]}',  # the last one wins
        b'{"parameters": {"data": [1]}, "inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]}',
        b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": "one string"}]}',
        b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "data": ["a]\\"b", "\\u00e9,["]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [[1], [2]], "parameters": {"s": "\\"data\\": [1]"}}]}',
        # broken structure that only chunks of a long array show (chunks here are 7 bytes)
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [8], "data": [1, 2, 3, 4],[5, 6, 7, 8]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [4], "data": [[,        1, 2, 3, 4]]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [4], "data": [[1, 2, 3],        , 4]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [3], "data": [1, 2, 3,         ]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [3], "data": [1, 2,,         3]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [4], "data": [[1, 2], [3, 4]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [4], "data": [[1, 2]], [3, 4]]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [1],[2]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [[1,],[2]]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [[1],[2]],}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [0, 2], "data": [[], []]}]}',
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [{"a": 1}, 2]}]}',
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e400]}]}',
        b'{"inputs": [{"name": "x", "datatype": "UINT64", "shape": [3], "data": [18446744073709551615, 0, 9223372036854775808]}]}',
        # nested 64 lists deep (accepted), 65 (refused, as 1,000 is: no recursion either way)
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": ' + b"[" * 63 + b"[1, 2]" + b"]" * 63 + b"}]}",
        b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": ' + b"[" * 64 + b"[1, 2]" + b"]" * 64 + b"}]}",
        b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "data": ["a", ' + b"[" * 999 + b'"b"' + b"]" * 999 + b"]}]}",
    ],
)
def test_edge_bodies_parse_as_small_ones(small_steps, text):
    small, large = both_ways(text)
    assert small == large


def test_a_placeholder_a_client_writes_is_only_data(small_steps):
    """The placeholders carry a random token: one a client guesses at is data like any other, refused here."""
    text = b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": {"0000": 0}}, {"name": "y", "datatype": "INT32", "shape": [1], "data": [5]}]}'
    assert both_ways(text) == ("refused", "refused")


def render_both_ways(monkeypatch, response: WireResponse, request: WireRequest) -> tuple[bytes, bytes]:
    at_once = asyncio.run(restbody.render_infer_response(response, request))
    monkeypatch.setattr(restbody, "JSON_STEP", 3)  # steps of a few elements or bytes
    monkeypatch.setattr(restbody, "COPY_STEP", 5)
    in_steps = asyncio.run(restbody.render_infer_response(response, request))
    assert at_once.json_length == in_steps.json_length
    return at_once.body + b"".join(at_once.chunks), in_steps.body + b"".join(in_steps.chunks)


@pytest.mark.parametrize("binary_output", [None, "y"])
def test_an_answer_rendered_in_steps_is_the_same_bytes(monkeypatch, binary_output):
    outputs = [
        Tensor("x", "FP32", [2, 5], np.arange(10, dtype=np.float32).reshape(2, 5) / 3, {"p": 1}),
        Tensor("y", "BYTES", [7], pack_bytes([b"", b"a", "é".encode(), b'"q"', b"\\", b"long" * 10, b"z"])),
        Tensor("z", "BOOL", [0], np.zeros(0, dtype=bool)),
        Tensor("w", "UINT64", [4], np.array([0, 1, 2**64 - 1, 7], dtype=np.uint64)),
    ]
    response = WireResponse("m", "1", "id-1", outputs, {"k": "v"})
    request = WireRequest(
        "m",
        "1",
        "id-1",
        [],
        {},
        None
        if binary_output is None
        else [
            *(restbody.RequestedOutput(t.name) for t in outputs if t.name != binary_output),
            restbody.RequestedOutput(binary_output, {"binary_data": True}),
        ],
    )
    at_once, in_steps = render_both_ways(monkeypatch, response, request)
    assert at_once == in_steps
    if binary_output is None:
        assert orjson.loads(at_once)["outputs"][1]["data"] == ["", "a", "é", '"q"', "\\", "long" * 10, "z"]


def test_an_answer_json_cannot_carry_is_refused_in_steps_too(monkeypatch):
    monkeypatch.setattr(restbody, "JSON_STEP", 2)
    response = WireResponse("m", None, "i", [Tensor("y", "BYTES", [3], pack_bytes([b"a", b"b", b"\xff"]))], {})
    with pytest.raises(BadRequest, match="not UTF-8"):
        asyncio.run(restbody._render_in_steps(response, [(response.outputs[0], False)]))
    response = WireResponse("m", None, "i", [Tensor("f", "FP32", [5], np.array([1, 2, 3, 4, np.nan], dtype=np.float32))], {})
    with pytest.raises(BadRequest, match="NaN"):
        asyncio.run(restbody._render_in_steps(response, [(response.outputs[0], False)]))


@settings(max_examples=200, deadline=None)
@given(elements=st.lists(st.binary(max_size=40), max_size=60), block=st.sampled_from([1, 2, 3, 65536]))
def test_bytes_pack_and_unpack_exactly(elements, block):
    import gateway.wire.packed as packed_module

    packed_module._PACK_BLOCK, saved = block, packed_module._PACK_BLOCK  # elements packed a block at a time
    try:
        packed = pack_bytes(elements, [0, len(elements)])
    finally:
        packed_module._PACK_BLOCK = saved
    expected = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    assert bytes(packed.buffer) == expected and packed.bounds == [0, len(expected)]
    assert unpack_bytes(PackedBytes(expected, len(elements)), "x").tolist() == elements
    assert PackedBytes(expected, len(elements)).check_framing()
    assert not PackedBytes(expected + b"\x00", len(elements)).check_framing()
    if elements:
        with pytest.raises(BadRequest):
            unpack_bytes(PackedBytes(expected[:-1] if elements[-1] else expected[:-4], len(elements)), "x")
