"""A longer fuzz and soak run against a gateway of its own: malformed and valid requests at once.

    python scripts/fuzz_soak.py --requests 20000 --clients 4 --out soak.json

Starts a gateway (this checkout's code) on free local ports with the fuzz models of
tests/fuzzing.py (an echo, an echo with declared inputs, one with a single BYTES input, an echo
with batching on), then runs the three front doors at the same time, each with `--clients` threads
sending `--requests` requests: the malformed cases of tests/fuzzing.py (the same cases as the
tests, for the same seed, and many more of them) with a `--valid-share` of valid requests among
them, whose answers are checked: small JSON ones and large binary ones (64 KiB, through the
workers' shared memory).

While it runs it polls readiness every 50 ms and samples every second the resident memory (RSS)
of the front door and of each worker. At the end it prints, and writes as JSON to `--out`:
- counts by status per front door (REST: HTTP status; gRPC: status code), with the cases that got
  what a client's fault must never get (a 5xx, INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED) and valid
  requests answered wrongly;
- worker restarts (the `gateway_worker_restarts_total` metric) and whether the worker pids changed;
- the times readiness was not 200, the longest gap between two ready answers and the slowest
  readiness answer (on a busy machine both include this script's own waits for the CPU);
- RSS of the front door and of the workers: after warm-up (the first tenth of the run), at the
  end, and the largest seen. Growth from warm-up to the end, run after run, would be a leak.

Exit code 0 when no case got an unacceptable answer, no valid request was answered wrongly, no
worker restarted and readiness never failed; else 1. Everything stops with the script.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.protocol.generated import inference_pb2 as pb  # noqa: E402
from tests import fuzzing  # noqa: E402
from tests.conftest import Gateway  # noqa: E402
from tests.test_worker_plane import children, write_repository  # noqa: E402

LARGE = np.arange(16 * 1024, dtype=np.float32)  # 64 KiB: through the workers' shared memory


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def worker_pids(gateway: Gateway) -> set[int]:
    return {pid for pid, command in children(gateway.process.pid).items() if "-m workers" in command}


def worker_restarts(gateway: Gateway) -> float:
    text = requests.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("gateway_worker_restarts_total{"))


class Monitor:
    """Readiness every 50 ms, RSS every `every` seconds, in a thread of its own."""

    def __init__(self, gateway: Gateway, every: float):
        self.gateway, self.every = gateway, every
        self.not_ready: list[str] = []
        self.longest_gap = 0.0  # between two ready answers: includes this poller's own waits for the CPU
        self.slowest_answer = 0.0  # of one readiness request
        self.samples: list[dict] = []  # {"t", "front_door", "workers"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        session, last_ready, next_sample = requests.Session(), time.monotonic(), 0.0
        while not self._stop.wait(0.05):
            now = time.monotonic()
            try:
                response = session.get(f"{self.gateway.url}/v2/health/ready", timeout=5)
                self.slowest_answer = max(self.slowest_answer, time.monotonic() - now)
                if response.status_code == 200:
                    self.longest_gap, last_ready = max(self.longest_gap, now - last_ready), now
                else:
                    self.not_ready.append(f"{now - self._started:.1f} s: {response.status_code}")
            except requests.RequestException as exc:
                self.not_ready.append(f"{now - self._started:.1f} s: {exc!r}")
            if now >= next_sample:
                next_sample = now + self.every
                self.samples.append(
                    {
                        "t": round(now - self._started, 1),
                        "front_door": rss_bytes(self.gateway.process.pid),
                        "workers": {pid: rss_bytes(pid) for pid in sorted(worker_pids(self.gateway))},
                    }
                )

    def __enter__(self) -> "Monitor":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


# --- valid requests, with their answers checked


def valid_rest(rng: random.Random, session: requests.Session, url: str) -> str | None:
    """A valid request (small JSON, or large binary through shared memory); None if answered right."""
    if rng.random() < 0.5:
        header = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [LARGE.size], "parameters": {"binary_data_size": LARGE.nbytes}}],
             "parameters": {"binary_data_output": True}}
        ).encode()  # fmt: skip
        response = session.post(
            f"{url}/v2/models/{rng.choice(['echo', 'batched'])}/infer",
            data=header + LARGE.tobytes(),
            headers={fuzzing.HEADER_LENGTH: str(len(header))},
            timeout=30,
        )
        if response.status_code != 200:
            return f"large echo: {response.status_code} {response.text[:200]}"
        length = int(response.headers[fuzzing.HEADER_LENGTH])
        return None if response.content[length:] == LARGE.tobytes() else "large echo: other bytes came back"
    seed = fuzzing.valid_seed(rng)
    document, _ = fuzzing.json_document(seed)
    response = session.post(f"{url}/v2/models/{seed.model}/infer", data=json.dumps(document), timeout=30)
    if response.status_code != 200:
        return f"{seed}: {response.status_code} {response.text[:200]}"
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    for name, datatype, shape, values in seed.tensors:
        got = outputs.get(name)
        if got is None or got["shape"] != shape:
            return f"{seed}: output {name} is {got}"
        if datatype == "BYTES":
            same = got["data"] == values
        else:
            dtype = fuzzing.NUMPY[datatype]
            same = np.array(got["data"], dtype=dtype).tobytes() == np.array(values, dtype=dtype).tobytes()
        if not same:
            return f"{seed}: output {name} holds {got['data']}"
    return None


def valid_grpc(rng: random.Random, channel: grpc.Channel) -> str | None:
    message = pb.ModelInferRequest(model_name=rng.choice(["echo", "batched"]))
    message.inputs.add(name="x", datatype="FP32", shape=[1, LARGE.size])
    message.raw_input_contents.append(LARGE.tobytes())
    call = channel.unary_unary(fuzzing.SERVICE + "ModelInfer", request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)  # fmt: skip
    try:
        response = call(message, timeout=30)
    except grpc.RpcError as exc:
        return f"large gRPC echo: {exc.code().name} {exc.details()}"
    return None if response.raw_output_contents[0] == LARGE.tobytes() else "large gRPC echo: other bytes came back"


# --- one front door's run


def run_door(gateway: Gateway, door: str, count: int, clients: int, valid_share: float, seed: int) -> dict:
    statuses: Counter = Counter()
    unacceptable: list[str] = []
    wrong: list[str] = []
    lock = threading.Lock()
    local = threading.local()

    def one(index: int) -> None:
        rng = random.Random(f"{seed}:{door}:valid:{index}")
        if door == "grpc":
            if not hasattr(local, "channel"):
                local.channel = grpc.insecure_channel(gateway.grpc_url)
        elif not hasattr(local, "session"):
            local.session = requests.Session()
        if rng.random() < valid_share:
            problem = valid_grpc(rng, local.channel) if door == "grpc" else valid_rest(rng, local.session, gateway.url)
            with lock:
                statuses["valid: right" if problem is None else "valid: WRONG"] += 1
                if problem is not None:
                    wrong.append(problem)
            return
        case = fuzzing.case(door, index, seed)
        if door == "grpc":
            answers = fuzzing.send_grpc(local.channel, case)
            bad = [f"{code.name}: {details[:200]}" for code, details in answers if code not in fuzzing.GRPC_ACCEPTABLE]
            names = [code.name for code, _ in answers]
        else:
            status, text = fuzzing.send_rest(local.session, gateway.url, case)
            bad = [] if fuzzing.rest_acceptable(status) else [f"{status}: {text[:200]}"]
            names = [status]
        with lock:
            statuses.update(names)
            if bad:
                unacceptable.append(f"seed {seed} {door} case {index}: {bad} for {case.describe()[:500]}")

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(count)))
    return {
        "requests": count,
        "seconds": round(time.monotonic() - started, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "unacceptable": unacceptable,
        "valid_answered_wrong": wrong,
    }


def memory_summary(samples: list[dict]) -> dict:
    warm = samples[max(0, len(samples) // 10 - 1)] if samples else {"front_door": 0, "workers": {}}
    last = samples[-1] if samples else warm
    mib = lambda b: round(b / 2**20, 1)  # noqa: E731
    return {
        "front_door_mib": {"after_warmup": mib(warm["front_door"]), "end": mib(last["front_door"]), "max": mib(max(s["front_door"] for s in samples))},
        "workers_total_mib": {
            "after_warmup": mib(sum(warm["workers"].values())),
            "end": mib(sum(last["workers"].values())),
            "max": mib(max(sum(s["workers"].values()) for s in samples)),
        },
        "samples": len(samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000, help="requests per front door (default 20000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients per front door (default 4)")
    parser.add_argument("--valid-share", type=float, default=0.3, help="share of valid requests, answers checked (default 0.3)")
    parser.add_argument("--seed", type=int, default=fuzzing.DEFAULT_SEED)
    parser.add_argument("--doors", default=",".join(fuzzing.DOORS), help="comma-separated: rest-json, rest-binary, grpc")
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between RSS samples (default 1)")
    parser.add_argument("--out", type=Path, help="write the figures (and every RSS sample) as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fuzz-soak-") as folder:
        gateway = Gateway(write_repository(Path(folder), fuzzing.MODELS), request_timeout=20)
        try:
            gateway.wait_ready()
            pids, restarts = worker_pids(gateway), worker_restarts(gateway)
            doors = args.doors.split(",")
            with Monitor(gateway, args.sample_every) as monitor, ThreadPoolExecutor(len(doors)) as pool:
                runs = dict(zip(doors, pool.map(lambda d: run_door(gateway, d, args.requests, args.clients, args.valid_share, args.seed), doors)))
            report = {
                "seed": args.seed,
                "requests_per_door": args.requests,
                "clients_per_door": args.clients,
                "valid_share": args.valid_share,
                "doors": runs,
                "worker_restarts": worker_restarts(gateway) - restarts,
                "worker_pids_changed": worker_pids(gateway) != pids,
                "not_ready": monitor.not_ready,
                "longest_readiness_gap_s": round(monitor.longest_gap, 3),
                "slowest_readiness_answer_s": round(monitor.slowest_answer, 3),
                "memory": memory_summary(monitor.samples),
                "tracebacks_in_log": gateway.log_text().count("Traceback"),
            }
        finally:
            gateway.stop()
            Path(gateway.log.name).unlink(missing_ok=True)
    if args.out:
        args.out.write_text(json.dumps({**report, "rss_samples": monitor.samples}, indent=1))
    summary = {k: v for k, v in report.items() if k != "doors"}
    for door, run in report["doors"].items():
        print(f"{door}: {run['requests']} requests in {run['seconds']} s: {run['statuses']}")
        for line in run["unacceptable"][:5] + run["valid_answered_wrong"][:5]:
            print("   ", line)
    print(json.dumps(summary, indent=1))
    failed = any(run["unacceptable"] or run["valid_answered_wrong"] for run in report["doors"].values())
    failed = failed or report["worker_restarts"] or report["worker_pids_changed"] or report["not_ready"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
