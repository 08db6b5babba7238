"""The gateway's life through real processes and raw sockets: slow and vanished clients, a model
repository with broken settings, the readiness rule, start-up mistakes, and the drain on SIGTERM."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import tritonclient.grpc as grpcclient

from tests.conftest import ROOT, assert_serves_large, refused_start
from tests.test_observability import metrics_of
from tests.test_worker_plane import (
    assert_sleepy_serves_large,
    grpc_sleep_request,
    our_shm_segments,
    sleep_request,
    workers_of,
    write_repository,
)

ECHO = {"implementation": "tests.runtimes.Echo"}
SLEEPY = {"implementation": "tests.runtimes.Sleepy"}
HEADER_TIMEOUT, BODY_TIMEOUT, GRACE = 1.0, 2.0, 2.0


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("repository"), {"echo": ECHO, "sleepy": SLEEPY, "spare": ECHO})
    # broken at start: a file that is not JSON (its name unreadable: listed by its folder's), and one model twice
    (repository / "misnamed").mkdir()
    (repository / "misnamed" / "model-settings.json").write_text('{"name": "renamed", "implementation": ')
    write_repository(repository, {"twin-a": {"name": "twin", **ECHO}, "twin-b": {"name": "twin", **ECHO}})
    return repository


@pytest.fixture(scope="module")
def gateway(start_gateway, repository):
    gateway = start_gateway(repository, header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT, shutdown_grace=GRACE, drain_delay=600)
    return gateway.wait_ready(["echo", "sleepy", "spare"])


def ready(gateway) -> int:
    return requests.get(f"{gateway.url}/v2/health/ready", timeout=10).status_code


def index(gateway) -> dict:
    return {(i["name"], i["version"]): i for i in requests.post(f"{gateway.url}/v2/repository/index", timeout=10).json()}


def load(gateway, model: str) -> requests.Response:
    return requests.post(f"{gateway.url}/v2/repository/models/{model}/load", timeout=60)


def unload(gateway, model: str) -> requests.Response:
    return requests.post(f"{gateway.url}/v2/repository/models/{model}/unload", timeout=60)


# --- raw HTTP/1.1 over a socket


def connect(gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.http_port), timeout=30)


def read_answer(connection: socket.socket) -> tuple[int, dict, bytes]:
    """One HTTP response: status, headers (lower-case names), body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += connection.recv(65536)
    return int(status_line.split()[1]), headers, body


def closed_by_server(connection: socket.socket) -> bool:
    """The server closed the connection (within the socket's timeout)."""
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def trickle(connection: socket.socket, data: bytes, every: float = 0.2) -> int:
    """Send one byte every `every` seconds until the server answers (or `data` runs out); how many were sent."""
    for sent in range(len(data)):
        if select.select([connection], [], [], every)[0]:
            return sent
        connection.sendall(data[sent : sent + 1])
    return len(data)


def infer_head(model: str, length: int, path: str | None = None) -> bytes:
    return f"POST {path or f'/v2/models/{model}/infer'} HTTP/1.1\r\nHost: gateway\r\nContent-Length: {length}\r\n\r\n".encode()


BODY = json.dumps({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]}).encode().ljust(400)


# --- slow and vanished clients


def test_headers_sent_a_byte_at_a_time_get_408_and_the_connection_closes(gateway):
    # each byte comes well within Sanic's own REQUEST_TIMEOUT (which restarts with every byte): only a
    # deadline on the whole header stops this client
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with connect(gateway) as connection:
        sent = trickle(connection, head)
        assert sent < len(head), "the server waited for the whole trickled header"
        status, headers, body = read_answer(connection)
        assert (status, headers["connection"]) == (408, "close")
        assert json.loads(body) == {"error": f"the request's headers did not arrive within {HEADER_TIMEOUT:g} s (header_timeout)"}
        assert closed_by_server(connection)
    assert "Traceback" not in gateway.log_text()
    assert_serves_large(gateway, "echo")


@pytest.mark.parametrize("how", ["a byte at a time", "stalled", "chunked, a byte at a time"])
def test_a_slow_body_gets_408_and_the_connection_closes(gateway, how):
    with connect(gateway) as connection:
        if how == "chunked, a byte at a time":
            connection.sendall(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\n")
            assert trickle(connection, b"1\r\n \r\n" * 200) < 1400
        elif how == "stalled":
            connection.sendall(infer_head("echo", len(BODY)) + BODY[:50])
        else:
            connection.sendall(infer_head("echo", len(BODY)))
            assert trickle(connection, BODY) < len(BODY), "the server waited for the whole trickled body"
        status, headers, body = read_answer(connection)
        assert (status, headers["connection"]) == (408, "close")
        assert json.loads(body) == {"error": f"the request's body did not arrive within {BODY_TIMEOUT:g} s (body_timeout)"}
        assert closed_by_server(connection)
    assert "Traceback" not in gateway.log_text()
    assert_serves_large(gateway, "echo")


def test_the_rest_of_a_body_after_an_early_answer_is_read_against_the_same_deadline(gateway):
    # an unknown route is answered before its body is read; Sanic then reads the body, to keep the connection
    with connect(gateway) as connection:
        connection.sendall(infer_head("echo", len(BODY), path="/no/such/route"))
        assert read_answer(connection)[0] == 404
        assert trickle(connection, BODY) < len(BODY)
        assert closed_by_server(connection)
    assert "Traceback" not in gateway.log_text()
    assert_serves_large(gateway, "echo")


def access_lines(gateway, status: int) -> list[str]:
    return [line for line in gateway.log_text().splitlines() if "[gateway.access]" in line and f" {status} " in line]


def test_a_client_gone_before_its_answer_is_cancelled_in_metrics_and_the_access_log(gateway):
    sleepy_rest = lambda outcome: metrics_of(gateway)["gateway_requests_total"][  # noqa: E731
        (("model", "sleepy"), ("outcome", outcome), ("protocol", "rest"), ("version", ""))
    ]
    before = {outcome: sleepy_rest(outcome) for outcome in ("cancelled", "client_error", "server_error")}
    cancelled_calls = gateway.log_text().count("the gateway cancelled the call")
    (worker,) = workers_of(gateway, "sleepy")
    started = gateway.log_text().count(f"sleepy {worker} predict started")
    body = json.dumps({"inputs": [{"name": "seconds", "datatype": "FP32", "shape": [1], "data": [1.0]}]}).encode()
    with connect(gateway) as connection:
        connection.sendall(infer_head("sleepy", len(body)) + body)
        gateway.wait_for(lambda: gateway.log_text().count(f"sleepy {worker} predict started") > started, what="the request to reach its worker")
    # closed: the client is gone while its request runs
    gateway.wait_for(lambda: any("model=sleepy" in line for line in access_lines(gateway, 499)), what="the access line")
    assert "rest POST /v2/models/sleepy/infer 499" in access_lines(gateway, 499)[-1]
    assert sleepy_rest("cancelled") == before["cancelled"] + 1
    assert sleepy_rest("client_error") == before["client_error"]
    assert sleepy_rest("server_error") == before["server_error"]
    # and its predict was cancelled in the worker, not left to run its second out
    gateway.wait_for(lambda: gateway.log_text().count("the gateway cancelled the call") > cancelled_calls, what="the cancellation")
    assert "Traceback" not in gateway.log_text()
    assert_sleepy_serves_large(gateway, "sleepy", worker)


def test_a_connection_dropped_before_its_headers_are_complete_logs_one_line(gateway):
    lines_before = len(gateway.log_text().splitlines())
    dropped_before = len(access_lines(gateway, 499))
    with connect(gateway) as connection:
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: gate")
        time.sleep(0.2)  # read, and waiting for the rest
    gateway.wait_for(lambda: len(access_lines(gateway, 499)) > dropped_before, what="the access line")
    new_lines = gateway.log_text().splitlines()[lines_before:]
    # its access line, and nothing else (an earlier request's access line may have come late)
    assert [line for line in new_lines if "[gateway.access]" not in line] == [], new_lines
    assert sum("rest NONE * 499" in line for line in new_lines) == 1, new_lines
    assert_serves_large(gateway, "echo")


# --- the model repository and the readiness rule


def test_an_unload_fails_a_request_that_outlasts_the_grace_and_kills_its_worker(gateway):
    (worker,) = workers_of(gateway, "sleepy")
    results: list = []
    started = gateway.log_text().count(f"sleepy {worker} predict started")
    call = sleep_request(gateway, "sleepy", 60, results)
    gateway.wait_for(lambda: gateway.log_text().count(f"sleepy {worker} predict started") > started, what="the request to reach its worker")
    assert unload(gateway, "sleepy").status_code == 200
    call.join()
    assert results[0].status_code == 503
    assert f"model 'sleepy' was unloaded: the request did not finish within shutdown_grace, {GRACE} s" in results[0].json()["error"]
    gateway.wait_for(lambda: worker not in workers_of(gateway, "sleepy"), what="the worker to go")
    assert load(gateway, "sleepy").status_code == 200
    results.clear()
    sleep_request(gateway, "sleepy", 0, results).join()
    assert results[0].status_code == 200, results[0].text
    (replacement,) = workers_of(gateway, "sleepy")
    assert_sleepy_serves_large(gateway, "sleepy", replacement)


def test_readiness_rule_start_up_failures_unloads_and_failed_loads(gateway, repository):
    # at start: the broken file and the duplicated name are listed as failed, and keep the server not ready
    items = index(gateway)
    broken_file = repository / "misnamed" / "model-settings.json"
    assert items[("misnamed", "")]["state"] == "UNAVAILABLE"
    assert str(broken_file) in items[("misnamed", "")]["reason"]
    assert items[("twin", "")]["state"] == "UNAVAILABLE"
    assert "twin-a" in items[("twin", "")]["reason"] and "twin-b" in items[("twin", "")]["reason"]
    assert items[("echo", "")]["state"] == "READY"
    assert ready(gateway) == 503
    log = gateway.log_text()
    assert f"model misnamed (version None) cannot be served: {broken_file}" in log
    assert "model twin (version None) cannot be served: model 'twin' version None is defined more than once" in log
    response = requests.get(f"{gateway.url}/v2/models/twin/ready", timeout=10)
    assert response.status_code == 503 and "defined more than once" in response.json()["reason"]
    assert_serves_large(gateway, "echo")

    # fixed (the file; loaded by the name it declares) or removed (the duplicate) and loaded: ready
    broken_file.write_text(json.dumps({"name": "renamed", **ECHO}))
    assert load(gateway, "renamed").status_code == 200
    assert ("misnamed", "") not in index(gateway)
    assert ready(gateway) == 503  # twin still fails
    assert load(gateway, "twin").status_code == 400  # still twice: nothing changes
    (repository / "twin-b" / "model-settings.json").unlink()
    assert load(gateway, "twin").status_code == 200
    assert ready(gateway) == 200
    assert_serves_large(gateway, "twin")

    # a model unloaded on purpose is not expected to be ready
    assert unload(gateway, "spare").status_code == 200
    assert ready(gateway) == 200

    # a live load that fails makes the server not ready, until the model loads (or is unloaded)
    write_repository(repository, {"spare": {"implementation": "tests.runtimes.BrokenLoad"}})
    assert load(gateway, "spare").status_code == 400
    assert index(gateway)[("spare", "")]["state"] == "UNAVAILABLE"
    assert ready(gateway) == 503
    write_repository(repository, {"spare": ECHO})
    assert load(gateway, "spare").status_code == 200
    assert ready(gateway) == 200
    assert_serves_large(gateway, "spare")


# --- start-up mistakes


@pytest.mark.parametrize("setting", ["http_port", "grpc_port", "metrics_port"])
def test_a_port_in_use_is_named_with_its_setting(tmp_path, setting):
    repository = write_repository(tmp_path, {"echo": ECHO})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = refused_start(repository, **{setting: port})
    assert log.count(f"cannot listen on 127.0.0.1:{port} ({setting}): Address already in use") == 1, log
    assert "Traceback" not in log
    assert "loading" not in log  # it stopped before starting anything: no worker ran


def test_a_bad_value_is_blamed_on_its_true_source(tmp_path):
    def start(environment: dict) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "gateway", "start", "--config", str(tmp_path)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **environment}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    settings_file = tmp_path / "settings.json"
    from_environment = start({"GATEWAY_HTTP_PORT": "abc"})
    assert from_environment.returncode == 2
    assert "environment variable GATEWAY_HTTP_PORT: http_port: Input should be a valid integer" in from_environment.stderr
    assert "'abc'" in from_environment.stderr and "settings.json" not in from_environment.stderr  # there is none

    settings_file.write_text(json.dumps({"http_port": "xyz"}))
    from_file = start({})
    assert from_file.returncode == 2
    assert f"{settings_file}: http_port: Input should be a valid integer" in from_file.stderr
    assert "environment variable" not in from_file.stderr


# --- stopping


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):  # reset: the listener closed with us in its backlog
        return True


def ask_live(connection: socket.socket) -> tuple[int, dict, bytes]:
    connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: gateway\r\n\r\n")
    return read_answer(connection)


def test_sigterm_drains_then_closes_the_listeners_and_answers_503_at_the_end_of_the_grace(start_gateway, tmp_path):
    drain_delay, grace = 5.0, 4.0
    repository = write_repository(tmp_path, {"echo": ECHO, "sleepy": {**SLEEPY, "parallel_workers": 3}})
    gateway = start_gateway(repository, new_session=True, drain_delay=drain_delay, shutdown_grace=grace).wait_ready()
    workers = workers_of(gateway, "sleepy")
    started = gateway.log_text().count("predict started")
    # one request that ends within the grace, and two (REST, gRPC) that would outlast it by far
    within, past_rest, past_grpc = [], [], []
    calls = [sleep_request(gateway, "sleepy", drain_delay + 1.5, within), sleep_request(gateway, "sleepy", 60, past_rest)]
    calls.append(grpc_sleep_request(gateway, 60, past_grpc))
    gateway.wait_for(lambda: gateway.log_text().count("predict started") == started + 3, what="the requests to reach their workers")
    kept_alive = connect(gateway)
    assert ask_live(kept_alive)[1]["connection"] == "keep-alive"

    signalled = time.monotonic()
    os.killpg(gateway.process.pid, signal.SIGTERM)  # as Kubernetes does: the workers get it too
    # the drain: not ready, yet every request is served; each answer closes its connection
    gateway.wait_for(lambda: ready(gateway) == 503, what="ready to answer 503")
    assert grpcclient.InferenceServerClient(gateway.grpc_url).is_server_ready() is False
    status, headers, _ = ask_live(kept_alive)
    assert (status, headers["connection"]) == (200, "close")
    assert closed_by_server(kept_alive)
    assert_serves_large(gateway, "echo")
    # then the listeners close
    gateway.wait_for(lambda: refused(gateway.http_port) and refused(gateway.grpc_port), timeout=60, what="the listeners to close")
    assert not within, "the drain delay ended before the request within the grace"
    for call in calls:
        call.join()
    assert within[0].status_code == 200, within[0].text
    assert past_rest[0].status_code == 503
    assert f"the gateway is stopping: the request did not finish within shutdown_grace, {grace} s" in past_rest[0].json()["error"]
    assert past_grpc[0].startswith("gRPC error StatusCode.UNAVAILABLE") and "shutdown_grace" in past_grpc[0], past_grpc[0]
    assert gateway.process.wait(timeout=60) == 0
    # well before the 60 s requests would have ended (generous: a loaded machine)
    assert time.monotonic() - signalled < drain_delay + grace + 15
    log = gateway.log_text()
    assert "Traceback" not in log
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert our_shm_segments() == []


def test_sigint_closes_the_listeners_without_the_drain_delay(gateway):
    # last in this module: it stops the module's gateway (its drain_delay is 600 s)
    gateway.process.send_signal(signal.SIGINT)
    assert gateway.process.wait(timeout=30) == 0
    assert "SIGINT: closing the listeners" in gateway.log_text()
