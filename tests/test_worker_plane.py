"""The worker plane through real processes: shared memory, parallel workers,
crashes, hangs, the model repository API and graceful shutdown."""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import SHARED_MEMORY_BYTES, assert_serves_large

MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo"},
    "inplace": {"implementation": "tests.runtimes.InPlace"},
    "hooked": {"implementation": "tests.runtimes.Hooked"},
    "sleepy": {"implementation": "tests.runtimes.Sleepy", "parallel_workers": 2},
    # opts out of the retry on worker death: its in-flight request fails with the worker (see test_retry.py for the retry)
    "sleepy1": {"implementation": "tests.runtimes.Sleepy", "retry_on_worker_death": False},
    "configured": {"implementation": "tests.runtimes.Configured", "parameters": {"extra": {"answer": "one"}}},
    "described": {"implementation": "tests.runtimes.Described", "platform": "from-settings"},
    "slowload": {"implementation": "tests.runtimes.SlowLoad", "parameters": {"extra": {"load_seconds": 30}}},
    "slowunload": {"implementation": "tests.runtimes.SlowUnload", "parameters": {"extra": {"unload_seconds": 3}}},
}


def write_repository(folder: Path, models: dict) -> Path:
    for name, settings in models.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "model-settings.json").write_text(json.dumps({"name": name, **settings}))
    return folder


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    return write_repository(tmp_path_factory.mktemp("repository"), MODELS)


@pytest.fixture(scope="module")
def gateway(start_gateway, repository):
    gateway = start_gateway(repository, heartbeat_interval=0.2, heartbeat_timeout=1.5, restart_backoff=0.1, request_timeout=20)
    return gateway.wait_ready(["echo", "inplace", "hooked", "sleepy", "sleepy1", "configured", "described"])


def children(pid: int) -> dict[int, str]:
    """Process id -> command line of the direct children of `pid`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry)] = cmdline
    return found


def workers_of(gateway, model: str) -> list[int]:
    return sorted(pid for pid, cmd in children(gateway.process.pid).items() if f"--identity {model}:" in cmd)


def memfds(pid: int) -> set[str]:
    """The gateway arenas a process holds (mmap keeps its own descriptor of each, so a set)."""
    return {link for link in fd_links(pid) if link.startswith("/memfd:gateway:")}


def fd_links(pid: int) -> set[str]:
    """What the process's file descriptors point at."""
    links = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return links


def our_shm_segments() -> list[str]:
    return [name for name in os.listdir("/dev/shm") if name.startswith("gateway")]


def started_in(gateway, worker: int):
    """A condition: the worker has started one more prediction than it had when this was called."""
    line = f"sleepy {worker} predict started"
    before = gateway.log_text().count(line)
    return lambda: gateway.log_text().count(line) > before


def sleep_request(gateway, model: str, seconds: float, results: list) -> threading.Thread:
    def call():
        response = requests.post(
            f"{gateway.url}/v2/models/{model}/infer",
            json={"inputs": [{"name": "seconds", "datatype": "FP32", "shape": [1], "data": [seconds]}]},
            # else the response object keeps the connection open, and a stopping gateway waits for it
            headers={"Connection": "close"},
            timeout=60,
        )
        results.append(response)

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def assert_sleepy_serves_large(gateway, model: str, worker: int) -> None:
    """The model (a Sleepy runtime) answers a large request at once (it sleeps its first element's seconds: 0), from `worker`."""
    seconds = np.zeros(SHARED_MEMORY_BYTES // 4, dtype=np.float32)
    assert_serves_large(gateway, model, {"seconds": seconds}, expect=lambda inputs: {"pid": np.array([worker], dtype=np.int64)})


def infer_echo(gateway, value: int = 1) -> dict:
    body = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [value]}]}
    return requests.post(f"{gateway.url}/v2/models/echo/infer", json=body, timeout=30).json()


# --- shared memory


def test_model_metadata_is_the_runtimes_own(gateway):
    # the runtime's metadata() answers, not model-settings.json (which says platform "from-settings")
    metadata = requests.get(f"{gateway.url}/v2/models/described", timeout=10).json()
    assert (metadata["platform"], metadata["versions"]) == ("described-by-its-runtime", ["7"])
    with grpcclient.InferenceServerClient(gateway.grpc_url) as client:
        assert client.get_model_metadata("described").platform == "described-by-its-runtime"


def test_large_tensors_travel_through_shared_memory(gateway):
    client = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    array = np.arange(4 * 1024 * 1024, dtype=np.float32)  # 16 MiB
    tensor = httpclient.InferInput("x", [array.size], "FP32")
    tensor.set_data_from_numpy(array)
    result = client.infer("echo", [tensor], outputs=[httpclient.InferRequestedOutput("x", binary_data=True)])
    np.testing.assert_array_equal(result.as_numpy("x"), array)
    client.close()
    (worker,) = workers_of(gateway, "echo")
    # the worker maps its two arenas, and the 16 MiB went through both of them
    assert sorted(Path(link).name.rsplit(":", 1)[1].split()[0] for link in memfds(worker)) == ["in", "out"]
    shared_kib = int(next(line.split()[1] for line in Path(f"/proc/{worker}/status").read_text().splitlines() if line.startswith("RssShmem")))
    assert shared_kib >= 2 * 16 * 1024
    assert our_shm_segments() == []


def test_several_large_tensors_of_one_request_lie_side_by_side_in_shared_memory(gateway):
    rng = np.random.default_rng(3)
    inputs = {
        "a": rng.random(SHARED_MEMORY_BYTES // 4, dtype=np.float32),
        "b": rng.integers(0, 2**62, SHARED_MEMORY_BYTES // 8 + 3, dtype=np.int64),  # an odd size: the next one is aligned
        "c": np.array([b"%d" % i * 7 for i in range(5000)], dtype=object),
    }
    assert_serves_large(gateway, "echo", inputs)


@pytest.mark.parametrize("elements", [4, 1024 * 1024])  # inline in the message; in shared memory
def test_inputs_are_read_only_for_the_runtime(gateway, elements):
    (worker,) = workers_of(gateway, "inplace")
    array = np.zeros(elements, dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [elements], "parameters": {"binary_data_size": array.nbytes}}]}).encode()
    response = requests.post(
        f"{gateway.url}/v2/models/inplace/infer", data=header + array.tobytes(), headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert response.status_code == 500
    assert "ValueError: output array is read-only" in response.json()["error"]
    assert workers_of(gateway, "inplace") == [worker]  # the worker lives on
    assert infer_echo(gateway, 4)["outputs"][0]["data"] == [4]
    large = {"x": np.zeros(SHARED_MEMORY_BYTES // 4, dtype=np.float32)}
    assert_serves_large(gateway, "inplace", large, expect=lambda inputs: {"x": inputs["x"] + 1}, parameters={"copy": True})


def test_a_runtimes_own_preprocess_and_postprocess_run(gateway):
    # preprocess: a plain function the runtime set on itself at load; postprocess: an async method
    body = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [1, 2]}]}
    answer = requests.post(f"{gateway.url}/v2/models/hooked/infer", json=body, timeout=30).json()
    assert answer["outputs"][0]["data"] == [2, 4] and answer["parameters"] == {"echoed": 1, "postprocessed": True}
    assert_serves_large(gateway, "hooked", expect=lambda inputs: {"x": inputs["x"] * 2})
    assert infer_echo(gateway, 3)["outputs"][0]["data"] == [3]  # MLModel's own hooks change nothing


# --- parallel inference


def test_two_workers_serve_two_requests_at_the_same_time(gateway):
    results: list = []
    threads = [sleep_request(gateway, "sleepy", 1.0, results) for _ in range(2)]
    for thread in threads:
        thread.join()
    answers = [{o["name"]: o["data"] for o in r.json()["outputs"]} for r in results]
    assert {a["pid"][0] for a in answers} == set(workers_of(gateway, "sleepy"))
    (start_a, end_a), (start_b, end_b) = (a["interval"] for a in answers)
    assert start_a < end_b and start_b < end_a  # the two predictions overlapped in time


# --- crashes and hangs


def test_kill_9_during_a_request_fails_it_at_once_and_the_worker_comes_back(gateway):
    """A model that opts out of retries: its running request fails at once (503), and so does the
    one waiting in the worker behind it (the worker's second slot); the one queued behind both had
    not reached the worker, and is served by the replacement."""
    (victim,) = workers_of(gateway, "sleepy1")
    from tests.test_observability import labels, metrics_of  # here: that module imports this one

    results: list = []
    started = started_in(gateway, victim)
    running = sleep_request(gateway, "sleepy1", 15.0, results)
    gateway.wait_for(started, what="the request to reach the worker")
    second = sleep_request(gateway, "sleepy1", 0.0, results)  # sent at once to the worker's free slot
    gateway.wait_for(lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model="sleepy1", version="")] == 2)
    queued: list = []
    waiting = sleep_request(gateway, "sleepy1", 0.0, queued)  # both slots taken: it waits in the gateway's queue
    gateway.wait_for(lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model="sleepy1", version="")] == 3)
    os.kill(victim, signal.SIGKILL)
    for thread in (running, second):
        thread.join(timeout=10)
        assert not thread.is_alive(), "a request of the dead worker hung"
    assert [r.status_code for r in results] == [503, 503]
    assert all("stopped during the request" in r.json()["error"] for r in results)
    assert infer_echo(gateway, 5)["outputs"][0]["data"] == [5]  # other models kept serving
    gateway.wait_ready(["sleepy1"], timeout=30)
    (replacement,) = workers_of(gateway, "sleepy1")
    assert replacement != victim
    waiting.join(timeout=10)
    assert not waiting.is_alive(), "the queued request was not served by the replacement"
    assert queued[0].status_code == 200 and queued[0].json()["outputs"][0]["data"] == [replacement]
    results.clear()
    sleep_request(gateway, "sleepy1", 0.01, results).join()
    assert results[0].json()["outputs"][0]["data"] == [replacement]
    assert_sleepy_serves_large(gateway, "sleepy1", replacement)


def test_a_hung_worker_is_killed_and_replaced(gateway):
    (frozen,) = workers_of(gateway, "echo")
    os.kill(frozen, signal.SIGSTOP)
    gateway.wait_for(lambda: workers_of(gateway, "echo") not in ([], [frozen]), timeout=30, what="a new echo worker")
    gateway.wait_ready(["echo"], timeout=30)
    assert infer_echo(gateway, 8)["outputs"][0]["data"] == [8]
    assert "is hung; killing it" in gateway.log_text()
    assert_serves_large(gateway, "echo")


def test_no_arena_outlives_its_worker(gateway):
    live_workers = [pid for pid, cmd in children(gateway.process.pid).items() if "-m workers" in cmd]
    assert len(memfds(gateway.process.pid)) == 2 * len(live_workers)
    assert our_shm_segments() == []


def test_a_worker_holds_no_tcp_socket(gateway):
    # such as the REST listening socket: held by a worker, the port would accept connections nobody serves
    tcp = {f"socket:[{line.split()[9]}]" for table in ("/proc/net/tcp", "/proc/net/tcp6") for line in Path(table).read_text().splitlines()[1:]}
    assert fd_links(gateway.process.pid) & tcp  # the check sees the gateway's own
    workers = [pid for pid, cmd in children(gateway.process.pid).items() if "-m workers" in cmd]
    assert workers and all(not fd_links(pid) & tcp for pid in workers)


# --- model repository extension


def index(gateway, **body) -> dict:
    return {(i["name"], i["version"]): i for i in requests.post(f"{gateway.url}/v2/repository/index", json=body).json()}


def test_repository_index_lists_states(gateway):
    items = index(gateway)
    assert items[("echo", "")] == {"name": "echo", "version": "", "state": "READY", "reason": ""}
    assert items[("slowload", "")]["state"] in ("LOADING", "UNAVAILABLE")
    assert ("slowload", "") not in index(gateway, ready=True)
    assert "model_repository" in requests.get(f"{gateway.url}/v2").json()["extensions"]


def test_a_loading_model_is_not_ready_over_rest_or_grpc(gateway):
    assert index(gateway)[("slowload", "")]["state"] == "LOADING"
    response = requests.get(f"{gateway.url}/v2/models/slowload/ready", timeout=10)
    assert response.status_code == 503 and response.json()["state"] == "LOADING"
    assert requests.get(f"{gateway.url}/v2/health/ready", timeout=10).status_code == 503
    with grpcclient.InferenceServerClient(gateway.grpc_url) as client:
        assert client.is_model_ready("slowload") is False
        assert client.is_model_ready("echo") is True
        assert client.is_server_ready() is False


def test_unload_during_load_stops_the_loading_worker(gateway):
    # slowload takes 30 s to load; unloading it must not wait for that
    assert index(gateway)[("slowload", "")]["state"] == "LOADING"
    assert workers_of(gateway, "slowload")
    response = requests.post(f"{gateway.url}/v2/repository/models/slowload/unload", timeout=10)
    assert response.status_code == 200, response.text
    assert index(gateway)[("slowload", "")] == {"name": "slowload", "version": "", "state": "UNAVAILABLE", "reason": "unloaded"}
    gateway.wait_for(lambda: workers_of(gateway, "slowload") == [], what="slowload's worker to go")
    # with nothing else pending, the server is ready: an unloaded model is not expected to be
    assert requests.get(f"{gateway.url}/v2/health/ready").status_code == 200


def test_unload_drains_in_flight_requests_then_calls_unload(gateway):
    from tests.test_observability import labels, metrics_of  # here: that module imports this one

    (worker,) = workers_of(gateway, "sleepy1")
    results: list = []
    started = started_in(gateway, worker)
    threads = [sleep_request(gateway, "sleepy1", 1.0, results)]
    gateway.wait_for(started, what="the request to reach the worker")
    threads.append(sleep_request(gateway, "sleepy1", 0.0, results))  # queued behind the first: the only worker is busy
    in_flight = lambda: metrics_of(gateway)["gateway_inflight_requests"][labels(model="sleepy1", version="")]  # noqa: E731
    gateway.wait_for(lambda: in_flight() == 2, what="the second request to queue")
    unload = requests.post(f"{gateway.url}/v2/repository/models/sleepy1/unload", timeout=30)
    for thread in threads:
        thread.join()
    assert unload.status_code == 200
    # the running request and the one queued behind it both finished
    assert [(r.status_code, r.json()["outputs"][0]["data"]) for r in results] == [(200, [worker])] * 2
    assert f"sleepy {worker} unload() called" in gateway.log_text()
    assert workers_of(gateway, "sleepy1") == []
    ready = requests.get(f"{gateway.url}/v2/models/sleepy1/ready")
    assert ready.status_code == 503 and ready.json()["reason"] == "unloaded"
    late: list = []
    sleep_request(gateway, "sleepy1", 0.0, late).join()
    assert late[0].status_code == 503


def test_a_worker_slow_to_unload_is_not_taken_for_hung(gateway):
    # its unload() takes 3 s, twice heartbeat_timeout: a stopping worker must not be pinged
    gateway.wait_ready(["slowunload"])
    (worker,) = workers_of(gateway, "slowunload")
    assert requests.post(f"{gateway.url}/v2/repository/models/slowunload/unload", timeout=30).status_code == 200
    log = gateway.log_text()
    assert f"slowunload {worker} unload() finished" in log
    assert "of model slowunload is hung" not in log
    assert workers_of(gateway, "slowunload") == []


def test_load_rereads_model_settings(gateway, repository):
    answer = lambda: requests.post(  # noqa: E731
        f"{gateway.url}/v2/models/configured/infer", json={"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [0]}]}
    ).json()["outputs"][0]["data"]
    assert answer() == ["one"]
    write_repository(repository, {"configured": {"implementation": "tests.runtimes.Configured", "parameters": {"extra": {"answer": "two"}}}})
    response = requests.post(f"{gateway.url}/v2/repository/models/configured/load", timeout=60)
    assert response.status_code == 200, response.text
    assert answer() == ["two"]
    # a model that was unloaded loads again
    assert requests.post(f"{gateway.url}/v2/repository/models/sleepy1/load", timeout=60).status_code == 200
    assert index(gateway)[("sleepy1", "")]["state"] == "READY"


def test_load_of_a_new_model_and_of_a_broken_one(gateway, repository):
    write_repository(repository, {"newcomer": {"implementation": "tests.runtimes.Echo"}})
    assert requests.post(f"{gateway.url}/v2/repository/models/newcomer/load", timeout=60).status_code == 200
    assert requests.get(f"{gateway.url}/v2/models/newcomer/ready").json()["ready"] is True
    write_repository(repository, {"broken": {"implementation": "tests.runtimes.BrokenLoad"}})
    response = requests.post(f"{gateway.url}/v2/repository/models/broken/load", timeout=60)
    assert response.status_code == 400
    assert "weights.bin is missing" in response.json()["error"]
    shutil.rmtree(repository / "broken")


def repository_call(gateway, model: str, action: str, results: list) -> threading.Thread:
    """POST /v2/repository/models/{model}/{action} in a thread of its own."""
    url = f"{gateway.url}/v2/repository/models/{model}/{action}"
    thread = threading.Thread(target=lambda: results.append(requests.post(url, timeout=60)))
    thread.start()
    return thread


def test_repository_operations_on_one_model_run_in_turn_and_orphan_no_worker(gateway, repository):
    def contested(load_seconds: float) -> None:
        settings = {"implementation": "tests.runtimes.SlowLoad", "parallel_workers": 2, "parameters": {"extra": {"load_seconds": load_seconds}}}
        write_repository(repository, {"contested": settings})

    def settled(state: str, workers: int) -> None:
        assert index(gateway)[("contested", "")]["state"] == state
        assert len(workers_of(gateway, "contested")) == workers
        live_workers = [pid for pid, cmd in children(gateway.process.pid).items() if "-m workers" in cmd]
        assert len(memfds(gateway.process.pid)) == 2 * len(live_workers)  # the arenas of none left behind

    contested(load_seconds=1)
    assert requests.post(f"{gateway.url}/v2/repository/models/contested/load", timeout=60).status_code == 200
    # two reloads at once: each unloads what runs, then loads
    loads: list = []
    for thread in [repository_call(gateway, "contested", "load", loads) for _ in range(2)]:
        thread.join()
    assert [r.status_code for r in loads] == [200, 200], [r.text for r in loads]
    settled("READY", 2)

    # load, unload during that load, load again: each asked for once the one before is under way
    contested(load_seconds=30)
    first: list = []
    first_load = repository_call(gateway, "contested", "load", first)
    gateway.wait_for(lambda: index(gateway)[("contested", "")]["state"] == "LOADING", what="the load to begin")
    unload: list = []
    unload_call = repository_call(gateway, "contested", "unload", unload)
    first_load.join()  # the unload stops it at once: no waiting 30 s
    assert first[0].status_code == 400 and "unloaded meanwhile" in first[0].text, first[0].text
    contested(load_seconds=1)
    last: list = []
    repository_call(gateway, "contested", "load", last).join()
    unload_call.join()
    assert unload[0].status_code == 200, unload[0].text
    assert last[0].status_code == 200, last[0].text
    settled("READY", 2)

    assert requests.post(f"{gateway.url}/v2/repository/models/contested/unload", timeout=60).status_code == 200
    settled("UNAVAILABLE", 0)


def test_a_load_goes_on_when_its_client_goes_away(gateway, repository):
    settings = {"implementation": "tests.runtimes.SlowLoad", "parallel_workers": 2, "parameters": {"extra": {"load_seconds": 2}}}
    write_repository(repository, {"abandoned": settings})
    with pytest.raises(requests.Timeout):
        requests.post(f"{gateway.url}/v2/repository/models/abandoned/load", timeout=0.5)
    gateway.wait_ready(["abandoned"], timeout=30)
    assert len(workers_of(gateway, "abandoned")) == 2
    assert requests.post(f"{gateway.url}/v2/repository/models/abandoned/unload", timeout=60).status_code == 200
    assert workers_of(gateway, "abandoned") == []


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/v2/repository/models/%2E%2E/load", 400, "invalid model name"),
        ("/v2/repository/models/..%2Fconfig/load", 400, "invalid model name"),
        ("/v2/repository/models/.hidden/load", 400, "invalid model name"),
        ("/v2/repository/models/not-there/load", 404, "not in the model repository"),
        ("/v2/repository/models/not-there/unload", 404, "not found"),
    ],
)
def test_repository_refuses_bad_and_unknown_names(gateway, path, status, message):
    session = requests.Session()
    prepared = requests.Request("POST", f"{gateway.url}{path}").prepare()
    prepared.url = f"{gateway.url}{path}"  # keep the escapes as written
    response = session.send(prepared, timeout=10)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


# --- graceful shutdown


def test_sigterm_to_the_process_group_lets_requests_finish_within_the_grace_unloads_and_exits_0(start_gateway, tmp_path):
    # as a shell or Kubernetes signals: the workers get SIGTERM too, and must leave stopping to the gateway
    repository = write_repository(tmp_path, {"sleepy": {"implementation": "tests.runtimes.Sleepy", "parallel_workers": 2}})
    gateway = start_gateway(repository, new_session=True, shutdown_grace=20, drain_delay=0.5).wait_ready()
    workers = workers_of(gateway, "sleepy")
    started = [started_in(gateway, worker) for worker in workers]
    rest: list = []
    rest_call = sleep_request(gateway, "sleepy", 1.5, rest)
    grpc: list = []
    grpc_call = grpc_sleep_request(gateway, 6.0, grpc)  # longer than gRPC's former fixed grace of 5 s
    gateway.wait_for(lambda: all(s() for s in started), what="both requests to reach a worker")
    os.killpg(gateway.process.pid, signal.SIGTERM)
    rest_call.join()
    grpc_call.join()
    assert rest[0].status_code == 200, rest[0].text
    assert grpc[0] in workers, grpc[0]
    assert gateway.process.wait(timeout=30) == 0
    log = gateway.log_text()
    assert all(f"sleepy {worker} unload() called" in log for worker in workers)
    assert "Task was destroyed" not in log and "Traceback" not in log
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert our_shm_segments() == []


def grpc_sleep_request(gateway, seconds: float, results: list) -> threading.Thread:
    """sleep_request over gRPC; the result is the answering worker's process id, or the error."""

    def call():
        seconds_input = grpcclient.InferInput("seconds", [1], "FP32")
        seconds_input.set_data_from_numpy(np.array([seconds], dtype=np.float32))
        with grpcclient.InferenceServerClient(gateway.grpc_url) as client:
            try:
                results.append(int(client.infer("sleepy", [seconds_input]).as_numpy("pid")[0]))
            except InferenceServerException as exc:
                results.append(f"gRPC error {exc.status()}: {exc.message()}")

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """Exited: reaped, or a zombie whose new parent does not reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_after_a_sigkill_the_workers_die_and_the_next_gateway_removes_the_socket_folder(start_gateway, tmp_path):
    repository = write_repository(tmp_path, {"echo": {"implementation": "tests.runtimes.Echo"}})
    killed = start_gateway(repository).wait_ready()
    (worker,) = workers_of(killed, "echo")
    command = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
    socket_folder = Path(command[command.index(b"--endpoint") + 1].decode().removeprefix("ipc://")).parent
    assert socket_folder.is_dir()
    killed.process.kill()
    killed.process.wait()
    wait_until(lambda: gone(worker), "the worker to die with its gateway")
    assert socket_folder.is_dir()  # nobody could remove it
    start_gateway(repository).wait_ready()
    assert not socket_folder.exists()


# --- every path gives the worker's shared memory back


def test_client_gone_mid_request_releases_the_worker(gateway):
    import socket

    array = np.ones(4 * 1024 * 1024, dtype=np.float32)  # 16 MiB: its output lies in shared memory
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [array.size], "parameters": {"binary_data_size": array.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = header + array.tobytes()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", gateway.http_port)) as raw:
            raw.sendall(
                b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nInference-Header-Content-Length: %d\r\n\r\n"
                % (len(body), len(header))
                + body
            )
        # closed before reading the answer
    # echo has one worker: had its output arena stayed lent, this would wait for request_timeout
    assert infer_echo(gateway, 3)["outputs"][0]["data"] == [3]
    assert_serves_large(gateway, "echo")


def test_a_timed_out_request_is_504_and_the_model_recovers(start_gateway, tmp_path):
    """request_timeout bounds a request that sets no deadline: its async predict is cancelled in the
    worker, which serves the next request at once (it is not taken for hung)."""
    models = {"sleepy": {"implementation": "tests.runtimes.Sleepy"}, "stubborn": {"implementation": "tests.runtimes.Stubborn"}}
    repository = write_repository(tmp_path, models)
    gateway = start_gateway(repository, request_timeout=0.5, heartbeat_interval=0.2, heartbeat_timeout=3, restart_backoff=0.1).wait_ready()
    (worker,) = workers_of(gateway, "sleepy")
    results: list = []
    sleep_request(gateway, "sleepy", 3.0, results).join()
    assert results[0].status_code == 504
    assert "did not answer within 0.5 s" in results[0].json()["error"]
    results.clear()
    sleep_request(gateway, "sleepy", 0.0, results).join()
    assert results[0].status_code == 200
    assert workers_of(gateway, "sleepy") == [worker]
    assert "is hung" not in gateway.log_text()
    assert_sleepy_serves_large(gateway, "sleepy", worker)

    # a sync predict that ignores the cancel but gives its request back within heartbeat_timeout
    # (3 s) of the timeout is not hung; one that holds it longer is killed and replaced
    (stubborn,) = workers_of(gateway, "stubborn")
    sleep_request(gateway, "stubborn", 1.5, results).join()
    assert results[-1].status_code == 504
    answers: list = []  # 504 while the worker still sleeps, then an answer from the same worker

    def answered() -> bool:
        sleep_request(gateway, "stubborn", 0, answers).join()
        return answers[-1].status_code == 200

    gateway.wait_for(answered, what="stubborn's worker to give its request back")
    assert answers[-1].json()["outputs"][0]["data"] == [stubborn]
    assert workers_of(gateway, "stubborn") == [stubborn] and "is hung" not in gateway.log_text()
    sleep_request(gateway, "stubborn", 3600, results).join()
    assert results[-1].status_code == 504
    gateway.wait_for(lambda: workers_of(gateway, "stubborn") not in ([], [stubborn]), timeout=30, what="a new stubborn worker")
    assert "of model stubborn is hung; killing it" in gateway.log_text()
    gateway.wait_ready(["stubborn"], timeout=30)
    assert_sleepy_serves_large(gateway, "stubborn", workers_of(gateway, "stubborn")[0])
