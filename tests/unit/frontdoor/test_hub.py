"""RelayHub.sync (the wait, at a scrape, for the relay front doors' counts): real ZeroMQ sockets over
ipc, on a real loop; a DEALER stands for a relay front door."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import uvloop
import zmq

from gateway.frontdoor import hub
from gateway.wire import messages

DOOR = b"front door 2#0"


def run(tmp_path: Path, test) -> None:
    """`await test(relay_hub, door)`: a hub whose one member is `door`, a connected DEALER."""
    context = zmq.Context()

    async def with_hub() -> None:
        endpoint = f"ipc://{tmp_path}/hub.sock"
        relay_hub = hub.RelayHub(None, endpoint, lambda: [DOOR])  # type: ignore[arg-type]  # sync needs no data plane
        door = context.socket(zmq.DEALER)
        door.setsockopt(zmq.IDENTITY, DOOR)
        door.connect(endpoint)
        while True:  # until the hub knows the door (its ROUTER refuses a peer it does not know yet)
            try:
                relay_hub._socket.send([DOOR, b"hello"], now=True)
                break
            except zmq.ZMQError:
                await asyncio.sleep(0.01)
        assert door.recv_multipart() == [b"hello"]
        try:
            await asyncio.wait_for(test(relay_hub, door), 10)
        finally:
            await relay_hub.close()

    try:
        uvloop.run(with_hub())
    finally:
        context.destroy(linger=0)


def test_a_front_door_that_answers_ends_the_wait(tmp_path):
    async def test(relay_hub, door) -> None:
        syncing = asyncio.get_running_loop().create_task(relay_hub.sync())
        while not door.poll(0):
            await asyncio.sleep(0.01)
        kind, body = door.recv_multipart()
        assert kind == messages.SYNC
        door.send_multipart(messages.control_frames(messages.ANSWER, {"seq": orjson.loads(body)["seq"]}))
        await asyncio.wait_for(syncing, 1)  # well before SYNC_TIMEOUT
        assert relay_hub._syncs == {}

    run(tmp_path, test)


def test_a_front_door_that_does_not_answer_leaves_nothing_waiting(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A stuck front door: each scrape waits SYNC_TIMEOUT for it, then forgets its wait (it kept one per scrape)."""
    monkeypatch.setattr(hub, "SYNC_TIMEOUT", 0.05)

    async def test(relay_hub, door) -> None:
        for _ in range(3):
            await relay_hub.sync()
        assert relay_hub._syncs == {}
        assert [door.recv_multipart()[0] for _ in range(3)] == [messages.SYNC] * 3  # each scrape asked

    run(tmp_path, test)
