"""BYTES in their wire form end to end, what a BYTES element costs, large JSON bodies read in
chunks and large answers rendered in steps, through a real gateway and real clients."""

from __future__ import annotations

import json
import struct
import threading

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from tests.conftest import assert_serves_large
from tests.test_worker_plane import write_repository

MIB = 1024 * 1024
LIMIT = 64 * MIB  # this module's max_tensor_bytes: a BYTES element counts 64 bytes and its length
HEADER_LENGTH = "Inference-Header-Content-Length"
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]

MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo"},
    # a single BYTES input: what a raw binary request (Inference-Header-Content-Length: 0) needs
    "text": {"implementation": "tests.runtimes.Echo", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}]},
    "batched": {"implementation": "tests.runtimes.SlowEcho", "max_batch_size": 8},
}

# element sets every encoding must carry exactly (JSON: the UTF-8 ones)
ELEMENTS = {
    "empty": [b"", b"", b""],
    "non-utf8": [b"\xff\xfe", b"\x00", b"\xc3"],
    "large": [b"x" * 300_000, b"", "é€".encode() * 1000],
    "many": [str(i).encode() * (i % 5) for i in range(30_000)],  # > 16 KiB: through shared memory
}
UTF8 = [name for name in ELEMENTS if name != "non-utf8"]


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("bytes-json"), MODELS)
    return start_gateway(repository, max_tensor_bytes=LIMIT, grpc_max_message_bytes=256 * MIB).wait_ready()


@pytest.fixture(scope="module")
def http_client(gateway):
    return httpclient.InferenceServerClient(gateway.url.removeprefix("http://"), network_timeout=120)


@pytest.fixture(scope="module")
def grpc_client(gateway):
    with grpcclient.InferenceServerClient(gateway.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_url, options=CHANNEL_OPTIONS) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def packed(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {HEADER_LENGTH: str(len(head))}


def post(gateway, model: str, **kwargs) -> requests.Response:
    return requests.post(f"{gateway.url}/v2/models/{model}/infer", timeout=120, **kwargs)


def infer_json(gateway, model: str, document: dict) -> requests.Response:
    return post(gateway, model, data=json.dumps(document))


def binary_bytes_request(gateway, model: str, elements: list[bytes], shape=None, raw: bytes | None = None, name="x", **parameters) -> requests.Response:
    raw = packed(elements) if raw is None else raw
    shape = [len(elements)] if shape is None else shape
    header = {
        "inputs": [{"name": name, "datatype": "BYTES", "shape": shape, "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True, **parameters},
    }
    body, headers = binary_body(header, raw)
    return post(gateway, model, data=body, headers=headers)


def binary_outputs(response: requests.Response) -> dict[str, bytes]:
    """The binary outputs of a REST answer: name -> its raw bytes."""
    assert response.status_code == 200, response.text
    length = int(response.headers[HEADER_LENGTH])
    outputs, offset, raw = {}, length, response.content
    for output in json.loads(raw[:length])["outputs"]:
        size = output["parameters"]["binary_data_size"]
        outputs[output["name"]] = raw[offset : offset + size]
        offset += size
    return outputs


def assert_shared_memory_answer(gateway, model: str = "echo", name: str = "x") -> None:
    """The model answers right at a size that goes through shared memory (>= 16 KiB): BYTES elements."""
    elements = np.array([bytes([i % 256]) * (i % 50) for i in range(2000)], dtype=object)  # ~50 KiB packed
    assert_serves_large(gateway, model, {name: elements})


# --- round trips: every encoding carries BYTES exactly


@pytest.mark.parametrize("kind", list(ELEMENTS))
def test_bytes_round_trip_over_rest_binary_with_tritonclient(http_client, kind):
    array = np.array(ELEMENTS[kind], dtype=object)
    tensor = httpclient.InferInput("x", [len(array)], "BYTES")
    tensor.set_data_from_numpy(array, binary_data=True)
    result = http_client.infer("echo", [tensor], outputs=[httpclient.InferRequestedOutput("x", binary_data=True)])
    assert result.as_numpy("x").tolist() == ELEMENTS[kind]


@pytest.mark.parametrize("kind", UTF8)
def test_bytes_round_trip_over_rest_json(gateway, kind):
    strings = [e.decode() for e in ELEMENTS[kind]]
    response = infer_json(gateway, "echo", {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [len(strings)], "data": strings}]})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == strings


@pytest.mark.parametrize("kind", list(ELEMENTS))
def test_bytes_round_trip_over_grpc_raw_with_tritonclient(grpc_client, kind):
    array = np.array(ELEMENTS[kind], dtype=object).reshape(1, -1)
    tensor = grpcclient.InferInput("x", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    assert grpc_client.infer("echo", [tensor]).as_numpy("x").tolist() == array.tolist()


@pytest.mark.parametrize("kind", list(ELEMENTS))
def test_bytes_round_trip_over_grpc_typed_contents(stub, kind):
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="BYTES", shape=[len(ELEMENTS[kind])]).contents.bytes_contents.extend(ELEMENTS[kind])
    response = stub.ModelInfer(request)
    assert response.raw_output_contents[0] == packed(ELEMENTS[kind])


def test_many_typed_contents_are_converted_in_steps_and_arrive_exactly(gateway, stub):
    """More typed contents than one conversion step (65536) take the stepwise path."""
    elements = [str(i).encode() for i in range(100_000)]
    numbers = np.arange(-50_000, 50_000, dtype=np.int64)
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="s", datatype="BYTES", shape=[len(elements)]).contents.bytes_contents.extend(elements)
    request.inputs.add(name="n", datatype="INT64", shape=[len(numbers)]).contents.int64_contents.extend(numbers.tolist())
    response = stub.ModelInfer(request)
    assert response.raw_output_contents[0] == packed(elements)
    assert np.frombuffer(response.raw_output_contents[1], dtype=np.int64).tolist() == numbers.tolist()
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="n", datatype="INT8", shape=[len(numbers)]).contents.int_contents.extend(numbers.tolist())
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "INT8 data out of range" in caught.value.details()
    assert_shared_memory_answer(gateway)


def test_bytes_outputs_of_a_batched_call_are_split_for_each_caller(gateway, stub):
    """Requests queued behind a busy worker run as one call; each gets exactly its own BYTES rows,
    whatever its encoding, and a request whose framing is broken fails alone."""

    def rows_of(i: int) -> list[list[bytes]]:
        return [[f"{i}-{r}".encode() * (r + 1), b"\xff" * i] for r in range(i + 1)]

    results: dict = {}

    def rest_binary(i):
        elements = [e for row in rows_of(i) for e in row]
        results[i] = binary_bytes_request(gateway, "batched", elements, shape=[i + 1, 2])

    def rest_json(i):
        rows = [[e.decode(errors="strict") for e in row] for row in rows_of(i) if all(b"\xff" not in e for e in row)] or [["a", "b"]]
        results[i] = infer_json(gateway, "batched", {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [len(rows), 2], "data": rows}]})

    def grpc_raw(i):
        request = pb.ModelInferRequest(model_name="batched")
        request.inputs.add(name="x", datatype="BYTES", shape=[i + 1, 2])
        request.raw_input_contents.append(packed([e for row in rows_of(i) for e in row]))
        results[i] = stub.ModelInfer(request)

    def broken(i):  # the second element's length overruns the buffer
        results[i] = binary_bytes_request(gateway, "batched", [], shape=[1, 2], raw=packed([b"ok"]) + struct.pack("<I", 99) + b"x")

    blocker = threading.Thread(target=lambda: results.update(blocker=binary_bytes_request(gateway, "batched", [b"a", b"b"], shape=[1, 2], delay=1.0)))
    before = gateway.log_text().count("slow echo call")
    blocker.start()
    gateway.wait_for(lambda: gateway.log_text().count("slow echo call") > before, what="the blocking call to start")
    senders = {1: rest_binary, 2: rest_json, 3: grpc_raw, 4: broken, 5: rest_binary, 6: grpc_raw, 0: rest_json}
    threads = [threading.Thread(target=send, args=(i,)) for i, send in senders.items()]
    for thread in threads:
        thread.start()
    for thread in [blocker, *threads]:
        thread.join()

    assert results[4].status_code == 400 and "overruns" in results[4].json()["error"]
    merged = []
    for i in (1, 5):
        outputs = binary_outputs(results[i])
        assert outputs["x"] == packed([e for row in rows_of(i) for e in row])
        merged.append(np.frombuffer(outputs["rows"], dtype=np.int64)[0])
    for i in (3, 6):
        assert results[i].raw_output_contents[0] == packed([e for row in rows_of(i) for e in row])
        merged.append(np.frombuffer(results[i].raw_output_contents[1], dtype=np.int64)[0])
    for i in (0, 2):
        assert results[i].status_code == 200, results[i].text
        outputs = {o["name"]: o["data"] for o in results[i].json()["outputs"]}
        rows = [[e.decode() for e in row] for row in rows_of(i) if all(b"\xff" not in e for e in row)] or [["a", "b"]]
        assert outputs["x"] == [e for row in rows for e in row]
        merged.append(outputs["rows"][0])
    # at least two requests shared a call: their call had more rows than any one of them
    assert max(merged) > 7, merged
    assert_shared_memory_answer(gateway, "batched")


# --- what a BYTES element costs, and broken framing


def test_bytes_element_cost_refuses_many_empty_elements_at_once(gateway, stub):
    """Each element counts 64 bytes and its length against max_tensor_bytes: a body of zero-length
    elements past the limit is refused at once, in every encoding, naming the setting."""
    count = LIMIT // 64 + 1
    raw = bytes(4 * count)  # 4 MiB of zero lengths
    response = binary_bytes_request(gateway, "echo", [], shape=[count], raw=raw)
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"input 'x': {count} BYTES elements count as {64 * count} bytes (64 bytes an element plus its length), "
        f"over the limit of {LIMIT} bytes (setting max_tensor_bytes)"
    )
    response = post(gateway, "text", data=raw, headers={HEADER_LENGTH: "0"})  # counted from the body
    assert response.status_code == 400 and "setting max_tensor_bytes" in response.json()["error"]
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="BYTES", shape=[count])
    request.raw_input_contents.append(raw)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "setting max_tensor_bytes" in caught.value.details()
    # the elements' lengths count too: few elements, most of the limit in content, over it
    big = [b"z" * (LIMIT // 2)] * 2
    response = binary_bytes_request(gateway, "echo", big)
    assert response.status_code == 400 and f"2 BYTES elements of {LIMIT} bytes count as {LIMIT + 128} bytes" in response.json()["error"]
    response = infer_json(gateway, "echo", {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [count], "data": [""]}]})
    assert response.status_code == 400 and "setting max_tensor_bytes" in response.json()["error"]
    assert_shared_memory_answer(gateway)


@pytest.mark.parametrize(
    "raw, shape, message",
    [
        (packed([b"ab"]) + struct.pack("<I", 9) + b"ab", [2], "BYTES element 1 of length 9 overruns its buffer by 7 bytes"),
        (packed([b"ab", b"c"]), [1], "5 bytes left over after the 1 BYTES elements"),
        (packed([b"ab"]) + b"\x01\x00", [2], "BYTES data holds 1 elements, the shape declares 2"),
        (packed([b"ab"]), [3], "6 bytes of BYTES data cannot hold the 3 elements"),  # refused by the front door
        (struct.pack(">I", 300) + b"q" * 300, [1], "overruns its buffer"),  # a big-endian length
    ],
)
def test_malformed_bytes_framing_is_400_and_invalid_argument(gateway, stub, raw, shape, message):
    response = binary_bytes_request(gateway, "echo", [], shape=shape, raw=raw)
    assert response.status_code == 400 and message in response.json()["error"], response.text
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="BYTES", shape=shape)
    request.raw_input_contents.append(raw)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in caught.value.details()
    assert_shared_memory_answer(gateway)


def test_raw_binary_request_of_a_single_bytes_input_reads_little_endian_lengths(gateway):
    """`Inference-Header-Content-Length: 0`: the body is the model's one BYTES input. Lengths of
    300 bytes read big-endian would overrun the body: they must be read little-endian."""
    elements = [bytes([65 + i]) * 300 for i in range(4)]
    response = post(gateway, "text", data=packed(elements), headers={HEADER_LENGTH: "0"})
    outputs = binary_outputs(response)
    assert json.loads(response.content[: int(response.headers[HEADER_LENGTH])])["outputs"][0]["shape"] == [4]
    assert outputs["text"] == packed(elements)
    big = [bytes([i % 256]) * 300 for i in range(100)]  # 30 KiB: through shared memory
    assert binary_outputs(post(gateway, "text", data=packed(big), headers={HEADER_LENGTH: "0"}))["text"] == packed(big)
    response = post(gateway, "text", data=struct.pack(">I", 300) + b"q" * 300, headers={HEADER_LENGTH: "0"})
    assert response.status_code == 400 and "overruns its buffer" in response.json()["error"]
    assert binary_outputs(post(gateway, "text", data=packed(big), headers={HEADER_LENGTH: "0"}))["text"] == packed(big)


# --- JSON data: one rule for nesting and for each element, whatever the body's size


def json_numbers_body(datatype: str, shape: list, data) -> dict:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}


@pytest.mark.parametrize("big", [False, True], ids=["small-body", "large-body"])
def test_json_data_is_read_row_major_whatever_its_nesting(gateway, big):
    """Only the element count must match the shape (Triton's rule): ragged nesting is read in
    row-major order. A large body (>= 1 MiB, read in chunks) follows the same rule."""
    rows = 40_000 if big else 2
    data = [[float(i), [float(i) + 0.5]] for i in range(rows)]  # ragged: a number beside a list
    response = infer_json(gateway, "echo", json_numbers_body("FP32", [rows, 2], data))
    assert response.status_code == 200, response.text
    expected = np.array([[i, i + 0.5] for i in range(rows)], dtype=np.float32).ravel().tolist()
    assert response.json()["outputs"][0]["data"] == expected


@pytest.mark.parametrize("big", [False, True], ids=["small-body", "large-body"])
@pytest.mark.parametrize(
    "datatype, value, message",
    [
        ("FP32", True, "FP32 data must be numbers, got true/false"),
        ("INT32", 1.5, "INT32 data must be integers, got fractional numbers"),
        ("UINT8", 256, "UINT8 data out of range [0, 255]"),
        ("BOOL", 2, "BOOL data must be true/false"),
        ("BYTES", 5, "BYTES data must be strings, got int"),
        ("FP16", 1e6, "FP16 data out of range: 1000000.0 would become infinity"),
    ],
)
def test_json_elements_are_refused_by_one_rule_in_small_and_large_bodies(gateway, big, datatype, value, message):
    count = 300_000 if big else 3
    good = "a" if datatype == "BYTES" else (True if datatype == "BOOL" else 1)
    data = [good] * (count - 1) + [value]  # the bad element last: a large body finds it in its last chunk
    response = infer_json(gateway, "echo", json_numbers_body(datatype, [count], data))
    assert response.status_code == 400 and message in response.json()["error"], response.text[:300]
    assert_shared_memory_answer(gateway)


def test_large_json_round_trips_numbers_and_strings_in_chunks(gateway):
    numbers = np.random.default_rng(0).standard_normal(300_000).astype(np.float32)
    strings = [f"s{i}é" for i in range(60_000)]
    document = {
        "id": "big",
        "inputs": [
            {"name": "n", "datatype": "FP32", "shape": [300, 1000], "data": numbers.reshape(300, 1000).tolist()},
            {"name": "s", "datatype": "BYTES", "shape": [60_000], "data": strings},
            {"name": "b", "datatype": "BOOL", "shape": [3], "data": [True, False, 1]},
        ],
        "outputs": [{"name": "n"}, {"name": "s"}, {"name": "b", "parameters": {"binary_data": True}}],
    }
    body = json.dumps(document).encode()
    assert len(body) > 4 * MIB
    response = post(gateway, "echo", data=body)
    length = int(response.headers[HEADER_LENGTH])
    answer = json.loads(response.content[:length])
    assert answer["id"] == "big"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert np.array(outputs["n"]["data"], dtype=np.float32).tobytes() == numbers.tobytes()
    assert outputs["s"]["data"] == strings and outputs["s"]["shape"] == [60_000]
    assert response.content[length:] == b"\x01\x00\x01"


@pytest.mark.parametrize(
    "text, message",
    [
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [400000], "data": [1' + b", 1" * 399_999 + b", ]}]}", "malformed JSON"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [400000], "data": [1' + b", 1" * 399_999 + b"}]}", "malformed JSON"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [400001], "data": [1' + b", 1" * 399_999 + b"]}]}", "data holds 400000 elements"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [4000], "data": [1' + b", 1" * 399_999 + b"]}]}", "more than the 4000 elements"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1]}], "junk": "' + b"j" * 2 * MIB + b'"}', "besides its inputs' data arrays"),
    ],
    ids=["trailing-comma", "unclosed", "fewer", "more", "large-outside-data"],
)
def test_large_malformed_or_mismatched_json_is_400(gateway, text, message):
    response = post(gateway, "echo", data=text)
    assert response.status_code == 400 and message in response.json()["error"], response.text[:300]
    assert_shared_memory_answer(gateway)


def test_large_json_over_the_limit_is_refused_before_its_data_is_parsed(gateway):
    """A 16 MiB JSON body whose declared tensor exceeds max_tensor_bytes: refused from its header,
    the front door's peak memory growing by the body and Sanic's copy of it at most (main before
    this change: 7.4 times the body, parsing every number first)."""
    numbers = b"[" + b",".join([b"0.123456789"] * (16 * MIB // 12)) + b"]"
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [%d], "data": %s}]}' % (LIMIT // 4 + 1, numbers)
    base = gateway.reset_peak_memory()
    response = post(gateway, "echo", data=body)
    grown = gateway.peak_memory() - base
    assert response.status_code == 400 and "setting max_tensor_bytes" in response.json()["error"]
    assert grown < 3 * len(body), f"the front door grew by {grown / len(body):.1f} times the body"
    assert_shared_memory_answer(gateway)


@pytest.mark.parametrize("elements", [500, 2000], ids=["small-body", "large-body"])
def test_bytes_content_over_the_limit_is_refused_in_small_and_large_bodies(start_gateway, tmp_path, elements):
    """What BYTES elements hold counts against max_tensor_bytes as it is read: in one go, or in steps
    (a body of 1 MiB or more); the shape alone (64 bytes an element) is well under the limit."""
    limit = 512 * 1024
    gateway = start_gateway(write_repository(tmp_path, {"echo": MODELS["echo"]}), max_tensor_bytes=limit).wait_ready()
    body = json.dumps(json_numbers_body("BYTES", [elements], ["x" * 1500] * elements)).encode()
    assert (len(body) >= MIB) == (elements == 2000)
    response = post(gateway, "echo", data=body)
    assert response.status_code == 400, response.text[:300]
    assert "BYTES elements of" in response.json()["error"] and f"over the limit of {limit} bytes" in response.json()["error"]
    assert_shared_memory_answer(gateway)


def test_large_json_for_an_undeclared_input_is_refused_before_its_data_is_parsed(gateway):
    """The model's declared inputs are checked from the header of a large body, before its data."""
    body = json.dumps(json_numbers_body("BYTES", [300_000], ["a"] * 299_999 + [5])).replace('"name": "x"', '"name": "bogus"')
    response = post(gateway, "text", data=body.encode())
    assert response.status_code == 400 and "unknown input 'bogus'" in response.json()["error"]
    assert_shared_memory_answer(gateway, "text", "text")
