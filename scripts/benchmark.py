#!/usr/bin/env python3
"""Side-by-side benchmark: our gateway against MLServer 1.7.1 and the KServe Python model server.

For each case group, each server is started alone on free loopback ports with a model
repository this script writes (the same three models for everyone), loaded with the same
client (scripts/loadgen.py, run in a fresh process per run), and stopped before the next
server starts. Peers are installed by the script into their own virtualenvs under
~/.cache/gateway-bench/ (MLServer with uvloop<0.22, which it needs to start, and mlserver-sklearn).

Models:  rowsum  16 FP32 features -> their sum               (input "input" [-1,16])
         mlp     numpy MLP 256 -> 1024 -> 10, ReLU, seed 0   (input "input" [-1,256])
         rowsum-batched, mlp-batched  the same with max_batch_size 32 (and max_batch_time 0.005 for MLServer)
                 (KServe has no adaptive batcher: it serves those cases with the plain model)
         echo    returns its FP32 input                      (input "input" [-1,-1])
         iris-sklearn  examples/iris-sklearn (scikit-learn scaler + logistic regression, 4 features ->
                 class name), served by the built-in runtime (ours) and by mlserver-sklearn (MLServer)
                 from the same model folder; iris-sklearn-batched the same with max_batch_size 32,
                 max_batch_time 0.005 (MLServer only). KServe's sklearnserver is not on PyPI, so KServe sits them out

Server variants (--servers):
  gateway         ours, its defaults
  mlserver        MLServer 1.7.1 defaults (parallel_workers 1, debug on = access log)
  mlserver-tuned  MLServer with parallel_workers 0 and debug off (its best for these small models)
  kserve          KServe ModelServer defaults (latency logging, access log, trace log on)
  kserve-tuned    KServe with --enable_latency_logging False, a log config with access/trace logs off and
                  the kserve logger at WARNING (its gRPC interceptor logs every call at INFO)
  gateway-fd1, gateway-fd2, gateway-fd4  ours with frontdoor_workers 1, 2, 4 (not run by default); the
                  client's gRPC calls go over 8 connections (the kernel spreads connections, not calls)
Every server gets OMP/OPENBLAS/MKL_NUM_THREADS=1, and a gRPC message limit that fits 64 MiB
(MLServer grpc_max_message_length, KServe --grpc_max_*_message_length): without it the
64 MiB gRPC case cannot run on the peers at all.

Results: <out>/results.json (every run), <out>/results.md (tables with ratios ours/peer),
<out>/throughput.png (infer/s against concurrency per server), <out>/logs/ (server logs).
Default <out> is results/bench-<time>/ (gitignored). See scripts/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import fnmatch
import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402  (scripts/loadgen.py)

MLSERVER_VERSION = "1.7.1"
KSERVE_VERSION = "0.21.0"
VENV_ROOT = Path(os.environ.get("GATEWAY_BENCH_HOME", Path.home() / ".cache" / "gateway-bench"))
GRPC_MAX_MESSAGE = 512 * 1024 * 1024
BLAS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MIB_FLOATS = 1024 * 1024 // 4
NOISY_OTHER_PCT = 25.0  # % of one core used by other processes during a run

# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    group: str  # servers are restarted between groups
    model: str
    shape: list[int]  # without the batch dimension
    batch: int
    concurrency: int
    transport: str  # "rest" (JSON), "rest-large" (binary where supported, else JSON), "grpc"
    series: str  # one line of the plot / block of the table
    needs_batching: bool = False
    timeout: float = 30.0
    note: str = ""


def all_cases() -> list[Case]:
    cases = []
    for transport in ("rest", "grpc"):
        for c in (1, 8, 64):
            cases.append(Case(f"rowsum-{transport}-c{c}", "small", "rowsum", [16], 1, c, transport, f"rowsum {transport}"))
    # the same small requests with adaptive batching on, where the server has it: what its users would turn on under load
    for transport in ("rest", "grpc"):
        for c in (8, 64):
            cases.append(
                Case(f"rowsum-batch-{transport}-c{c}", "small", "rowsum-batched", [16], 1, c, transport, f"rowsum {transport} batching", needs_batching=True)
            )
    for batch in (1, 32):
        for batching in (False, True):
            for c in (1, 64):
                tag = "batch" if batching else "nobatch"
                cases.append(
                    Case(
                        f"mlp-b{batch}-{tag}-c{c}",
                        "small",
                        "mlp-batched" if batching else "mlp",
                        [256],
                        batch,
                        c,
                        "rest",
                        f"mlp b{batch} {'batching' if batching else 'no batching'}",
                        needs_batching=batching,
                    )
                )
    for transport in ("rest-large", "grpc"):
        label = "rest" if transport == "rest-large" else transport
        for c in (1, 8):
            cases.append(Case(f"echo-1mib-{label}-c{c}", "large", "echo", [MIB_FLOATS], 1, c, transport, f"echo 1MiB {label}"))
        cases.append(Case(f"echo-64mib-{label}-c1", "large", "echo", [64 * MIB_FLOATS], 1, 1, transport, f"echo 64MiB {label}", timeout=60.0))
    # a saved scikit-learn model, served by each server's own runtime for it; then with adaptive batching on
    for transport in ("rest", "grpc"):
        for c in (1, 8, 64):
            cases.append(Case(f"sklearn-iris-{transport}-c{c}", "sklearn", "iris-sklearn", [4], 1, c, transport, f"sklearn iris {transport}"))
    for transport in ("rest", "grpc"):
        for c in (8, 64):
            cases.append(
                Case(
                    f"sklearn-iris-batch-{transport}-c{c}",
                    "sklearn",
                    "iris-sklearn-batched",
                    [4],
                    1,
                    c,
                    transport,
                    f"sklearn iris {transport} batching",
                    needs_batching=True,
                )
            )
    return cases


# --------------------------------------------------------------------------- model code written into the repositories

MODEL_MATH = """
import numpy as np


def rowsum(x):
    return x.sum(axis=1, keepdims=True, dtype=np.float32)


class MLPWeights:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.w1 = (rng.standard_normal((256, 1024)) / 16).astype(np.float32)
        self.b1 = (rng.standard_normal(1024) / 16).astype(np.float32)
        self.w2 = (rng.standard_normal((1024, 10)) / 32).astype(np.float32)
        self.b2 = (rng.standard_normal(10) / 32).astype(np.float32)

    def __call__(self, x):
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        return (hidden @ self.w2 + self.b2).astype(np.float32)


def echo(x):
    return x
"""

MLMODEL_SOURCE = '''"""Benchmark models for {pkg} (written by scripts/benchmark.py)."""
{math}

from {pkg} import MLModel
from {pkg}.codecs import NumpyCodec
from {pkg}.types import InferenceResponse


class _Bench(MLModel):
    def setup(self):
        pass

    async def load(self) -> bool:
        self.setup()
        self.ready = True
        return True

    async def predict(self, payload):
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = self.compute(x)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("output", y)],
        )


class RowSum(_Bench):
    def compute(self, x):
        return rowsum(x)


class MLP(_Bench):
    def setup(self):
        self.compute = MLPWeights()


class Echo(_Bench):
    def compute(self, x):
        return echo(x)
'''

KSERVE_SOURCE = '''"""Benchmark models on the KServe Python model server (written by scripts/benchmark.py)."""
import argparse
import uuid
{math}

from kserve import InferOutput, InferResponse, Model, ModelServer

_DATATYPES = {{np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}}


class BenchModel(Model):
    def __init__(self, name, compute):
        super().__init__(name)
        self.compute = compute
        self.ready = True

    async def predict(self, payload, headers=None, response_headers=None):
        x = payload.inputs[0].as_numpy()
        y = self.compute(x)
        binary = payload.use_binary_outputs
        output = InferOutput(name="output", shape=list(y.shape), datatype=_DATATYPES[y.dtype])
        output.set_data_from_numpy(y, binary_data=binary)
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=[output], use_binary_outputs=binary)


if __name__ == "__main__":
    own = argparse.ArgumentParser()
    own.add_argument("--bench_models", default="rowsum,mlp,echo")
    args, _ = own.parse_known_args()
    factories = {{"rowsum": lambda: rowsum, "mlp": MLPWeights, "echo": lambda: echo}}
    models = [BenchModel(name, factories[name]()) for name in args.bench_models.split(",") if name]
    ModelServer().start(models)
'''

MODEL_DECLS = {
    # name: (class, input shape, output shape, batching)
    "rowsum": ("RowSum", [-1, 16], [-1, 1], False),
    "mlp": ("MLP", [-1, 256], [-1, 10], False),
    "rowsum-batched": ("RowSum", [-1, 16], [-1, 1], True),
    "mlp-batched": ("MLP", [-1, 256], [-1, 10], True),
    "echo": ("Echo", [-1, -1], [-1, -1], False),
}
GROUP_MODELS = {"small": ["rowsum", "rowsum-batched", "mlp", "mlp-batched"], "large": ["echo"], "sklearn": ["iris-sklearn", "iris-sklearn-batched"]}
# the scikit-learn model folders, as MLServer's docs write one: both servers load them unchanged
SKLEARN_SETTINGS = {
    "iris-sklearn": {"name": "iris-sklearn", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib", "version": "1"}},
    "iris-sklearn-batched": {
        "name": "iris-sklearn-batched",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
        "max_batch_size": 32,
        "max_batch_time": 0.005,
    },
}


def write_mlmodel_repository(root: Path, pkg: str, models: list[str], server_settings: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(json.dumps(server_settings, indent=2))
    source = MLMODEL_SOURCE.format(pkg=pkg, math=MODEL_MATH)
    for name in models:
        cls, in_shape, out_shape, batching = MODEL_DECLS[name]
        folder = root / name
        folder.mkdir()
        (folder / "benchmodels.py").write_text(source)
        settings: dict[str, Any] = {
            "name": name,
            "implementation": f"benchmodels.{cls}",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": in_shape}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": out_shape}],
            "parameters": {"version": "1"},
        }
        if batching:
            settings["max_batch_size"] = 32
            if pkg == "mlserver":  # MLServer batches only with a wait; the gateway (without one) batches what queues
                settings["max_batch_time"] = 0.005
        (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))


def write_sklearn_repository(root: Path, python: Path, server_settings: dict[str, Any], for_mlserver: bool) -> None:
    """The iris model, trained by examples/train.py with the server's own interpreter, so that the
    pickle matches the scikit-learn that loads it (the same data and settings give the same model)."""
    root.mkdir(parents=True)
    (root / "settings.json").write_text(json.dumps(server_settings, indent=2))
    trained = subprocess.run([str(python), str(REPO / "examples" / "train.py"), "--sklearn-out", str(root)], capture_output=True, text=True, timeout=300)
    if trained.returncode != 0:
        raise RuntimeError(f"training the iris model with {python} failed (does it have scikit-learn? pip install -e '.[sklearn]'):\n{trained.stderr[-1500:]}")
    for name, settings in SKLEARN_SETTINGS.items():
        if not for_mlserver:  # MLServer batches only with a wait; the gateway (without one) batches what queues
            settings = {key: value for key, value in settings.items() if key != "max_batch_time"}
        (root / name).mkdir()
        shutil.copy(root / "model.joblib", root / name / "model.joblib")
        (root / name / "model-settings.json").write_text(json.dumps(settings, indent=2))
    (root / "model.joblib").unlink()


# --------------------------------------------------------------------------- servers

KSERVE_QUIET_LOG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        # WARNING: KServe's gRPC interceptor logs every call at INFO on this logger, with no flag to stop it
        "kserve": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "kserve.trace": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


@dataclass
class Server:
    name: str
    description: str
    supports_binary: bool
    supports_batching: bool
    kind: str  # gateway | mlserver | kserve
    tuned: bool = False
    frontdoor_workers: Optional[int] = None  # ours: the setting (None: its default)
    grpc_channels: int = 1  # HTTP/2 connections the client's gRPC workers share

    @property
    def serves_sklearn(self) -> bool:
        return self.kind != "kserve"  # KServe's sklearnserver is not published on PyPI


SERVERS = {
    "gateway": Server("gateway", "ours, defaults", True, True, "gateway"),
    "mlserver": Server("mlserver", f"MLServer {MLSERVER_VERSION} defaults (parallel_workers 1, access log on)", False, True, "mlserver"),
    "mlserver-tuned": Server("mlserver-tuned", f"MLServer {MLSERVER_VERSION}, parallel_workers 0, debug off", False, True, "mlserver", True),
    "kserve": Server("kserve", f"KServe {KSERVE_VERSION} ModelServer defaults (request logs on)", True, False, "kserve"),
    "kserve-tuned": Server("kserve-tuned", f"KServe {KSERVE_VERSION}, latency/access/trace/per-call gRPC logs off", True, False, "kserve", True),
}
DEFAULT_SERVERS = list(SERVERS)
# ours with 1, 2 and 4 front-door processes (docs/PERFORMANCE.md, "Several front doors"); the client spreads its
# gRPC calls over 8 connections for all three (one connection reaches one front door)
for _count in (1, 2, 4):
    SERVERS[f"gateway-fd{_count}"] = Server(
        f"gateway-fd{_count}", f"ours, frontdoor_workers {_count}, gRPC over 8 connections", True, True, "gateway", frontdoor_workers=_count, grpc_channels=8
    )


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RunningServer:
    """One server process group; stop() always leaves no process of it behind."""

    live: "set[RunningServer]" = set()

    def __init__(self, server: Server, command: list[str], cwd: Path, env: dict[str, str], http_port: int, grpc_port: int, log_path: Path):
        self.server = server
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.log.write(f"$ {' '.join(command)}\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pgid = self.proc.pid
        self.grpc_available = False
        RunningServer.live.add(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, models: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        paths = ["/v2/health/ready"] + [f"/v2/models/{m}/ready" for m in models]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                for path in paths:
                    with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                        if reply.status != 200:
                            raise OSError(reply.status)
                return
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.3)
        raise RuntimeError(f"{self.server.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # a zombie leader still counts: reap it and look again
        if self.proc.poll() is not None:
            try:
                os.killpg(self.pgid, 0)
            except ProcessLookupError:
                return False
        return _group_has_live_members(self.pgid)

    def stop(self, grace: float = 15.0) -> None:
        if self not in RunningServer.live:
            return
        try:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.pgid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and self._group_alive():
                    time.sleep(0.1)
                if not self._group_alive():
                    break
            self.proc.poll()
        finally:
            RunningServer.live.discard(self)
            self.log.close()


def _group_has_live_members(pgid: int) -> bool:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def stop_all_servers() -> None:
    for running in list(RunningServer.live):
        running.stop(grace=5.0)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- installs


def venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def installed_version(python: Path, dist: str) -> Optional[str]:
    if not python.exists():
        return None
    probe = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"], capture_output=True, text=True, timeout=60)
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_venv(name: str, requirements: list[str], dist: str, version: Optional[str], allow_install: bool) -> Path:
    """A virtualenv under VENV_ROOT with `requirements` installed (reused when `dist` is at `version`)."""
    path = VENV_ROOT / name
    have = installed_version(venv_python(path), dist)
    if have and (version is None or have == version):
        return path
    if not allow_install:
        raise RuntimeError(f"{dist} {version or ''} is not installed in {path} (run without --no-install)")
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    log = path.parent / f"{name}-install.log"
    print(f"[install] {' '.join(requirements)} into {path} (log: {log}) ...", flush=True)
    started = time.monotonic()
    if not venv_python(path).exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    with open(log, "ab") as handle:
        result = subprocess.run(
            [str(venv_python(path)), "-m", "pip", "install", "--disable-pip-version-check", *requirements],
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if result.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(requirements)} failed; see {log}")
    print(f"[install] done in {time.monotonic() - started:.0f} s", flush=True)
    return path


def prepare_server(server: Server, args) -> dict[str, Any]:
    """Install what the server needs; returns how to start it."""
    if server.kind == "gateway":
        python = Path(args.gateway_python or sys.executable)
        check = subprocess.run(
            [str(python), "-c", "import gateway, sys; print(gateway.__file__)"], capture_output=True, text=True, cwd="/", env=gateway_env(os.environ)
        )
        if check.returncode != 0:
            raise RuntimeError(f"`import gateway` fails in {python}: install the project (pip install -e {REPO})")
        return {"python": python, "version": installed_version(python, "inference-gateway") or "?"}
    if server.kind == "mlserver":
        requirements = [f"mlserver=={MLSERVER_VERSION}", f"mlserver-sklearn=={MLSERVER_VERSION}", "uvloop<0.22"]
        path = ensure_venv(f"mlserver-{MLSERVER_VERSION}", requirements, "mlserver-sklearn", MLSERVER_VERSION, not args.no_install)
        return {"python": venv_python(path), "bin": path / "bin" / "mlserver", "version": MLSERVER_VERSION}
    path = ensure_venv(f"kserve-{args.kserve_version}", [f"kserve=={args.kserve_version}"], "kserve", args.kserve_version, not args.no_install)
    return {"python": venv_python(path), "version": args.kserve_version}


def gateway_env(env) -> dict[str, str]:
    """The gateway runs from this checkout (as the tests run it), not from whatever copy is installed."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}


def start_server(server: Server, prepared: dict[str, Any], group: str, workdir: Path, logdir: Path, args) -> RunningServer:
    models = GROUP_MODELS[group]
    http_port, grpc_port, metrics_port = free_ports(3)
    repo = workdir / f"{server.name}-{group}"
    if repo.exists():
        shutil.rmtree(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MLSERVER_"))}
    env.update(BLAS_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    log_path = logdir / f"{server.name}-{group}.log"
    if server.kind == "gateway":
        settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port, "host": "127.0.0.1"}
        if server.frontdoor_workers is not None:
            settings["frontdoor_workers"] = server.frontdoor_workers
        if group == "sklearn":
            write_sklearn_repository(repo, prepared["python"], settings, for_mlserver=False)
        else:
            write_mlmodel_repository(repo, "gateway", models, settings)
        command = [str(prepared["python"]), "-m", "gateway", "start", "--config", str(repo)]
        env = gateway_env(env)
    elif server.kind == "mlserver":
        settings: dict[str, Any] = {
            "http_port": http_port,
            "grpc_port": grpc_port,
            "metrics_port": metrics_port,
            "host": "127.0.0.1",
            "grpc_max_message_length": GRPC_MAX_MESSAGE,
        }
        if server.tuned:
            settings.update({"parallel_workers": args.mlserver_tuned_workers, "debug": False})
        if group == "sklearn":
            write_sklearn_repository(repo, prepared["python"], settings, for_mlserver=True)
        else:
            write_mlmodel_repository(repo, "mlserver", models, settings)
        command = [str(prepared["bin"]), "start", str(repo)]
    else:
        repo.mkdir(parents=True)
        script = repo / "kserve_models.py"
        script.write_text(KSERVE_SOURCE.format(math=MODEL_MATH))
        # the KServe server has no adaptive batcher: its batching cases run on the plain models
        names = sorted({m.removesuffix("-batched") for m in models})
        command = [
            str(prepared["python"]),
            str(script),
            f"--http_port={http_port}",
            f"--grpc_port={grpc_port}",
            f"--grpc_max_send_message_length={GRPC_MAX_MESSAGE}",
            f"--grpc_max_receive_message_length={GRPC_MAX_MESSAGE}",
            f"--bench_models={','.join(names)}",
        ]
        if server.tuned:
            log_config = repo / "quiet-logging.json"
            log_config.write_text(json.dumps(KSERVE_QUIET_LOG))
            command += ["--enable_latency_logging=False", f"--log_config_file={log_config}"]
        models = names
    running = RunningServer(server, command, repo, env, http_port, grpc_port, log_path)
    try:
        running.wait_ready(models, args.startup_timeout)
        # gRPC may come up a moment after REST
        deadline = time.monotonic() + 5
        while not port_open(grpc_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        running.grpc_available = port_open(grpc_port)
    except BaseException:
        running.stop()
        raise
    return running


# --------------------------------------------------------------------------- running cases


def wait_for_quiet(threshold: float, max_wait: float) -> Optional[float]:
    """Wait (up to max_wait s) until the machine's busy CPU over 1 s is under threshold % of a core.

    Called between runs, when the server under test is idle, so what is busy is someone else.
    Returns the last load seen."""
    deadline = time.monotonic() + max_wait
    announced = False
    while True:
        before = loadgen.machine_busy_cpu()
        if before is None:
            return None
        time.sleep(1.0)
        load = 100.0 * (loadgen.machine_busy_cpu() - before)
        if load <= threshold or time.monotonic() >= deadline:
            if announced:
                print(f"    (machine load now {load:.0f}% of a core, going ahead)", flush=True)
            return load
        if not announced:
            print(f"    waiting for a quieter machine: other processes use {load:.0f}% of a core", flush=True)
            announced = True


def _loadgen_in_child(kwargs: dict[str, Any]) -> dict[str, Any]:
    for key, value in BLAS_ENV.items():
        os.environ[key] = value
    try:
        return {"ok": True, "result": loadgen.run(**kwargs)}
    except loadgen.LoadgenError as exc:
        return {"ok": False, "error": str(exc)}


def run_loadgen_isolated(kwargs: dict[str, Any], bound: float) -> dict[str, Any]:
    """loadgen.run in a fresh spawned process (clean memory, clean gRPC state), killed after `bound` s."""
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(1, maxtasksperchild=1)
    try:
        pending = pool.apply_async(_loadgen_in_child, (kwargs,))
        try:
            return pending.get(timeout=bound)
        except multiprocessing.TimeoutError:
            return {"ok": False, "error": f"client did not finish within {bound:.0f} s"}
    finally:
        pool.terminate()
        pool.join()


def protocol_for(case: Case, server: Server) -> str:
    if case.transport == "grpc":
        return "grpc"
    if case.transport == "rest-large" and server.supports_binary:
        return "rest-binary"
    return "rest-json"


def run_case(case: Case, running: RunningServer, args) -> dict[str, Any]:
    server = running.server
    protocol = protocol_for(case, server)
    record: dict[str, Any] = {"case": case.name, "server": server.name, "series": case.series, "concurrency": case.concurrency, "protocol": protocol}
    if case.needs_batching and not server.supports_batching:
        record["unbatched"] = True  # the same requests, served as this server's users would: without batching
    if protocol == "grpc" and not getattr(running, "grpc_available", False):
        record["skipped"] = "no gRPC listener"
        return record
    kwargs = dict(
        model=case.model.removesuffix("-batched") if record.get("unbatched") else case.model,
        url=running.url,
        grpc_url=running.grpc_url,
        protocol=protocol,
        shape=case.shape,
        datatype="FP32",
        input_name="input",
        batch=case.batch,
        concurrency=case.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        timeout=case.timeout,
        server_pgids=(running.pgid,),
        grpc_channels=server.grpc_channels,
    )
    runs, errors = [], []
    record["noisy_retries"] = 0
    for _ in range(args.repeats):
        bound = args.warmup + args.duration + 2 * case.timeout + 60
        for attempt in range(args.noisy_retries + 1):
            record["other_load_before_pct"] = wait_for_quiet(args.quiet_threshold, args.quiet_wait)
            outcome = run_loadgen_isolated(kwargs, bound)
            other = outcome.get("result", {}).get("other_cpu_pct") if outcome["ok"] else None
            if other is None or other <= args.quiet_threshold or attempt == args.noisy_retries:
                break
            record["noisy_retries"] += 1  # someone else took CPU during the run: run it again
        if outcome["ok"] and not outcome["result"]["requests"]:
            result = outcome["result"]
            errors.append(f"no request completed within {case.timeout:g} s: {result['errors']} {'; '.join(result['error_samples'])}".strip())
            break
        if outcome["ok"]:
            runs.append(outcome["result"])
        else:
            errors.append(outcome["error"])
            break  # a failing case fails the same way again: do not spend the time
        if running.proc.poll() is not None:
            errors.append(f"server exited with {running.proc.returncode}:\n{running.log_tail(10)}")
            break
    record["runs"] = runs
    if errors:
        record["error"] = errors[0]
    if runs:
        record.update(summarize(runs))
    return record


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values):
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return statistics.median(values) if values else None

    return {
        "infer_per_s": med([r["infer_per_s"] for r in runs]),
        "requests": sum(r["requests"] for r in runs),
        "p50_ms": med([r["latency_ms"]["p50"] for r in runs]),
        "p90_ms": med([r["latency_ms"]["p90"] for r in runs]),
        "p99_ms": med([r["latency_ms"]["p99"] for r in runs]),
        "client_cpu_pct": med([r["client_cpu_pct"] for r in runs]),
        "server_cpu_pct": med([r.get("server_cpu_pct") for r in runs]),
        "server_cpu_ms_per_request": med([r.get("server_cpu_ms_per_request") for r in runs]),
        "worker_cpu_ms_per_request": med([r.get("worker_cpu_ms_per_request") for r in runs]),
        "frontdoor_cpu_ms_per_request": med([r.get("frontdoor_cpu_ms_per_request") for r in runs]),
        "other_cpu_pct": med([r.get("other_cpu_pct") for r in runs]),
        "error_count": sum(r["error_count"] for r in runs),
        "binary_response": runs[0].get("binary_response"),
    }


# --------------------------------------------------------------------------- report


def _fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _cell(record: Optional[dict[str, Any]]) -> tuple[str, str, str]:
    """(throughput, latency, cpu) cells for one server's result of one case."""
    if record is None:
        return "not run", "", ""
    if "skipped" in record:
        return f"n/a ({record['skipped']})", "", ""
    if not record.get("runs"):
        reason = (record.get("error") or "failed").splitlines()[0]
        return f"FAILED: {reason[:90]}", "", ""
    proto = {"rest-json": "json", "rest-binary": "bin", "grpc": "grpc"}[record["protocol"]]
    errors = f", {record['error_count']} errors" if record["error_count"] else ""
    unbatched = ", no batcher" if record.get("unbatched") else ""
    throughput = f"{_fmt(record['infer_per_s'])} ({proto}{unbatched}{errors})"
    latency = f"{_fmt(record['p50_ms'], 2)} / {_fmt(record['p99_ms'], 2)}"
    cpu = f"{_fmt(record['client_cpu_pct'], 0)}% / {_fmt(record['server_cpu_pct'], 0)}% / {_fmt(record.get('other_cpu_pct'), 0)}%"
    if (record.get("other_cpu_pct") or 0) > NOISY_OTHER_PCT:
        throughput += " !"
    return throughput, latency, cpu


def _cpu_per_request(record: Optional[dict[str, Any]]) -> str:
    if not record or record.get("server_cpu_ms_per_request") is None:
        return "-"
    text = f"{1e3 * record['server_cpu_ms_per_request']:.0f}"
    if record.get("worker_cpu_ms_per_request"):
        text += f" ({1e3 * record['frontdoor_cpu_ms_per_request']:.0f} + {1e3 * record['worker_cpu_ms_per_request']:.0f})"
    return text


def _ratio(ours: Optional[dict[str, Any]], peer: Optional[dict[str, Any]], key: str) -> str:
    if not ours or not peer or ours.get(key) in (None, 0) or peer.get(key) in (None, 0):
        return "-"
    return f"{ours[key] / peer[key]:.2f}x"


def render_markdown(report: dict[str, Any]) -> str:
    servers = report["servers"]
    records = {(r["case"], r["server"]): r for r in report["results"]}
    case_names = [c["name"] for c in report["cases"]]
    peers = [s for s in servers if s != "gateway"]
    lines = [
        f"# Benchmark {report['started']}",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}. "
        f"Each case: {report['settings']['warmup']:g} s warm-up, {report['settings']['duration']:g} s measured, "
        f"median of {report['settings']['repeats']} run(s). Client: scripts/loadgen.py (closed loop, one request in flight per connection).",
        "",
        "Servers: " + "; ".join(f"**{s}** = {report['server_info'].get(s, {}).get('description', s)}" for s in servers),
        "",
        "## Throughput (infer/s; json = REST JSON, bin = REST binary extension, grpc)",
        "",
        "| case | " + " | ".join(servers) + ("".join(f" | ours/{p}" for p in peers) + " | ours/best peer" if "gateway" in servers and peers else "") + " |",
        "|---|" + "---|" * len(servers) + ("---|" * (len(peers) + 1) if "gateway" in servers and peers else ""),
    ]
    for name in case_names:
        row = [name] + [_cell(records.get((name, s)))[0] for s in servers]
        if "gateway" in servers and peers:
            row += [_ratio(records.get((name, "gateway")), records.get((name, p)), "infer_per_s") for p in peers]
            measured = [records[(name, p)] for p in peers if records.get((name, p), {}).get("infer_per_s")]
            best = max(measured, key=lambda r: r["infer_per_s"], default=None)
            row.append(_ratio(records.get((name, "gateway")), best, "infer_per_s") + (f" ({best['server']})" if best else ""))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "## Latency p50 / p99 (ms); ratio = ours/peer of p99 (below 1 is better for us)",
        "",
        "| case | " + " | ".join(servers) + "".join(f" | p99 ours/{p}" for p in peers if "gateway" in servers) + " |",
        "|---|" + "---|" * len(servers) + ("---|" * len(peers) if "gateway" in servers else ""),
    ]
    for name in case_names:
        row = [name] + [_cell(records.get((name, s)))[1] or "-" for s in servers]
        if "gateway" in servers:
            row += [_ratio(records.get((name, "gateway")), records.get((name, p)), "p99_ms") for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"## CPU during the measured window: client / server / everything else on the machine, % of one core ({report['machine']['cpus']} cores = {100 * (report['machine']['cpus'] or 1)}%)",
        "",
        f"A throughput cell marked `!` ran while other processes took more than {NOISY_OTHER_PCT}% of a core: treat it as noisy.",
        "",
        "| case | " + " | ".join(servers) + " |",
        "|---|" + "---|" * len(servers),
    ]
    for name in case_names:
        lines.append("| " + " | ".join([name] + [_cell(records.get((name, s)))[2] or "-" for s in servers]) + " |")
    lines += [
        "",
        "## Server CPU per request (µs): all of the server's processes; for the gateway also front door(s) + model workers",
        "",
        "| case | " + " | ".join(servers) + " |",
        "|---|" + "---|" * len(servers),
    ]
    for name in case_names:
        lines.append("| " + " | ".join([name] + [_cpu_per_request(records.get((name, s))) for s in servers]) + " |")
    notes = [f"- {r['server']} {r['case']}: {r['error']}" for r in report["results"] if r.get("error")]
    if notes:
        lines += ["", "## Failures", ""] + [n.replace("\n", " ")[:400] for n in notes]
    return "\n".join(lines) + "\n"


def render_console(report: dict[str, Any]) -> str:
    servers = report["servers"]
    records = {(r["case"], r["server"]): r for r in report["results"]}
    width = 22
    header = f"{'case':<24}" + "".join(f"{s:>{width}}" for s in servers)
    if "gateway" in servers:
        header += "".join(f"  {'ours/' + p:>{max(8, len(p) + 5)}}" for p in servers if p != "gateway")
    out = ["infer/s (p99 ms) [client CPU %]", header]
    for case in report["cases"]:
        name = case["name"]
        row = f"{name:<24}"
        for s in servers:
            r = records.get((name, s))
            if r is None:
                text = "not run"
            elif "skipped" in r:
                text = "n/a"
            elif not r.get("runs"):
                text = "FAILED"
            else:
                text = f"{_fmt(r['infer_per_s'])} ({_fmt(r['p99_ms'], 1)}) [{_fmt(r['client_cpu_pct'], 0)}]"
            row += f"{text:>{width}}"
        if "gateway" in servers:
            for p in servers:
                if p != "gateway":
                    row += f"  {_ratio(records.get((name, 'gateway')), records.get((name, p)), 'infer_per_s'):>{max(8, len(p) + 5)}}"
        out.append(row)
    return "\n".join(out)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in report["results"]:
        if r.get("infer_per_s"):
            series.setdefault(r["series"], {}).setdefault(r["server"], []).append((r["concurrency"], r["infer_per_s"]))
    names = [s for s in dict.fromkeys(c["series"] for c in report["cases"]) if s in series]
    if not names:
        return
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = {server: f"C{i}" for i, server in enumerate(report["servers"])}
    for ax, name in zip(axes.flat, names):
        concurrencies = {c for points in series[name].values() for c, _ in points}
        if len(concurrencies) == 1:
            # one concurrency only (the 64 MiB cases): bars per server, log scale to show 0.2 next to 8
            servers = [s for s in report["servers"] if series[name].get(s)]
            values = [series[name][s][0][1] for s in servers]
            ax.bar(servers, values, color=[colors[s] for s in servers])
            ax.set_yscale("log")
            ax.set_title(f"{name} (concurrency {concurrencies.pop()})")
            ax.set_ylabel("infer/s (log)")
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
            ax.grid(alpha=0.3, axis="y")
            continue
        for server in report["servers"]:
            points = sorted(series[name].get(server, []))
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=server, color=colors[server])
        ax.set_title(name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        ax.set_ylabel("infer/s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"Throughput against concurrency ({report['started']})")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_plot(report_path: Path, png: Path, allow_install: bool) -> Optional[str]:
    """Plot here if matplotlib imports, else in a small venv of its own."""
    try:
        import matplotlib  # noqa: F401

        plot(json.loads(report_path.read_text()), png)
        return None
    except ImportError:
        pass
    try:
        path = ensure_venv("plot", ["matplotlib", "numpy"], "matplotlib", None, allow_install)
    except RuntimeError as exc:
        return str(exc)
    result = subprocess.run(
        [str(venv_python(path)), str(Path(__file__).resolve()), "--plot-only", str(report_path), "--png", str(png)], capture_output=True, text=True
    )
    return None if result.returncode == 0 else result.stderr[-1000:]


# --------------------------------------------------------------------------- main


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=textwrap.dedent(__doc__.split("\n\n", 1)[1]), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=f"comma list from {', '.join(SERVERS)} (default: {', '.join(DEFAULT_SERVERS)})")
    parser.add_argument("--cases", default="*", help="comma list of case names or glob patterns, e.g. 'rowsum-*,mlp-b1-*' (see --list-cases)")
    parser.add_argument("--list-cases", action="store_true", help="print the cases and exit")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the table shows medians")
    parser.add_argument("--quick", action="store_true", help="duration 3 s, warm-up 1 s, 1 repeat")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: results/bench-<time>/")
    parser.add_argument("--no-install", action="store_true", help="fail instead of creating the peers' virtualenvs")
    parser.add_argument("--kserve-version", default=KSERVE_VERSION)
    parser.add_argument("--mlserver-tuned-workers", type=int, default=0, help="parallel_workers for mlserver-tuned")
    parser.add_argument("--gateway-python", default=None, help="interpreter with our gateway installed (default: this one)")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument(
        "--quiet-threshold", type=float, default=NOISY_OTHER_PCT, help="before each run, wait while other processes use more than this %% of a core"
    )
    parser.add_argument(
        "--noisy-retries", type=int, default=2, help="run a run again (at most this often) when other processes took more than --quiet-threshold during it"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="longest wait for a quiet machine before each run (s); the run then goes ahead and is marked noisy if it was",
    )
    parser.add_argument("--report-only", type=Path, default=None, help="rewrite results.md and throughput.png next to this results.json, and print the table")
    parser.add_argument("--plot-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--png", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.plot_only:
        plot(json.loads(args.plot_only.read_text()), args.png)
        return 0
    if args.report_only:
        report = json.loads(args.report_only.read_text())
        (args.report_only.parent / "results.md").write_text(render_markdown(report))
        problem = make_plot(args.report_only, args.report_only.parent / "throughput.png", not args.no_install)
        print(render_console(report))
        if problem:
            print(f"plot failed: {problem}")
        return 0
    if args.quick:
        args.duration, args.warmup, args.repeats = 3.0, 1.0, 1
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()]
    cases = [c for c in all_cases() if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if args.list_cases:
        for c in all_cases():
            print(
                f"{c.name:<24} group {c.group:<6} model {c.model:<12} shape [{c.batch},{','.join(map(str, c.shape))}] concurrency {c.concurrency} via {c.transport}"
            )
        return 0
    server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in server_names if s not in SERVERS]
    if unknown or not cases or not server_names:
        parser.error(f"unknown servers {unknown}" if unknown else "no case or server selected")

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    out_dir = args.out_dir or REPO / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    logdir = out_dir / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    for key, value in BLAS_ENV.items():
        os.environ[key] = value

    signal.signal(signal.SIGTERM, _on_sigterm)
    atexit.register(stop_all_servers)
    report: dict[str, Any] = {
        "started": started,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {"duration": args.duration, "warmup": args.warmup, "repeats": args.repeats},
        "servers": server_names,
        "server_info": {},
        "cases": [asdict(c) for c in cases],
        "results": [],
    }
    json_path, md_path, png_path = out_dir / "results.json", out_dir / "results.md", out_dir / "throughput.png"

    def save() -> None:
        json_path.write_text(json.dumps(report, indent=1, default=str))
        md_path.write_text(render_markdown(report))

    prepared: dict[str, Any] = {}
    for name in server_names:
        try:
            prepared[name] = prepare_server(SERVERS[name], args)
            report["server_info"][name] = {"description": SERVERS[name].description, "version": prepared[name]["version"]}
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            print(f"[{name}] cannot be prepared: {exc}", flush=True)
            report["server_info"][name] = {"description": SERVERS[name].description, "error": str(exc)}

    interrupted = False
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    try:
        for group in dict.fromkeys(c.group for c in cases):
            group_cases = [c for c in cases if c.group == group]
            for name in server_names:
                server = SERVERS[name]
                if name not in prepared:
                    for case in group_cases:
                        report["results"].append(
                            {
                                "case": case.name,
                                "server": name,
                                "series": case.series,
                                "concurrency": case.concurrency,
                                "protocol": protocol_for(case, server),
                                "error": "server not installed: " + report["server_info"][name].get("error", ""),
                            }
                        )
                    continue
                if group == "sklearn" and not server.serves_sklearn:
                    for case in group_cases:
                        report["results"].append(
                            {
                                "case": case.name,
                                "server": name,
                                "series": case.series,
                                "concurrency": case.concurrency,
                                "protocol": protocol_for(case, server),
                                "skipped": "no scikit-learn server on PyPI",
                            }
                        )
                    continue
                print(f"[{name}] starting for the {group} cases ...", flush=True)
                try:
                    running = start_server(server, prepared[name], group, workdir, logdir, args)
                except RuntimeError as exc:
                    print(f"[{name}] failed to start: {exc}", flush=True)
                    for case in group_cases:
                        report["results"].append(
                            {
                                "case": case.name,
                                "server": name,
                                "series": case.series,
                                "concurrency": case.concurrency,
                                "protocol": protocol_for(case, server),
                                "error": f"server did not start: {exc}",
                            }
                        )
                    save()
                    continue
                try:
                    for case in group_cases:
                        if running.proc.poll() is not None:
                            record = {
                                "case": case.name,
                                "server": name,
                                "series": case.series,
                                "concurrency": case.concurrency,
                                "protocol": protocol_for(case, server),
                                "error": f"server had exited ({running.proc.returncode})",
                            }
                        else:
                            try:
                                record = run_case(case, running, args)
                            except Exception as exc:  # one broken case must not end the whole benchmark
                                record = {
                                    "case": case.name,
                                    "server": name,
                                    "series": case.series,
                                    "concurrency": case.concurrency,
                                    "protocol": protocol_for(case, server),
                                    "error": f"benchmark error: {exc!r}",
                                }
                        report["results"].append(record)
                        print(f"  {name:<15} {case.name:<24} {_summary_line(record)}", flush=True)
                        save()
                finally:
                    running.stop()
                    print(f"[{name}] stopped", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping servers and writing what was measured", flush=True)
    finally:
        stop_all_servers()
        shutil.rmtree(workdir, ignore_errors=True)

    save()
    problem = make_plot(json_path, png_path, not args.no_install)
    print()
    print(render_console(report))
    print()
    print(f"results: {json_path}\n         {md_path}")
    print(f"         {png_path}" if problem is None else f"plot failed: {problem}")
    return 130 if interrupted else 0


def _summary_line(record: dict[str, Any]) -> str:
    if "skipped" in record:
        return f"skipped: {record['skipped']}"
    if not record.get("runs"):
        return "FAILED: " + ((record.get("error") or "failed").splitlines() or ["failed"])[0][:150]
    cpu = f"client CPU {_fmt(record['client_cpu_pct'], 0)}%"
    if record.get("server_cpu_pct") is not None:
        cpu += f", server CPU {_fmt(record['server_cpu_pct'], 0)}%"
    if record.get("other_cpu_pct") is not None:
        cpu += f", other {_fmt(record['other_cpu_pct'], 0)}%" + (" NOISY" if record["other_cpu_pct"] > NOISY_OTHER_PCT else "")
    errors = f", {record['error_count']} errors" if record["error_count"] else ""
    return f"{_fmt(record['infer_per_s']):>10} infer/s  p50 {_fmt(record['p50_ms'], 2)} ms  p99 {_fmt(record['p99_ms'], 2)} ms  ({record['protocol']}, {cpu}{errors})"


if __name__ == "__main__":
    sys.exit(main())
