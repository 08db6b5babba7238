"""Two source trees of the gateway, measured in one run, alternating: small requests and a 1 MiB echo.

    git worktree add /tmp/before <commit>
    python scripts/before_after.py --before /tmp/before --after . --rounds 5

Each round starts a gateway from each tree in turn (`PYTHONPATH=<tree>`, on the tree's
tests/repository, ports picked by the OS) and measures, with the same client:

- small: sequential binary REST echoes of 16 FP32 (`--calls`): p50 latency, and the server's
  CPU time per call (the gateway process and its workers, from /proc, and each of the two);
- small c=8: loadgen.py's closed loop, REST JSON, 16 FP32, 8 in flight: requests per second;
- 1 MiB: sequential binary REST echoes of 1 MiB (echo_latency.py's client): p50 latency;
- c=64: a second gateway from the tree, on benchmark.py's row-sum models (one worker each),
  loadgen at 64 in flight, REST JSON: requests/s unbatched (`rowsum`) and with adaptive
  batching (`rowsum-batched`, max_batch_size 32), and the batched model's mean batch size
  (requests per call, from the gateway's gateway_batch_size histogram).

It prints the median of each figure over the rounds, per tree, and their ratio after/before.
The order of the trees alternates between rounds, so that a machine getting busier or
quieter during the run weighs on both alike.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchmark  # noqa: E402
import echo_latency  # noqa: E402
import loadgen  # noqa: E402
import numpy as np  # noqa: E402
import small_echo_cost  # noqa: E402
from local_gateway import connect, started_gateway  # noqa: E402

FIGURES = {
    "small_p50_us": "small: p50 latency (us)",
    "small_cpu_us": "small: server CPU per call (us)",
    "small_frontdoor_cpu_us": "small: front door's CPU per call (us)",
    "small_worker_cpu_us": "small: workers' CPU per call (us)",
    "small_c8_rps": "small, 8 in flight: requests/s",
    "mib_p50_ms": "1 MiB echo: p50 latency (ms)",
    "rowsum_c64_rps": "row sum, 64 in flight: requests/s",
    "batched_c64_rps": "row sum batched, 64 in flight: requests/s",
    "batched_c64_batch": "row sum batched, 64 in flight: requests per call",
}


def small_calls(port: int, calls: int) -> tuple[float, list[float]]:
    connection = connect(port)
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [16], "parameters": {"binary_data_size": 64}}],
            "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
        }
    ).encode()
    body = header + np.arange(16, dtype=np.float32).tobytes()
    headers = {small_echo_cost.HEADER_LENGTH: str(len(header))}
    timings = []
    for i in range(300 + calls):
        started = time.perf_counter()
        connection.request("POST", "/v2/models/echo/infer", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}")
        if i >= 300:
            timings.append(time.perf_counter() - started)
    connection.close()
    return statistics.median(timings), timings


def measure(tree: Path, calls: int, rowsum_repository: Path) -> dict[str, float]:
    with started_gateway(tree, tree / "tests" / "repository") as gateway:
        port = gateway.http_port
        cpu_before = small_echo_cost.cpu_split(gateway.pid)
        p50, _ = small_calls(port, calls)
        front_door, workers = ((after - before) / (calls + 300) for after, before in zip(small_echo_cost.cpu_split(gateway.pid), cpu_before))
        concurrent = loadgen.run(
            url=f"http://127.0.0.1:{port}",
            model="echo",
            protocol="rest-json",
            concurrency=8,
            duration=4,
            warmup=1,
            shape=[16],
            datatype="FP32",
            input_name="x",
        )
        mib = echo_latency.measure(f"127.0.0.1:{port}", "echo", 1, 40)
    return {**small_figures(p50, front_door, workers, concurrent, mib), **c64_figures(tree, rowsum_repository)}


def batch_sizes(metrics_port: int, model: str) -> tuple[float, float]:
    """(requests, calls) the model's gateway_batch_size histogram has counted."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    found = {}
    for part in ("sum", "count"):
        match = re.search(rf'^gateway_batch_size_{part}{{[^}}]*model="{re.escape(model)}"[^}}]*}} (\S+)$', text, re.M)
        found[part] = float(match.group(1)) if match else 0.0
    return found["sum"], found["count"]


def c64_figures(tree: Path, repository: Path) -> dict[str, float]:
    figures = {}
    with started_gateway(tree, repository, benchmark.BLAS_ENV) as gateway:
        for model, key in (("rowsum", "rowsum_c64_rps"), ("rowsum-batched", "batched_c64_rps")):
            before = batch_sizes(gateway.metrics_port, model)
            result = loadgen.run(url=f"http://127.0.0.1:{gateway.http_port}", model=model, protocol="rest-json", concurrency=64, duration=4, warmup=1)
            requests, calls = (after - earlier for after, earlier in zip(batch_sizes(gateway.metrics_port, model), before))
            figures[key] = result["requests_per_s"]
            if model == "rowsum-batched":
                figures["batched_c64_batch"] = requests / calls
    return figures


def small_figures(p50: float, front_door: float, workers: float, concurrent: dict, mib: dict) -> dict[str, float]:
    return {
        "small_p50_us": p50 * 1e6,
        "small_cpu_us": (front_door + workers) * 1e6,
        "small_frontdoor_cpu_us": front_door * 1e6,
        "small_worker_cpu_us": workers * 1e6,
        "small_c8_rps": concurrent["requests_per_s"],
        "mib_p50_ms": mib["p50_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--after", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000, help="sequential small calls per round")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    rowsum_repository = Path(tempfile.mkdtemp(prefix="before-after-")) / "rowsum"
    benchmark.write_mlmodel_repository(rowsum_repository, "gateway", ["rowsum", "rowsum-batched"], {})
    for round_ in range(args.rounds):
        order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
        for name in order:
            figures = measure(trees[name], args.calls, rowsum_repository)
            results[name].append(figures)
            print(f"round {round_ + 1} {name}: " + "  ".join(f"{key} {value:.1f}" for key, value in figures.items()), flush=True)
    print(f"\nmedians of {args.rounds} rounds (before: {trees['before']}, after: {trees['after']})")
    print("| figure | before | after | after / before |\n|---|---|---|---|")
    summary = {}
    for key, label in FIGURES.items():
        before = statistics.median(r[key] for r in results["before"])
        after = statistics.median(r[key] for r in results["after"])
        summary[key] = {"before": before, "after": after}
        print(f"| {label} | {before:.1f} | {after:.1f} | {after / before:.3f} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rounds": results, "medians": summary}, indent=2))
    shutil.rmtree(rowsum_repository.parent)


if __name__ == "__main__":
    main()
