"""The V2 REST API end to end: a real gateway, real worker processes, real clients."""

import json
import struct

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT, SHARED_MEMORY_BYTES, assert_serves_large
from tests.test_worker_plane import workers_of

ALL_DATATYPES = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-32768, 0, 32767]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[-1.5, 0.0, 65504.0]], dtype=np.float16),
    "FP32": np.array([[-1.25, 0.0, 3.4e38]], dtype=np.float32),
    "FP64": np.array([[-1e300, 0.0, 1e-300]], dtype=np.float64),
    "BYTES": np.array([[b"hello", b"", "w\u00f6rld".encode()]], dtype=object),
}


@pytest.fixture(scope="module")
def gateway(start_gateway):
    return start_gateway(ROOT / "tests" / "repository").wait_ready()


@pytest.fixture(scope="module")
def client(gateway):
    client = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    yield client
    client.close()


def post(gateway, path, **kwargs):
    return requests.post(f"{gateway.url}{path}", timeout=30, **kwargs)


def infer_json(gateway, model, body, **kwargs):
    return post(gateway, f"/v2/models/{model}/infer", data=json.dumps(body), **kwargs)


def echo_input(name, datatype, shape, data, **extra):
    return {"name": name, "datatype": datatype, "shape": shape, "data": data, **extra}


# --- server and model endpoints


def test_health_and_server_metadata(gateway, client):
    assert requests.get(f"{gateway.url}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{gateway.url}/v2/health/ready").json() == {"ready": True}
    assert client.is_server_live() and client.is_server_ready()
    for path in ("/v2", "/"):
        metadata = requests.get(f"{gateway.url}{path}").json()
        assert metadata["name"] == "inference-gateway"
        assert "binary_tensor_data" in metadata["extensions"]
    assert client.get_server_metadata()["name"] == "inference-gateway"


def test_list_models(gateway):
    # as MLRun lists them: a versioned model once per version, as name:version
    expected = {"models": ["echo", "failing", "sleepy", "versioned:1", "versioned:2"]}
    assert requests.get(f"{gateway.url}/v2/models").json() == expected
    assert requests.get(f"{gateway.url}/v2/models/").json() == expected


def test_model_metadata_and_ready(gateway, client):
    metadata = client.get_model_metadata("sleepy")
    assert metadata["name"] == "sleepy"
    assert metadata["inputs"] == [{"name": "seconds", "datatype": "FP32", "shape": [-1]}]
    assert metadata["outputs"][0] == {"name": "pid", "datatype": "INT64", "shape": [1]}
    assert client.is_model_ready("echo")
    assert requests.get(f"{gateway.url}/v2/models/echo/ready").json() == {"name": "echo", "ready": True}


def test_unknown_model_is_404_everywhere(gateway, client):
    for method, path in [
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("POST", "/v2/models/nope/infer"),
        ("GET", "/v2/models/echo/versions/9"),
        ("POST", "/v2/models/versioned/versions/3/infer"),
    ]:
        response = requests.request(method, f"{gateway.url}{path}", data=b"{}")
        assert response.status_code == 404, path
        assert "not found" in response.json()["error"] or "no version" in response.json()["error"]
    assert not client.is_model_ready("nope")
    assert_serves_large(gateway, "echo")
    assert_serves_large(gateway, "versioned", version="2", expect=lambda inputs: {"version": np.array([b"2"], dtype=object)})


def test_unknown_route_and_wrong_method_answer_json(gateway):
    response = requests.get(f"{gateway.url}/v2/nothing/here")
    assert response.status_code == 404 and "error" in response.json()
    response = requests.delete(f"{gateway.url}/v2/health/live")
    assert response.status_code == 405 and "error" in response.json()


# --- inference, JSON


@pytest.mark.parametrize("datatype", sorted(ALL_DATATYPES))
def test_every_datatype_round_trips_as_json(gateway, datatype):
    array = ALL_DATATYPES[datatype]
    data = [x.decode() for x in array.ravel()] if datatype == "BYTES" else array.tolist()
    response = infer_json(gateway, "echo", {"inputs": [echo_input("x", datatype, list(array.shape), data)]})
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["datatype"] == datatype and output["shape"] == [1, 3]
    if datatype == "BYTES":
        assert output["data"] == data
    else:
        np.testing.assert_array_equal(np.array(output["data"], dtype=array.dtype).reshape(1, 3), array)


@pytest.mark.parametrize("datatype", sorted(ALL_DATATYPES))
def test_every_datatype_round_trips_as_binary_with_tritonclient(client, datatype):
    array = ALL_DATATYPES[datatype]
    tensor = httpclient.InferInput("x", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    result = client.infer("echo", [tensor], outputs=[httpclient.InferRequestedOutput("x", binary_data=True)])
    np.testing.assert_array_equal(result.as_numpy("x"), array)


def test_tritonclient_json_inputs_and_json_outputs(client):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = httpclient.InferInput("x", [3, 4], "FP32")
    tensor.set_data_from_numpy(array, binary_data=False)
    result = client.infer("echo", [tensor], request_id="req-7", outputs=[httpclient.InferRequestedOutput("x", binary_data=False)])
    np.testing.assert_array_equal(result.as_numpy("x"), array)
    assert result.get_response()["id"] == "req-7"


def test_nested_and_flat_data_are_the_same(gateway):
    nested = infer_json(gateway, "echo", {"inputs": [echo_input("x", "INT32", [2, 2], [[1, 2], [3, 4]])]})
    flat = infer_json(gateway, "echo", {"inputs": [echo_input("x", "INT32", [2, 2], [1, 2, 3, 4])]})
    assert nested.json()["outputs"] == flat.json()["outputs"]
    assert flat.json()["outputs"][0]["data"] == [1, 2, 3, 4]


def test_request_id_is_echoed_or_generated(gateway):
    body = {"id": "my-id-42", "inputs": [echo_input("x", "INT8", [1], [1])]}
    assert infer_json(gateway, "echo", body).json()["id"] == "my-id-42"
    del body["id"]
    first, second = (infer_json(gateway, "echo", body).json()["id"] for _ in range(2))
    assert first and second and first != second


def test_response_parameters_and_model_name(gateway):
    body = {"inputs": [echo_input("a", "INT8", [1], [1]), echo_input("b", "INT8", [1], [2])]}
    answer = infer_json(gateway, "echo", body).json()
    assert answer["model_name"] == "echo"
    assert answer["parameters"] == {"echoed": 2}


def test_requested_outputs_subset_and_order(gateway):
    inputs = [echo_input("a", "INT8", [1], [1]), echo_input("b", "INT8", [1], [2]), echo_input("c", "INT8", [1], [3])]
    body = {"inputs": inputs, "outputs": [{"name": "c"}, {"name": "a"}]}
    outputs = infer_json(gateway, "echo", body).json()["outputs"]
    assert [(o["name"], o["data"]) for o in outputs] == [("c", [3]), ("a", [1])]


def test_requesting_an_output_the_model_lacks_is_400(gateway):
    response = infer_json(gateway, "echo", {"inputs": [echo_input("a", "INT8", [1], [1])], "outputs": [{"name": "zzz"}]})
    assert response.status_code == 400 and "zzz" in response.json()["error"]
    response = infer_json(gateway, "sleepy", {"inputs": [echo_input("seconds", "FP32", [1], [0])], "outputs": [{"name": "zzz"}]})
    assert response.status_code == 400 and "unknown output" in response.json()["error"]
    assert_serves_large(gateway, "echo")
    assert_serves_sleepy(gateway)


def assert_serves_sleepy(gateway):
    """sleepy answers a large request (it sleeps for its first element's seconds, here 0) with its worker's pid."""
    (worker,) = workers_of(gateway, "sleepy")
    seconds = np.zeros(SHARED_MEMORY_BYTES // 4, dtype=np.float32)
    assert_serves_large(gateway, "sleepy", {"seconds": seconds}, expect=lambda inputs: {"pid": np.array([worker], dtype=np.int64)})


def test_model_version_in_path_is_honoured(gateway):
    body = {"inputs": [echo_input("x", "INT8", [1], [0])]}
    for version in ("1", "2"):
        answer = post(gateway, f"/v2/models/versioned/versions/{version}/infer", json=body).json()
        assert answer["model_version"] == version
        assert answer["outputs"][0]["data"] == [version]
    # without a version, the newest answers
    assert infer_json(gateway, "versioned", body).json()["model_version"] == "2"
    assert requests.get(f"{gateway.url}/v2/models/versioned/versions/1/ready").json()["ready"] is True


# --- binary extension details


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head))}


def test_binary_outputs_by_request_parameter_and_per_output(gateway):
    array = np.arange(6, dtype=np.float32)
    body, headers = binary_body(
        {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [6], "parameters": {"binary_data_size": 24}},
                {"name": "b", "datatype": "INT8", "shape": [2], "data": [5, 6]},
            ],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
        },
        array.tobytes(),
    )
    response = post(gateway, "/v2/models/echo/infer", data=body, headers=headers)
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    a, b = header["outputs"]
    assert a["parameters"]["binary_data_size"] == 24 and "data" not in a
    assert b["data"] == [5, 6]
    np.testing.assert_array_equal(np.frombuffer(response.content[length:], dtype=np.float32), array)


def test_bytes_binary_input_is_length_prefixed(gateway):
    raw = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"", b"xyz"))
    body, headers = binary_body({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(raw)}}]}, raw)
    answer = post(gateway, "/v2/models/echo/infer", data=body, headers=headers).json()
    assert answer["outputs"][0]["data"] == ["ab", "", "xyz"]


def test_raw_binary_request_of_a_single_input_model(gateway):
    body = np.array([0.05], dtype=np.float32).tobytes()
    response = post(gateway, "/v2/models/sleepy/infer", data=body, headers={"Inference-Header-Content-Length": "0"})
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    output = json.loads(response.content[:length])["outputs"][0]
    assert output["name"] == "pid" and output["parameters"]["binary_data_size"] == 8
    assert np.frombuffer(response.content[length:], dtype=np.int64)[0] > 0


# --- bad input: clear 400s, and the server keeps serving


@pytest.mark.parametrize(
    "body, message",
    [
        ({"inputs": [echo_input("x", "FP32", [2, 2], [1, 2, 3])]}, "needs 4"),
        ({"inputs": [echo_input("x", "FP33", [1], [1])]}, "unknown datatype"),
        ({"inputs": [echo_input("x", "fp32", [1], [1])]}, "unknown datatype"),
        ({"inputs": [echo_input("x", "BF16", [1], [1])]}, "BF16 is not supported"),
        ({"inputs": [echo_input("x", "INT32", [1], [1.5])]}, "must be integers"),
        ({"inputs": [echo_input("x", "UINT8", [1], [256])]}, "out of range"),
        ({"inputs": [echo_input("x", "FP16", [2], [1, 1e6])]},
         "input 'x': FP16 data out of range: 1000000.0 would become infinity (the largest FP16 is 65504.0)"),
        ({"inputs": [echo_input("x", "FP32", [1], [-1e39])]}, "FP32 data out of range: -1e+39 would become infinity"),
        ({"inputs": [echo_input("x", "FP32", [-1], [])]}, "non-negative"),
        ({"inputs": [echo_input("x", "FP32", "3", [1, 2, 3])]}, "shape must be a list"),
        ({"inputs": [echo_input("x", "FP32", [2], [[1], [2, 3]])]}, "data holds 3 elements, shape [2] needs 2"),
        ({"inputs": [echo_input("x", "BYTES", [1], [5])]}, "must be strings"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "neither data"),
        ({"inputs": []}, "non-empty"),
        ({"inputs": [echo_input("x", "INT8", [1], [1]), echo_input("x", "INT8", [1], [1])]}, "unique"),
        ({"inputs": [echo_input("x", "FP32", [2**40, 2**40], [1])]}, "over the limit"),
        ({"id": 5, "inputs": [echo_input("x", "INT8", [1], [1])]}, "id must be a string"),
        # parameters: strings, numbers or booleans; the known ones of their own type
        ({"parameters": {"content_type": 5}, "inputs": [echo_input("x", "INT8", [1], [1])]},
         "parameter 'content_type' of the request must be a string, got 5"),
        ({"inputs": [echo_input("x", "INT8", [1], [1], parameters={"content_type": 5})]},
         "parameter 'content_type' of input 'x' must be a string, got 5"),
        ({"inputs": [echo_input("x", "INT8", [1], [1])], "outputs": [{"name": "x", "parameters": {"binary_data": "yes"}}]},
         "parameter 'binary_data' of output 'x' must be true or false, got 'yes'"),
        ({"parameters": {"binary_data_output": 1}, "inputs": [echo_input("x", "INT8", [1], [1])]},
         "parameter 'binary_data_output' of the request must be true or false, got 1"),
        ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "parameters": {"binary_data_size": "1"}}]},
         "parameter 'binary_data_size' of input 'x' must be an integer, got '1'"),
        ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "parameters": {"binary_data_size": True}}]},
         "parameter 'binary_data_size' of input 'x' must be an integer, got True"),
        ({"parameters": {"tags": ["a"]}, "inputs": [echo_input("x", "INT8", [1], [1])]},
         "parameter 'tags' of the request must be a string, number or boolean, got ['a']"),
        ({"inputs": [echo_input("x", "INT8", [1], [1], parameters={"extra": {"a": 1}})]},
         "parameter 'extra' of input 'x' must be a string, number or boolean"),
        ({"parameters": {"headers": "x"}, "inputs": [echo_input("x", "INT8", [1], [1])]},
         "parameter 'headers' of the request is reserved"),
        ({"parameters": [1], "inputs": [echo_input("x", "INT8", [1], [1])]}, "parameters of the request must be a JSON object"),
    ],
)  # fmt: skip
def test_bad_json_requests_get_400(gateway, body, message):
    response = infer_json(gateway, "echo", body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert_serves_large(gateway, "echo")


DEEP = 1000  # levels of nesting: orjson reads up to 1,024, Python's stack holds about 1,000 frames


@pytest.mark.parametrize(
    "model, route, text, message",
    [
        # a datatype that is not even a string
        ("echo", "infer", '{"inputs": [{"name": "x", "datatype": {}, "shape": [1], "data": [1]}]}', "unknown datatype {}"),
        ("echo", "infer", '{"inputs": [{"name": "x", "datatype": ["FP32"], "shape": [1], "data": [1]}]}', "unknown datatype ['FP32']"),
        # data nested deeper than Python's stack
        ("echo", "infer", '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": %s1%s}]}' % ("[" * DEEP, "]" * DEEP),
         "input 'x': data nested more than 64 lists deep"),
        ("echo", "infer", '{"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1], "data": %s"a"%s}]}' % ("[" * DEEP, "]" * DEEP),
         "input 's': data nested more than 64 lists deep"),
        # dimensions whose product overflows 64 bits, around a zero; more dimensions than numpy has
        ("echo", "infer", '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2147483648, 4611686018427387904, 0], "data": []}]}',
         "input 'x': shape [2147483648, 4611686018427387904, 0] has no elements, but its other dimensions are too large for any tensor"),
        ("echo", "infer", '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [%s], "data": [1]}]}' % ", ".join(["1"] * 33),
         "input 'x': shape has 33 dimensions, more than the 32 a tensor may have"),
        # strings among numbers: numpy would have made every number a string as long as the longest
        ("echo", "infer", '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [5001], "data": [%s"%s"]}]}' % ("0.5, " * 5000, "x" * 20000),
         "input 'x': FP32 data must be numbers, got strings"),
        # MLRun's plain inputs, ragged, or deeper than a tensor
        ("sleepy", "infer", '{"inputs": ["a", ["b"]]}', "input 'seconds': the inputs are a ragged nested list"),
        ("sleepy", "infer", '{"inputs": [[0, 0], [0], [0, 0, 0]]}', "input 'seconds': the inputs are a ragged nested list"),
        ("sleepy", "infer", '{"inputs": [%s0%s]}' % ("[" * DEEP, "]" * DEEP),
         "input 'seconds': the inputs are nested deeper than a tensor's 32 dimensions"),
        # a long name is quoted, not echoed whole
        ("echo", "infer", '{"inputs": [{"name": "%s", "datatype": "FP33", "shape": [1], "data": [1]}]}' % ("n" * 10000),
         "input 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn'... "
         "(10000 characters): unknown datatype 'FP33'"),
    ],
    ids=["datatype-object", "datatype-list", "numbers-1000-deep", "bytes-1000-deep", "shape-overflow", "shape-33-dimensions",
         "string-among-numbers", "plain-ragged", "plain-rows-differ", "plain-1000-deep", "long-name"],
)  # fmt: skip
def test_what_once_was_a_500_is_a_400(gateway, model, route, text, message):
    response = post(gateway, f"/v2/models/{model}/{route}", data=text.encode())
    assert response.status_code == 400, response.text
    assert message in response.json()["error"] and len(response.json()["error"]) < 500
    if model == "echo":
        assert_serves_large(gateway, "echo")
    else:
        assert_serves_sleepy(gateway)


def test_infer_dict_needs_a_model_that_declares_its_inputs(gateway):
    response = post(gateway, "/v2/models/echo/infer_dict", json={"inputs": [{"x": 1}]})
    assert response.status_code == 400
    assert response.json()["error"].startswith("infer_dict need(s) a model that declares exactly one input")
    assert_serves_large(gateway, "echo")


def test_parameters_reach_the_runtime_and_null_is_absent(gateway):
    parameters = {"content_type": "np", "note": "x", "n": -2, "f": 0.5, "flag": True, "unset": None}
    response = infer_json(gateway, "echo", {"inputs": [echo_input("x", "INT8", [1], [1], parameters=parameters)]})
    assert response.status_code == 200, response.text
    # the echo model returns each input's parameters on its output
    assert response.json()["outputs"][0]["parameters"] == {"content_type": "np", "note": "x", "n": -2, "f": 0.5, "flag": True}


def test_malformed_json_gets_400(gateway):
    response = post(gateway, "/v2/models/echo/infer", data=b'{"inputs": [')
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]
    response = post(gateway, "/v2/models/echo/infer", data=b"[1, 2]")
    assert response.status_code == 400 and "JSON object" in response.json()["error"]
    assert_serves_large(gateway, "echo")


@pytest.mark.parametrize(
    "header_length, header, chunks, message",
    [
        (None, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}]}, [b"\0" * 10], "truncated"),
        (None, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 8}}]}, [b"\0" * 8], "needs 16"),
        (None, {"inputs": [{"name": "x", "datatype": "INT8", "shape": [2], "parameters": {"binary_data_size": 2}}]}, [b"\0" * 5], "no input claims"),
        (
            None,
            {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]},
            [struct.pack("<I", 50) + b"ab"],
            "overruns",
        ),
        (
            None,
            {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 8}}]},
            [struct.pack("<I", 4) + b"abcd"],
            "holds 1 elements",
        ),
        (
            None,
            {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": 6}}]},
            [struct.pack("<I", 2) + b"ab"],
            "6 bytes of BYTES data cannot hold the 3 elements",
        ),
        (
            None,
            {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1], "parameters": {"binary_data_size": 1}}]},
            [b"\x01"],
            "input 'x' has both data and binary_data_size",
        ),
        ("99999", {"inputs": []}, [], "body has"),
        ("abc", {"inputs": []}, [], "must be a non-negative decimal integer, got 'abc'"),
        # Python's int() refuses strings of more than 4,300 digits
        ("9" * 5000, {"inputs": []}, [], "Inference-Header-Content-Length is '99999"),
        ("0" * 5000 + "1", {"inputs": []}, [], "malformed JSON"),  # 1, read as such
    ],
)
def test_bad_binary_requests_get_400(gateway, header_length, header, chunks, message):
    body, headers = binary_body(header, *chunks)
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    response = post(gateway, "/v2/models/echo/infer", data=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert_serves_large(gateway, "echo")


def test_huge_declared_bytes_shape_is_refused_before_allocating(gateway):
    """A BYTES element counts 64 bytes (and its length) against max_tensor_bytes, and takes at least its
    4-byte length prefix: a shape over the limit, or that its data cannot fill, is refused before anything
    is allocated for it (the front door's peak memory does not move)."""
    peak = gateway.peak_memory()
    tiny = struct.pack("<I", 1) + b"a"
    for shape, message in [
        ([10**9], "1000000000 BYTES elements count as 64000000000 bytes (64 bytes an element plus its length), over the limit"),
        ([5 * 10**6], "5000000 BYTES elements count as 320000000 bytes"),
        ([10**6], "5 bytes of BYTES data cannot hold the 1000000 elements"),  # under the limit: the data is too short
    ]:
        header = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": shape, "parameters": {"binary_data_size": len(tiny)}}]}
        body, headers = binary_body(header, tiny)
        response = post(gateway, "/v2/models/echo/infer", data=body, headers=headers)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]
    response = infer_json(gateway, "echo", {"inputs": [echo_input("s", "BYTES", [10**6], ["a"])]})
    assert response.status_code == 400
    assert response.json()["error"] == "input 's': data holds 1 elements, shape [1000000] needs 1000000"
    assert gateway.peak_memory() - peak < 50 * 2**20
    ok = infer_json(gateway, "echo", {"inputs": [echo_input("s", "BYTES", [1], ["still here"])]})
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == ["still here"]
    assert_serves_large(gateway, "echo")


def with_last(array: np.ndarray, value) -> np.ndarray:
    array[-1] = value
    return array


# each refused output lies in the worker's shared memory while the refusal is rendered
@pytest.mark.parametrize(
    "datatype, array, what",
    [
        ("FP32", with_last(np.ones(SHARED_MEMORY_BYTES // 4, np.float32), np.nan), "NaN or infinity"),
        ("FP16", with_last(np.ones(SHARED_MEMORY_BYTES // 2, np.float16), -np.inf), "NaN or infinity"),
        ("BYTES", with_last(np.array([b"ok"] * (SHARED_MEMORY_BYTES // 6), dtype=object), b"\xff\xfe"), "bytes that are not UTF-8"),
    ],
)
def test_outputs_json_cannot_carry_are_400_and_travel_as_binary(gateway, client, datatype, array, what):
    tensor = httpclient.InferInput("x", list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", [tensor], outputs=[httpclient.InferRequestedOutput("x", binary_data=False)])
    assert caught.value.status() == "400"
    assert caught.value.message() == (f"output 'x' holds {what}, which JSON cannot carry; request it as binary data (output parameter binary_data: true)")
    result = client.infer("echo", [tensor], outputs=[httpclient.InferRequestedOutput("x", binary_data=True)])
    if datatype == "BYTES":
        assert result.as_numpy("x").tolist() == array.tolist()
    else:
        assert result.as_numpy("x").tobytes() == array.tobytes()
    assert_serves_large(gateway, "echo")


def test_header_length_is_plain_decimal_digits(gateway):
    body, headers = binary_body({"inputs": [echo_input("x", "INT8", [1], [1])]})
    length = headers["Inference-Header-Content-Length"]
    assert post(gateway, "/v2/models/echo/infer", data=body, headers=headers).status_code == 200
    # each of these is a number to Python's int(), and "0 " used to be taken for a raw request
    for value in (f"+{length}", f"{length[0]}_{length[1:]}", f"{length} ", "-0", "0 "):
        response = post(gateway, "/v2/models/echo/infer", data=body, headers={"Inference-Header-Content-Length": value})
        assert response.status_code == 400, value
        assert response.json()["error"] == f"Inference-Header-Content-Length must be a non-negative decimal integer, got {value!r}"
    assert_serves_large(gateway, "echo")


def test_inputs_are_checked_against_declared_metadata(gateway):
    cases = [
        ([echo_input("minutes", "FP32", [1], [1])], "unknown input 'minutes'"),
        ([echo_input("seconds", "FP64", [1], [1])], "must be FP32"),
        # the rank counts: a scalar or an extra axis is another shape, whatever the element count
        # (but for MLServer's rule: [N, 1] is taken for [-1])
        ([echo_input("seconds", "FP32", [], 1)], "must have shape [-1]"),
        ([echo_input("seconds", "FP32", [1, 2], [[1, 2]])], "must have shape [-1]"),
        ([echo_input("seconds", "FP32", [1, 1, 1], [[[1]]])], "must have shape [-1]"),
    ]
    for inputs, message in cases:
        response = infer_json(gateway, "sleepy", {"inputs": inputs})
        assert response.status_code == 400 and message in response.json()["error"], response.text
    assert_serves_sleepy(gateway)


def test_runtime_exception_is_500_with_its_message_and_server_keeps_serving(gateway):
    response = infer_json(gateway, "failing", {"inputs": [echo_input("x", "INT8", [1], [1])]})
    assert response.status_code == 500
    assert response.json() == {"error": "ValueError: this model always fails: bad luck"}
    ok = infer_json(gateway, "echo", {"inputs": [echo_input("x", "INT8", [1], [9])]})
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [9]
    assert requests.get(f"{gateway.url}/v2/health/ready").status_code == 200
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def test_tritonclient_sees_errors_as_exceptions(gateway, client):
    tensor = httpclient.InferInput("x", [1], "INT8")
    tensor.set_data_from_numpy(np.array([1], dtype=np.int8))
    with pytest.raises(InferenceServerException, match="bad luck"):
        client.infer("failing", [tensor])
    with pytest.raises(InferenceServerException, match="not found"):
        client.infer("missing-model", [tensor])
    assert_serves_large(gateway, "failing", parameters={"succeed": True})


def test_explain_uses_the_runtime_hook_or_says_there_is_none(gateway):
    response = post(gateway, "/v2/models/echo/explain", json={"inputs": [echo_input("x", "INT8", [1], [1])]})
    assert response.status_code == 501
    assert "no explainer" in response.json()["error"]
    assert_serves_large(gateway, "echo")


def test_oversized_body_is_refused(start_gateway):
    small = start_gateway(ROOT / "tests" / "repository", max_request_bytes=SHARED_MEMORY_BYTES + 1024).wait_ready(["echo"])
    response = infer_json(small, "echo", {"inputs": [echo_input("x", "INT32", [20000], list(range(20000)))]})
    assert response.status_code == 413 and "error" in response.json()
    assert infer_json(small, "echo", {"inputs": [echo_input("x", "INT8", [1], [1])]}).status_code == 200
    assert_serves_large(small, "echo")


def test_large_binary_tensor_round_trips(client):
    array = np.random.default_rng(0).random((1024, 1024, 4), dtype=np.float32)  # 16 MiB
    tensor = httpclient.InferInput("x", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    result = client.infer("echo", [tensor], outputs=[httpclient.InferRequestedOutput("x", binary_data=True)])
    np.testing.assert_array_equal(result.as_numpy("x"), array)


def test_data_url_is_off_unless_a_data_folder_is_set(gateway):
    # this gateway sets no data_folder (MLRun's data_url: tests/test_mlrun.py)
    response = post(gateway, "/v2/models/sleepy/infer", json={"data_url": "x.json"})
    assert response.status_code == 400
    assert response.json()["error"] == "data_url is not enabled on this gateway: set data_folder to the folder its files are read from"
    assert_serves_sleepy(gateway)
