"""`gateway start [FOLDER]`, `gateway probe [FOLDER]`, `gateway --version`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import logs
from .settings import PATH_SETTINGS, ConfigError, Layer, ServerSettings
from .version import __version__

# the settings users reach for, as flags of `gateway start` (every setting can be given in
# settings.json and the environment too): setting -> flag, metavar (None: an on/off switch)
FLAGS = {
    "host": ("--host", "ADDRESS"),
    "http_port": ("--http-port", "PORT"),
    "grpc_port": ("--grpc-port", "PORT"),
    "metrics_port": ("--metrics-port", "PORT"),
    "parallel_workers": ("--workers", "N"),
    "frontdoor_workers": ("--frontdoor-workers", "N"),
    "model_repository": ("--model-repository", "DIR"),
    "request_timeout": ("--request-timeout", "SECONDS"),
    "log_level": ("--log-level", "LEVEL"),
    "log_format": ("--log-format", "FORMAT"),
    "access_log": ("--access-log", None),
    "metrics_on_http": ("--metrics-on-http", None),
    "enable_docs_url": ("--enable-docs-url", None),
    # token values have no flag: a command line is visible to every user of the machine (ps)
    "inference_tokens_file": ("--inference-tokens-file", "FILE"),
    "repository_tokens_file": ("--repository-tokens-file", "FILE"),
    "metrics_tokens_file": ("--metrics-tokens-file", "FILE"),
    "tls_cert_file": ("--tls-cert-file", "FILE"),
    "tls_key_file": ("--tls-key-file", "FILE"),
    "tls_ca_file": ("--tls-ca-file", "FILE"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Open Inference Protocol (KServe V2) model server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "start",
        help="serve the models of a folder",
        description="Serve the models of FOLDER (model-settings.json files below it) with the settings of FOLDER/settings.json.",
        epilog="Each setting is taken from the first of: these flags, GATEWAY_<SETTING> environment variables, "
        "settings.json, MLSERVER_<SETTING> environment variables, the default (README, Configuration).",
    )
    start.add_argument("folder", nargs="?", type=Path, help="folder with settings.json and the model folders, as `mlserver start FOLDER` (default: .)")
    start.add_argument("--config", type=Path, metavar="FOLDER", help="the same folder, as a flag")
    for setting, (flag, metavar) in FLAGS.items():
        field = ServerSettings.model_fields[setting]
        default = "the config folder" if setting == "model_repository" else field.get_default(call_default_factory=True)
        default = "none" if default is None else default
        help_text = f"{field.description} (default: {default})"
        if metavar is None:
            start.add_argument(flag, dest=setting, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            start.add_argument(flag, dest=setting, metavar=metavar, help=help_text)

    probe = commands.add_parser(
        "probe",
        help="exit 0 if the gateway serving a folder is ready",
        description="Ask the gateway that serves FOLDER (found by the settings `gateway start FOLDER` reads) whether it is ready: "
        "exit status 0 if it answers 200, 1 otherwise. A container health check or a Kubernetes exec probe.",
    )
    probe.add_argument("folder", nargs="?", type=Path, help="the folder given to `gateway start` (default: .)")
    probe.add_argument("--config", type=Path, metavar="FOLDER", help="the same folder, as a flag")
    what = probe.add_mutually_exclusive_group()
    what.add_argument("--live", action="store_true", help="ask whether it is live (/v2/health/live) rather than ready")
    what.add_argument("--model", metavar="NAME", help="ask whether this model is ready (/v2/models/NAME/ready)")
    probe.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="for the answer (default: 2)")
    probe.add_argument("--cert", type=Path, metavar="FILE", help="under mutual TLS, the client certificate to present (default: the server's own)")
    probe.add_argument("--key", type=Path, metavar="FILE", help="the private key of --cert")
    return parser


def _folder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    if args.folder and args.config and args.folder.resolve() != args.config.resolve():
        parser.error(f"two folders given: {args.folder} and --config {args.config}")
    folder = args.folder or args.config or Path(".")
    if not folder.is_dir():
        parser.error(f"{folder}: not a folder")
    return folder.resolve()


def _settings(folder: Path, flags: Layer) -> ServerSettings:
    """The settings of a folder; their errors end the command (status 2)."""
    held = logs.hold()  # loading the settings may warn, before the logging they set up exists
    try:
        settings = ServerSettings.from_folder(folder, flags)
    except ConfigError as exc:
        logs.configure("INFO", "text")
        logs.release(held)
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(settings.log_level, settings.log_format, front_door=1 if settings.frontdoor_workers > 1 else None)
    logs.release(held)
    return settings


def _probe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from .frontdoor.probe import probe, probe_path

    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    settings = _settings(_folder(parser, args), Layer())
    try:
        answer = probe(settings, probe_path(args.live, args.model), args.timeout, args.cert, args.key)
    except ConfigError as exc:
        print(f"gateway probe: {exc}", file=sys.stderr)
        sys.exit(2)
    if not answer.ok:
        print(f"gateway probe: {answer.url}: {answer.status or 'no answer'}: {answer.detail}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "probe":
        _probe(parser, args)
        return

    folder = _folder(parser, args)
    flags = Layer()
    for setting, (flag, _) in FLAGS.items():
        value = getattr(args, setting)
        if value is not None:
            if setting in PATH_SETTINGS:
                value = Path(value).resolve()  # a path typed in a shell is relative to where it is typed
            flags.set(setting, value, f"command-line flag {flag}")
    settings = _settings(folder, flags)
    if not settings.access_log:
        logs.access_log.setLevel(logging.WARNING)

    from .frontdoor.server import run

    run(settings)
