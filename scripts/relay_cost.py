"""The relay hop's cost: a gateway from this tree with frontdoor_workers 2 on tests/repository,
the same sequential binary REST echoes sent once over a connection that the main process (front
door 1) accepted and once over one the relay front door (2) accepted; for each, p50/p90 latency
and the CPU time per call of the main process, the relay front door and the workers (from /proc).

    python scripts/relay_cost.py --calls 5000 --large-calls 300

Small: 16 FP32 (travels inline everywhere). Large: 1 MiB FP32 (the workers' shared memory; between
a relay front door and the main process, inline ZeroMQ frames). Which process accepted a
connection is told by whose CPU time its warm-up calls raised.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from local_gateway import connect, started_gateway
from small_echo_cost import process_cpu

ROOT = Path(__file__).resolve().parent.parent
HEADER_LENGTH = "Inference-Header-Content-Length"


def processes(main: int) -> tuple[str, list[str]]:
    """(the relay front door's pid, the workers' pids): the main process's children."""
    relay, workers = None, []
    for child in subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True).stdout.split():
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"gateway.relay" in command:
            relay = child
        else:
            workers.append(child)
    if relay is None:
        raise SystemExit("no relay front door runs")
    return relay, workers


def echo_body(elements: int) -> tuple[bytes, dict]:
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [elements], "parameters": {"binary_data_size": 4 * elements}}],
            "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + np.arange(elements, dtype=np.float32).tobytes(), {HEADER_LENGTH: str(len(header))}


def caller(connection: http.client.HTTPConnection, elements: int):
    body, headers = echo_body(elements)

    def call() -> None:
        connection.request("POST", "/v2/models/echo/infer", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200 or len(answer) < 4 * elements:
            raise SystemExit(f"HTTP {response.status}")

    return call


def on_process(port: int, main: str, relay: str, want_relay: bool) -> http.client.HTTPConnection:
    """A kept-alive connection accepted by the relay front door (or by the main process)."""
    for _ in range(100):
        connection = connect(port)
        call = caller(connection, 16)
        before = process_cpu(relay)
        for _ in range(300):
            call()
        if (process_cpu(relay) - before > 0.02) == want_relay:  # 300 calls through a front door cost it far more
            return connection
        connection.close()
    raise SystemExit("no connection landed where wanted")


def measure(call, calls: int, main: str, relay: str, workers: list[str]) -> dict:
    for _ in range(min(300, calls)):  # warm-up
        call()
    cpu = [process_cpu(main), process_cpu(relay), sum(process_cpu(w) for w in workers)]
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    after = [process_cpu(main), process_cpu(relay), sum(process_cpu(w) for w in workers)]
    timings.sort()
    per_call = [(a - b) / calls * 1e6 for a, b in zip(after, cpu)]
    return {
        "p50": statistics.median(timings) * 1e6,
        "p90": timings[int(0.9 * (len(timings) - 1))] * 1e6,
        "main": per_call[0],
        "relay": per_call[1],
        "workers": per_call[2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="small calls per side")
    parser.add_argument("--large-calls", type=int, default=300, help="1 MiB calls per side")
    args = parser.parse_args()
    with started_gateway(ROOT, ROOT / "tests" / "repository", frontdoor_workers="2", access_log="false") as gateway:
        http_port, main_pid = gateway.http_port, str(gateway.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                relay, workers = processes(gateway.pid)
                break
            except SystemExit:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        connect(http_port).close()
        rows = []
        for label, want_relay in (("main (front door 1)", False), ("relayed (front door 2)", True)):
            connection = on_process(http_port, main_pid, relay, want_relay)
            for size, elements, calls in (("16 FP32", 16, args.calls), ("1 MiB", 256 * 1024, args.large_calls)):
                rows.append((label, size, measure(caller(connection, elements), calls, main_pid, relay, workers)))
            connection.close()
    print("| accepted by | echo | p50 µs | p90 µs | CPU µs/call: main | relay front door | workers |")
    print("|---|---|---|---|---|---|---|")
    for label, size, r in rows:
        print(f"| {label} | {size} | {r['p50']:.0f} | {r['p90']:.0f} | {r['main']:.0f} | {r['relay']:.0f} | {r['workers']:.0f} |")


if __name__ == "__main__":
    main()
