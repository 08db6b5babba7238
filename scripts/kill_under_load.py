"""kill -9 of workers under steady load: how many requests fail, with and without the retry.

Starts a gateway from this tree with one model of two workers (tests.runtimes.SlowEcho, each
call --service-ms long, a 64 KiB tensor each way), keeps it busy with --clients REST and as
many gRPC (tritonclient) clients, kills a worker with SIGKILL every --every seconds, --kills
times, and prints the requests served, failed and run again; first with the model's default
(`retry_on_worker_death` true), then with it false (the gateway before issue 18: one failure
per request in flight at each kill).

    python scripts/kill_under_load.py [--clients 2] [--kills 5] [--every 3] [--service-ms 50]
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
from ports import free_port
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parent.parent
MODEL = "steady"


def workers(gateway_pid: int) -> list[int]:
    """The model's worker processes (children of the gateway started with `-m workers`)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == gateway_pid and f"--identity {MODEL}:" in cmdline:
            found.append(int(entry))
    return found


def run(retry: bool, args: argparse.Namespace) -> tuple[int, Counter, float]:
    """(requests served, failures by kind, requests run again) for one gateway."""
    with tempfile.TemporaryDirectory(prefix="kill-under-load-") as folder:
        (Path(folder) / MODEL).mkdir()
        settings = {"name": MODEL, "implementation": "tests.runtimes.SlowEcho", "parallel_workers": 2, "retry_on_worker_death": retry}
        (Path(folder) / MODEL / "model-settings.json").write_text(json.dumps(settings))
        http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_GRPC_PORT": str(grpc_port),
            "GATEWAY_METRICS_PORT": str(metrics_port),
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_RESTART_BACKOFF": "0.1",
        }
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "start", "--config", folder], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{http_port}"
        try:
            wait_ready(url)
            return load_and_kill(gateway.pid, url, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{metrics_port}/metrics", args)
        finally:
            gateway.terminate()
            gateway.wait()


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise SystemExit("the model did not become ready")


def load_and_kill(gateway_pid: int, url: str, grpc_url: str, metrics_url: str, args: argparse.Namespace) -> tuple[int, Counter, float]:
    x = np.arange(16384, dtype=np.float32).reshape(4, -1)  # 64 KiB: through shared memory
    delay = str(args.service_ms / 1000)
    body = {"parameters": {"delay": delay}, "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    stop, served, failures, lock = threading.Event(), [0], Counter(), threading.Lock()

    def count(failure: str | None) -> None:
        with lock:
            if failure is None:
                served[0] += 1
            else:
                failures[failure] += 1

    def rest_client() -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(f"{url}/v2/models/{MODEL}/infer", json=body, timeout=60)
            count(None if response.status_code == 200 else f"REST {response.status_code}")

    def grpc_client() -> None:
        client = grpcclient.InferenceServerClient(grpc_url)
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        while not stop.is_set():
            try:
                client.infer(MODEL, [tensor], parameters={"delay": delay})
                count(None)
            except InferenceServerException as exc:
                count(f"gRPC {exc.status()}")
        client.close()

    threads = [threading.Thread(target=target) for target in [rest_client] * args.clients + [grpc_client] * args.clients]
    for thread in threads:
        thread.start()
    try:
        for _ in range(args.kills):
            time.sleep(args.every)
            os.kill(workers(gateway_pid)[0], signal.SIGKILL)
            deadline = time.monotonic() + 30
            while len(workers(gateway_pid)) < 2 and time.monotonic() < deadline:  # the replacement
                time.sleep(0.05)
        time.sleep(args.every)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    retried = sum(
        float(line.rsplit(" ", 1)[1]) for line in requests.get(metrics_url, timeout=10).text.splitlines() if line.startswith("gateway_request_retries_total{")
    )
    return served[0], failures, retried


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2, help="REST clients, and as many gRPC clients")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--service-ms", type=float, default=50.0)
    args = parser.parse_args()
    print(f"2 workers, {args.service_ms:g} ms per call, {args.clients} REST + {args.clients} gRPC clients, {args.kills} kills, one every {args.every:g} s")
    print(f"{'retry_on_worker_death':<24}{'served':>8}{'failed':>8}{'run again':>11}  failures")
    for retry in (True, False):
        served, failures, retried = run(retry, args)
        print(f"{str(retry).lower():<24}{served:>8}{sum(failures.values()):>8}{retried:>11.0f}  {dict(failures) or '-'}")


if __name__ == "__main__":
    main()
