#!/usr/bin/env python3
"""CPU per request of the gateway's front door and of its model worker, at a steady rate below
capacity (or closed-loop at a concurrency), for the benchmark's small `rowsum` model (16 FP32 in,
their sum out): per-process CPU from /proc, over the measured window only.

    python scripts/cpu_at_rate.py --protocol grpc --concurrency 16 --rate 1200
    python scripts/cpu_at_rate.py --protocol rest-json --concurrency 1
    python scripts/cpu_at_rate.py --protocol grpc --concurrency 16 --rate 1200 --ablate canned

A fixed rate keeps the work per wake-up the same whichever code runs, so two trees (or two
ablations) compare per request, which throughput on a shared machine does not. `--ablate` cuts
the gRPC front door's path short, to see what each part costs (the gateway's code is patched in
the started process only, never on disk): `canned`, ModelInfer answers a response made once
(gRPC and our RPC wrapper, nothing else); `parse`, it also parses the request into our internal
form. `--pin CPU` runs the gateway's processes on that CPU and the client on the other(s).
`--cprofile FILE` runs the front-door process under cProfile and writes its profile there when the
gateway stops (read it per request with scripts/profile_per_request.py; cProfile slows the process,
so the CPU figures of that run are not the gateway's own).
Everything listens on 127.0.0.1, ports from the OS; the gateway is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark import free_ports, write_mlmodel_repository  # noqa: E402

# run in the gateway's process before `gateway start`: ModelInfer cut short (see --ablate)
ABLATE = """
import sys
from gateway.frontdoor.grpc import server
from gateway.protocol.generated import inference_pb2 as pb
from gateway import cli

CANNED = pb.ModelInferResponse(model_name="rowsum", model_version="1", outputs=[pb.ModelInferResponse.InferOutputTensor(name="output", datatype="FP32", shape=[1, 1])], raw_output_contents=[bytes(4)]).SerializeToString()
parse = sys.argv.pop(1) == "parse"

async def ModelInfer(self, request, context):  # named as the RPC: counted and checked as it
    if parse:
        await self._parse(request, context)
    return CANNED

server.InferenceServicer.ModelInfer = server.unary(ModelInfer)
cli.main(sys.argv[1:])
"""


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU of every thread of a process."""
    user = system = 0
    for thread in os.listdir(f"/proc/{pid}/task"):
        fields = Path(f"/proc/{pid}/task/{thread}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def used(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


def cpu_of(pids: list[int]) -> tuple[float, float]:
    times = [cpu_seconds(pid) for pid in pids]
    return sum(user for user, _ in times), sum(system for _, system in times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree of the gateway to run (default: this one)")
    parser.add_argument("--protocol", default="grpc", choices=("rest-json", "rest-binary", "grpc"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0, help="requests per second (0: closed loop, as fast as it answers)")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ablate", choices=("canned", "parse"), help="cut the gRPC front door's path short (see above)")
    parser.add_argument("--pin", type=int, help="CPU for the gateway's processes; the client gets the others")
    parser.add_argument("--batched", action="store_true", help="the model with adaptive batching (max_batch_size 32): rowsum-batched")
    parser.add_argument("--access-log", action="store_true", help="with the access log on (the default of a gateway; off here)")
    parser.add_argument("--cprofile", type=Path, help="profile the front-door process with cProfile into this file (see above)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cpu-at-rate-"))
    http_port, grpc_port, metrics_port = free_ports(3)
    model = "rowsum-batched" if args.batched else "rowsum"
    settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port, "access_log": args.access_log}
    write_mlmodel_repository(root / "repo", "gateway", [model], settings)
    command = [sys.executable] if args.cprofile is None else [sys.executable, "-m", "cProfile", "-o", str(args.cprofile.resolve())]
    if args.ablate is None:
        command += ["-m", "gateway"]
    else:  # a script file rather than -c, which cProfile does not take
        (root / "ablated.py").write_text(ABLATE)
        command += [str(root / "ablated.py"), args.ablate]
    command += ["start", "--config", str(root / "repo")]
    client_cpus = None
    if args.pin is not None:
        command = ["taskset", "-c", str(args.pin), *command]
        client_cpus = sorted(os.sched_getaffinity(0) - {args.pin})
    gateway = subprocess.Popen(
        command, env={**os.environ, "PYTHONPATH": str(args.tree)}, cwd=args.tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/{model}/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if gateway.poll() is not None or time.monotonic() > deadline:
                print("the gateway did not become ready", file=sys.stderr)
                return 1
            time.sleep(0.1)
        workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(gateway.pid)], capture_output=True, text=True).stdout.split()]
        load = [sys.executable, str(ROOT / "scripts" / "loadgen.py"), "--model", model, "--protocol", args.protocol, "--shape", "16"]
        load += ["--concurrency", str(args.concurrency), "--duration", str(args.duration), "--warmup", "1.5"]
        load += ["--url", f"http://127.0.0.1:{http_port}", "--grpc-url", f"127.0.0.1:{grpc_port}"]
        if args.rate:
            load += ["--rate", str(args.rate)]
        what = (
            f"{model} {args.protocol} c{args.concurrency}"
            + (f" at {args.rate:g}/s" if args.rate else "")
            + (f", ablated: {args.ablate}" if args.ablate else "")
        )
        for _ in range(args.rounds):
            client = subprocess.Popen(
                load, stdout=subprocess.PIPE, text=True, preexec_fn=(lambda: os.sched_setaffinity(0, client_cpus)) if client_cpus else None
            )
            time.sleep(1.5)
            door_before, worker_before = cpu_of([gateway.pid]), cpu_of(workers)
            time.sleep(args.duration)
            door = used(door_before, cpu_of([gateway.pid]))
            worker = used(worker_before, cpu_of(workers))
            output = client.communicate()[0]
            rate = re.search(r"throughput: ([\d.]+) infer/s", output)
            p50 = re.search(r"p50 ([\d.]+)", output)
            if rate is None or p50 is None:
                print(output, file=sys.stderr)
                return 1
            per_request = 1e6 / (float(rate.group(1)) * args.duration)

            def split(user_system: tuple[float, float]) -> str:
                user, system = user_system
                return f"{(user + system) * per_request:,.0f} µs (user {user * per_request:,.0f}, system {system * per_request:,.0f})"

            print(
                f"{what}: {float(rate.group(1)):,.0f} infer/s, p50 {p50.group(1)} ms, CPU per request: front door {split(door)}, worker {split(worker)}",
                flush=True,
            )
        return 0
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGINT)
        gateway.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
