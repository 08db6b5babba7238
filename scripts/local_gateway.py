"""A gateway that a measuring script runs from a source tree, on 127.0.0.1: started as a
subprocess, waited for until ready, stopped when the script is done with it.

Kept apart from ports.py, which ten scripts import for free_port and refused alone: this module
starts processes and speaks HTTP.
"""

import http.client
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Optional

from ports import free_port, gateway_env


class LocalGateway(NamedTuple):
    pid: int  # the main process's (its workers and relay front doors are its children)
    http_port: int
    metrics_port: int


@contextmanager
def started_gateway(tree: Path, config: Path, extra_env: Optional[Mapping[str, str]] = None, **settings: str) -> Iterator[LocalGateway]:
    """`gateway start --config CONFIG` from the source `tree`, on ports the OS picks, with any
    GATEWAY_<NAME> given as NAME=value and then `extra_env` (which may override them); ready when
    entered, stopped (SIGTERM, then waited for) when left. Its output is dropped: a script's own
    output is its figures."""
    http_port = free_port()
    env = {**gateway_env(tree, http_port, **settings), **(extra_env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "start", "--config", str(config)], env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        connect(http_port).close()
        yield LocalGateway(process.pid, http_port, int(env["GATEWAY_METRICS_PORT"]))
    finally:
        process.terminate()
        process.wait()


def connect(port: int, timeout: float = 60.0) -> http.client.HTTPConnection:
    """A kept-alive connection to the gateway on `port`, once it answers ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port)
            connection.request("GET", "/v2/health/ready")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return connection
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the gateway did not become ready")
