"""TLS for every port the gateway listens on (REST, gRPC, metrics), from PEM files (docs/SECURITY.md).

With `tls_ca_file`, clients must present a certificate signed by one of its CAs (mutual TLS):
a client without one, or with one the CAs did not sign, is refused during the handshake, before
any request is read. The files are read once, at start-up; a new certificate takes a restart
(a rolling one under Kubernetes).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import grpc

from ..settings import ConfigError

if TYPE_CHECKING:
    from ..settings import ServerSettings


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class TLS:
    cert_file: Path
    key_file: Path
    ca_file: Optional[Path]
    cert: bytes
    key: bytes
    ca: Optional[bytes]

    @classmethod
    def load(cls, settings: "ServerSettings") -> Optional["TLS"]:
        """The settings' TLS files, checked (ConfigError naming the setting), or None when TLS is off."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        ca_file = settings.tls_ca_file
        tls = cls(
            settings.tls_cert_file,
            settings.tls_key_file,
            ca_file,
            _read(settings.tls_cert_file, "tls_cert_file"),
            _read(settings.tls_key_file, "tls_key_file"),
            None if ca_file is None else _read(ca_file, "tls_ca_file"),
        )
        tls.ssl_context()  # the same checks as at serving time, now, with a message that names the files
        return tls

    @property
    def mutual(self) -> bool:
        return self.ca is not None

    def ssl_context(self) -> ssl.SSLContext:
        """The REST and metrics ports' context: TLS 1.2 or later, Python's default ciphers."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"tls_cert_file {self.cert_file} and tls_key_file {self.key_file}: not a PEM certificate and its private key: {exc}") from None
        if self.ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"tls_ca_file {self.ca_file}: not PEM CA certificates: {exc}") from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca, require_client_auth=self.mutual)

    def describe(self) -> str:
        clients = f"client certificates required, signed by {self.ca_file}" if self.mutual else "no client certificates"
        return f"TLS with {self.cert_file} ({clients})"
