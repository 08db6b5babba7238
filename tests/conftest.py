"""Test harness: real gateways in subprocesses, one per test module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydantic
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from gateway.wire.messages import INLINE_BELOW

ROOT = Path(__file__).resolve().parent.parent
# a tensor of at least INLINE_BELOW (16 KiB) travels through the workers' shared-memory arenas, not
# inline in the ZeroMQ message; the large requests of the tests are this large
SHARED_MEMORY_BYTES = 64 * 1024


def slots(model: pydantic.BaseModel) -> dict:
    """Everything a pydantic model instance holds, to tell two builds of a model apart (a slot a
    later pydantic adds shows up here); the fields' order (which dumps and reprs follow) and types too."""
    fields = {"order": list(model.__dict__), "types": [type(value) for value in model.__dict__.values()]}
    return {**{slot: getattr(model, slot, "unset") for slot in pydantic.BaseModel.__slots__}, **fields}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A `gateway start` subprocess on free ports; its log (a temporary file, removed when the
    module's gateways stop) is printed when a test fails to start it.

    With `new_session`, the gateway leads a process group of its own (as under a shell or
    Kubernetes), so a test can signal the whole group without signalling itself.

    `args`: what follows `gateway start` (default: `--config CONFIG`); `env`: more environment
    variables; `port_prefix`: the prefix of the host and port variables (MLSERVER_: as an MLServer
    deployment gives them). `settings` are passed as GATEWAY_* variables. `command(gateway)`: another
    command to run instead of `gateway start` (a KServe script), given the ports chosen.

    A gateway serving TLS (`https`) or asking for tokens is reached with `requests_options` (for
    requests: verify, cert, headers) and `http_client_options` (for tritonclient.http: ssl, ...),
    which its test module sets; `wait_ready` and `assert_serves_large` use them."""

    def __init__(
        self, config: Path, new_session: bool = False, args=None, env=None, port_prefix: str = "GATEWAY_", command=None, https: bool = False, **settings
    ):
        self.config, self.new_session, self.settings, self.command = config, new_session, settings, command
        self.scheme = "https" if https else "http"
        self.requests_options: dict = {}
        self.http_client_options: dict = {}
        self.args = ["--config", str(config)] if args is None else [str(arg) for arg in args]
        self.extra_env, self.port_prefix = env or {}, port_prefix
        self.log = tempfile.NamedTemporaryFile(prefix="gateway-test-", suffix=".log", delete=False)
        self._spawn()

    def _spawn(self) -> None:
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.address = f"127.0.0.1:{self.http_port}"
        self.url = f"{self.scheme}://{self.address}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            f"{self.port_prefix}HOST": "127.0.0.1",
            f"{self.port_prefix}HTTP_PORT": str(self.http_port),
            f"{self.port_prefix}GRPC_PORT": str(self.grpc_port),
            f"{self.port_prefix}METRICS_PORT": str(self.metrics_port),
            # one front door, whatever the machine's cores (the default depends on them), unless a test says
            # otherwise, or the environment does (to run the suite through relay front doors)
            "GATEWAY_FRONTDOOR_WORKERS": os.environ.get("GATEWAY_FRONTDOOR_WORKERS", "1"),
            **{f"GATEWAY_{k.upper()}": str(v) for k, v in self.settings.items()},
            **self.extra_env,
        }
        self.env = env
        self.process = subprocess.Popen(
            self.command(self) if self.command else [sys.executable, "-m", "gateway", "start", *self.args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=self.new_session,
        )

    def _respawned(self) -> bool:
        """Start again on other ports if a free port was taken before the gateway could listen on it
        (another process on the machine may take it meanwhile, even as a client's own port)."""
        chosen_by_us = not {"http_port", "grpc_port", "metrics_port"} & self.settings.keys()
        if not (chosen_by_us and self.process.returncode == 1 and "cannot listen on" in self.log_text()):
            return False
        self.log.seek(0)
        self.log.truncate()
        self._spawn()
        return True

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, condition, timeout: float = 60.0, what: str = "the gateway") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None and not self._respawned():
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if condition():
                    return
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a busy machine
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{what} not ready after {timeout} s:\n{self.log_text()}")

    def wait_ready(self, models: list[str] | None = None, timeout: float = 60.0) -> "Gateway":
        """Wait for /v2/health/ready, or (with `models`) for just those models to be ready."""
        if models is None:
            self.wait_for(lambda: requests.get(f"{self.url}/v2/health/ready", timeout=2, **self.requests_options).status_code == 200, timeout)
        else:
            for model in models:
                self.wait_for(
                    lambda: requests.get(f"{self.url}/v2/models/{model}/ready", timeout=2, **self.requests_options).status_code == 200, timeout, model
                )
        return self

    def peak_memory(self) -> int:
        """The front door's peak resident memory in bytes (VmHWM): whether a request made it allocate."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def reset_peak_memory(self) -> int:
        """Lower the front door's peak resident memory to what it holds now (Linux: clear_refs 5), so
        that `peak_memory()` then tells what the next requests made it allocate; returns that memory."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        return self.peak_memory()

    def probe(self, *args: str) -> subprocess.CompletedProcess:
        """`gateway probe --config CONFIG ARGS` with the gateway's own settings (its environment)."""
        command = [sys.executable, "-m", "gateway", "probe", "--config", str(self.config), *args]
        return subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        """Stop it with SIGINT (Ctrl-C), which skips SIGTERM's drain delay; kill it after `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def refused_start(config: Path, **options) -> str:
    """Start a gateway that must refuse to start (exit status 1, as a port in use makes it); its log."""
    gateway = Gateway(config, **options)
    try:
        assert gateway.process.wait(timeout=60) == 1, gateway.log_text()
    finally:
        gateway.stop()
        log = gateway.log_text()
        Path(gateway.log.name).unlink()
    return log


def assert_serves_large(
    gateway: "Gateway",
    model: str,
    inputs: dict[str, np.ndarray] | None = None,
    expect=None,
    version: str = "",
    parameters: dict | None = None,
    timeout: float = 10.0,
    headers: dict | None = None,
) -> None:
    """How an error-path test ends: the same model still answers, exactly and at once, a request whose
    input tensors go through its workers' shared memory (so a worker left busy, or an arena left lent
    to a failed request, shows here as a timeout or an error).

    `inputs`: name -> array of at least 16 KiB (INLINE_BELOW), by default one FP32 input `x` of 64 KiB;
    `expect(inputs)`: name -> the array each output must equal, by default the inputs (an echo, whose
    outputs then go through shared memory too); `parameters`: the request's."""
    if inputs is None:
        inputs = {"x": np.arange(SHARED_MEMORY_BYTES // 4, dtype=np.float32).reshape(16, -1)}
    expected = expect(inputs) if expect is not None else inputs
    client = httpclient.InferenceServerClient(gateway.address, network_timeout=timeout, connection_timeout=timeout, **gateway.http_client_options)
    try:
        tensors = []
        for name, array in inputs.items():
            assert _raw_size(array) >= INLINE_BELOW, f"input {name} is too small to go through shared memory"
            tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in expected]
        # a copy: tritonclient adds its own headers to the dict it is given
        result = client.infer(model, tensors, outputs=outputs, model_version=version, parameters=parameters, headers=dict(headers or {}))
    finally:
        client.close()
    for name, array in expected.items():
        answer = result.as_numpy(name)
        assert (answer.shape, answer.dtype) == (array.shape, array.dtype), name
        if array.dtype == object:
            assert answer.tolist() == array.tolist(), name
        else:
            assert answer.tobytes() == array.tobytes(), name


def _raw_size(array: np.ndarray) -> int:
    """Bytes of the tensor on the wire (BYTES: each element and its 4-byte length prefix)."""
    return sum(4 + len(item) for item in array.ravel()) if array.dtype == object else array.nbytes


@pytest.fixture(scope="module")
def start_gateway():
    """Start gateways for a module; all are stopped when the module ends."""
    started: list[Gateway] = []

    def start(config: Path, new_session: bool = False, **options) -> Gateway:
        gateway = Gateway(config, new_session, **options)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
        Path(gateway.log.name).unlink(missing_ok=True)
