"""Scale-out: replicas behind a real load balancer (HAProxy, Debian's package) restarted one after the
other under REST and gRPC load (scripts/rolling_restart.py, bounded), and the gRPC connection age
that moves clients of a connection-level balancer between replicas."""

import shutil
import sys
import time

import grpc
import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import rolling_restart  # noqa: E402  (scripts/rolling_restart.py)

DRAIN_DELAY = 2.0


@pytest.fixture(scope="module")
def rolling():
    # not skipped when HAProxy is missing: .ci/run installs it, and this is the only test of the drain behind a balancer
    assert shutil.which("haproxy"), "HAProxy is needed: apt-get install -y haproxy (.ci/run installs it)"
    return rolling_restart.run(
        replicas=2,
        drain_delay=DRAIN_DELAY,
        shutdown_grace=5.0,
        rest_rate=40,
        grpc_rate=40,
        concurrency=4,
        check_interval=0.5,
        settle=1.0,
        request_timeout=20.0,
        log=lambda line: None,
    )


def test_no_request_fails_during_a_rolling_restart(rolling):
    for protocol, summary in rolling["summary"].items():
        assert summary["requests"] > 0, protocol
        assert summary["failures"] == {}, (protocol, summary, rolling_restart.report(rolling))
        assert summary["ok"] == summary["requests"]
    # every replica took its share, REST and gRPC (HAProxy balances each gRPC call, not connections)
    for backend, served in rolling["requests_per_replica"].items():
        assert all(count > 0 for count in served.values()), (backend, served)
    assert rolling["gateway_log_tracebacks"] == {"r0": 0, "r1": 0}


def test_each_replica_leaves_the_rotation_before_its_listeners_close_and_returns_once_ready(rolling):
    restarts = rolling["restarts"]
    assert sorted(restarts) == ["r0", "r1"]
    for name, events in restarts.items():
        assert events["pid_after"] != events["pid_before"], name
        exited = next(key for key in events if key.startswith("exited"))
        assert exited == "exited (0)", (name, events)
        order = ["SIGTERM", "out of rotation (HAProxy: DOWN)", "listeners closed", exited, "started again", "ready", "in rotation (HAProxy: UP)"]
        times = [events[key] for key in order]
        assert times == sorted(times), (name, events)
        # the listeners close when the drain delay is over, not before: the balancer had that long to notice
        assert events["listeners closed"] - events["SIGTERM"] >= DRAIN_DELAY - 0.1, (name, events)
    # one at a time: the second replica was stopped only once the first was back in rotation
    assert restarts["r1"]["SIGTERM"] > restarts["r0"]["in rotation (HAProxy: UP)"]
    # HAProxy's own view, read from its admin socket: each replica went DOWN while it drained, and ended UP
    for name, events in restarts.items():
        changes = [(at, state) for at, server, state in rolling["haproxy_changes"] if server == name]
        assert any(events["SIGTERM"] < at <= events["listeners closed"] and state == "DOWN" for at, state in changes), (name, changes)
        assert changes[-1][1] == "UP", (name, changes)


def test_a_grpc_connection_older_than_grpc_max_connection_age_is_replaced_without_a_failed_call(start_gateway):
    gateway = start_gateway(ROOT / "config", grpc_max_connection_age=0.5).wait_ready()
    channel = grpc.insecure_channel(gateway.grpc_url)
    states: list[grpc.ChannelConnectivity] = []
    channel.subscribe(states.append, try_to_connect=True)
    live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive", request_serializer=None, response_deserializer=None)
    calls, until = 0, time.monotonic() + 2.5
    try:
        while time.monotonic() < until:
            live(b"", timeout=10)  # raises on a failed call
            calls += 1
    finally:
        channel.close()
    # GOAWAY after about 0.5 s: the channel goes idle and connects again, several times
    assert states.count(grpc.ChannelConnectivity.READY) >= 2, (calls, states)
