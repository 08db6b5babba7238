"""What a message between two processes' event loops costs, by transport: the frames of a small
relayed request, echoed back, over a ZeroMQ DEALER/ROUTER pair on ipc (gateway/wire/sockets.py's
LoopSocket, as the relay front doors use) and over an asyncio Unix stream with length prefixes;
CPU and wall time per round trip (2 sends, 2 receives), both ends on one uvloop loop.

    python scripts/transport_cost.py --round-trips 20000
"""

import argparse
import asyncio
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

import uvloop
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.wire.sockets import LoopSocket  # noqa: E402  (this checkout's)

FRAMES = [b"infer", b'{"seq": 1, "id": "a-1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [16], "frame": 0}]}', b"x" * 64]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(round_trip, count: int) -> tuple[float, float]:
    cpu_before, wall_before = cpu(), time.perf_counter()
    for _ in range(count):
        await round_trip()
    return (cpu() - cpu_before) / count * 1e6, (time.perf_counter() - wall_before) / count * 1e6


async def over_zeromq(folder: str, count: int) -> tuple[float, float]:
    context = zmq.Context()
    endpoint = f"ipc://{folder}/zmq.sock"
    router_socket, dealer_socket = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    router_socket.bind(endpoint)
    dealer_socket.connect(endpoint)
    router, dealer = LoopSocket(router_socket), LoopSocket(dealer_socket)

    async def echo() -> None:
        while True:
            frames = await router.recv()
            router.send([frame.bytes for frame in frames])

    echoing = asyncio.ensure_future(echo())

    async def round_trip() -> None:
        dealer.send(FRAMES)
        await dealer.recv()

    try:
        await timed(round_trip, 500)  # connected and warm
        return await timed(round_trip, count)
    finally:
        echoing.cancel()
        router.close()
        dealer.close()
        context.term()


async def over_unix_stream(folder: str, count: int) -> tuple[float, float]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(4)
                writer.write(head + await reader.readexactly(struct.unpack("<I", head)[0]))
        except asyncio.IncompleteReadError:
            writer.close()  # the client is done

    path = f"{folder}/stream.sock"
    server = await asyncio.start_unix_server(echo, path)
    reader, writer = await asyncio.open_unix_connection(path)
    payload = b"".join(struct.pack("<I", len(frame)) + frame for frame in FRAMES)
    message = struct.pack("<I", len(payload)) + payload

    async def round_trip() -> None:
        writer.write(message)
        head = await reader.readexactly(4)
        await reader.readexactly(struct.unpack("<I", head)[0])

    try:
        await timed(round_trip, 500)
        return await timed(round_trip, count)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=20000)
    args = parser.parse_args()
    uvloop.install()
    with tempfile.TemporaryDirectory() as folder:
        for name, transport in (("ZeroMQ DEALER/ROUTER, ipc", over_zeromq), ("asyncio Unix stream", over_unix_stream)):
            cpu_us, wall_us = asyncio.run(transport(folder, args.round_trips))
            print(f"{name:28s} CPU {cpu_us:5.1f} us, wall {wall_us:5.1f} us per round trip")


if __name__ == "__main__":
    main()
