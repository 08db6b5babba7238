"""Who may call what: the bearer tokens of the front doors (docs/SECURITY.md).

Every REST route and every gRPC method belongs to one scope. A scope with tokens
(from a file of one token per line, or from an environment variable) answers
only requests that present one of them, over REST as `Authorization: Bearer
<token>` and over gRPC as the metadata `authorization: Bearer <token>`; a scope
without tokens is open. Health, liveness and readiness are always open, for the
probes of Kubernetes and load balancers.

The rules live here alone: the REST front door (rest/app.py) and the gRPC one
(grpc/server.py, grpc/health.py) only look up the scope of what is called and
ask `check`. A route or RPC missing from the tables below stops the gateway at
start-up, so that nothing new is ever served without a decision about its scope.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..errors import Unauthenticated
from ..settings import ConfigError

if TYPE_CHECKING:
    from ..settings import ServerSettings

log = logging.getLogger("gateway.access")


class Scope(enum.Enum):
    OPEN = "open"
    INFERENCE = "inference"
    REPOSITORY = "repository"
    METRICS = "metrics"


PROTECTED = (Scope.INFERENCE, Scope.REPOSITORY, Scope.METRICS)

# REST routes by name (a versioned twin, `<name>_version`, has its route's scope)
REST = {
    # probes, and what describes the server and its API without naming a model (`GET /` is KServe's liveness path)
    "live": Scope.OPEN,
    "ready": Scope.OPEN,
    "server_metadata": Scope.OPEN,
    "server_metadata_v2": Scope.OPEN,
    "server_metadata_health": Scope.OPEN,  # MLRun's /v2/health
    "openapi": Scope.OPEN,
    "docs": Scope.OPEN,
    "docs_asset": Scope.OPEN,
    # everything that names models or runs them
    "list_models": Scope.INFERENCE,
    "model_metadata": Scope.INFERENCE,
    "model_ready": Scope.INFERENCE,
    "infer": Scope.INFERENCE,
    "explain": Scope.INFERENCE,
    "infer_dict": Scope.INFERENCE,
    "generate": Scope.INFERENCE,  # MLServer's names of infer, and its streams (server-sent events)
    "infer_stream": Scope.INFERENCE,
    "generate_stream": Scope.INFERENCE,
    "predict": Scope.INFERENCE,  # MLRun's names of infer and infer_dict, and its POST / naming the model in the body
    "predict_dict": Scope.INFERENCE,
    "infer_named_in_body": Scope.INFERENCE,
    # KServe V1 (gateway.kserve's models): a model's readiness too, as V2's, since it tells which models exist
    "v1_models": Scope.INFERENCE,
    "v1_model_ready": Scope.INFERENCE,
    "v1_verb": Scope.INFERENCE,  # the route of :predict and :explain, which the API document lists apart
    "v1_predict": Scope.INFERENCE,
    "v1_explain": Scope.INFERENCE,
    "repository_index": Scope.REPOSITORY,
    "repository_load": Scope.REPOSITORY,
    "repository_unload": Scope.REPOSITORY,
    "statistics": Scope.METRICS,
    "statistics_all": Scope.METRICS,
    "metrics_endpoint": Scope.METRICS,
}

# the methods of inference.GRPCInferenceService
GRPC = {
    "ServerLive": Scope.OPEN,
    "ServerReady": Scope.OPEN,
    "ServerMetadata": Scope.OPEN,
    "ModelReady": Scope.INFERENCE,
    "ModelMetadata": Scope.INFERENCE,
    "ModelConfig": Scope.INFERENCE,
    "ModelInfer": Scope.INFERENCE,
    "ModelStreamInfer": Scope.INFERENCE,
    "SystemSharedMemoryStatus": Scope.INFERENCE,
    "SystemSharedMemoryRegister": Scope.INFERENCE,
    "SystemSharedMemoryUnregister": Scope.INFERENCE,
    "RepositoryIndex": Scope.REPOSITORY,
    "RepositoryModelLoad": Scope.REPOSITORY,
    "RepositoryModelUnload": Scope.REPOSITORY,
    "ModelStatistics": Scope.METRICS,
}


def health_scope(rpc: str, whole_server: bool) -> Scope:
    """grpc.health.v1.Health: Check and Watch of the whole server's status are open, for probes; of a
    model's status (or of an unknown name's, which tells that no such model exists) they need the
    inference token, as List does, which names every model."""
    return Scope.OPEN if rpc in ("Check", "Watch") and whole_server else Scope.INFERENCE


def rest_scope(route_name: str) -> Scope:
    """The scope of a REST route, by its name (without the app's prefix); KeyError for a route no one decided on."""
    return REST[route_name.removesuffix("_version")]


RELOAD_INTERVAL = 1.0  # seconds between looks at the token files (a stat() each)

# RFC 6750's b64token: what a client can put after "Bearer "
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
BEARER = re.compile(r"bearer +(\S+) *", re.IGNORECASE)


def _digest(token: str | bytes) -> bytes:
    # tokens are compared as digests: equal lengths, so neither the comparison's time nor an early
    # mismatch tells a client anything about a token's length or content
    return hashlib.sha256(token if isinstance(token, bytes) else token.encode()).digest()


def _parse_tokens(text: str, where: str) -> list[str]:
    """Tokens separated by newlines (a file) or commas and spaces (a variable); `#` starts a comment line."""
    tokens = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        tokens += [token for token in re.split(r"[,\s]+", line) if token]
    for token in tokens:
        if not TOKEN.fullmatch(token):
            # never quote the token: the message goes to the log
            raise ConfigError(
                f"{where}: a token of {len(token)} characters has characters a bearer token cannot carry (letters, digits, -._~+/ and trailing =)"
            )
    if not tokens:
        raise ConfigError(f"{where}: no token in it (one token per line; to leave the scope open, do not set it)")
    return tokens


def _signature(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is rewritten or replaced (a Kubernetes Secret volume swaps a symlink)."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


def _read_tokens(scope: Scope, path: Path) -> list[str]:
    setting = f"{scope.value}_tokens_file"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc}") from None
    return _parse_tokens(text, f"{setting} {path}")


class Access:
    """The tokens of each scope, loaded at start-up (`ConfigError` for a file or variable that cannot be
    used); token files are read again when they change (`watch`), so that tokens rotate without a restart."""

    def __init__(self, settings: "ServerSettings"):
        self.digests: dict[Scope, list[bytes]] = {}
        self.sources: dict[Scope, str] = {}
        self.files: dict[Scope, tuple[Path, Optional[tuple]]] = {}  # the token files, and their signature when last read
        for scope in PROTECTED:
            secret = getattr(settings, f"{scope.value}_tokens")
            path: Optional[Path] = getattr(settings, f"{scope.value}_tokens_file")
            if secret is not None:
                where = f"environment variable GATEWAY_{scope.value.upper()}_TOKENS"
                self._set(scope, _parse_tokens(secret.get_secret_value(), where), where)
            elif path is not None:
                try:
                    signature = _signature(path)
                except OSError as exc:
                    raise ConfigError(f"{scope.value}_tokens_file: cannot read {path}: {exc.strerror or exc}") from None
                self._set(scope, _read_tokens(scope, path), str(path))
                self.files[scope] = (path, signature)

    def _set(self, scope: Scope, tokens: list[str], where: str) -> None:
        self.digests[scope] = [_digest(token) for token in tokens]
        self.sources[scope] = f"{len(tokens)} token{'s' if len(tokens) > 1 else ''} from {where}"

    def reload(self) -> None:
        """Read again the token files that changed since they were last read. A file that cannot be used
        now (gone, empty, a malformed token) leaves its scope's tokens as they were, with an error in the
        log: a mistake while rotating never opens a scope, nor locks every client out."""
        for scope, (path, seen) in self.files.items():
            try:
                signature: Optional[tuple] = _signature(path)
            except OSError:
                signature = None
            if signature == seen:
                continue
            self.files[scope] = (path, signature)  # each change is read (and reported) once
            try:
                tokens = _read_tokens(scope, path)
            except ConfigError as exc:
                log.error("%s: the %s tokens read before stay in force", exc, scope.value)
                continue
            self._set(scope, tokens, str(path))
            log.info("%s tokens reloaded: %s", scope.value, self.sources[scope])

    async def watch(self) -> None:
        """Look at the token files every RELOAD_INTERVAL seconds, for as long as the gateway serves."""
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            self.reload()

    def protects(self, scope: Scope) -> bool:
        return scope in self.digests

    def describe(self) -> str:
        """One log line: which scopes need a token, and where the tokens came from."""
        return "; ".join(f"{scope.value}: {self.sources.get(scope, 'open (no tokens)')}" for scope in PROTECTED)

    def check(self, scope: Scope, authorization: Optional[str]) -> None:
        """Raise Unauthenticated unless `authorization` (the header's or metadata's value) is `Bearer <token>`
        with a token of the scope. The answer is the same for a missing, malformed and wrong token, and says
        nothing about models: the check comes before anything looks at the request's model."""
        digests = self.digests.get(scope)
        if digests is None:
            return
        match = BEARER.fullmatch(authorization) if authorization else None
        if match is not None:
            presented = _digest(match.group(1).encode("utf-8", "replace"))
            valid = False
            for digest in digests:  # every token is compared: the time does not say which one matched
                valid |= hmac.compare_digest(presented, digest)
            if valid:
                return
        raise Unauthenticated(f"this endpoint needs a valid {scope.value} token: send the header (gRPC: metadata) 'authorization: Bearer <token>'")


def configured_scopes(settings: "ServerSettings") -> set[Scope]:
    """The scopes the settings protect (for the API document, without reading any file)."""
    return {
        scope for scope in PROTECTED if getattr(settings, f"{scope.value}_tokens") is not None or getattr(settings, f"{scope.value}_tokens_file") is not None
    }


def client_token(settings: "ServerSettings", scope: Scope) -> Optional[str]:
    """The first token of the scope, for a client of this very gateway (`gateway probe`); None: the scope is open."""
    secret = getattr(settings, f"{scope.value}_tokens")
    if secret is not None:
        return _parse_tokens(secret.get_secret_value(), f"environment variable GATEWAY_{scope.value.upper()}_TOKENS")[0]
    path: Optional[Path] = getattr(settings, f"{scope.value}_tokens_file")
    return None if path is None else _read_tokens(scope, path)[0]
