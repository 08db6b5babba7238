"""LoopSocket's packing (pack=True): a loop turn's messages to one peer leave as one ZeroMQ
message and come out one by one, in order; and a message read aside and given back (unread);
real ZeroMQ sockets over ipc, on a real loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvloop
import zmq

from gateway.wire.sockets import PACKED, LoopSocket


def run(tmp_path: Path, test, identities: tuple[bytes, ...] = (b"a",)) -> None:
    """`await test(router, dealers)` on a loop, with a ROUTER and one DEALER per identity connected
    (`pair`); every socket is closed afterwards, whatever the test left open."""
    context = zmq.Context()
    try:
        router, dealers = pair(tmp_path, context, identities)
        uvloop.run(asyncio.wait_for(test(router, dealers), 10))
    finally:
        context.destroy(linger=0)


def pair(tmp_path: Path, context: zmq.Context, identities: tuple[bytes, ...] = (b"a",)) -> tuple[zmq.Socket, list[zmq.Socket]]:
    """A ROUTER and one DEALER per identity, connected (a first message from each has crossed)."""
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    endpoint = f"ipc://{tmp_path}/link.sock"
    router.bind(endpoint)
    dealers = []
    for identity in identities:
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, identity)
        dealer.connect(endpoint)
        dealer.send(b"hello")
        assert router.recv_multipart() == [identity, b"hello"]
        dealers.append(dealer)
    return router, dealers


def raw_messages(socket: zmq.Socket) -> list[list[bytes]]:
    """Every ZeroMQ message waiting on the socket, as it came (no unpacking)."""
    got = []
    while socket.poll(200):
        got.append(socket.recv_multipart())
    return got


def test_one_turn_of_messages_leaves_as_one_and_comes_out_in_order(tmp_path):
    async def test(router, dealers):
        (dealer,) = dealers
        sending = LoopSocket(dealer, pack=True)
        for n in range(3):
            sending.send([b"infer", b"%d" % n, b"x" * n])
        await asyncio.sleep(0)  # the turn ends: the outbox leaves
        (packed,) = raw_messages(router)  # one ZeroMQ message for the three
        assert packed[:2] == [b"a", PACKED]
        # the same three messages, unpacked by a packing ROUTER
        sending.send([b"infer", b"0", b""])
        sending.send([b"infer", b"1", b"x"])
        receiving = LoopSocket(router, pack=True)
        got = [[frame.bytes for frame in await receiving.recv()] for _ in range(2)]
        assert got == [[b"a", b"infer", b"0", b""], [b"a", b"infer", b"1", b"x"]]

    run(tmp_path, test)


def test_a_lone_message_leaves_as_it_is(tmp_path):
    async def test(router, dealers):
        (dealer,) = dealers
        sending = LoopSocket(dealer, pack=True)
        sending.send([b"reply", b"{}"])
        await asyncio.sleep(0)
        assert raw_messages(router) == [[b"a", b"reply", b"{}"]]

    run(tmp_path, test)


def test_a_router_packs_per_peer_and_keeps_each_peers_order(tmp_path):
    async def test(router, dealers):
        sending = LoopSocket(router, pack=True)
        for n in range(4):
            sending.send([b"ab"[n % 2 : n % 2 + 1], b"reply", b"%d" % n])
        await asyncio.sleep(0)
        for identity, dealer in zip((b"a", b"b"), dealers):
            receiving = LoopSocket(dealer, pack=True)
            got = [[frame.bytes for frame in await receiving.recv()] for _ in range(2)]
            first = 0 if identity == b"a" else 1
            assert got == [[b"reply", b"%d" % first], [b"reply", b"%d" % (first + 2)]]

    run(tmp_path, test, (b"a", b"b"))


def test_now_sends_at_once_after_what_the_turn_queued_and_raises_for_a_gone_peer(tmp_path):
    async def test(router, dealers):
        (dealer,) = dealers
        sending = LoopSocket(router, pack=True)
        sending.send([b"a", b"item", b"1"])
        sending.send([b"a", b"sync", b"2"], now=True)  # before the turn ends
        assert raw_messages(dealer) == [[b"item", b"1"], [b"sync", b"2"]]
        try:
            sending.send([b"nobody", b"sync", b"3"], now=True)
        except zmq.ZMQError:
            pass
        else:
            raise AssertionError("a message for an unknown peer sent now must raise (ROUTER_MANDATORY)")

    run(tmp_path, test)


def test_a_gone_peer_loses_only_its_own_messages_at_the_turns_end(tmp_path):
    async def test(router, dealers):
        (dealer,) = dealers
        sending = LoopSocket(router, pack=True)
        sending.send([b"gone", b"reply", b"1"])
        sending.send([b"a", b"reply", b"2"])
        await asyncio.sleep(0)  # the flush drops the first peer's message, does not raise into the loop
        assert raw_messages(dealer) == [[b"reply", b"2"]]

    run(tmp_path, test)


def test_close_sends_what_the_turn_queued(tmp_path):
    async def test(router, dealers):
        (dealer,) = dealers
        sending = LoopSocket(dealer, pack=True)
        sending.send([b"account", b"{}"])
        sending.close(linger=1000)
        assert raw_messages(router) == [[b"a", b"account", b"{}"]]

    run(tmp_path, test)


def test_a_message_given_back_wakes_the_reader_that_waits_and_comes_out_in_order(tmp_path):
    """What was read beside a recv that waits (a worker's cancelled(), while a sync call holds its loop)
    and given back (unread) is handed out by that recv at once, in the order it came."""

    async def test(router, dealers):
        (dealer,) = dealers
        receiving = LoopSocket(dealer)
        waiting = asyncio.ensure_future(receiving.recv())
        await asyncio.sleep(0)  # it waits: nothing has come
        router.send_multipart([b"a", b"credit", b"1"])
        router.send_multipart([b"a", b"credit", b"2"])
        for _ in range(2):  # read aside without the loop turning, as while a sync call holds it
            assert dealer.poll(1000)
            receiving.unread(receiving.recv_now())
        got = [await asyncio.wait_for(waiting, 2), await asyncio.wait_for(receiving.recv(), 2)]
        assert [[frame.bytes for frame in frames] for frames in got] == [[b"credit", b"1"], [b"credit", b"2"]]

    run(tmp_path, test)
