"""TLS for every port the gateway listens on (REST, gRPC, metrics), from PEM files (docs/SECURITY.md).

With `tls_ca_file`, clients must present a certificate signed by one of its CAs (mutual TLS):
a client without one, or with one the CAs did not sign, is refused during the handshake, before
any request is read.

Certificates rotate without a restart: every front-door process looks at the files each second
(`watch`, as at the token files) and, once they changed and make a usable set, gives the new
ones to every new connection. REST and metrics: each handshake moves to the newest SSL context
(the listening context's SNI callback, which OpenSSL calls whether or not the client sends a
name); gRPC: grpc asks for the newest certificate configuration before each handshake. Files
that cannot be used (a rotation half-written, a key of another certificate) leave the set in
force, with an error in the log, until they change again. Connections already open keep what
they began with (gRPC's live long: grpc_max_connection_age bounds them).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import grpc

from ..settings import ConfigError

if TYPE_CHECKING:
    from ..settings import ServerSettings

log = logging.getLogger("gateway.tls")

RELOAD_INTERVAL = 1.0  # seconds between looks at the certificate files (a stat() of each)


def _read_file(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def _signature(path: Path) -> Optional[tuple[int, int, int, int]]:
    """What changes when a file is rewritten or replaced (a Kubernetes Secret volume swaps a symlink); None: unreadable."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True)
class _Certificates:
    """One reading of the files, checked: what the ports serve."""

    context: ssl.SSLContext  # REST and metrics
    grpc: grpc.ServerCertificateConfiguration


class TLS:
    """The settings' TLS files and what every port serves from them, the newest usable reading."""

    def __init__(self, cert_file: Path, key_file: Path, ca_file: Optional[Path]):
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file
        self._seen = self._signatures()
        self._newest = self._read()  # ConfigError: the files cannot be used
        self._listening = self._newest.context  # the context the listeners hold: each handshake moves on to the newest
        self._listening.sni_callback = self._move_to_newest
        self._given_to_grpc = self._newest

    @classmethod
    def load(cls, settings: "ServerSettings") -> Optional["TLS"]:
        """The settings' TLS files, checked (ConfigError naming the setting), or None when TLS is off."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)

    @property
    def mutual(self) -> bool:
        return self.ca_file is not None

    def _files(self) -> list[Path]:
        return [self.cert_file, self.key_file] + ([] if self.ca_file is None else [self.ca_file])

    def _signatures(self) -> list[Optional[tuple[int, int, int, int]]]:
        return [_signature(path) for path in self._files()]

    def _read(self) -> _Certificates:
        cert, key = _read_file(self.cert_file, "tls_cert_file"), _read_file(self.key_file, "tls_key_file")
        ca = None if self.ca_file is None else _read_file(self.ca_file, "tls_ca_file")
        return _Certificates(self._ssl_context(), grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca))

    def _ssl_context(self) -> ssl.SSLContext:
        """A context of the files as they are: TLS 1.2 or later, Python's default ciphers."""
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

    def ssl_context(self) -> ssl.SSLContext:
        """The REST and metrics ports' context."""
        return self._listening

    def _move_to_newest(self, connection: ssl.SSLObject, server_name: Optional[str], context: ssl.SSLContext) -> None:
        newest = self._newest.context
        if context is not newest:
            connection.context = newest

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._newest.grpc, self._grpc_newest, require_client_authentication=self.mutual)

    def _grpc_newest(self) -> Optional[grpc.ServerCertificateConfiguration]:
        """Called by grpc before each handshake (in a thread of its own): the newest configuration, once; None: no change."""
        newest = self._newest
        if newest is self._given_to_grpc:
            return None
        self._given_to_grpc = newest
        return newest.grpc

    def reload(self) -> None:
        """Read the files again if they changed since they were last read; serve them if they can be used."""
        before = self._signatures()
        if before == self._seen:
            return
        try:
            newest = self._read()
        except ConfigError as exc:
            self._seen = before  # each change is reported once
            log.error("%s: the certificate in force stays until the files change again", exc)
            return
        if self._signatures() != before:
            return  # written to while being read: read again at the next look
        self._seen, self._newest = before, newest
        log.info("TLS certificate reloaded from %s: new connections get it", self.cert_file)

    async def watch(self) -> None:
        """Look at the files every RELOAD_INTERVAL seconds, for as long as the gateway serves."""
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            self.reload()

    def describe(self) -> str:
        clients = f"client certificates required, signed by {self.ca_file}" if self.mutual else "no client certificates"
        return f"TLS with {self.cert_file} ({clients}; the files are read again when they change)"
