"""TLS (gateway/frontdoor/tls.py) on one gateway, with certificates the test makes (tests/certificates.py):
tritonclient's ssl clients over REST and gRPC, the server's certificate on every port (the metrics
port too), no clear-text fallback, and the settings' errors at start-up."""

from __future__ import annotations

import shutil
import ssl
import time

import gevent.ssl
import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from gateway.frontdoor.tls import TLS
from gateway.settings import ConfigError, ServerSettings

from . import certificates
from .conftest import ROOT, assert_serves_large


def context_factory(ca, client: certificates.Pair | None = None):
    """tritonclient.http's ssl_context_factory: trusts `ca`, presents `client` if given."""

    def factory() -> gevent.ssl.SSLContext:
        context = gevent.ssl.create_default_context(cafile=str(ca))
        if client is not None:
            context.load_cert_chain(client.cert, client.key)
        return context

    return factory


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> certificates.Certificates:
    return certificates.make(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def served(certs, tmp_path_factory) -> certificates.Pair:
    """The files the gateway serves: a copy of the server's pair, which test_certificates_rotate_without_a_restart rewrites."""
    folder = tmp_path_factory.mktemp("served")
    pair = certificates.Pair(folder / "tls.crt", folder / "tls.key")
    shutil.copy(certs.server.cert, pair.cert)
    shutil.copy(certs.server.key, pair.key)
    return pair


@pytest.fixture(scope="module")
def gateway(start_gateway, certs, served):
    gateway = start_gateway(ROOT / "tests" / "repository", https=True, tls_cert_file=served.cert, tls_key_file=served.key)
    gateway.requests_options = {"verify": str(certs.ca)}
    gateway.http_client_options = {"ssl": True, "ssl_context_factory": context_factory(certs.ca)}
    return gateway.wait_ready()


def test_tritonclient_http_over_tls(gateway, certs):
    client = httpclient.InferenceServerClient(gateway.address, ssl=True, ssl_context_factory=context_factory(certs.ca))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_model_metadata("echo")["name"] == "echo"
    finally:
        client.close()
    assert_serves_large(gateway, "echo")


def test_tritonclient_grpc_over_tls(gateway, certs):
    client = grpcclient.InferenceServerClient(gateway.grpc_url, ssl=True, root_certificates=str(certs.ca))
    try:
        assert client.is_server_live() and client.is_server_ready()
        x = np.arange(16384, dtype=np.float32)  # 64 KiB: through shared memory
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("echo", [tensor]).as_numpy("x"), x)
    finally:
        client.close()


def test_every_port_presents_the_servers_certificate(gateway, certs):
    expected = ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(certs.server.cert.read_text()))
    for port in (gateway.http_port, gateway.grpc_port, gateway.metrics_port):
        assert ssl.get_server_certificate(("127.0.0.1", port)) == expected, port
    metrics = requests.get(f"https://127.0.0.1:{gateway.metrics_port}/metrics", verify=str(certs.ca), timeout=10)
    assert metrics.status_code == 200 and "gateway_requests_total" in metrics.text


def test_no_clear_text(gateway, certs):
    for port in (gateway.http_port, gateway.metrics_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=10)
    with grpc.insecure_channel(gateway.grpc_url) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/inference.GRPCInferenceService/ServerLive")(b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # a client that does not trust the CA refuses the server (the certificate is what the client checks)
    client = httpclient.InferenceServerClient(gateway.address, ssl=True)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.is_server_live()
    finally:
        client.close()
    assert_serves_large(gateway, "echo")


def test_probe_speaks_tls(gateway):
    """`gateway probe` (the image's HEALTHCHECK) reads the TLS settings and asks over https."""
    for args in ((), ("--live",), ("--model", "echo")):
        probed = gateway.probe(*args)
        assert probed.returncode == 0, probed.stderr
    missing = gateway.probe("--model", "no-such-model")
    assert missing.returncode == 1 and "https://127.0.0.1" in missing.stderr and "404" in missing.stderr, missing.stderr
    assert_serves_large(gateway, "echo")


def test_tls_settings_that_cannot_work_stop_the_gateway(tmp_path, certs):
    def load(**values):
        return TLS.load(ServerSettings(model_repository=tmp_path, **values))

    with pytest.raises(ValueError, match="tls_cert_file and tls_key_file go together"):
        load(tls_cert_file=certs.server.cert)
    with pytest.raises(ValueError, match="tls_ca_file .* needs TLS"):
        load(tls_ca_file=certs.ca)
    with pytest.raises(ConfigError, match="tls_key_file: cannot read"):
        load(tls_cert_file=certs.server.cert, tls_key_file=tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="not a PEM certificate and its private key"):
        load(tls_cert_file=certs.server.cert, tls_key_file=certs.client.key)  # a key of another certificate
    with pytest.raises(ConfigError, match="tls_ca_file .*: not PEM CA certificates"):
        load(tls_cert_file=certs.server.cert, tls_key_file=certs.server.key, tls_ca_file=certs.server.key)
    assert load().__class__ is type(None)
    assert load(tls_cert_file=certs.server.cert, tls_key_file=certs.server.key, tls_ca_file=certs.ca).mutual


def test_relative_tls_paths_are_the_config_folders(tmp_path, certs):
    (tmp_path / "settings.json").write_text('{"tls_cert_file": "tls/server.crt", "tls_key_file": "tls/server.key"}')
    settings = ServerSettings.from_folder(tmp_path)
    assert settings.tls_cert_file == tmp_path / "tls" / "server.crt"


def presented(port: int) -> str:
    """The certificate a new connection to the port is given."""
    return ssl.get_server_certificate(("127.0.0.1", port))


def pem(path) -> str:
    return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(path.read_text()))


def wait_until_presented(gateway, certificate: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    ports = (gateway.http_port, gateway.grpc_port, gateway.metrics_port)
    while any(presented(port) != certificate for port in ports):
        assert time.monotonic() < deadline, {port: presented(port) == certificate for port in ports}
        time.sleep(0.1)


def test_certificates_rotate_without_a_restart(gateway, certs, served):
    """A renewed pair written over the served files is given to new connections on every port; a key
    that does not match leaves the pair in force (an error in the log) until the files change again."""
    original = served.cert.read_bytes(), served.key.read_bytes()
    renewed = certificates.reissue(certs.ca.parent, "renewed", server=True)
    try:
        client = grpcclient.InferenceServerClient(gateway.grpc_url, ssl=True, root_certificates=str(certs.ca))
        try:
            assert client.is_server_live()  # a connection opened before the rotation
            served.cert.write_bytes(renewed.cert.read_bytes())
            served.key.write_bytes(renewed.key.read_bytes())
            wait_until_presented(gateway, pem(renewed.cert))
            assert client.is_server_live()  # ... goes on
        finally:
            client.close()
        test_tritonclient_grpc_over_tls(gateway, certs)  # new connections, the renewed certificate, trusted by the same CA
        served.key.write_bytes(certs.client.key.read_bytes())  # a key of another certificate
        gateway.wait_for(lambda: "the certificate in force stays until the files change again" in gateway.log_text(), 15, "the error")
        assert presented(gateway.http_port) == presented(gateway.grpc_port) == pem(renewed.cert)
        assert_serves_large(gateway, "echo")
    finally:
        served.cert.write_bytes(original[0])
        served.key.write_bytes(original[1])
    wait_until_presented(gateway, pem(certs.server.cert))
    assert_serves_large(gateway, "echo")
