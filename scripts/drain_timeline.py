#!/usr/bin/env python3
"""The timeline of a gateway stopping on SIGTERM under load.

Starts a gateway (from this checkout, or from `--source DIR`) on free local ports,
serving an echo model and a model that sleeps as long as its input says. It puts
REST and gRPC load on it (`--rest-clients` keep-alive sessions and `--grpc-clients`
channels, each sending one small echo request after the other), starts requests that
last `--medium-request` and `--long-request` seconds over both protocols, then sends
SIGTERM and records, relative to that signal:

- when `GET /v2/health/ready` (a new connection every 25 ms) first answered 503,
  and when gRPC ServerReady (one channel) first answered false;
- when a new connection to the REST port and to the gRPC port was first refused
  (the listeners closed);
- when the process exited;
- every request's outcome (status, or how its connection failed), counted by phase:
  before the signal, between the signal and the REST listener closing, after that.

Needs the test extra (requests, tritonclient[grpc]). Only 127.0.0.1 is used. A run
stops by itself: the gateway is killed if it has not exited `--exit-timeout` seconds
after the signal.

    python scripts/drain_timeline.py --drain-delay 3 --grace 5
    python scripts/drain_timeline.py --source /path/to/another/checkout --grace 5   # before/after
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import requests
import tritonclient.grpc as grpcclient
from ports import free_port, refused
from tritonclient.utils import InferenceServerException

HERE = Path(__file__).resolve().parent.parent
MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo"},
    "sleepy": {"implementation": "tests.runtimes.Sleepy", "parallel_workers": 4},
}


def connection_failure(exc: Exception) -> str:
    """Name how a REST request's connection failed: refused (listener closed) or cut (in flight)."""
    text = repr(exc)
    if "Connection refused" in text or "NewConnectionError" in text:
        return "refused"
    if "RemoteDisconnected" in text or "reset" in text.lower() or "aborted" in text.lower():
        return "cut"
    return type(exc).__name__


class Timeline:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, float] = {}
        self.outcomes: list[tuple[str, str, float, float, str, str]] = []  # protocol, kind, sent, done, outcome, detail
        self.t0 = float("inf")  # when SIGTERM was sent (perf_counter)

    def first(self, name: str) -> None:
        with self.lock:
            self.events.setdefault(name, time.perf_counter())

    def record(self, protocol: str, kind: str, sent: float, outcome: str, detail: str = "") -> None:
        with self.lock:
            self.outcomes.append((protocol, kind, sent, time.perf_counter(), outcome, detail))


def start_gateway(args, repository: Path, log) -> tuple[subprocess.Popen, dict]:
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    env = {
        **os.environ,
        "PYTHONPATH": str(args.source),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_HTTP_PORT": str(ports["http"]),
        "GATEWAY_GRPC_PORT": str(ports["grpc"]),
        "GATEWAY_METRICS_PORT": str(ports["metrics"]),
        "GATEWAY_SHUTDOWN_GRACE": str(args.grace),
        "GATEWAY_ACCESS_LOG": "false",
    }
    if args.drain_delay is not None:
        env["GATEWAY_DRAIN_DELAY"] = str(args.drain_delay)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "start", "--config", str(repository)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=args.source,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{ports['http']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}; see its log")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return process, ports
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the gateway was not ready within 60 s")


def echo_body() -> dict:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}


def rest_client(url: str, timeline: Timeline, stop: threading.Event) -> None:
    session = requests.Session()
    while not stop.is_set():
        sent = time.perf_counter()
        try:
            status = str(session.post(f"{url}/v2/models/echo/infer", json=echo_body(), timeout=30).status_code)
        except requests.RequestException as exc:
            status = connection_failure(exc)
        timeline.record("rest", "echo", sent, status)
        if status == "refused":
            time.sleep(0.05)


def grpc_echo(client: grpcclient.InferenceServerClient) -> None:
    tensor = grpcclient.InferInput("x", [4], "FP32")
    tensor.set_data_from_numpy(np.arange(4, dtype=np.float32))
    client.infer("echo", [tensor], client_timeout=30)


def grpc_client(address: str, timeline: Timeline, stop: threading.Event) -> None:
    client = grpcclient.InferenceServerClient(address)
    while not stop.is_set():
        sent = time.perf_counter()
        try:
            grpc_echo(client)
            status = "OK"
        except InferenceServerException as exc:
            status = str(exc.status()).removeprefix("StatusCode.")
        timeline.record("grpc", "echo", sent, status)
        if status != "OK":
            time.sleep(0.05)


def sleep_rest(url: str, seconds: float, timeline: Timeline) -> None:
    body = {"inputs": [{"name": "seconds", "datatype": "FP32", "shape": [1], "data": [seconds]}]}
    sent = time.perf_counter()
    try:
        response = requests.post(f"{url}/v2/models/sleepy/infer", json=body, timeout=seconds + 60)
        status, detail = str(response.status_code), response.json().get("error", "")
    except requests.RequestException as exc:
        status, detail = connection_failure(exc), repr(exc)
    timeline.record("rest", f"sleep {seconds:g} s", sent, status, detail)


def sleep_grpc(address: str, seconds: float, timeline: Timeline) -> None:
    tensor = grpcclient.InferInput("seconds", [1], "FP32")
    tensor.set_data_from_numpy(np.array([seconds], dtype=np.float32))
    sent = time.perf_counter()
    try:
        grpcclient.InferenceServerClient(address).infer("sleepy", [tensor], client_timeout=seconds + 60)
        status, detail = "OK", ""
    except InferenceServerException as exc:
        status, detail = str(exc.status()).removeprefix("StatusCode."), exc.message()
    timeline.record("grpc", f"sleep {seconds:g} s", sent, status, detail)


def probe(ports: dict, timeline: Timeline, stop: threading.Event) -> None:
    """New connections every 25 ms: ready over REST, and whether each listener still accepts."""
    url = f"http://127.0.0.1:{ports['http']}/v2/health/ready"
    while not stop.is_set():
        if time.perf_counter() > timeline.t0:
            try:
                if requests.get(url, timeout=2, headers={"Connection": "close"}).status_code == 503:
                    timeline.first("REST ready answered 503")
            except requests.ConnectionError:
                timeline.first("REST listener closed (connection refused)")
            if refused(ports["grpc"]):
                timeline.first("gRPC listener closed (connection refused)")
        time.sleep(0.025)


def grpc_ready_probe(address: str, timeline: Timeline, stop: threading.Event) -> None:
    client = grpcclient.InferenceServerClient(address)
    while not stop.is_set():
        if time.perf_counter() > timeline.t0:
            try:
                if not client.is_server_ready(client_timeout=2):
                    timeline.first("gRPC ServerReady answered false")
            except InferenceServerException:
                pass
        time.sleep(0.025)


def report(timeline: Timeline, exited: float) -> dict:
    t0 = timeline.t0
    events = {name: round(at - t0, 3) for name, at in sorted(timeline.events.items(), key=lambda item: item[1])}
    events["process exited"] = round(exited - t0, 3)
    closed = timeline.events.get("REST listener closed (connection refused)", float("inf"))
    phases: dict[str, Counter] = {}
    long_requests = {}
    for protocol, kind, _sent, done, outcome, detail in timeline.outcomes:
        if kind != "echo":
            long_requests[f"{protocol} {kind}"] = {"outcome": outcome, "answered_at": round(done - t0, 3), "detail": detail}
            continue
        phase = "before SIGTERM" if done < t0 else "SIGTERM .. REST listener closed" if done < closed else "after the REST listener closed"
        phases.setdefault(f"{protocol}: {phase}", Counter())[outcome] += 1
    return {"events_s_after_sigterm": events, "echo_requests_by_phase": {k: dict(v) for k, v in phases.items()}, "long_requests": long_requests}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=HERE, help="checkout whose gateway runs (default: this one)")
    parser.add_argument("--drain-delay", type=float, default=None, help="GATEWAY_DRAIN_DELAY (default: the gateway's; omit for a gateway without it)")
    parser.add_argument("--grace", type=float, default=5.0, help="GATEWAY_SHUTDOWN_GRACE (default 5)")
    parser.add_argument("--rest-clients", type=int, default=4)
    parser.add_argument("--grpc-clients", type=int, default=2)
    parser.add_argument("--medium-request", type=float, default=None, help="seconds; default: half the grace (should succeed)")
    parser.add_argument("--long-request", type=float, default=None, help="seconds; default: drain delay + grace + 10 (outlasts the grace)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--exit-timeout", type=float, default=90.0)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.source = args.source.resolve()
    medium = args.medium_request if args.medium_request is not None else args.grace / 2
    long = args.long_request if args.long_request is not None else (args.drain_delay or 0) + args.grace + 10

    timeline, stop = Timeline(), threading.Event()
    with tempfile.TemporaryDirectory(prefix="drain-timeline-") as folder:
        repository = Path(folder)
        for name, settings in MODELS.items():
            (repository / name).mkdir()
            (repository / name / "model-settings.json").write_text(json.dumps({"name": name, **settings}))
        log_path = repository / "gateway.log"
        with open(log_path, "wb") as log:
            process, ports = start_gateway(args, repository, log)
        url, address = f"http://127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}"
        threads = [threading.Thread(target=rest_client, args=(url, timeline, stop)) for _ in range(args.rest_clients)]
        threads += [threading.Thread(target=grpc_client, args=(address, timeline, stop)) for _ in range(args.grpc_clients)]
        threads += [threading.Thread(target=probe, args=(ports, timeline, stop)), threading.Thread(target=grpc_ready_probe, args=(address, timeline, stop))]
        for thread in threads:
            thread.start()
        time.sleep(args.warmup)
        sleepers = [
            threading.Thread(target=sleep_rest, args=(url, medium, timeline)),
            threading.Thread(target=sleep_grpc, args=(address, medium, timeline)),
            threading.Thread(target=sleep_rest, args=(url, long, timeline)),
            threading.Thread(target=sleep_grpc, args=(address, long, timeline)),
        ]
        for thread in sleepers:
            thread.start()
        time.sleep(1.0)  # the sleeping requests reach their workers
        timeline.t0 = time.perf_counter()
        os.killpg(process.pid, signal.SIGTERM)  # as Kubernetes or a shell: the whole group
        try:
            process.wait(args.exit_timeout)
        except subprocess.TimeoutExpired:
            print(f"the gateway had not exited {args.exit_timeout} s after SIGTERM: killed", file=sys.stderr)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        exited = time.perf_counter()
        time.sleep(0.5)
        stop.set()
        for thread in threads + sleepers:
            thread.join()
        result = report(timeline, exited)
        result["settings"] = {
            "drain_delay": args.drain_delay,
            "shutdown_grace": args.grace,
            "medium_request_s": medium,
            "long_request_s": long,
            "exit_code": process.returncode,
        }
        result["gateway_log_tracebacks"] = log_path.read_text(errors="replace").count("Traceback")

    print(f"SIGTERM at 0 s; drain_delay {args.drain_delay}, shutdown_grace {args.grace} s, exit code {process.returncode}")
    for name, at in result["events_s_after_sigterm"].items():
        print(f"  {at:8.3f} s  {name}")
    print("echo requests (answers by outcome):")
    for phase, counts in result["echo_requests_by_phase"].items():
        print(f"  {phase}: {counts}")
    print("long requests:")
    for name, outcome in result["long_requests"].items():
        detail = f" ({outcome['detail']})" if outcome["detail"] else ""
        print(f"  {name}: {outcome['outcome']} at {outcome['answered_at']} s{detail}")
    print(f"tracebacks in the gateway's log: {result['gateway_log_tracebacks']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
