"""`gateway start --config DIR`"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import logs
from .settings import ConfigError, ServerSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gateway", description="Open Inference Protocol (KServe V2) model server")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="serve the models of a config folder")
    start.add_argument("--config", type=Path, default=Path("."), help="folder with settings.json and model folders (default: .)")
    args = parser.parse_args(argv)

    if not args.config.is_dir():
        parser.error(f"--config {args.config}: not a folder")
    try:
        settings = ServerSettings.from_folder(args.config.resolve())
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(settings.log_level, settings.log_format)
    if not settings.access_log:
        logs.access_log.setLevel(logging.WARNING)

    from .server import run

    run(settings)
