"""Ports for the gateways the scripts start: picked by the OS (bind to port 0), never fixed; and
whether one still listens."""

import os
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port: int) -> bool:
    """Whether a new connection to the port is refused: nothing listens there (any other error: not known, False)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def gateway_env(tree, http_port: int, **settings: str) -> dict[str, str]:
    """The environment of a gateway started from the source `tree` on 127.0.0.1: REST on `http_port`,
    gRPC and metrics on ports the OS picks, and any GATEWAY_<NAME> given as NAME=value."""
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_HTTP_PORT": str(http_port),
        "GATEWAY_GRPC_PORT": str(free_port()),
        "GATEWAY_METRICS_PORT": str(free_port()),
        **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
    }
