"""Ports for the gateways the scripts start: picked by the OS (bind to port 0), never fixed; and
whether one still listens."""

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
