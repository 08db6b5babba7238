"""Ports for the gateways the scripts start: picked by the OS (bind to port 0), never fixed."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
