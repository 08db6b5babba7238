"""Worker-side CPU per request.

    python scripts/worker_cost.py                 # in-process figures (below)
    python scripts/worker_cost.py --process       # and a real worker process's CPU per request
    python scripts/worker_cost.py --calls 5000 --repeats 9

In-process, without ZeroMQ's system calls:
- "runtime path": what a worker does between a request's parsed form and its outputs as arrays
  (building the SDK request, preprocess/predict/postprocess, the codecs, selecting the outputs),
  for the config/ models, a NumpyCodec echo (its list deferred, or made by the runtime), and the
  benchmark's rowsum (scripts/benchmark.py: 16 FP32 -> their sum, NumpyCodec both ways);
- "message path": all of the worker's per-call work for rowsum, from the call's message to its
  REPLY's frames: the header parsed, the call's task (Inbox, _Call), the request parsed from the
  message, the runtime path, the outputs placed, the reply's header encoded. A lone request per
  call (how gRPC's requests mostly come), and bundles of 16 (how REST's come under load).

--process: a real worker (python -m workers) on the benchmark's rowsum, sent calls over ZeroMQ
by this process (two in flight, one per call slot, as the gateway keeps them under load); its
CPU per request from the kernel (every thread of it: the event loop and libzmq's I/O thread).

Each figure is the best of --repeats runs (the best is the least disturbed by other processes on
a shared machine); only differences between two trees measured alike mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import uvloop
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark import write_mlmodel_repository  # noqa: E402

from gateway import MLModel  # noqa: E402
from gateway.codecs import NumpyCodec  # noqa: E402
from gateway.settings import ModelSettings  # noqa: E402
from gateway.types import InferenceResponse  # noqa: E402
from gateway.wire import messages  # noqa: E402
from gateway.wire.arena import Arena  # noqa: E402
from gateway.wire.request import Tensor, WireRequest  # noqa: E402
from workers.worker import Inbox, Served, ServedRuntime, _Call, build_served, run  # noqa: E402

ARENA_BYTES = 1 << 24


class CodecEcho(MLModel):
    """The benchmark's echo (scripts/benchmark.py): NumpyCodec both ways."""

    read_list = False

    async def predict(self, payload):
        output = NumpyCodec.encode_output("x", NumpyCodec.decode_input(payload.inputs[0]))
        if self.read_list:
            output.data.root  # noqa: B018 - reading it makes the list
        return InferenceResponse(model_name=self.name, outputs=[output])


def read_only(array: np.ndarray) -> np.ndarray:
    """As a worker holds an input: a read-only view of the tensor bytes."""
    return np.frombuffer(array.tobytes(), dtype=array.dtype).reshape(array.shape)


def best_of(repeats: int, timed) -> float:
    return min(uvloop.run(timed()) for _ in range(repeats))  # the worker's loop


def runtime_path(runtime: MLModel, tensor: Tensor, calls: int, repeats: int) -> float:
    request = WireRequest(runtime.name, None, "r", [tensor])

    async def timed() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await run(runtime, messages.INFER, request, 0)
        return (time.perf_counter() - started) / calls

    return best_of(repeats, timed) * 1e6


class KeptLink:
    """The worker's socket without ZeroMQ: what the worker sends is kept, and `replied` set."""

    def __init__(self):
        self.sent: list[list] = []
        self.replied = asyncio.Event()

    def send(self, frames: list) -> None:
        self.sent.append(frames)
        self.replied.set()


def message_path(served: Served, requests: list[WireRequest], calls: int, repeats: int) -> float:
    """Per request: the worker's work for calls of `requests` (a lone request, or a bundle)."""
    in_arena, out_arena = Arena(ARENA_BYTES, "worker-cost-in", regions=messages.SLOTS), Arena(ARENA_BYTES, "worker-cost-out", regions=messages.SLOTS)
    message = messages.request_frames(messages.INFER, 1, requests, in_arena.regions[0])
    received = [zmq.Frame(bytes(frame)) for frame in message]  # as the worker's socket hands them over

    async def timed() -> float:
        link = KeptLink()

        def begin(kind: bytes, header: dict, frames: list) -> asyncio.Task:  # as serve_loaded's, for a call
            arenas = (in_arena.regions[header["slot"]], out_arena.regions[header["slot"]])
            return _Call(served, inbox, kind, header, frames, arenas, served.name, None).task

        inbox = Inbox(link, begin)  # type: ignore[arg-type]  # a LoopSocket's send is all a call uses
        started = time.perf_counter()
        for _ in range(calls):
            inbox.receive(received)
            answered = 0  # a bundle's answers may leave in several REPLYs (BUNDLE_SECONDS)
            while answered < len(requests):
                await link.replied.wait()
                link.replied.clear()
                replies, link.sent = link.sent, []
                answered += sum(len(messages.reply_header(reply)["answers"]) for reply in replies)
        elapsed = time.perf_counter() - started
        return elapsed / calls / len(requests)

    return best_of(repeats, timed) * 1e6


def rowsum_folder(root: Path) -> Path:
    write_mlmodel_repository(root, "gateway", ["rowsum"], {})
    return root / "rowsum"


def rowsum_requests(count: int) -> list[WireRequest]:
    rng = np.random.default_rng(0)
    return [WireRequest("rowsum", None, f"r{i}", [Tensor("input", "FP32", [1, 16], rng.random((1, 16), np.float32))]) for i in range(count)]


def task_cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process, in ns (schedstat: finer than /proc/<pid>/stat's ticks)."""
    tasks = Path(f"/proc/{pid}/task")
    return sum(int((tasks / tid / "schedstat").read_text().split()[0]) for tid in os.listdir(tasks))


def process_path(folder: Path, bundle: int, calls: int, repeats: int) -> float:
    """A real worker process's CPU per request: calls of `bundle` rowsum requests, two in flight."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    socket_dir = tempfile.mkdtemp(prefix="worker-cost-")
    router.bind(f"ipc://{socket_dir}/w.sock")
    in_arena, out_arena = Arena(ARENA_BYTES, "worker-cost-in", regions=messages.SLOTS), Arena(ARENA_BYTES, "worker-cost-out", regions=messages.SLOTS)
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers", "--settings", str(folder / "model-settings.json"), "--endpoint", f"ipc://{socket_dir}/w.sock",
         "--identity", "w", "--parent", str(os.getpid()), "--in-fd", str(in_arena.fd), "--out-fd", str(out_arena.fd), "--log-level", "WARNING"],
        pass_fds=(in_arena.fd, out_arena.fd), env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        identity, kind, *_ = router.recv_multipart()
        assert kind == messages.READY, kind
        requests = rowsum_requests(bundle)

        def send(seq: int) -> None:  # call `seq` in slot seq % SLOTS, free again once call seq - SLOTS has replied
            slot = seq % messages.SLOTS
            router.send_multipart([identity, *messages.request_frames(messages.INFER, seq, requests, in_arena.regions[slot], slot)])

        best, seq = float("inf"), 0
        for _ in range(repeats + 1):  # the first warms up
            for _ in range(messages.SLOTS):
                send(seq)
                seq += 1
            started = task_cpu_ns(worker.pid)
            for _ in range(calls):
                reply = router.recv_multipart()
                assert reply[1] == messages.REPLY, reply[1:3]
                send(seq)
                seq += 1
            spent = task_cpu_ns(worker.pid) - started
            for _ in range(messages.SLOTS):
                router.recv_multipart()
            best = min(best, spent / calls / bundle / 1e3)
        router.send_multipart([identity, messages.STOP, b"{}"])
        worker.wait(10)
        return best
    finally:
        if worker.poll() is None:
            worker.kill()
        router.close(0)
        context.term()
        in_arena.close()
        out_arena.close()
        shutil.rmtree(socket_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--echo-elements", type=int, default=262144, help="FP32 elements of the echo (default: 1 MiB)")
    parser.add_argument("--process", action="store_true", help="also a real worker process's CPU per request")
    parser.add_argument("--only-rowsum", action="store_true", help="only the rowsum figures")
    args = parser.parse_args()

    def loaded(settings: ModelSettings) -> ServedRuntime:
        served = build_served(settings)
        asyncio.run(served.load())
        assert isinstance(served, ServedRuntime)
        return served

    def configured(folder: str) -> MLModel:
        return loaded(ModelSettings.from_file(ROOT / "config" / folder / "model-settings.json")).runtime

    with tempfile.TemporaryDirectory() as scratch:
        folder = rowsum_folder(Path(scratch) / "repository")
        rowsum = loaded(ModelSettings.from_file(folder / "model-settings.json"))
        cases = [("rowsum, 1 row", rowsum.runtime, rowsum_requests(1)[0].inputs[0])]
        if not args.only_rowsum:
            texts = np.empty(2, dtype=object)
            texts[:] = [b"I love it, great", b"slow and broken"]
            rng = np.random.default_rng(0)
            cases += [
                ("iris-mlp, 2 rows", configured("iris-mlp"), Tensor("features", "FP32", [2, 4], read_only(rng.random((2, 4), np.float32)))),
                ("iris-mlp, 256 rows", configured("iris-mlp"), Tensor("features", "FP32", [256, 4], read_only(rng.random((256, 4), np.float32)))),
                ("text-sentiment, 2 texts", configured("text-sentiment"), Tensor("text", "BYTES", [2], texts)),
            ]
            echo = rng.random(args.echo_elements, np.float32)
            for read_list in (False, True):
                runtime = CodecEcho(ModelSettings(name="echo", implementation="worker_cost.CodecEcho"))
                runtime.read_list = read_list
                label = f"NumpyCodec echo, {echo.nbytes / 2**20:g} MiB, " + ("list read by the runtime" if read_list else "list deferred")
                cases.append((label, runtime, Tensor("x", "FP32", [echo.size], read_only(echo))))
        for label, runtime, tensor in cases:
            calls = args.calls if tensor.data.nbytes < 2**16 else max(args.calls // 100, 10)
            print(f"runtime path, {label}: {runtime_path(runtime, tensor, calls, args.repeats):,.1f} us per request", flush=True)
        for bundle in (1, 16):
            per_request = message_path(rowsum, rowsum_requests(bundle), max(args.calls // bundle, 10), args.repeats)
            print(f"message path, rowsum, {'a lone request' if bundle == 1 else f'bundles of {bundle}'}: {per_request:,.1f} us per request", flush=True)
        if args.process:
            for bundle in (1, 16):
                per_request = process_path(folder, bundle, max(args.calls * 2 // bundle, 100), args.repeats)
                label = "lone requests" if bundle == 1 else f"bundles of {bundle}"
                print(f"worker process, rowsum, {label}, 2 calls in flight: {per_request:,.1f} us of CPU per request", flush=True)


if __name__ == "__main__":
    main()
