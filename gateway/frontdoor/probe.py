"""`gateway probe [FOLDER]`: ask the gateway that serves FOLDER whether it is ready (or live), as a
container's health check or a Kubernetes `exec` probe does: exit status 0 when it answers 200, 1
(with the reason on stderr) when it answers anything else or cannot be reached.

It reads the same settings as `gateway start FOLDER` (settings.json, the GATEWAY_* and MLSERVER_*
variables), so it finds the REST port wherever it was set and speaks TLS when the gateway does.
Like the kubelet's probes, it does not verify the server's certificate: it talks to 127.0.0.1 and
checks that the gateway serves, not who it is. Under mutual TLS it presents a client certificate:
`--cert`/`--key`, by default the server's own pair (which serves when its CA signs it and it may
authenticate clients, as a cert-manager certificate with the `client auth` usage). A model's
readiness needs an inference token when tokens are on: it sends the first of the settings'."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..settings import ServerSettings
from .access import Scope, client_token

# a gateway listening on every address is reached on the loopback of the same family
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass
class Probe:
    url: str
    status: Optional[int]  # None: no answer
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == 200


def probe_path(live: bool, model: Optional[str]) -> str:
    if model is not None:
        return f"/v2/models/{urllib.parse.quote(model, safe='')}/ready"
    return "/v2/health/live" if live else "/v2/health/ready"


def _tls_context(settings: ServerSettings, cert: Optional[Path], key: Optional[Path]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if settings.tls_ca_file is not None:  # mutual TLS: the gateway refuses a client without a certificate
        if cert is None or key is None:
            cert, key = settings.tls_cert_file, settings.tls_key_file
        assert cert is not None and key is not None  # the settings hold both under TLS
        context.load_cert_chain(cert, key)
    return context


def probe(settings: ServerSettings, path: str, timeout: float, cert: Optional[Path] = None, key: Optional[Path] = None) -> Probe:
    """GET `path` on the gateway `settings` describe (ConfigError: its token cannot be read)."""
    token = client_token(settings, Scope.INFERENCE) if path.startswith("/v2/models/") else None
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    host = LOOPBACK.get(settings.host, settings.host)
    tls = settings.tls_cert_file is not None
    netloc = f"[{host}]:{settings.http_port}" if ":" in host else f"{host}:{settings.http_port}"
    url = f"{'https' if tls else 'http'}://{netloc}{path}"
    connection: http.client.HTTPConnection | None = None
    try:
        if tls:
            connection = http.client.HTTPSConnection(host, settings.http_port, timeout=timeout, context=_tls_context(settings, cert, key))
        else:
            connection = http.client.HTTPConnection(host, settings.http_port, timeout=timeout)
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        body = answer.read(2048).decode(errors="replace").strip()
        return Probe(url, answer.status, body)
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, a failed handshake, a client certificate that cannot be read
        return Probe(url, None, f"{type(exc).__name__}: {exc}")
    finally:
        if connection is not None:
            connection.close()
