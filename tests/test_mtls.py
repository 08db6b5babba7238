"""Mutual TLS (tls_ca_file) together with bearer tokens, on one gateway: a client with a certificate
of the CA is served over REST and gRPC (tritonclient's ssl clients); one without a certificate, or
with a certificate of another CA, is refused during the handshake, before any request is read."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from geventhttpclient.response import HTTPConnectionClosed

from . import certificates
from .conftest import ROOT, assert_serves_large
from .test_tls import context_factory

TOKEN = "inference-token-for-mtls-0123"
AUTHORIZATION = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> certificates.Certificates:
    return certificates.make(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def trusted(certs, tmp_path_factory) -> Path:
    """The CA file the gateway reads: a copy of the test CA's, which test_the_ca_file_rotates_without_a_restart rewrites."""
    path = tmp_path_factory.mktemp("trusted") / "ca.crt"
    shutil.copy(certs.ca, path)
    return path


@pytest.fixture(scope="module")
def gateway(start_gateway, certs, trusted):
    gateway = start_gateway(
        ROOT / "tests" / "repository",
        https=True,
        tls_cert_file=certs.server.cert,
        tls_key_file=certs.server.key,
        tls_ca_file=trusted,
        env={"GATEWAY_INFERENCE_TOKENS": TOKEN},
    )
    gateway.requests_options = {"verify": str(certs.ca), "cert": (str(certs.client.cert), str(certs.client.key)), "headers": AUTHORIZATION}
    gateway.http_client_options = {"ssl": True, "ssl_context_factory": context_factory(certs.ca, certs.client)}
    return gateway.wait_ready()


def answer_over_tls(port: int, certs, client: certificates.Pair | None) -> bytes:
    """Connect with Python's ssl presenting `client` (or nothing), ask for liveness: the answer, or b""
    when the server closed the connection or sent a TLS alert. (Under TLS 1.3 the server checks the
    client's certificate after the client's side of the handshake: its refusal shows on the first read.)"""
    context = ssl.create_default_context(cafile=str(certs.ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        try:
            tls.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            return tls.recv(4096)
        except (ssl.SSLError, ConnectionResetError):
            return b""


def test_a_client_certificate_of_the_ca_is_served(gateway, certs):
    client = httpclient.InferenceServerClient(gateway.address, ssl=True, ssl_context_factory=context_factory(certs.ca, certs.client))
    try:
        assert client.is_server_ready()
        assert client.get_model_metadata("echo", headers=AUTHORIZATION)["name"] == "echo"
    finally:
        client.close()
    for port in (gateway.http_port, gateway.metrics_port):
        assert answer_over_tls(port, certs, certs.client).startswith(b"HTTP/1.1 ")  # an answer (the metrics port: 404)
    assert_serves_large(gateway, "echo", headers=AUTHORIZATION)


@pytest.mark.parametrize("who", ["none", "stranger"])
def test_rest_without_a_certificate_of_the_ca_is_refused_at_the_handshake(gateway, certs, who):
    client = None if who == "none" else certs.stranger
    for port in (gateway.http_port, gateway.metrics_port):
        assert answer_over_tls(port, certs, client) == b""  # not even a probe is answered
    with pytest.raises(requests.ConnectionError):  # a TLS alert, or the connection closed
        requests.get(f"{gateway.url}/v2/health/live", verify=str(certs.ca), cert=None if client is None else (str(client.cert), str(client.key)), timeout=10)
    triton = httpclient.InferenceServerClient(gateway.address, ssl=True, ssl_context_factory=context_factory(certs.ca, client))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, HTTPConnectionClosed)):
            triton.is_server_live()
    finally:
        triton.close()
    assert_serves_large(gateway, "echo", headers=AUTHORIZATION)


def grpc_client(gateway, certs, client: certificates.Pair | None) -> grpcclient.InferenceServerClient:
    keys = {} if client is None else {"private_key": str(client.key), "certificate_chain": str(client.cert)}
    return grpcclient.InferenceServerClient(gateway.grpc_url, ssl=True, root_certificates=str(certs.ca), **keys)


def test_grpc_with_a_certificate_of_the_ca(gateway, certs):
    client = grpc_client(gateway, certs, certs.client)
    try:
        assert client.is_server_live()
        x = np.arange(16384, dtype=np.float32)  # 64 KiB: through shared memory
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("echo", [tensor], headers=AUTHORIZATION).as_numpy("x"), x)
    finally:
        client.close()


@pytest.mark.parametrize("who", ["none", "stranger"])
def test_grpc_without_a_certificate_of_the_ca_is_refused(gateway, certs, who):
    client = grpc_client(gateway, certs, None if who == "none" else certs.stranger)
    try:
        with pytest.raises(Exception) as caught:
            client.is_server_live(client_timeout=10)
        assert "UNAVAILABLE" in str(caught.value), caught.value  # no connection: nothing was called
    finally:
        client.close()
    assert_serves_large(gateway, "echo", headers=AUTHORIZATION)


def test_probe_presents_a_client_certificate_and_the_token(gateway, certs):
    """Under mutual TLS `gateway probe` presents --cert/--key, and a model's readiness sends the inference token."""
    client = ("--cert", str(certs.client.cert), "--key", str(certs.client.key))
    for args in ((), ("--model", "echo")):
        probed = gateway.probe(*args, *client)
        assert probed.returncode == 0, probed.stderr
    # by default it presents the server's own certificate, which these tests' CA issued for server authentication only
    refused = gateway.probe()
    assert refused.returncode == 1 and "no answer" in refused.stderr, refused.stderr
    halved = gateway.probe("--cert", str(certs.client.cert))
    assert halved.returncode == 2 and "--cert and --key go together" in halved.stderr
    assert_serves_large(gateway, "echo", headers=AUTHORIZATION)


def grpc_live(gateway, certs, client: certificates.Pair) -> bool:
    """Whether a new gRPC connection presenting `client` is served."""
    triton = grpc_client(gateway, certs, client)
    try:
        return bool(triton.is_server_live(client_timeout=10))
    except Exception:
        return False
    finally:
        triton.close()


def test_the_ca_file_rotates_without_a_restart(gateway, certs, trusted):
    """Another CA written over tls_ca_file: new connections with its certificates are served, and those of
    the CA it replaced are refused, over REST, metrics and gRPC; the old file back, the old clients again."""

    def served(client: certificates.Pair) -> bool:
        rest = [answer_over_tls(port, certs, client).startswith(b"HTTP/1.1 ") for port in (gateway.http_port, gateway.metrics_port)]
        return all(rest) and grpc_live(gateway, certs, client)

    def wait_until(condition, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.1)

    assert served(certs.client) and not served(certs.stranger)
    try:
        trusted.write_bytes((certs.ca.parent / "other-ca.crt").read_bytes())  # the stranger's CA
        wait_until(lambda: served(certs.stranger))
        assert answer_over_tls(gateway.http_port, certs, certs.client) == b"" and not grpc_live(gateway, certs, certs.client)
    finally:
        trusted.write_bytes(certs.ca.read_bytes())
    wait_until(lambda: served(certs.client))
    assert answer_over_tls(gateway.http_port, certs, certs.stranger) == b""
    assert_serves_large(gateway, "echo", headers=AUTHORIZATION)
