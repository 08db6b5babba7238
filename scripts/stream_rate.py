"""Responses per second of one stream through a gateway with two workers: REST server-sent events
and gRPC ModelStreamInfer, with small responses (inline in the ZeroMQ message) and 32 KiB ones
(through the worker's shared memory). Each response waits for the previous one's credit: this is
the cost of the flow control, one round trip per response overlapped with the generator's work.

    python scripts/stream_rate.py [--responses 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.protocol.generated import inference_pb2 as pb  # noqa: E402
from gateway.protocol.generated import inference_pb2_grpc as pb_grpc  # noqa: E402
from tests.conftest import Gateway  # noqa: E402


def rest(gateway: Gateway, count: int, size: int) -> float:
    body = {"parameters": {"count": count, "size": size}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}
    started = time.perf_counter()
    with requests.post(f"{gateway.url}/v2/models/streamer/infer_stream", json=body, stream=True, timeout=120) as response:
        events = sum(1 for line in response.iter_lines(chunk_size=1 << 20) if line.startswith(b"data: "))
    assert events == count, events
    return count / (time.perf_counter() - started)


def grpc_rate(gateway: Gateway, count: int, size: int) -> float:
    request = pb.ModelInferRequest(model_name="streamer")
    request.parameters["count"].int64_param = count
    request.parameters["size"].int64_param = size
    request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1)
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        started = time.perf_counter()
        received = sum(1 for _ in pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter([request]), timeout=120))
    assert received == count, received
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "streamer").mkdir()
        settings = {"name": "streamer", "implementation": "tests.runtimes.Streamer", "parallel_workers": 2}
        (Path(folder) / "streamer" / "model-settings.json").write_text(json.dumps(settings))
        gateway = Gateway(Path(folder), log_level="WARNING")
        try:
            gateway.wait_ready()
            for size in (4, 8192):
                print(
                    f"{size * 4:>6} B per response: REST SSE {rest(gateway, args.responses, size):6.0f}/s,"
                    f" gRPC {grpc_rate(gateway, args.responses, size):6.0f}/s"
                )
        finally:
            gateway.stop()
            Path(gateway.log.name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
