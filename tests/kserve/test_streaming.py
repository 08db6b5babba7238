"""A KServe model whose predict answers an async iterator is streamed as KServe 0.21 streams it
(V1 `:predict`: the chunks as the body, as they come), through the worker's stream: a real
KServe script (tests/kserve/streaming_script.py) in a subprocess, one worker per model, called
with requests and tritonclient."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT, assert_serves_large
from tests.test_observability import labels, metrics_of

SCRIPT = Path(__file__).with_name("streaming_script.py")


@pytest.fixture(scope="module")
def server(start_gateway):
    def command(gateway):
        return [sys.executable, str(SCRIPT), "--http_port", str(gateway.http_port), "--grpc_port", str(gateway.grpc_port)]

    return start_gateway(ROOT, command=command, drain_delay=0.5).wait_ready()


def _predict(server, model: str, body: dict, **options) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/{model}:predict", data=json.dumps(body), timeout=10, **options)


def _wait_for(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def _stream_lines(server) -> list[str]:
    """The access lines of the streamer's V1 predicts, so far."""
    return [line for line in server.log_text().splitlines() if "rest POST /v1/models/streamer:predict " in line]


def _counted_once(server, lines_before: int, status: int, chunks: int) -> None:
    """The V1 predict since `lines_before` was counted once, at its end: one access line, with its status and chunks."""
    server.wait_for(lambda: len(_stream_lines(server)) > lines_before, timeout=10, what="the stream's access line")
    new = _stream_lines(server)[lines_before:]
    assert len(new) == 1 and f" {status} " in new[0] and f"responses={chunks}" in new[0], new


def _successes(server) -> float:
    return metrics_of(server)["gateway_requests_total"].get(labels(model="streamer", version="", protocol="rest", outcome="success"), 0)


def test_the_chunks_arrive_in_order_as_they_are_yielded(server, tmp_path):
    read_first = tmp_path / "read-first"
    with _predict(server, "streamer", {"chunks": 4, "wait_for": str(read_first)}, stream=True) as answer:
        assert answer.status_code == 200
        assert answer.headers["transfer-encoding"] == "chunked"
        assert answer.headers["content-type"] == "application/octet-stream"  # KServe's StreamingResponse: none
        received = b""
        for piece in answer.iter_content(chunk_size=None):
            received += piece
            if received == b"chunk 0;":
                read_first.touch()  # the generator yields chunk 1 only now: chunk 0 came before the end
        assert received == b"chunk 0;chunk 1;chunk 2;chunk 3;"


def test_an_async_generator_predict_is_streamed_through_its_postprocess(server):
    answer = _predict(server, "shout", {"text": "stream me please"})
    assert (answer.status_code, answer.content) == (200, b"STREAM ME PLEASE ")


def test_a_large_chunk_and_a_whole_answer(server):
    """A chunk larger than what travels inline comes through the worker's shared memory; a
    predict that answers at once is answered as usual."""
    answer = _predict(server, "streamer", {"chunks": 1, "big": 64 * 1024})
    assert (answer.status_code, answer.content) == (200, b"b" * 64 * 1024 + b"chunk 0;")
    whole = list(range(10_000))
    answer = _predict(server, "streamer", {"whole": whole})
    assert (answer.status_code, answer.headers["content-type"], answer.json()) == (200, "application/json", {"predictions": whole})


def test_a_client_that_leaves_stops_the_generator(server, tmp_path):
    marker = tmp_path / "marker"
    with _predict(server, "streamer", {"chunks": 10**9, "marker": str(marker)}, stream=True) as answer:
        assert next(answer.iter_content(chunk_size=None)).startswith(b"chunk 0;")
    assert _wait_for(marker).startswith("closed ")  # the generator's finally ran in the worker
    assert_serves_large(server, "streamer")  # its one worker is free again


def test_a_stream_is_counted_once_at_its_end_with_its_chunks(server):
    lines, successes = len(_stream_lines(server)), _successes(server)
    answer = _predict(server, "streamer", {"chunks": 3})
    assert (answer.status_code, answer.content) == (200, b"chunk 0;chunk 1;chunk 2;")
    _counted_once(server, lines, 200, 3)
    assert _successes(server) == successes + 1


def test_an_error_before_the_first_chunk_is_an_error_answer(server):
    answer = _predict(server, "streamer", {"chunks": 3, "fail_after": 0})
    assert (answer.status_code, answer.json()) == (500, {"error": "RuntimeError : the stream broke before chunk 0"})
    answer = _predict(server, "streamer", {"chunks": 3, "bad_chunk": True})
    assert answer.status_code == 500
    assert "streamed a dict" in answer.json()["error"]
    assert_serves_large(server, "streamer")


def test_an_error_after_a_chunk_cuts_the_connection(server, tmp_path):
    marker = tmp_path / "marker"
    received, lines = b"", len(_stream_lines(server))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        with _predict(server, "streamer", {"chunks": 3, "fail_after": 2, "marker": str(marker)}, stream=True) as answer:
            assert answer.status_code == 200
            for piece in answer.iter_content(chunk_size=None):
                received += piece
    assert received == b"chunk 0;chunk 1;"  # what was yielded came, and the body did not end as if whole
    assert _wait_for(marker).startswith("closed ")
    _counted_once(server, lines, 500, 2)  # as the model's error, with what it sent
    assert_serves_large(server, "streamer")


def test_v2_and_grpc_do_not_stream(server):
    """KServe streams only V1 :predict: an async iterator answering V2 is a server error."""
    data = np.arange(4, dtype=np.float32)
    rest = httpclient.InferenceServerClient(server.address)
    tensor = httpclient.InferInput("x", [4], "FP32")
    tensor.set_data_from_numpy(data)
    with pytest.raises(InferenceServerException, match="async iterator") as error:
        rest.infer("streamer", [tensor], parameters={"stream": True})
    assert error.value.status() == "500"
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("x", [4], "FP32")
    tensor.set_data_from_numpy(data)
    with pytest.raises(InferenceServerException, match="async iterator") as error:
        grpc.infer("streamer", [tensor], parameters={"stream": True})
    assert error.value.status() == "StatusCode.INTERNAL"
    assert_serves_large(server, "streamer")


def test_an_iterator_from_a_predict_that_does_not_say_so_is_refused(server):
    answer = _predict(server, "undeclared", {})
    assert answer.status_code == 501
    assert "annotate its return type AsyncIterator" in answer.json()["error"]
    assert _predict(server, "streamer", {"whole": [1]}).json() == {"predictions": [1]}
