"""Per-request cost of a small request: start a gateway from this tree on tests/repository,
send sequential binary REST echoes of 16 FP32 and print p50/p90 latency and the server's
CPU time per call (the gateway process and its workers, from /proc).

    python scripts/small_echo_cost.py --calls 10000 [--env GATEWAY_ACCESS_LOG=false]

To compare two commits, run it in a checkout of each, interleaved, several times.
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from local_gateway import connect, started_gateway

ROOT = Path(__file__).resolve().parent.parent
HEADER_LENGTH = "Inference-Header-Content-Length"


def cpu_seconds(pid: int) -> float:
    """User + system time of a process and its direct children (the workers)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """User + system time of the front-door process, and of its direct children (the workers)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return process_cpu(str(pid)), sum(process_cpu(child) for child in children)


def process_cpu(pid: str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway, e.g. GATEWAY_ACCESS_LOG=false")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    with started_gateway(ROOT, ROOT / "tests" / "repository", extra_env) as gateway:
        connection = connect(gateway.http_port)
        header = json.dumps(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [16], "parameters": {"binary_data_size": 64}}],
                "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
            }
        ).encode()
        body = header + np.arange(16, dtype=np.float32).tobytes()
        headers = {HEADER_LENGTH: str(len(header))}

        def call() -> None:
            connection.request("POST", "/v2/models/echo/infer", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}")

        for _ in range(300):  # warm-up
            call()
        cpu_before, timings = cpu_split(gateway.pid), []
        for _ in range(args.calls):
            started = time.perf_counter()
            call()
            timings.append(time.perf_counter() - started)
        front_door, workers = ((after - before) / args.calls for after, before in zip(cpu_split(gateway.pid), cpu_before))
    timings.sort()
    print(
        f"p50 {statistics.median(timings) * 1e6:.0f} us  p90 {timings[int(0.9 * (len(timings) - 1))] * 1e6:.0f} us  server CPU {(front_door + workers) * 1e6:.0f} us/call"
        f" (front door {front_door * 1e6:.0f}, workers {workers * 1e6:.0f})"
    )


if __name__ == "__main__":
    main()
