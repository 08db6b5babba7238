"""Several front-door processes (`frontdoor_workers` 3, issue 20 item 3): the main process and two
relay front doors share the REST, gRPC and metrics ports (SO_REUSEPORT); the relay front doors
send what they are asked to the main process, where every model's queue, batches and counts are.

Which process answered a request is read from the access lines (JSON: "front_door"). Every
request goes over a fresh connection, so that the kernel spreads them over the processes."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import zmq

from gateway.protocol.generated import inference_pb2 as pb
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
from gateway.wire import messages
from gateway.wire.request import Tensor, WireRequest
from tests.conftest import SHARED_MEMORY_BYTES, assert_serves_large, refused_start
from tests.test_observability import labels, scrape
from tests.test_worker_plane import children, write_repository

FRONT_DOORS = 3
MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo", "parallel_workers": 2},
    # one worker, batches of up to 8 that wait up to 1 s for company: a batch gathers requests from every front door
    "batched": {"implementation": "tests.runtimes.BatchProbe", "max_batch_size": 8, "max_batch_time": 1.0},
    "slow": {"implementation": "tests.runtimes.SlowEcho", "default_priority_level": 2},  # priority 1 goes first
    "streamer": {"implementation": "tests.runtimes.Streamer"},
}
LARGE = np.arange(SHARED_MEMORY_BYTES // 4, dtype=np.float32).reshape(16, -1)  # through the workers' shared memory
SMALL = np.arange(4, dtype=np.float32).reshape(2, 2)


@pytest.fixture(scope="module")
def gateway(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("frontdoors"), MODELS)
    gateway = start_gateway(
        repository,
        new_session=True,
        frontdoor_workers=FRONT_DOORS,
        log_format="json",
        metrics_on_http=True,
        restart_backoff=1,  # long enough for the last test to stop the gateway while a front door waits to be restarted
        drain_delay=4,
        shutdown_grace=10,
    )
    gateway.wait_ready()
    gateway.wait_for(lambda: len(relays(gateway)) == FRONT_DOORS - 1 and serving_lines(gateway) >= FRONT_DOORS - 1, what="the relay front doors")
    return gateway


# --- what the log says ------------------------------------------------------------------


def log_lines(gateway) -> list[dict]:
    lines = []
    for line in gateway.log_text().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass  # a line being written
    return lines


def access_lines(gateway) -> list[dict]:
    return [line for line in log_lines(gateway) if line["logger"] == "gateway.access"]


def serving_lines(gateway) -> int:
    return sum(" serving REST on " in line["message"] for line in log_lines(gateway))


def front_doors_of(gateway, request_ids: list[str]) -> dict[str, int]:
    """request id -> the front door that answered it (waits for the access lines, written at the end of a loop turn)."""
    found: dict[str, int] = {}

    def all_logged() -> bool:
        found.update({line["request_id"]: line["front_door"] for line in access_lines(gateway) if line.get("request_id") in request_ids})
        return len(found) == len(request_ids)

    gateway.wait_for(all_logged, timeout=10, what="the access lines")
    return found


def relays(gateway) -> dict[int, int]:
    """Relay front door number -> its process id."""
    found = {}
    for pid, command in children(gateway.process.pid).items():
        if "gateway.relay" in command:
            found[int(command.split("--number ")[1].split()[0])] = pid
    return found


def each_front_door_serves_large(gateway, model: str = "echo") -> None:
    """assert_serves_large (a new connection each time) until every front door has answered one."""

    def served_by() -> Counter:
        return Counter(line["front_door"] for line in access_lines(gateway) if line["path"] == f"/v2/models/{model}/infer" and line["status"] == 200)

    before = served_by()
    for _ in range(60):
        total = sum(served_by().values())
        assert_serves_large(gateway, model)
        gateway.wait_for(lambda: sum(served_by().values()) > total, timeout=10, what="the access line")
        if len({door for door, count in served_by().items() if count > before[door]}) == FRONT_DOORS:
            return
    pytest.fail(f"not every front door answered a large request: {served_by() - before}")


def session_on(gateway, front_door: int) -> requests.Session:
    """A kept-alive connection that the kernel gave to `front_door` (new connections until one lands there)."""
    for _ in range(60):
        session = requests.Session()
        request_id = f"landing-{front_door}-{time.monotonic_ns()}"
        # a model no test unloads
        assert_echoed(session.post(f"{gateway.url}/v2/models/streamer/infer", json=_body(request_id, SMALL), timeout=10), SMALL)
        if front_doors_of(gateway, [request_id])[request_id] == front_door:
            return session
        session.close()
    pytest.fail(f"no connection landed on front door {front_door}")


def channel_on(gateway, front_door: int) -> grpc.Channel:
    """A gRPC channel whose connection the kernel gave to `front_door` (new ones until one lands there)."""
    for _ in range(60):
        channel = grpc.insecure_channel(gateway.grpc_url, options=[("grpc.use_local_subchannel_pool", 1)])
        request_id = f"landing-grpc-{front_door}-{time.monotonic_ns()}"
        request = pb.ModelInferRequest(model_name="streamer", id=request_id)  # a model no test unloads
        request.inputs.add(name="x", datatype="FP32", shape=list(SMALL.shape))
        request.raw_input_contents.append(SMALL.tobytes())
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
        if front_doors_of(gateway, [request_id])[request_id] == front_door:
            return channel
        channel.close()
    pytest.fail(f"no gRPC connection landed on front door {front_door}")


# --- requests ---------------------------------------------------------------------------


def rest_echo(gateway, request_id: str, x: np.ndarray = LARGE, model: str = "echo", **parameters) -> requests.Response:
    """A request on a connection of its own (requests.post opens one per call)."""
    return requests.post(f"{gateway.url}/v2/models/{model}/infer", json=_body(request_id, x, **parameters), timeout=30)


def grpc_echo(gateway, request_id: str, x: np.ndarray = LARGE, model: str = "echo") -> pb.ModelInferResponse:
    """A call on a connection of its own (grpc's channels of one process share their connections otherwise)."""
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    with grpc.insecure_channel(gateway.grpc_url, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def assert_echoed(response: requests.Response | pb.ModelInferResponse, x: np.ndarray = LARGE) -> None:
    if isinstance(response, requests.Response):
        assert response.status_code == 200, response.text
        (output,) = [output for output in response.json()["outputs"] if output["name"] == "x"]
        assert np.array_equal(np.array(output["data"], dtype=np.float32).reshape(output["shape"]), x)
    else:
        assert np.frombuffer(response.raw_output_contents[0], dtype=np.float32).tobytes() == x.tobytes()


def test_fresh_connections_reach_several_front_doors_rest_and_grpc(gateway):
    """SO_REUSEPORT on every listener, gRPC's too: under concurrent load, new connections are spread
    over the processes, and every one answers right (through the main's workers)."""
    rest_ids = [f"spread-rest-{i}" for i in range(24)]
    grpc_ids = [f"spread-grpc-{i}" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        rest = list(pool.map(lambda rid: rest_echo(gateway, rid), rest_ids))
        calls = list(pool.map(lambda rid: grpc_echo(gateway, rid), grpc_ids))
    for response in [*rest, *calls]:
        assert_echoed(response)
    doors = front_doors_of(gateway, rest_ids + grpc_ids)
    assert len({doors[rid] for rid in rest_ids}) >= 2, doors
    assert len({doors[rid] for rid in grpc_ids}) >= 2, doors


def test_one_scrape_through_any_front_door_counts_every_request_exactly(gateway):
    """Successes and 400s answered by any process (a 400 refused by a relay front door itself
    included) are in every /metrics scrape and in the statistics, whichever process is asked."""

    def requests_counted(samples: dict) -> dict:
        return {key: value for key, value in samples["gateway_requests_total"].items() if dict(key)["model"] == "echo"}

    before = requests_counted(scrape(f"{gateway.url}/metrics"))
    statistics_before = requests.get(f"{gateway.url}/v2/models/echo/stats", timeout=10).json()["model_stats"][0]["inference_count"]
    bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0]}]}  # 1 value for a shape of 2
    with ThreadPoolExecutor(6) as pool:
        ok_rest = list(pool.map(lambda i: rest_echo(gateway, f"count-rest-{i}"), range(12)))
        ok_grpc = list(pool.map(lambda i: grpc_echo(gateway, f"count-grpc-{i}"), range(9)))
        refused = list(pool.map(lambda i: requests.post(f"{gateway.url}/v2/models/echo/infer", json=bad, timeout=10), range(7)))
    for response in [*ok_rest, *ok_grpc]:
        assert_echoed(response)
    assert {response.status_code for response in refused} == {400}
    gateway.wait_for(lambda: len(refusals_by(gateway)) == 7, timeout=10, what="the access lines")
    assert len(set(refusals_by(gateway))) >= 2  # some 400s were a relay front door's own, never sent to the main process

    def key(protocol: str, outcome: str) -> tuple:
        return labels(model="echo", version="", protocol=protocol, outcome=outcome)

    expected = dict(before)
    expected[key("rest", "success")] += 12
    expected[key("grpc", "success")] += 9
    expected[key("rest", "client_error")] += 7
    scrapes_before = len([line for line in access_lines(gateway) if line["path"] == "/metrics"])
    for _ in range(9):  # fresh connections: through every process, most likely
        assert requests_counted(scrape(f"{gateway.url}/metrics")) == expected
        statistics = requests.get(f"{gateway.url}/v2/models/echo/stats", timeout=10).json()["model_stats"][0]
        assert statistics["inference_count"] == statistics_before + 21
    gateway.wait_for(lambda: len([line for line in access_lines(gateway) if line["path"] == "/metrics"]) == scrapes_before + 9, timeout=10)
    scraped_by = {line["front_door"] for line in access_lines(gateway) if line["path"] == "/metrics"}
    assert len(scraped_by) >= 2, scraped_by
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        (document,) = pb_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(pb.ModelStatisticsRequest(name="echo"), timeout=10).model_stats
    assert document.inference_count == statistics_before + 21
    each_front_door_serves_large(gateway)


def refusals_by(gateway) -> list[int]:
    """The front doors that answered the echo's 400s."""
    return [line["front_door"] for line in access_lines(gateway) if line["path"] == "/v2/models/echo/infer" and line["status"] == 400]


def test_a_batch_gathers_requests_from_several_front_doors(gateway):
    """One queue per model, in the main process: a batch holds requests that came through different
    processes (BatchProbe tells each row which call it ran in)."""
    for attempt in range(3):
        ids = [f"batch-{attempt}-{i}" for i in range(8)]
        x = np.full((1, 4), 1.5, dtype=np.float32)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda rid: rest_echo(gateway, rid, x, model="batched"), ids))
        calls = {}
        for rid, response in zip(ids, answers):
            assert response.status_code == 200, response.text
            outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
            assert outputs["y"] == [3.0] * 4
            calls[rid] = outputs["call"][0]
        doors = front_doors_of(gateway, ids)
        doors_per_call: dict[int, set[int]] = {}
        for rid, call in calls.items():
            doors_per_call.setdefault(call, set()).add(doors[rid])
        if any(len(doors_of_call) >= 2 for doors_of_call in doors_per_call.values()):
            break
    else:
        pytest.fail(f"no batch held requests of two front doors: {doors_per_call}")
    samples = scrape(f"{gateway.url}/metrics")["gateway_batch_size_bucket"]
    assert samples[labels(model="batched", version="", le="1.0")] < samples[labels(model="batched", version="", le="+Inf")]


def test_a_relayed_request_keeps_its_deadline_and_priority(gateway):
    """The schedule policy crosses the hop: with the one worker of "slow" busy (a call running, and one
    waiting in its second slot), a relayed request with a
    deadline is dropped from the main process's queue when it passes (504, never run; its error states
    the timeout the client gave, not the time left once the request had crossed: a 16 MiB request
    takes milliseconds to), and a relayed
    request of priority 1 overtakes one of the default level queued before it through front door 1 (which
    then takes a second: the order of the answers is the order they were served in)."""
    with session_on(gateway, 2) as relayed, session_on(gateway, 1) as local:
        busy = threading.Thread(daemon=True, target=lambda: rest_echo(gateway, "busy", SMALL, model="slow", delay=4))
        calls = gateway.log_text().count("slow echo call with")
        busy.start()
        gateway.wait_for(lambda: gateway.log_text().count("slow echo call with") > calls, timeout=10, what="the busy call")
        filler = threading.Thread(daemon=True, target=lambda: rest_echo(gateway, "filler", SMALL, model="slow"))
        filler.start()
        gateway.wait_for(lambda: _inflight(gateway, "slow") == 2, timeout=10, what="the worker's second slot to be taken")
        body, headers = _binary_body("expired", np.zeros((1024, 4096), dtype=np.float32), timeout=300_000)
        expired = relayed.post(f"{gateway.url}/v2/models/slow/infer", data=body, headers=headers, timeout=30)
        assert expired.status_code == 504, expired.text
        assert expired.json()["error"] == "model 'slow' did not answer within 0.3 s, the request's deadline (it was waiting for a worker)"
        answered: list[str] = []
        later = threading.Thread(
            daemon=True,
            target=lambda: answered.append(
                local.post(f"{gateway.url}/v2/models/slow/infer", json=_body("default-level", SMALL, delay=1), timeout=30).json()["id"]
            ),
        )
        later.start()
        gateway.wait_for(lambda: _inflight(gateway, "slow") == 3, timeout=10, what="the request of the default level to queue")
        answered.append(relayed.post(f"{gateway.url}/v2/models/slow/infer", json=_body("first-level", SMALL, priority=1), timeout=30).json()["id"])
        later.join(timeout=30)
        busy.join(timeout=30)
        filler.join(timeout=30)
    assert answered == ["first-level", "default-level"]
    assert gateway.log_text().count("slow echo call with") == calls + 4  # the expired request never reached the worker
    each_front_door_serves_large(gateway, "slow")


def test_a_grpc_deadline_that_passes_is_counted_as_one_through_any_front_door(gateway):
    """A gRPC call whose deadline passes while its model runs counts as deadline_exceeded (504), not
    cancelled (499: the client went away), whichever front door took it: gRPC cancels the call at its
    deadline, often before the main process's own answer (504) has crossed to a relay front door."""

    def outcomes() -> dict:
        samples = scrape(f"{gateway.url}/metrics")["gateway_requests_total"]
        return {outcome: samples[labels(model="slow", version="", protocol="grpc", outcome=outcome)] for outcome in ("deadline_exceeded", "cancelled")}

    before = outcomes()
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=list(SMALL.shape))
    request.raw_input_contents.append(SMALL.tobytes())
    request.parameters["delay"].double_param = 1.0
    for front_door in (1, 2):
        with channel_on(gateway, front_door) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for i in range(8):
                request.id = f"grpc-deadline-{front_door}-{i}"
                with pytest.raises(grpc.RpcError) as expired:
                    stub.ModelInfer(request, timeout=0.2)
                assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcomes() == {"deadline_exceeded": before["deadline_exceeded"] + 16, "cancelled": before["cancelled"]}
    each_front_door_serves_large(gateway, "slow")


def _inflight(gateway, model: str) -> float:
    return scrape(f"{gateway.url}/metrics")["gateway_inflight_requests"][labels(model=model, version="")]


def test_unload_through_one_front_door_is_seen_by_every_front_door_at_once(gateway):
    """Repository operations act on the one supervisor, which publishes the model table before it
    answers: right after the unload's answer (through a relay front door), every process answers
    the model not ready; and after the load's (through the main one), ready."""
    with session_on(gateway, 3) as session:
        response = session.post(f"{gateway.url}/v2/repository/models/echo/unload", timeout=60)
    assert response.status_code == 200, response.text
    answers = [requests.get(f"{gateway.url}/v2/models/echo/ready", timeout=10).status_code for _ in range(12)]
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        grpc_ready = pb_grpc.GRPCInferenceServiceStub(channel).ModelReady(pb.ModelReadyRequest(name="echo"), timeout=10).ready
    assert answers == [503] * 12 and not grpc_ready
    gateway.wait_for(lambda: len([line for line in access_lines(gateway) if line["path"] == "/v2/models/echo/ready"]) >= 12, timeout=10)
    assert len({line["front_door"] for line in access_lines(gateway) if line["path"] == "/v2/models/echo/ready"}) >= 2
    index = requests.post(f"{gateway.url}/v2/repository/index", json={}, timeout=10).json()
    assert {"name": "echo", "version": "", "state": "UNAVAILABLE", "reason": "unloaded"} in index

    with session_on(gateway, 1) as session:
        response = session.post(f"{gateway.url}/v2/repository/models/echo/load", timeout=60)
    assert response.status_code == 200, response.text
    assert [requests.get(f"{gateway.url}/v2/models/echo/ready", timeout=10).status_code for _ in range(12)] == [200] * 12
    each_front_door_serves_large(gateway)


def test_a_stream_through_a_relay_front_door(gateway):
    """predict_stream, relayed: every response reaches the client (through shared memory in the
    main process, copied into the relay's messages), counted once."""
    count, size = 4, SHARED_MEMORY_BYTES // 4
    for attempt in range(30):
        request_id = f"stream-{attempt}"
        body = {"id": request_id, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0.0]}], "parameters": {"count": count, "size": size}}
        response = requests.post(f"{gateway.url}/v2/models/streamer/infer_stream", json=body, timeout=30)
        assert response.status_code == 200, response.text
        events = [json.loads(line.removeprefix("data: ")) for line in response.text.splitlines() if line]
        assert [event["outputs"][0]["data"] for event in events] == [[i] for i in range(count)]
        assert all(event["outputs"][2]["data"] == [float(i)] * size for i, event in enumerate(events))
        front_doors_of(gateway, [request_id])
        (line,) = [line for line in access_lines(gateway) if line.get("request_id") == request_id]
        if line["front_door"] != 1:
            assert line["responses"] == count
            break
    else:
        pytest.fail("no stream reached a relay front door")
    each_front_door_serves_large(gateway, "echo")


@pytest.mark.parametrize("setting", ["http_port", "grpc_port", "metrics_port"])
def test_a_second_gateway_on_the_same_ports_is_refused(gateway, setting, tmp_path):
    """SO_REUSEPORT lets processes of one user share a port: a second gateway with several front doors,
    started by mistake on a port of the first, must not take half of its connections."""
    log = refused_start(write_repository(tmp_path, MODELS), frontdoor_workers=FRONT_DOORS, **{setting: getattr(gateway, setting)})
    assert f"cannot listen on 127.0.0.1:{getattr(gateway, setting)} ({setting}): Address already in use" in log, log
    assert "loading" not in log
    assert_serves_large(gateway, "echo")


def test_a_relay_front_door_killed_under_load_is_restarted_and_the_others_serve_on(gateway):
    """kill -9 of a relay front door while clients send: it comes back (restarted by the main
    process), clients whose connection it held see their connection fail, every answer from the
    others is right, and its request in flight is cancelled in the main (its worker freed)."""
    before = relays(gateway)
    failed_before = _failed(gateway, "slow")
    held = session_on(gateway, 2)  # a slow request in flight through front door 2 when it dies
    slow = threading.Thread(
        daemon=True, target=lambda: _swallow(lambda: held.post(f"{gateway.url}/v2/models/slow/infer", json=_body("held-slow", delay=30), timeout=60))
    )
    slow.start()
    gateway.wait_for(lambda: "slow echo call with" in gateway.log_text(), timeout=10, what="the slow call")

    stop = threading.Event()
    results: list[object] = []

    def load() -> None:
        while not stop.is_set():
            try:
                response = rest_echo(gateway, f"load-{time.monotonic_ns()}", SMALL)
                right = response.status_code == 200 and response.json()["outputs"][0]["data"] == SMALL.ravel().tolist()
                results.append("ok" if right else f"{response.status_code} {response.text[:300]}")
            except requests.ConnectionError as exc:
                results.append(exc)

    clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        gateway.wait_for(lambda: len(results) >= 20, timeout=30, what="the load")
        serving = serving_lines(gateway)
        os.kill(before[2], signal.SIGKILL)
        gateway.wait_for(
            lambda: relays(gateway).get(2) not in (None, before[2]) and serving_lines(gateway) > serving, timeout=30, what="front door 2's restart"
        )
        served = len(results)
        gateway.wait_for(lambda: len(results) >= served + 20, timeout=30, what="the load after the restart")
    finally:
        stop.set()
        for client in clients:
            client.join()
    slow.join(timeout=30)

    answered = [result for result in results if not isinstance(result, Exception)]
    failed = [result for result in results if isinstance(result, Exception)]
    assert set(answered) == {"ok"}, [a for a in answered if a != "ok"]  # every answer, from any process, right
    assert len(failed) <= 8, failed  # at most the connections front door 2 held or had queued
    assert relays(gateway)[3] == before[3]  # the other relay front door never stopped
    (lost,) = re.findall(r"front door 2 exited with code -9 \((\d+) request\(s\) in flight failed\)", gateway.log_text())
    assert int(lost) >= 1  # the slow request, and perhaps some of the load's
    # the slow request was cancelled in its worker, which is free at once (it would sleep 30 s)
    assert _failed(gateway, "slow") == failed_before + 1
    assert_serves_large(gateway, "slow", timeout=10)
    each_front_door_serves_large(gateway)


MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def test_with_tcp_migrate_req_the_connections_waiting_for_a_dead_front_door_are_served(gateway):
    """Linux (5.14+) moves the connections waiting in a closed listener's accept queue to another
    listener of its SO_REUSEPORT group when net.ipv4.tcp_migrate_req is 1 (docs: README, "Several
    front doors"): then a relay front door that dies loses none of the connections it had not
    accepted yet. Front door 2 is stopped (SIGSTOP: it accepts nothing), clients connect and send
    their requests (some wait in its queue), then it is killed: every client gets its answer."""
    try:
        original = MIGRATE_REQ.read_text()
        MIGRATE_REQ.write_text("1")
    except OSError as exc:
        pytest.skip(f"cannot set net.ipv4.tcp_migrate_req here: {exc}")
    before = relays(gateway)
    clients: list[socket.socket] = []
    try:
        os.kill(before[2], signal.SIGSTOP)
        for _ in range(24):
            client = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=30)
            client.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            clients.append(client)
        readable, _, _ = select.select(clients, [], [], 2.0)  # the others' answers; front door 2's wait
        assert len(readable) < len(clients)  # some connections hashed to front door 2's queue
        serving = serving_lines(gateway)
        os.kill(before[2], signal.SIGKILL)
        answers = [client.recv(4096) for client in clients]
        assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), [answer[:40] for answer in answers]
        gateway.wait_for(
            lambda: relays(gateway).get(2) not in (None, before[2]) and serving_lines(gateway) > serving, timeout=30, what="front door 2's restart"
        )
    finally:
        for client in clients:
            client.close()
        MIGRATE_REQ.write_text(original)
        if relays(gateway).get(2) == before[2]:
            os.kill(before[2], signal.SIGCONT)
    each_front_door_serves_large(gateway)


def test_what_a_dead_front_door_sent_is_not_run(gateway):
    """The main process may see a relay front door die (and cancel its calls) before it has read the
    last messages the front door sent: those must not run then, for their answers would go nowhere,
    and a stream would hold its model's worker for ever, waiting for credits from a front door that is
    gone. Which comes first depends on the main process's threads, so a front door that died earlier
    in this module (front door 2's first) speaks here: its identity on the main process's socket sends
    a stream request for "streamer", whose one worker a stream holds whole, then reports a request it
    answered (ACCOUNT: counted whoever sent it, as a dead front door's answers were given), which tells
    when the main process has read both. The stream is not run: the model serves on."""
    (command,) = [command for command in children(gateway.process.pid).values() if "gateway.relay --number 2 " in command]
    assert "--identity front door 2#0 " not in command  # restarted (test_a_relay_front_door_killed_under_load_...)
    endpoint = command.split("--endpoint ")[1].split()[0]
    context = zmq.Context()
    dead = context.socket(zmq.DEALER)
    dead.setsockopt(zmq.IDENTITY, b"front door 2#0")
    dead.setsockopt(zmq.LINGER, 0)
    try:
        dead.connect(endpoint)
        first = WireRequest("streamer", None, "orphan", [Tensor("x", "FP32", [1], np.zeros(1, np.float32))], {"count": 3})
        dead.send_multipart(messages.request_frames(messages.STREAM, 0, [first], None, relayed=True))
        refused = labels(model="", version="", protocol="grpc", outcome="client_error")  # an unknown model's 404
        before = scrape(f"{gateway.url}/metrics")["gateway_requests_total"].get(refused, 0.0)
        dead.send_multipart(messages.control_frames(messages.ACCOUNT, {"requests": [["grpc", 404, 1000, "no-such-model", None]]}))
        gateway.wait_for(lambda: scrape(f"{gateway.url}/metrics")["gateway_requests_total"].get(refused, 0.0) > before, timeout=10, what="the ACCOUNT")
        assert_serves_large(gateway, "streamer")
        assert not dead.poll(0)  # nothing ran for it
    finally:
        dead.close()
        context.term()
    each_front_door_serves_large(gateway)


def _failed(gateway, model: str) -> int:
    """The statistics extension's count of the model's failed requests."""
    return requests.get(f"{gateway.url}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]["inference_stats"]["fail"]["count"]


def _body(request_id: str, x: np.ndarray = LARGE, **parameters) -> dict:
    return {"id": request_id, "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}], "parameters": parameters}


def _binary_body(request_id: str, x: np.ndarray, **parameters) -> tuple[bytes, dict]:
    """A request body of the binary tensor extension, and its header."""
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": x.nbytes}}
    header = json.dumps({"id": request_id, "inputs": [tensor], "parameters": parameters}).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def _swallow(call) -> None:
    try:
        call()
    except requests.RequestException:
        pass  # its front door was killed: the connection fails


def test_sigterm_drains_every_front_door(gateway):
    """SIGTERM to the gateway's process group (as a shell's kill or Ctrl-C: every process gets it;
    the relay front doors take it from the main process only, once): every process answers not
    ready during drain_delay while it still serves, then closes its listeners; a request in flight
    through any of them finishes; the relay front doors exit before the workers stop, and the
    gateway exits 0. Front door 3 died just before and waits to be restarted (restart_backoff): it
    is not started again once the gateway stops (it would serve on, never told to drain, until killed
    at the end of the stop). (Last: it stops the gateway.)"""
    relay_pids = relays(gateway)
    serving = serving_lines(gateway)
    os.kill(relay_pids.pop(3), signal.SIGKILL)
    gateway.wait_for(lambda: "front door 3 exited with code -9" in gateway.log_text(), timeout=10, what="front door 3's death")
    in_flight: list[requests.Response | Exception] = []

    def slow_request() -> None:
        try:
            in_flight.append(rest_echo(gateway, "drain-slow", model="slow", delay=3))
        except requests.RequestException as exc:
            in_flight.append(exc)

    calls = gateway.log_text().count("slow echo call with")
    slow = threading.Thread(daemon=True, target=slow_request)
    slow.start()
    gateway.wait_for(lambda: gateway.log_text().count("slow echo call with") > calls, timeout=10, what="the slow call")
    os.killpg(gateway.process.pid, signal.SIGTERM)
    gateway.wait_for(lambda: requests.get(f"{gateway.url}/v2/health/ready", timeout=5).status_code == 503, timeout=10)
    answers = [requests.get(f"{gateway.url}/v2/health/ready", timeout=5) for _ in range(8)]
    assert [answer.status_code for answer in answers] == [503] * 8
    assert_echoed(rest_echo(gateway, "during-drain"))  # still served
    assert gateway.process.wait(timeout=30) == 0
    slow.join(timeout=10)
    (response,) = in_flight
    assert isinstance(response, requests.Response), response
    assert_echoed(response)
    assert not [pid for pid in relay_pids.values() if os.path.exists(f"/proc/{pid}")]
    messages = [line["message"] for line in log_lines(gateway)]
    stopped = [i for i, message in enumerate(messages) if message in ("front door 2 stopped", "front door 3 stopped")]
    assert [messages[i] for i in stopped] == ["front door 2 stopped"] and max(stopped) < messages.index("gateway stopped")
    drained = [line["front_door"] for line in log_lines(gateway) if line["message"].startswith("SIGTERM: ")]
    assert sorted(drained) == [1, 1, 2, 2]  # "draining", then "closing the listeners": once each, no "already draining"
    assert serving_lines(gateway) == serving and not [message for message in messages if "did not stop within" in message]
