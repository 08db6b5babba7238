"""What a gRPC inference costs before any of the gateway's own code: the floor under our gRPC door.

Two throwaway servers, each measured with scripts/loadgen.py (gRPC, the `rowsum` input of
benchmark.py: 16 FP32, their sum back), CPU per call of the server's whole process group:

- bare: a grpc.aio servicer that sums the input itself, on uvloop (what an in-process server pays
  for gRPC alone);
- hop: the same servicer handing the input to a second process over a ZeroMQ DEALER/ROUTER pair
  on ipc (wire/sockets.py's LoopSocket on both sides) and answering with what comes back: the
  gateway's process structure with none of its Python (no parsing into the internal form, no
  pool, no SDK types, no metrics).

    python scripts/grpc_floor.py --concurrency 64 --duration 6

Compare with `python scripts/benchmark.py --servers gateway --cases rowsum-grpc-c64`
(docs/PERFORMANCE.md, "Issue 20's targets"). Everything listens on 127.0.0.1, ports from the OS.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import loadgen  # noqa: E402
from ports import free_port, refused  # noqa: E402


def _answer(x: bytes) -> bytes:
    import numpy as np

    return np.array([np.frombuffer(x, np.float32).sum()], np.float32).tobytes()


def _echo_worker(endpoint: str) -> None:
    """The hop's second process: sums what it is sent."""
    import uvloop
    import zmq

    from gateway.wire.sockets import LoopSocket

    async def serve() -> None:
        dealer = zmq.Context().socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, b"worker")
        dealer.connect(endpoint)
        link = LoopSocket(dealer)
        link.send([b"ready"])
        while True:
            key, data = await link.recv()
            link.send([key.bytes, _answer(data.buffer)])

    uvloop.run(serve())


def _server(port: int, hop: bool) -> None:
    import grpc
    import uvloop
    import zmq

    from gateway.protocol.generated import inference_pb2 as pb
    from gateway.protocol.generated import inference_pb2_grpc as pb_grpc
    from gateway.wire.sockets import LoopSocket

    os.setpgrp()  # loadgen measures the CPU of this process group: the server and its hop's process

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):
        def __init__(self, link: LoopSocket | None):
            self.link, self.waiting, self.calls = link, {}, 0

        async def read_answers(self) -> None:
            assert self.link is not None
            while True:
                _, key, answer = await self.link.recv()  # the worker's identity first (a ROUTER)
                self.waiting.pop(key.bytes).set_result(answer.bytes)

        async def ModelInfer(self, request, context):
            data = request.raw_input_contents[0]
            if self.link is None:
                answer = _answer(data)
            else:
                self.calls += 1
                key = b"%d" % self.calls
                self.waiting[key] = future = asyncio.get_running_loop().create_future()
                self.link.send([b"worker", key, data])
                answer = await future
            response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            response.outputs.add(name="output", datatype="FP32", shape=[1, 1])
            response.raw_output_contents.append(answer)
            return response

        async def ModelMetadata(self, request, context):
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name="rowsum", inputs=[tensor(name="input", datatype="FP32", shape=[-1, 16])], outputs=[tensor(name="output", datatype="FP32", shape=[-1, 1])]
            )

    async def serve() -> None:
        link = None
        if hop:
            endpoint = f"ipc://{tempfile.mkdtemp(prefix='grpc-floor-')}/hop.sock"
            router = zmq.Context().socket(zmq.ROUTER)
            router.bind(endpoint)
            multiprocessing.get_context("fork").Process(target=_echo_worker, args=(endpoint,), daemon=True).start()
            link = LoopSocket(router)
            await link.recv()  # the worker's "ready"
        servicer = Servicer(link)
        if link is not None:
            asyncio.get_running_loop().create_task(servicer.read_answers())
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(serve())


def measure(hop: bool, concurrency: int, duration: float) -> dict:
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_server, args=(port, hop))
    server.start()
    try:
        deadline = time.monotonic() + 30
        while refused(port):
            if time.monotonic() > deadline or not server.is_alive():
                raise RuntimeError("the gRPC server did not start")
            time.sleep(0.1)
        return loadgen.run(
            model="rowsum",
            grpc_url=f"127.0.0.1:{port}",
            protocol="grpc",
            shape=[16],
            datatype="FP32",
            input_name="input",
            concurrency=concurrency,
            duration=duration,
            warmup=1.0,
            server_pgids=(server.pid,),
        )
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2, help="each server this many times, alternating")
    args = parser.parse_args()
    for round_ in range(args.rounds):
        for hop in (False, True):
            result = measure(hop, args.concurrency, args.duration)
            name = "hop " if hop else "bare"
            print(
                f"round {round_ + 1} {name}: {result['infer_per_s']:,.0f} infer/s, server CPU {1e3 * result['server_cpu_ms_per_request']:.0f} µs per call, "
                f"p50 {result['latency_ms']['p50']:.2f} ms, other processes {result.get('other_cpu_pct', 0):.0f} % of a core",
                flush=True,
            )


if __name__ == "__main__":
    main()
