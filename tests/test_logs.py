"""The access lines' short path writes exactly what a log record through our handler would."""

import asyncio
import logging

import orjson
import pytest

from gateway import logs


@pytest.fixture
def stderr(capsys):
    """What our handler writes (configure() picks up the stderr capsys put in place)."""
    yield lambda: capsys.readouterr().err
    logging.basicConfig(force=True)  # drop our handler (it holds capsys's stream) for the tests that follow
    logs._access_lines = None


def _both_paths(style: str, stderr) -> tuple[str, str]:
    logs.configure("INFO", style)
    token = logs.REQUEST_ID.set("req-7")
    try:
        logs.access("rest", "POST", "/v2/models/m/versions/2/infer", 200, 1_234_567, "m", "2")
        fast = stderr()
        # the usual path: a record through the same handler
        logs.access_log.addHandler(logging.NullHandler())  # someone else's handler: the short path steps aside
        logs.access("rest", "POST", "/v2/models/m/versions/2/infer", 200, 1_234_567, "m", "2")
    finally:
        logs.REQUEST_ID.reset(token)
        logs.access_log.handlers.clear()
    return fast, stderr()


def _without_time(line: str) -> str:
    return line.split(" ", 2)[2]  # "2026-11-28 15:30:55,123 INFO ..." -> "INFO ..."


def test_text_lines_are_the_same_on_both_paths(stderr):
    fast, usual = _both_paths("text", stderr)
    assert (
        _without_time(fast)
        == _without_time(usual)
        == "INFO [gateway.access] [request req-7] rest POST /v2/models/m/versions/2/infer 200 1.235 ms model=m version=2\n"
    )


def test_json_lines_are_the_same_on_both_paths(stderr):
    fast, usual = (orjson.loads(line) for line in _both_paths("json", stderr))
    assert fast.pop("time")[:16] == usual.pop("time")[:16]
    assert fast == usual
    assert fast["request_id"] == "req-7" and fast["latency_ms"] == 1.235 and fast["status"] == 200


def test_lines_of_one_loop_turn_leave_together_and_none_is_lost(stderr):
    logs.configure("INFO", "text")

    async def serve() -> list[str]:
        for i in range(3):
            logs.access("grpc", "ModelInfer", "/inference.GRPCInferenceService/ModelInfer", "OK", 1000, f"m{i}", None)
        held = stderr()  # written at the end of this turn, not line by line
        await asyncio.sleep(0)
        return [held, stderr()]

    held, written = asyncio.run(serve())
    assert held == ""
    assert [line.rsplit(" ", 1)[1] for line in written.splitlines()] == ["model=m0", "model=m1", "model=m2"]
