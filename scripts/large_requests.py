"""Peak memory and event-loop stalls of large requests, per encoding and body size.

    python scripts/large_requests.py                       # every case at 1, 16 and 60 MiB
    python scripts/large_requests.py --cases 'json-*' --mib 60
    python scripts/large_requests.py --source /work/main   # measure another checkout

Starts a gateway (the code of `--source`, default this checkout) on a temporary
model repository holding an echo model, and a pinger process that sends
`GET /v2/health/live` every 2 ms on a keep-alive connection of its own. For each
case and body size it resets the peak resident memory of the front door and of
the echo's worker (`/proc/<pid>/clear_refs`), sends one request, and prints:

- status and seconds to the answer;
- the peak RSS of the front door and of the worker above their RSS just before
  the request, and that growth divided by the body size ("x body");
- the longest ping answer during the request: how long the front door's event
  loop could not answer anyone else (with `--repeat N`, the least of N runs:
  other processes on the machine only add to it); "warm": the same for the
  same request sent again (the worker's shared memory then already mapped).

Cases (`--list`): JSON numbers, JSON strings, binary REST numbers and BYTES,
gRPC raw numbers and BYTES, gRPC typed BYTES, and refused requests. The
request's outputs come back in the request's own encoding (JSON for JSON
bodies, binary for binary ones). Measure on a quiet machine: the client, the
pinger and the gateway share its cores.
"""

from __future__ import annotations

import argparse
import fnmatch
import http.client
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
HEADER_LENGTH = "Inference-Header-Content-Length"
MIB = 1024 * 1024

ECHO_RUNTIME = """
from gateway import MLModel
from gateway.types import InferenceResponse, ResponseOutput


class Echo(MLModel):
    async def predict(self, payload):
        return InferenceResponse(model_name=self.name, outputs=[
            ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data) for i in payload.inputs])
"""


# --- memory of a process, from /proc


def _status(pid: int, field: str) -> int:
    """A memory figure of a process (-1 once it is gone: a worker killed, say)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return -1
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) * 1024


def reset_peak(pid: int) -> int:
    """Set the process' peak RSS (VmHWM) to its current RSS; returns that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status(pid, "VmRSS")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# --- the pinger: another client of the front door, timing every answer


def _pinger(port: int, commands) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    pings: list[tuple[float, float]] = []  # (sent, answered), time.monotonic: one clock for every process
    while True:
        if commands.poll():
            command = commands.recv()
            if command == "stop":
                return
            start, end = command
            overlapping = [b - a for a, b in pings if b >= start and a <= end]
            commands.send((max(overlapping, default=0.0), len(overlapping)))
            pings = [p for p in pings if p[1] >= end]
        sent = time.monotonic()
        connection.request("GET", "/v2/health/live")
        connection.getresponse().read()
        pings.append((sent, time.monotonic()))
        time.sleep(0.002)


# --- the gateway


class Gateway:
    def __init__(self, source: Path, max_tensor_bytes: int | None):
        self.folder = tempfile.TemporaryDirectory(prefix="large-requests-")
        repo = Path(self.folder.name)
        (repo / "echo").mkdir()
        (repo / "echo" / "echo_runtime.py").write_text(ECHO_RUNTIME)
        (repo / "echo" / "model-settings.json").write_text(json.dumps({"name": "echo", "implementation": "echo_runtime.Echo"}))
        self.http_port, self.grpc_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            PYTHONPATH=str(source),
            GATEWAY_HOST="127.0.0.1",
            GATEWAY_HTTP_PORT=str(self.http_port),
            GATEWAY_GRPC_PORT=str(self.grpc_port),
            GATEWAY_METRICS_PORT="0",
            GATEWAY_ACCESS_LOG="false",
            GATEWAY_REQUEST_TIMEOUT="600",
        )
        if max_tensor_bytes is not None:
            env["GATEWAY_MAX_TENSOR_BYTES"] = str(max_tensor_bytes)
        self.log = open(repo / "gateway.log", "w+b")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "start", "--config", str(repo)], env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=source
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the gateway exited:\n{Path(self.log.name).read_text()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
                connection.request("GET", "/v2/health/ready")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("the gateway did not get ready in 120 s")
        self.worker = children(self.process.pid)[0]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.folder.cleanup()


# --- requests


@dataclass
class Request:
    protocol: str  # "rest" or "grpc"
    size: int  # body (REST) or serialized message (gRPC) bytes
    send: Callable[[], int]  # sends it; returns the HTTP status (gRPC: 200 or 400)


def _floats(count: int) -> np.ndarray:
    return np.random.default_rng(0).random(count, dtype=np.float32)


def _strings(count: int, length: int) -> np.ndarray:
    base = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789" * (length // 36 + 1), dtype="S1")[:length].tobytes()
    return np.array([base] * count, dtype=object)


def _pack(items) -> bytes:
    return b"".join(len(x).to_bytes(4, "little") + x for x in items)


def rest(gateway: Gateway, body: bytes, headers: dict) -> Request:
    def send() -> int:
        connection = http.client.HTTPConnection("127.0.0.1", gateway.http_port, timeout=600)
        connection.request("POST", "/v2/models/echo/infer", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status

    return Request("rest", len(body), send)


def json_body(datatype: str, shape: list[int], data: bytes) -> bytes:
    return b'{"inputs":[{"name":"x","datatype":"%s","shape":%s,"data":%s}]}' % (datatype.encode(), json.dumps(shape).encode(), data)


def binary_body(datatype: str, count: int, raw: bytes) -> tuple[bytes, dict]:
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": datatype, "shape": [count], "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + raw, {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}


def grpc_request(gateway: Gateway, datatype: str, count: int, raw: bytes | None = None, typed: list | None = None) -> Request:
    sys.path.insert(0, str(gateway_source))
    import grpc

    from gateway.protocol.generated import inference_pb2 as pb
    from gateway.protocol.generated import inference_pb2_grpc as pb_grpc

    message = pb.ModelInferRequest(model_name="echo")
    tensor = message.inputs.add(name="x", datatype=datatype, shape=[count])
    if raw is not None:
        message.raw_input_contents.append(raw)
    else:
        tensor.contents.bytes_contents.extend(typed)
    size = message.ByteSize()

    def send() -> int:
        options = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]
        with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}", options=options) as channel:
            try:
                pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=600)
                return 200
            except grpc.RpcError as exc:
                return {"INVALID_ARGUMENT": 400, "RESOURCE_EXHAUSTED": 413}.get(exc.code().name, 500)

    return Request("grpc", size, send)


def _json_floats(mib: float) -> tuple[int, bytes]:
    import orjson

    width = len(orjson.dumps(_floats(1000), option=orjson.OPT_SERIALIZE_NUMPY)) / 1000  # one number and its comma
    count = int(mib * MIB / width)
    return count, orjson.dumps(_floats(count), option=orjson.OPT_SERIALIZE_NUMPY)


def case_json_fp32(gateway, mib):
    """FP32 numbers in JSON; JSON answer."""
    count, data = _json_floats(mib)
    return rest(gateway, json_body("FP32", [count], data), {})


def case_json_fp32_refused(gateway, mib):
    """The body of json-fp32, its shape declaring more than max_tensor_bytes (default 256 MiB: 2**26 FP32)."""
    count, data = _json_floats(mib)
    return rest(gateway, json_body("FP32", [2**26 + 1], data), {})


def case_json_bytes(gateway, mib):
    """BYTES of 16 characters each in JSON; JSON answer."""
    count = int(mib * MIB / 19)  # 16 characters, quotes and a comma
    return rest(gateway, json_body("BYTES", [count], json.dumps(["a" * 16] * count).encode()), {})


def case_binary_fp32(gateway, mib):
    """FP32 in the binary extension; binary answer."""
    raw = _floats(int(mib * MIB / 4)).tobytes()
    return rest(gateway, *binary_body("FP32", len(raw) // 4, raw))


def case_binary_bytes_16(gateway, mib):
    """BYTES of 16 bytes each in the binary extension; binary answer."""
    count = int(mib * MIB / 20)
    return rest(gateway, *binary_body("BYTES", count, _pack(_strings(count, 16))))


def case_binary_bytes_empty(gateway, mib):
    """Zero-length BYTES elements in the binary extension (4 bytes each: their length); binary answer."""
    count = int(mib * MIB / 4)
    return rest(gateway, *binary_body("BYTES", count, bytes(4 * count)))


def case_grpc_fp32(gateway, mib):
    """FP32 in raw_input_contents."""
    raw = _floats(int(mib * MIB / 4)).tobytes()
    return grpc_request(gateway, "FP32", len(raw) // 4, raw=raw)


def case_grpc_bytes_16(gateway, mib):
    """BYTES of 16 bytes each in raw_input_contents."""
    count = int(mib * MIB / 20)
    return grpc_request(gateway, "BYTES", count, raw=_pack(_strings(count, 16)))


def case_grpc_bytes_typed_16(gateway, mib):
    """BYTES of 16 bytes each in typed contents (bytes_contents)."""
    count = int(mib * MIB / 18)  # tag, length, 16 bytes
    return grpc_request(gateway, "BYTES", count, typed=list(_strings(count, 16)))


CASES = {
    "json-fp32": case_json_fp32,
    "json-fp32-over-limit": case_json_fp32_refused,
    "json-bytes-16": case_json_bytes,
    "binary-fp32": case_binary_fp32,
    "binary-bytes-16": case_binary_bytes_16,
    "binary-bytes-empty": case_binary_bytes_empty,
    "grpc-fp32": case_grpc_fp32,
    "grpc-bytes-16": case_grpc_bytes_16,
    "grpc-typed-bytes-16": case_grpc_bytes_typed_16,
}

gateway_source = ROOT


def measure(name: str, mib: float, max_tensor_bytes: int | None) -> dict:
    """One request on a gateway of its own: memory a process once used stays counted in its RSS
    (the allocator keeps it), so a fresh gateway is the only honest baseline."""
    gateway = Gateway(gateway_source, max_tensor_bytes)
    ours, theirs = multiprocessing.Pipe()
    pinger = multiprocessing.Process(target=_pinger, args=(gateway.http_port, theirs), daemon=True)
    pinger.start()
    try:
        rest(gateway, json_body("FP32", [1], b"[1.0]"), {}).send()  # first-request costs (imports, caches) out of the way
        request = CASES[name](gateway, mib)
        time.sleep(0.3)  # let the pinger settle after building the request
        front_idle, worker_idle = reset_peak(gateway.process.pid), reset_peak(gateway.worker)
        started = time.monotonic()
        status = request.send()
        ended = time.monotonic()
        front = _status(gateway.process.pid, "VmHWM") - front_idle
        worker = _status(gateway.worker, "VmHWM") - worker_idle
        time.sleep(0.05)
        ours.send((started, ended))
        stall, pings = ours.recv()
        # the same request again: shared memory and the allocator's pools are warm now
        again = time.monotonic()
        request.send()
        time.sleep(0.05)
        ours.send((again, time.monotonic()))
        warm_stall, _ = ours.recv()
        return {
            "case": name,
            "body_mib": round(request.size / MIB, 1),
            "status": status,
            "seconds": round(ended - started, 2),
            "front_door_peak_mib": round(front / MIB, 1),
            "front_door_x_body": round(front / request.size, 2),
            "worker_peak_mib": round(worker / MIB, 1),
            "worker_x_body": round(worker / request.size, 2),
            "longest_stall_ms": round(stall * 1000, 1),
            "warm_stall_ms": round(warm_stall * 1000, 1),
            "pings": pings,
        }
    finally:
        ours.send("stop")
        pinger.join(5)
        gateway.stop()


def main() -> None:
    global gateway_source
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="*", help="comma list of case names or glob patterns")
    parser.add_argument("--mib", default="1,16,60", help="comma list of body sizes in MiB")
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose gateway to run (default: this one)")
    parser.add_argument("--max-tensor-bytes", type=int, default=None, help="the gateway's max_tensor_bytes (default: its own default)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case and size (a fresh gateway each); the one with the least stall is shown")
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    parser.add_argument("--json-out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    if args.list:
        for name, function in CASES.items():
            print(f"{name:24} {(function.__doc__ or '').strip()}")
        return
    gateway_source = args.source.resolve()
    patterns = args.cases.split(",")
    names = [n for n in CASES if any(fnmatch.fnmatch(n, p) for p in patterns)]
    sizes = [float(s) for s in args.mib.split(",")]

    rows = []
    print(f"{'case':24} {'MiB':>5} {'status':>6} {'s':>7} {'front door MiB':>15} {'x body':>7} {'worker MiB':>11} {'x body':>7} {'stall ms':>9} {'warm':>6}")
    for name in names:
        for mib in sizes:
            runs = [measure(name, mib, args.max_tensor_bytes) for _ in range(args.repeat)]
            # other processes only add to a stall and to the time: the least is the gateway's own
            row = min(runs, key=lambda r: r["longest_stall_ms"])
            row["longest_stall_ms_each"] = [r["longest_stall_ms"] for r in runs]
            row["warm_stall_ms"] = min(r["warm_stall_ms"] for r in runs)
            row["seconds"] = min(r["seconds"] for r in runs)
            rows.append(row)
            print(
                f"{name:24} {row['body_mib']:5.1f} {row['status']:6} {row['seconds']:7.2f} {row['front_door_peak_mib']:15.1f} "
                f"{row['front_door_x_body']:7.2f} {row['worker_peak_mib']:11.1f} {row['worker_x_body']:7.2f} {row['longest_stall_ms']:9.1f} {row['warm_stall_ms']:6.1f}",
                flush=True,
            )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
