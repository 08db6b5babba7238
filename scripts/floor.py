"""What an inference costs before any of the gateway's own code: the floors under our REST and gRPC doors.

Throwaway servers, each measured with scripts/loadgen.py (the `rowsum` input of benchmark.py: 16
FP32, their sum back; `--protocol rest` sends it as V2 JSON, `grpc` as raw_input_contents), CPU
per request of the server's whole process group:

- bare: one process that sums the input itself, on uvloop: for `rest` a Sanic app (one process,
  access log off) whose POST /v2/models/rowsum/infer parses the body with orjson, sums in numpy
  and renders the V2 JSON response; for `grpc` a grpc.aio servicer. What an in-process server
  pays for the protocol alone.
- hop: the same server handing the input to a second process over a ZeroMQ DEALER/ROUTER pair on
  ipc (wire/sockets.py's LoopSocket on both sides) and answering with what comes back: the
  gateway's process structure with none of its Python (no parsing into the internal form, no
  pool, no SDK types, no metrics).
- packed: the hop with each loop turn's messages packed into one on both sides (LoopSocket's
  pack=True), as the gateway's bundles and batches make one message of many requests under load.

`--spin-us 0,50,200` measures the (unpacked) hop once per value (a latency experiment, for concurrency 1):
after answering, the far side busy-polls its socket (zmq's non-blocking poll) for that many
microseconds before going back to the event loop, so a request arriving meanwhile is read
without a process wake-up. `--spin-side near` spins in the near side instead: after handing a
request over, the handler busy-polls for the answer that long before awaiting it on the loop;
`both` does both. libzmq's I/O threads still wake on each side either way.

    python scripts/floor.py --protocol grpc --concurrency 64 --duration 5
    python scripts/floor.py --protocol rest --concurrency 1 --duration 5
    python scripts/floor.py --protocol rest --concurrency 64 --duration 5 --servers bare,hop,packed
    python scripts/floor.py --protocol rest --concurrency 1 --servers hop --spin-us 0,50,200

Each server runs `--rounds` times, alternating, and the summary gives each one's median and
range. Before each run it waits (up to `--quiet-wait` s) until other processes use less than a
quarter of a core, as benchmark.py does; a run during which they took more is marked `NOISY`. Compare with `python scripts/benchmark.py --servers gateway,kserve-tuned --cases
'rowsum-rest-c1,rowsum-grpc-c64'` (docs/PERFORMANCE.md, "Issue 20's targets"). Everything
listens on 127.0.0.1 on ports from the OS; the servers are killed (their whole process group) and
their ipc folder removed however the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import loadgen  # noqa: E402
from benchmark import NOISY_OTHER_PCT, wait_for_quiet  # noqa: E402

MODEL = "rowsum"


@dataclass(frozen=True)
class Variant:
    hop: bool
    pack: bool = False
    spin_us: int = 0
    spin_side: str = "far"

    def name(self) -> str:
        if not self.hop:
            return "bare"
        if self.pack:
            return "packed"
        return f"hop, spin {self.spin_us} µs {self.spin_side}" if self.spin_us else "hop"

    def spins(self, side: str) -> float:
        """The seconds that `side` ("far" or "near") spins for."""
        return self.spin_us * 1e-6 if self.spin_side in (side, "both") else 0.0


def _answer(x) -> bytes:
    import numpy as np

    return np.array([np.frombuffer(x, np.float32).sum()], np.float32).tobytes()


def _spin_until_readable(socket, seconds: float) -> bool:
    """Busy-poll a ZeroMQ socket without blocking for up to `seconds`: whether a message is there."""
    import zmq

    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if socket.poll(0, zmq.POLLIN):
            return True
    return False


def _far_side(endpoint: str, variant: Variant) -> None:
    """The hop's second process: sums what it is sent."""
    import uvloop
    import zmq

    from gateway.wire.sockets import LoopSocket

    spin = variant.spins("far")

    async def serve() -> None:
        dealer = zmq.Context().socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, b"worker")
        dealer.connect(endpoint)
        link = LoopSocket(dealer, pack=variant.pack)
        link.send([b"ready"], now=True)
        while True:
            key, data = await link.recv()  # without a wait when the spin below saw a message
            link.send([key.bytes, _answer(data.buffer)])
            if spin:
                _spin_until_readable(dealer, spin)

    uvloop.run(serve())


class Hop:
    """The near side of the hop: a ROUTER to the far side, and the requests awaiting an answer."""

    def __init__(self, endpoint: str, variant: Variant):
        import zmq

        from gateway.wire.sockets import LoopSocket

        router = zmq.Context().socket(zmq.ROUTER)
        router.bind(endpoint)
        self.link = LoopSocket(router, pack=variant.pack)
        self.spin = variant.spins("near")
        self.waiting: dict[bytes, asyncio.Future] = {}
        self.calls = 0

    async def start(self) -> None:
        await self.link.recv()  # the far side's "ready"
        asyncio.get_running_loop().create_task(self._read_answers())

    async def _read_answers(self) -> None:
        while True:
            self._settle(await self.link.recv())

    def _settle(self, frames) -> None:
        _, key, answer = frames  # the far side's identity first (a ROUTER)
        self.waiting.pop(key.bytes).set_result(answer.bytes)

    async def ask(self, data) -> bytes:
        import zmq

        self.calls += 1
        key = b"%d" % self.calls
        self.waiting[key] = future = asyncio.get_running_loop().create_future()
        self.link.send([b"worker", key, data])
        if self.spin and _spin_until_readable(self.link.socket, self.spin):
            try:
                self._settle(self.link.recv_now())  # perhaps another request's answer: settled all the same
            except zmq.Again:  # the loop's reader took it first
                pass
        return await future


def _start_far_side(folder: str, variant: Variant) -> str | None:
    """Fork the hop's far side (before any event loop or ZeroMQ context exists here): its endpoint."""
    if not variant.hop:
        return None
    endpoint = f"ipc://{folder}/hop.sock"
    multiprocessing.get_context("fork").Process(target=_far_side, args=(endpoint, variant), daemon=True).start()
    return endpoint


def _rest_server(report, folder: str, variant: Variant) -> None:
    import socket

    import numpy as np
    import orjson
    from sanic import Sanic
    from sanic.response import HTTPResponse

    os.setpgrp()  # loadgen measures the CPU of this process group: the server and its hop's far side
    endpoint = _start_far_side(folder, variant)
    app = Sanic("floor", configure_logging=False)
    hop: Hop | None = None

    @app.before_server_start
    async def connect(app) -> None:
        nonlocal hop
        if endpoint is not None:
            hop = Hop(endpoint, variant)
            await hop.start()

    @app.after_server_start
    async def started(app) -> None:
        report.send(listener.getsockname()[1])

    async def infer(request) -> HTTPResponse:
        document = orjson.loads(request.body)
        data = np.asarray(document["inputs"][0]["data"], np.float32)
        answer = _answer(data) if hop is None else await hop.ask(data)
        body = {
            "model_name": MODEL,
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [1, 1], "data": [float(np.frombuffer(answer, np.float32)[0])]}],
        }
        return HTTPResponse(orjson.dumps(body), content_type="application/json")

    app.add_route(infer, f"/v2/models/{MODEL}/infer", methods=("POST",))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    app.prepare(sock=listener, single_process=True, access_log=False, motd=False, debug=False)
    Sanic.serve_single(app)


def _grpc_server(report, folder: str, variant: Variant) -> None:
    import grpc
    import uvloop

    from gateway.protocol.generated import inference_pb2 as pb
    from gateway.protocol.generated import inference_pb2_grpc as pb_grpc

    os.setpgrp()  # loadgen measures the CPU of this process group: the server and its hop's far side
    endpoint = _start_far_side(folder, variant)

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):
        def __init__(self, hop: Hop | None):
            self.hop = hop

        async def ModelInfer(self, request, context):
            data = request.raw_input_contents[0]
            answer = _answer(data) if self.hop is None else await self.hop.ask(data)
            response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            response.outputs.add(name="output", datatype="FP32", shape=[1, 1])
            response.raw_output_contents.append(answer)
            return response

    async def serve() -> None:
        hop = None
        if endpoint is not None:
            hop = Hop(endpoint, variant)
            await hop.start()
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(hop), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        report.send(port)
        await server.wait_for_termination()

    uvloop.run(serve())


def measure(protocol: str, variant: Variant, concurrency: int, duration: float, warmup: float) -> dict:
    folder = tempfile.mkdtemp(prefix="floor-")  # the hop's ipc socket
    ours, theirs = multiprocessing.Pipe(duplex=False)
    target = _rest_server if protocol == "rest" else _grpc_server
    server = multiprocessing.get_context("spawn").Process(target=target, args=(theirs, folder, variant))
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not ours.poll(0.1):  # its port, once it listens
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {protocol} server did not start" + ("" if server.is_alive() else f" (exit code {server.exitcode})"))
        port = ours.recv()
        common = dict(
            model=MODEL, shape=[16], datatype="FP32", input_name="input", concurrency=concurrency, duration=duration, warmup=warmup, server_pgids=(server.pid,)
        )
        if protocol == "rest":
            return loadgen.run(url=f"http://127.0.0.1:{port}", protocol="rest-json", **common)
        return loadgen.run(grpc_url=f"127.0.0.1:{port}", protocol="grpc", **common)
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)  # the server and its far side
        except ProcessLookupError:
            pass
        server.join()
        shutil.rmtree(folder, ignore_errors=True)


def _figures(result: dict) -> dict[str, float]:
    return {
        "infer/s": result["infer_per_s"],
        "p50 ms": result["latency_ms"]["p50"],
        "p99 ms": result["latency_ms"]["p99"],
        "server CPU µs/request": 1e3 * result["server_cpu_ms_per_request"],
        "server CPU %": result["server_cpu_pct"],
        "others %": result.get("other_cpu_pct", 0.0),
    }


def _line(figures: dict[str, float]) -> str:
    return (
        f"{figures['infer/s']:,.0f} infer/s, p50 {figures['p50 ms']:.3f} ms, p99 {figures['p99 ms']:.3f} ms, "
        f"server CPU {figures['server CPU µs/request']:.0f} µs per request ({figures['server CPU %']:.0f} % of a core), "
        f"other processes {figures['others %']:.0f} % of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=("grpc", "rest"), required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds run before each measured window")
    parser.add_argument("--rounds", type=int, default=2, help="each server this many times, alternating")
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="longest wait before each run for other processes to go quiet (s)")
    parser.add_argument("--servers", default="bare,hop", help="comma list: bare, hop, packed")
    parser.add_argument("--spin-us", default="0", help="comma list of microseconds: the hop is measured once per value")
    parser.add_argument("--spin-side", choices=("far", "near", "both"), default="far", help="which side of the hop spins")
    args = parser.parse_args()
    servers = set(args.servers.split(","))
    if servers - {"bare", "hop", "packed"}:
        parser.error("--servers takes a comma list of bare, hop, packed")
    try:
        spins = [int(value) for value in args.spin_us.split(",")]
    except ValueError:
        spins = [-1]
    if any(spin < 0 for spin in spins):
        parser.error("--spin-us takes a comma list of whole microseconds >= 0")
    variants = [Variant(hop=False)] if "bare" in servers else []
    if "hop" in servers:
        variants += [Variant(hop=True, spin_us=spin, spin_side=args.spin_side) for spin in spins]
    if "packed" in servers:  # no spin: a packed send leaves at the end of the loop turn, after the spin
        variants.append(Variant(hop=True, pack=True))

    print(f"{args.protocol}, rowsum, concurrency {args.concurrency}, {args.duration:g} s after {args.warmup:g} s warm-up, {args.rounds} round(s)", flush=True)
    runs: dict[Variant, list[dict[str, float]]] = {variant: [] for variant in variants}
    for round_ in range(args.rounds):
        for variant in variants:
            wait_for_quiet(NOISY_OTHER_PCT, args.quiet_wait)
            figures = _figures(measure(args.protocol, variant, args.concurrency, args.duration, args.warmup))
            runs[variant].append(figures)
            noisy = " NOISY" if figures["others %"] > NOISY_OTHER_PCT else ""
            print(f"round {round_ + 1} {variant.name()}: {_line(figures)}{noisy}", flush=True)
    print("median (min-max) of the rounds:")
    for variant, figures in runs.items():
        cells = []
        for key in ("infer/s", "p50 ms", "p99 ms", "server CPU µs/request"):
            values = [run[key] for run in figures]
            digits = 3 if "ms" in key and "µs" not in key else 0
            cells.append(f"{key} {statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})")
        print(f"  {variant.name()}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
