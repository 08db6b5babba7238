"""Latency of interactive requests while bulk requests saturate the model: priority levels at work.

Starts a gateway from this tree with one model of one worker whose call takes a fixed
--service-ms (tests.runtimes.SlowEcho: it sleeps, so the figures do not depend on the CPU
left by other processes). --bulk-clients REST clients keep its queue full of bulk requests;
one interactive client sends --samples requests, one after the other, and the script prints
the interactive latency percentiles twice: with every request at the default level, then
with the bulk requests at `priority` 2 (the interactive ones keep the default level, 1).

    python scripts/priority_latency.py [--bulk-clients 8] [--service-ms 20] [--samples 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import requests
from local_gateway import started_gateway

ROOT = Path(__file__).resolve().parent.parent


def body(delay: float, priority: int) -> dict:
    parameters = {"delay": delay, **({"priority": priority} if priority else {})}
    return {"parameters": parameters, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def measure(url: str, bulk_clients: int, delay: float, samples: int, bulk_priority: int) -> tuple[list[float], int]:
    """(interactive latencies in seconds, bulk requests served meanwhile)."""
    stop = threading.Event()
    bulk_served = [0]

    def bulk() -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(f"{url}/v2/models/work/infer", json=body(delay, bulk_priority), timeout=120)
            response.raise_for_status()
            bulk_served[0] += 1

    threads = [threading.Thread(target=bulk, daemon=True) for _ in range(bulk_clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the queue fills
    session, latencies = requests.Session(), []
    for _ in range(samples):
        started = time.perf_counter()
        response = session.post(f"{url}/v2/models/work/infer", json=body(delay, 0), timeout=120)
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
        time.sleep(delay)  # not back to back: a user, not a second bulk client
    stop.set()
    for thread in threads:
        thread.join()
    return latencies, bulk_served[0]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk-clients", type=int, default=8)
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    delay = args.service_ms / 1000
    with tempfile.TemporaryDirectory(prefix="priority-latency-") as folder:
        repository = Path(folder)
        (repository / "work").mkdir()
        (repository / "work" / "model-settings.json").write_text(json.dumps({"name": "work", "implementation": "tests.runtimes.SlowEcho"}))
        with started_gateway(ROOT, repository, access_log="false") as gateway:
            url = f"http://127.0.0.1:{gateway.http_port}"
            print(f"one worker, {args.service_ms:g} ms per call, {args.bulk_clients} bulk clients, {args.samples} interactive requests")
            print(f"{'bulk requests at':<28}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}{'bulk/s':>8}")
            for label, bulk_priority in (("the default level (FIFO)", 0), ("priority 2 (below)", 2)):
                started = time.monotonic()
                latencies, bulk_served = measure(url, args.bulk_clients, delay, args.samples, bulk_priority)
                rate = bulk_served / (time.monotonic() - started)
                figures = [percentile(latencies, f) * 1000 for f in (0.5, 0.9, 0.99)] + [max(latencies) * 1000]
                print(f"{label:<28}" + "".join(f"{f:>8.1f}" for f in figures) + f"{rate:>8.1f}")


if __name__ == "__main__":
    main()
