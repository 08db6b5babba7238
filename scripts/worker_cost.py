"""Worker-side CPU per request, in-process: what a worker does between receiving a request and
writing its outputs (building the SDK request, preprocess/predict/postprocess, the codecs,
turning outputs into arrays), without the front door, ZeroMQ or shared memory.

    python scripts/worker_cost.py            # the config/ models and a NumpyCodec echo
    python scripts/worker_cost.py --calls 5000 --repeats 9

Each figure is the best of --repeats runs of --calls calls (the best is the least disturbed
by other processes on a shared machine). The echo shows what NumpyCodec's deferred list saves:
the same runtime once as written, once reading `output.data.root` (which makes MLServer's list).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import MLModel  # noqa
from gateway.wire import messages  # noqa: E402
from gateway.codecs import NumpyCodec  # noqa: E402
from gateway.settings import ModelSettings  # noqa: E402
from gateway.wire.request import Tensor, WireRequest  # noqa: E402
from gateway.types import InferenceResponse  # noqa: E402
from workers.worker import load_runtime, run  # noqa: E402


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


def microseconds(runtime: MLModel, tensor: Tensor, calls: int, repeats: int) -> float:
    request = WireRequest(runtime.name, None, "r", [tensor])

    async def timed() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await run(runtime, messages.INFER, request, 0)
        return (time.perf_counter() - started) / calls

    return min(asyncio.run(timed()) for _ in range(repeats)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--echo-elements", type=int, default=262144, help="FP32 elements of the echo (default: 1 MiB)")
    args = parser.parse_args()

    def configured(folder: str) -> MLModel:
        runtime = load_runtime(ModelSettings.from_file(ROOT / "config" / folder / "model-settings.json"))
        asyncio.run(runtime.load())
        return runtime

    texts = np.empty(2, dtype=object)
    texts[:] = [b"I love it, great", b"slow and broken"]
    rng = np.random.default_rng(0)
    cases = [
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
        print(f"{label}: {microseconds(runtime, tensor, calls, args.repeats):,.1f} us per request", flush=True)


if __name__ == "__main__":
    main()
