"""`python -m gateway.relay`: a relay front door (`frontdoor_workers` above 1), started and restarted
by the gateway's main process (gateway/frontdoor/hub.py), never by hand. It serves the same REST,
gRPC and metrics ports (SO_REUSEPORT) and relays what it is sent to the main process
(gateway/frontdoor/relayed.py)."""

from __future__ import annotations

import argparse
import logging
import os

from . import logs
from .settings import ServerSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.relay", description="a relay front door of the gateway (started by its main process)")
    parser.add_argument("--number", required=True, type=int, help="this front door's number (2 and up; the main process is 1)")
    parser.add_argument("--endpoint", required=True, help="the main process's ZeroMQ endpoint for front doors")
    parser.add_argument("--identity", required=True, help="this process's identity on that socket")
    parser.add_argument("--parent", required=True, type=int, help="the main process's id: this one dies with it")
    parser.add_argument("--settings-fd", required=True, type=int, help="a pipe holding the settings as JSON (tokens included)")
    parser.add_argument("--table-fd", required=True, type=int, help="a read-only descriptor of the model table the supervisor publishes")
    args = parser.parse_args(argv)

    from workers.worker import die_with_parent

    die_with_parent(args.parent)  # PR_SET_PDEATHSIG, as the model workers
    with os.fdopen(args.settings_fd, "rb") as pipe:
        settings = ServerSettings.model_validate_json(pipe.read())
    logs.configure(settings.log_level, settings.log_format, front_door=args.number)
    if not settings.access_log:
        logs.access_log.setLevel(logging.WARNING)

    from .control.table import TableReader
    from .frontdoor.relayed import MainProcess
    from .frontdoor.server import run_relay

    run_relay(settings, args.number, MainProcess(args.endpoint, args.identity), TableReader(args.table_fd))


if __name__ == "__main__":
    main()
