"""Streaming (a runtime's predict_stream) through a real gateway and two worker processes: server-sent
events over REST, ModelStreamInfer over gRPC, back-pressure, disconnects and failing generators."""

import json
import queue
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from tests.conftest import assert_serves_large
from tests.test_observability import scrape
from tests.test_worker_plane import write_repository

MODELS = {
    "streamer": {"implementation": "tests.runtimes.Streamer", "parallel_workers": 2},
    "echo": {"implementation": "tests.runtimes.Echo"},
}
LARGE = 8192  # FP32 elements of a response's `data`: 32 KiB, through the worker's shared memory
REQUEST_TIMEOUT = 6  # seconds a stream may wait for its next response


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    gateway = start_gateway(write_repository(tmp_path_factory.mktemp("streaming"), MODELS), request_timeout=REQUEST_TIMEOUT)
    return gateway.wait_ready()


@pytest.fixture
def marker(tmp_path) -> Path:
    """A file the streaming model writes its progress to: how many responses it produced, "closed N" at its end."""
    return tmp_path / "progress"


def body(values=(1.0,), **parameters) -> dict:
    return {"parameters": parameters, "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values)], "data": list(values)}]}


def post_stream(gateway, document: dict, model: str = "streamer", route: str = "infer_stream") -> requests.Response:
    return requests.post(f"{gateway.url}/v2/models/{model}/{route}", data=json.dumps(document), stream=True, timeout=30)


def events(response: requests.Response):
    """The server-sent events of a response, each parsed from its JSON `data`."""
    data: list[str] = []
    for line in response.iter_lines(chunk_size=65536, decode_unicode=False):
        if line:
            assert line.startswith(b"data: "), line[:80]
            data.append(line[len(b"data: ") :].decode())
        elif data:
            yield json.loads("\n".join(data))
            data = []
    assert not data, "the stream ended inside an event"


def output(event: dict, name: str):
    return next(o for o in event["outputs"] if o["name"] == name)["data"]


def index_and_pid(event: dict) -> tuple[int, int]:
    return output(event, "index")[0], output(event, "pid")[0]


def wait_for(condition, timeout: float = 15.0):
    """Poll until condition() returns something true; return it."""
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        value = condition()
        if value:
            return value
        done.wait(0.02)
    raise AssertionError("condition not met in time")


def closed_after(marker: Path) -> int | None:
    """How many responses the generator had produced when its `finally` ran (None: it has not run)."""
    text = marker.read_text() if marker.exists() else ""
    return int(text.split()[1]) if text.startswith("closed") else None


def access_lines(gateway, request_id: str) -> list[str]:
    """The access lines of a stream (one is expected: a stream is counted once, at its end)."""
    return [line for line in gateway.log_text().splitlines() if f"[request {request_id}]" in line and "infer_stream" in line]


def both_workers_serve(gateway) -> None:
    """Two streams at once land on the two workers (a worker left busy, or stalled, shows here as a
    stream that never starts), and a large request is answered exactly. Each stream runs until its
    client leaves, so the first holds its worker while the second starts."""
    endless = body(count=100000, delay=0.01, size=LARGE)
    with post_stream(gateway, endless) as first, post_stream(gateway, endless) as second:
        pids = {index_and_pid(next(events(first)))[1], index_and_pid(next(events(second)))[1]}
        assert len(pids) == 2
    assert_serves_large(gateway, "streamer")


# --- REST: server-sent events


@pytest.mark.parametrize("route", ["infer_stream", "generate_stream"])
def test_rest_streams_server_sent_events(gateway, route):
    document = {**body(count=4, size=LARGE), "id": "sse-1"}
    with post_stream(gateway, document, route=route) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        received = list(events(response))
    assert [index_and_pid(e)[0] for e in received] == [0, 1, 2, 3]
    for index, event in enumerate(received):
        assert event["id"] == "sse-1" and event["model_name"] == "streamer"
        assert output(event, "data") == [float(index)] * LARGE


def test_generate_is_infer(gateway):
    """MLServer's other name for infer (its LLM clients call it)."""
    document = {**body([1.0, 2.0]), "id": "g-1"}
    answers = [requests.post(f"{gateway.url}/v2/models/echo/{route}", json=document, timeout=10) for route in ("infer", "generate")]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()


def test_rest_stream_framing_is_mlservers(gateway):
    """`data: <JSON>` then a blank line, per event, nothing else (MLServer's ServerSentEvent)."""
    with post_stream(gateway, body(count=2, size=4)) as response:
        raw = response.content
    chunks = raw.split(b"\n\n")
    assert chunks[-1] == b"" and len(chunks) == 3
    assert all(c.startswith(b"data: {") and b"\n" not in c for c in chunks[:2])


def test_a_model_without_predict_stream_answers_one_event(gateway):
    """As MLServer's default predict_stream: predict's answer, as one event."""
    with post_stream(gateway, {**body([1.0, 2.0]), "id": "one"}, model="echo") as response:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        received = list(events(response))
    assert len(received) == 1 and received[0]["id"] == "one"
    assert output(received[0], "x") == [1.0, 2.0]


def test_rest_errors_before_the_stream_are_plain_answers(gateway):
    response = requests.post(f"{gateway.url}/v2/models/nope/infer_stream", json=body(), timeout=10)
    assert response.status_code == 404 and "nope" in response.json()["error"]
    response = requests.post(f"{gateway.url}/v2/models/streamer/infer_stream", data=b"{not json", timeout=10)
    assert response.status_code == 400 and "error" in response.json()
    # the generator raised before its first response: nothing was sent, so an ordinary error answer
    response = requests.post(f"{gateway.url}/v2/models/streamer/infer_stream", json=body(fail_at=0), timeout=10)
    assert response.status_code == 500 and response.json() == {"error": "RuntimeError: failed at response 0"}
    both_workers_serve(gateway)


def test_rest_generator_raising_mid_stream_ends_with_an_error_event(gateway, marker):
    document = {**body(count=5, fail_at=2, size=LARGE, marker=str(marker)), "id": "fails-mid-stream"}
    with post_stream(gateway, document) as response:
        assert response.status_code == 200
        received = list(events(response))
    assert [index_and_pid(e)[0] for e in received[:-1]] == [0, 1]
    assert received[-1] == {"error": "RuntimeError: failed at response 2"}
    assert closed_after(marker) == 2
    lines = wait_for(lambda: access_lines(gateway, "fails-mid-stream"))  # counted once, as the model's error, with what it sent
    assert len(lines) == 1 and " 500 " in lines[0] and "responses=2" in lines[0]
    both_workers_serve(gateway)


def test_two_streams_at_once_run_on_the_two_workers(gateway):
    both_workers_serve(gateway)


def test_a_slow_client_holds_the_generator_back(gateway, marker):
    """The worker runs at most a few responses ahead of the client (plus what the sockets buffer):
    without back-pressure it would have produced all of them while the client read one."""
    count, size = 48, 256 * 1024  # each event about 1.3 MB of JSON
    with post_stream(gateway, body(count=count, size=size, marker=str(marker))) as response:
        received = events(response)
        assert index_and_pid(next(received))[0] == 0
        # the generator advances until the pipe is full, then stops: wait until it has not moved for a while
        seen: list[str] = []

        def settled():
            seen.append(marker.read_text())
            return len(seen) > 25 and len(set(seen[-25:])) == 1

        wait_for(settled)
        ahead = int(seen[-1].split()[-1])  # "N", or "closed N" once the generator has ended
        print(f"the generator produced {ahead} responses while the client read one")
        assert ahead <= 12, f"the generator produced {ahead} responses while the client read one"
        assert [index_and_pid(e)[0] for e in received] == list(range(1, count))
    assert closed_after(marker) == count


def test_rest_disconnect_stops_the_generator(gateway, marker):
    response = post_stream(gateway, body(count=100000, delay=0.01, size=LARGE, marker=str(marker)))
    received = events(response)
    next(received), next(received)
    response.close()  # the client goes away mid-stream
    stopped_at = wait_for(lambda: closed_after(marker))
    assert 2 <= stopped_at < 100000
    both_workers_serve(gateway)


def test_a_generator_that_asks_cancelled_is_not_held_back(gateway, marker):
    """A generator that computes synchronously between its responses and asks self.cancelled() there
    (as a sync predict may) reads the worker's socket, and so the CREDIT for its previous response:
    that must reach the stream, which otherwise waits for the next message to come (a ping, seconds
    later) before it sends each response. The client allows each event less than the 2 s between pings."""
    count = 6
    document = json.dumps(body(count=count, work=0.05, size=LARGE, marker=str(marker)))
    with requests.post(f"{gateway.url}/v2/models/streamer/infer_stream", data=document, stream=True, timeout=(10, 1.5)) as response:
        received = list(events(response))
    assert [index_and_pid(event)[0] for event in received] == list(range(count))
    assert all(output(event, "data") == [float(i)] * LARGE for i, event in enumerate(received))
    assert closed_after(marker) == count
    # and cancelled() still tells the generator that its client went away
    response = post_stream(gateway, body(count=100000, work=0.01, size=LARGE, marker=str(marker)))
    received = events(response)
    next(received), next(received)
    response.close()
    assert 2 <= wait_for(lambda: closed_after(marker)) < 100000
    both_workers_serve(gateway)


def test_a_response_late_past_request_timeout_ends_the_stream(gateway, marker):
    """Each response must come within request_timeout of the previous: else an error event, and the
    generator is cancelled (its worker free again)."""
    with post_stream(gateway, body(count=3, delay=REQUEST_TIMEOUT * 5, size=LARGE, marker=str(marker))) as response:
        received = list(events(response))
    assert index_and_pid(received[0])[0] == 0
    assert received[1:] == [{"error": f"model 'streamer' sent no response within {REQUEST_TIMEOUT:.1f} s"}]
    assert wait_for(lambda: closed_after(marker)) == 1
    both_workers_serve(gateway)


def test_a_stream_is_counted_once_with_its_responses(gateway):
    def successes():
        samples = scrape(f"http://127.0.0.1:{gateway.metrics_port}/metrics")["gateway_requests_total"]
        key = tuple(sorted({"model": "streamer", "version": "", "protocol": "rest", "outcome": "success"}.items()))
        return samples.get(key, 0)

    before = successes()
    with post_stream(gateway, {**body(count=3, size=4), "id": "counted-once"}) as response:
        assert len(list(events(response))) == 3
    wait_for(lambda: successes() > before)
    assert successes() == before + 1
    lines = access_lines(gateway, "counted-once")
    assert len(lines) == 1 and " 200 " in lines[0] and "responses=3" in lines[0]


# --- gRPC: ModelStreamInfer


def large_input(value: float) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("x", [LARGE], "FP32")
    tensor.set_data_from_numpy(np.full(LARGE, value, dtype=np.float32))
    return tensor


@pytest.fixture
def stream_client(gateway):
    """A tritonclient stream; results (result, error) arrive on the queue."""
    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    yield client, results
    client.stop_stream()
    client.close()


def next_result(results: queue.Queue):
    result, error = results.get(timeout=20)
    if error is not None:
        raise error
    return result


def test_tritonclient_stream_from_one_request(gateway, stream_client):
    client, results = stream_client
    client.async_stream_infer("streamer", [large_input(0)], request_id="t-1", parameters={"count": 3, "size": LARGE})
    for index in range(3):
        result = next_result(results)
        assert result.get_response().id == "t-1"
        assert result.as_numpy("index").ravel().tolist() == [index]
        assert (result.as_numpy("data") == index).all() and result.as_numpy("data").size == LARGE


def test_tritonclient_stream_of_requests_is_one_generator(gateway, stream_client):
    """Every request of the call goes to the same predict_stream (the first through the input arena,
    the others inline), which answers each; every response carries the first request's id, as MLServer's."""
    client, results = stream_client
    for i in range(4):
        client.async_stream_infer("streamer", [large_input(i)], request_id=f"r-{i}", parameters={"per_request": True})
    pids = set()
    for i in range(4):
        result = next_result(results)
        assert result.get_response().id == "r-0"
        assert result.as_numpy("index").ravel().tolist() == [i]
        assert (result.as_numpy("x") == i + 1).all() and result.as_numpy("x").size == LARGE
        pids.add(int(result.as_numpy("pid").ravel()[0]))
    assert len(pids) == 1


def test_grpc_model_without_predict_stream_answers_each_request(gateway, stream_client):
    client, results = stream_client
    for i in range(3):
        client.async_stream_infer("echo", [large_input(i)], request_id=f"e-{i}")
    answers = {}
    for _ in range(3):
        result = next_result(results)
        answers[result.get_response().id] = float(result.as_numpy("x")[0])
    assert answers == {"e-0": 0.0, "e-1": 1.0, "e-2": 2.0}


def raw_request(model: str = "streamer", **parameters) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="raw")
    for key, value in parameters.items():
        if isinstance(value, str):
            request.parameters[key].string_param = value
        elif isinstance(value, float):
            request.parameters[key].double_param = value
        else:
            request.parameters[key].int64_param = value
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[LARGE])
    request.raw_input_contents.append(np.ones(LARGE, dtype=np.float32).tobytes())
    assert tensor.name == "x"
    return request


@pytest.fixture
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def test_raw_stub_stream(gateway, stub):
    replies = list(stub.ModelStreamInfer(iter([raw_request(count=3, size=LARGE)]), timeout=20))
    assert [r.error_message for r in replies] == [""] * 3
    for index, reply in enumerate(replies):
        response = reply.infer_response
        assert (response.model_name, response.id) == ("streamer", "raw")
        names = [o.name for o in response.outputs]
        data = np.frombuffer(response.raw_output_contents[names.index("data")], dtype=np.float32)
        assert data.size == LARGE and (data == index).all()


def test_raw_stub_stream_with_an_empty_final_response(gateway, stub):
    """Asked for Triton's empty final response (tritonclient's enable_empty_final_response, which the
    clients of Triton's decoupled models loop on): each response of the predict_stream marked
    triton_final_response false, then an empty response, the request's id, marked true."""
    request = raw_request(count=3, size=LARGE, report_parameters=1)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    replies = list(stub.ModelStreamInfer(iter([request]), timeout=20))
    assert [r.error_message for r in replies] == [""] * 4
    finals = [r.infer_response.parameters["triton_final_response"] for r in replies]
    assert [final.WhichOneof("parameter_choice") for final in finals] == ["bool_param"] * 4
    assert [final.bool_param for final in finals] == [False, False, False, True]
    for index, reply in enumerate(replies[:3]):
        names = [o.name for o in reply.infer_response.outputs]
        data = np.frombuffer(reply.infer_response.raw_output_contents[names.index("data")], dtype=np.float32)
        assert data.size == LARGE and (data == index).all()
        # the parameter is the stream's to honour: the model sees the request's others only
        seen = reply.infer_response.raw_output_contents[names.index("parameters")]
        assert b"report_parameters" in seen and b"count" in seen and b"triton_" not in seen
    last = replies[3].infer_response
    assert (last.model_name, last.id, list(last.outputs), list(last.raw_output_contents)) == ("streamer", "raw", [], [])


def test_grpc_generator_raising_ends_the_call_with_its_status(gateway, stub, marker):
    call = stub.ModelStreamInfer(iter([raw_request(count=5, fail_at=1, marker=str(marker))]), timeout=20)
    first = next(call)
    assert first.error_message == ""
    with pytest.raises(grpc.RpcError) as raised:
        next(call)
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "RuntimeError: failed at response 1"
    assert closed_after(marker) == 1
    both_workers_serve(gateway)


def test_grpc_cancel_stops_the_generator(gateway, stub, marker):
    call = stub.ModelStreamInfer(iter([raw_request(count=100000, delay=0.01, marker=str(marker))]), timeout=60)
    next(call), next(call)
    call.cancel()
    assert 2 <= wait_for(lambda: closed_after(marker)) < 100000
    both_workers_serve(gateway)


def test_a_grpc_stream_cancelled_while_a_response_waits_to_be_sent_counts_as_cancelled(gateway, stub, marker):
    """A client that stops reading, then cancels: grpc is waiting to send a response, so the stream's
    generator is closed where it yielded (not cancelled where it awaited). It counts as cancelled, as any
    cancelled stream (it counted as a success), and the log says so in a line (it had grpc's ERROR and traceback)."""

    def outcomes() -> dict[str, float]:
        samples = scrape(f"http://127.0.0.1:{gateway.metrics_port}/metrics")["gateway_requests_total"]
        keys = {o: tuple(sorted({"model": "streamer", "version": "", "protocol": "grpc", "outcome": o}.items())) for o in ("success", "cancelled")}
        return {outcome: samples.get(key, 0) for outcome, key in keys.items()}

    before = outcomes()
    request = raw_request(count=100000, size=8 * LARGE, marker=str(marker))
    request.id = "gone-while-sending"
    call = stub.ModelStreamInfer(iter([request]), timeout=60)
    next(call)
    # the client reads no more responses (of 256 KiB): the generator stops once grpc's flow control is full
    seen: list[str] = []
    wait_for(lambda: seen.append(marker.read_text()) or (len(seen) > 25 and len(set(seen[-25:])) == 1))
    call.cancel()
    assert 1 <= wait_for(lambda: closed_after(marker)) < 100000
    wait_for(lambda: outcomes() != before)
    assert outcomes() == {"success": before["success"], "cancelled": before["cancelled"] + 1}
    # grpc's send that failed is the client's doing: one INFO line, not an ERROR with grpc's traceback
    lines = [line for line in gateway.log_text().splitlines() if "[request gone-while-sending]" in line]
    assert not [line for line in lines if " ERROR " in line], lines
    both_workers_serve(gateway)


def test_a_model_slow_to_take_requests_holds_the_client_back(gateway, stub):
    """The gateway forwards only a few requests the generator has not taken (then stops reading the
    call): a client sending fast cannot pile requests up in the worker."""
    pulled = []
    settled = threading.Event()

    def many_requests():
        yield raw_request(count=100000, delay=0.01)  # this generator never takes a further request
        big = raw_request()
        big.ClearField("raw_input_contents")
        big.inputs[0].shape[:] = [256 * 1024]
        big.raw_input_contents.append(np.ones(256 * 1024, dtype=np.float32).tobytes())
        for i in range(200):
            pulled.append(i)
            yield big
        settled.wait(30)

    call = stub.ModelStreamInfer(many_requests(), timeout=60)
    next(call)
    seen: list[int] = []
    wait_for(lambda: seen.append(len(pulled)) or (len(seen) > 25 and len(set(seen[-25:])) == 1))
    assert len(pulled) < 100, f"grpc read {len(pulled)} requests of 1 MiB the model never took"
    call.cancel()
    settled.set()
    both_workers_serve(gateway)


def test_grpc_stream_requests_must_name_its_model(gateway, stub, marker):
    """Further requests go to the model the first names; another model's is refused (MLServer ignores the names)."""

    def requests_then_another_model():
        yield raw_request(per_request=1, marker=str(marker))
        yield raw_request(model="echo")

    with pytest.raises(grpc.RpcError) as raised:
        list(stub.ModelStreamInfer(requests_then_another_model(), timeout=20))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'streamer'" in raised.value.details()
    both_workers_serve(gateway)
