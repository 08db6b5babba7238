"""Certificates the TLS tests make with the `cryptography` package: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate, and a stranger (a client signed by another CA)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pair:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pair:
    pair = Pair(folder / f"{stem}.crt", folder / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pair


def _certificate(subject: str, issuer: x509.Name, public_key, signing_key, extensions) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def authority(folder: Path, name: str) -> tuple[Pair, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(name, _name(name), key.public_key(), key, [(x509.BasicConstraints(ca=True, path_length=0), True)])
    return _write(folder, name, cert, key), cert, key


def issue(folder: Path, stem: str, ca_cert: x509.Certificate, ca_key, server: bool) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    extensions = [(x509.BasicConstraints(ca=False, path_length=None), True), (x509.ExtendedKeyUsage([usage]), False)]
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        extensions.append((x509.SubjectAlternativeName(names), False))
    cert = _certificate(stem, ca_cert.subject, key.public_key(), ca_key, extensions)
    return _write(folder, stem, cert, key)


@dataclass
class Certificates:
    ca: Path  # the CA that signs the server and the client
    server: Pair
    client: Pair
    stranger: Pair  # a client certificate signed by another CA


def make(folder: Path) -> Certificates:
    ca, ca_cert, ca_key = authority(folder, "test-ca")
    _, other_cert, other_key = authority(folder, "other-ca")
    return Certificates(
        ca=ca.cert,
        server=issue(folder, "server", ca_cert, ca_key, server=True),
        client=issue(folder, "client", ca_cert, ca_key, server=False),
        stranger=issue(folder, "stranger", other_cert, other_key, server=False),
    )


def reissue(folder: Path, stem: str, server: bool) -> Pair:
    """A new certificate and key from the CA `make` wrote in `folder` (a renewal, as cert-manager's)."""
    ca_cert = x509.load_pem_x509_certificate((folder / "test-ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "test-ca.key").read_bytes(), password=None)
    return issue(folder, stem, ca_cert, ca_key, server)
