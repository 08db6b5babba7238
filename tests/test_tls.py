"""TLS (gateway/frontdoor/tls.py) on one gateway, with certificates the test makes (tests/certificates.py):
tritonclient's ssl clients over REST and gRPC, the server's certificate on every port (the metrics
port too), no clear-text fallback, and the settings' errors at start-up."""

from __future__ import annotations

import ssl

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
def gateway(start_gateway, certs):
    gateway = start_gateway(ROOT / "tests" / "repository", https=True, tls_cert_file=certs.server.cert, tls_key_file=certs.server.key)
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
