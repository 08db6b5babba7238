"""Run the Dockerfile's install and start commands on this machine, as a container would.

    python scripts/check_install.py [--extras sklearn,onnx] [--keep]

No container engine runs here, so this script proves the image's steps without one:

1. The build context: the checkout's files less what .dockerignore excludes (Docker's
   rules), copied to a temporary folder.
2. The build stage's RUN line, taken from the Dockerfile and run as it is there (`python -m
   venv /opt/gateway && /opt/gateway/bin/pip install ".[EXTRAS]"`), with the virtualenv in the
   temporary folder instead of /opt/gateway: a fresh virtualenv and `pip install` of the checkout.
3. The image's ENTRYPOINT and CMD (`gateway start --config /models`), with a copy of config/ as
   /models and the runtime stage's ENV. Where the machine allows it (root, util-linux's
   `unshare`), the gateway runs as a container's process does: PID 1 of a PID namespace, the root
   filesystem read-only with only TMPDIR writable (a fresh tmpfs, as an emptyDir on /tmp),
   /dev/shm a 64 MiB tmpfs (Docker's default), as user 1000 when that user can run the Python
   the virtualenv is built on (not when it lives under /root, as pyenv's does here).
4. Checks: /v2/health/ready answers 200; the Dockerfile's HEALTHCHECK command succeeds; a 96 MiB
   tensor, larger than /dev/shm, is answered correctly (the arenas are memfd files, not /dev/shm);
   SIGTERM stops the gateway with exit code 0 and its "gateway stopped" line.

Prints what it does, the memory of each process, and exits 0 when every check passes.
Ports are picked by the OS; the gateway listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
HEADER_LENGTH = "Inference-Header-Content-Length"
BUILD_PREFIX = "/opt/gateway"  # where the Dockerfile installs; replaced by the temporary virtualenv
USER_ID = 1000  # the Dockerfile's USER
DEV_SHM_BYTES = 64 * 1024 * 1024


# --- the Dockerfile and .dockerignore, read as Docker reads them (for the forms these files use) ---


def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, as (INSTRUCTION, arguments), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        instruction, _, arguments = (logical + stripped).partition(" ")
        logical = ""
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def instruction(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for keyword, arguments in stage if keyword == name]


def exec_form(arguments: str) -> list[str]:
    """A JSON array instruction (CMD, ENTRYPOINT, HEALTHCHECK's CMD)."""
    value = json.loads(arguments)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not an exec-form argument list: {arguments}")
    return value


def healthcheck_command(dockerfile: Path, models: Path) -> list[str]:
    """The HEALTHCHECK's command, with `models` for the image's /models."""
    (arguments,) = instruction(dockerfile_stages(dockerfile)[-1], "HEALTHCHECK")
    return [str(models) if a == "/models" else a for a in exec_form(arguments[arguments.index("CMD ") + 4 :])]


def env_pairs(arguments: str) -> dict[str, str]:
    """ENV k=v k=v (unquoted values, as in our Dockerfile)."""
    return dict(pair.split("=", 1) for pair in arguments.split())


def _pattern_regex(pattern: str) -> re.Pattern:
    # Go's filepath.Match plus Docker's `**`: `*` and `?` stay within one path element
    parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
    table = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(table.get(p, re.escape(p)) for p in parts) + "$")


def build_context(root: Path) -> list[Path]:
    """The files `docker build root` sends: a path is excluded when the last .dockerignore line that
    matches it, or one of its parent folders, is not a `!` exception."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((not line.startswith("!"), _pattern_regex(line.lstrip("!"))))
    kept = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        prefixes = [relative.rsplit("/", n)[0] for n in range(relative.count("/"), -1, -1)]
        excluded = False
        for excludes, regex in rules:
            if any(regex.match(prefix) for prefix in prefixes):
                excluded = excludes
        if not excluded:
            kept.append(path)
    return kept


# --- the run ---


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def can_isolate() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("setpriv") is not None


def usable_by_user(python: Path) -> bool:
    """Whether user 1000 runs this Python as root does, and can start it again as the gateway starts
    its workers (pyenv's interpreters under /root are out of its reach)."""
    check = "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True); print(sys.base_prefix)"
    as_root = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    as_user = subprocess.run(
        ["setpriv", f"--reuid={USER_ID}", f"--regid={USER_ID}", "--clear-groups", str(python), "-c", check], capture_output=True, text=True
    )
    return as_root.returncode == as_user.returncode == 0 and as_root.stdout == as_user.stdout


def container_like(argv: list[str], tmpdir: Path, as_user: bool) -> list[str]:
    """argv as PID 1 of new PID and mount namespaces: root read-only, TMPDIR and /dev/shm fresh tmpfs."""
    user = f"setpriv --reuid={USER_ID} --regid={USER_ID} --clear-groups " if as_user else ""
    script = (
        "set -e; mount --bind / /; mount -o remount,bind,ro /; "
        f"mount -t tmpfs -o size={DEV_SHM_BYTES} tmpfs /dev/shm; "
        f"mount -t tmpfs -o mode=1777 tmpfs {tmpdir}; "
        f'exec {user}"$@"'
    )
    return ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


def namespace_pid1(launcher: subprocess.Popen, timeout: float = 10) -> int:
    """The host pid of the process that is PID 1 inside the namespace (unshare's child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("unshare started no process")


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def memory_line(pid: int) -> str:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    mib = {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "RssShmem")}
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    role = "worker" if " -m workers " in cmdline else "front door"
    return f"{role} (pid {pid}): RSS {mib['VmRSS']:.0f} MiB, of which private {mib['RssAnon']:.0f} MiB, arenas mapped {mib['RssShmem']:.0f} MiB"


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"not ready after {timeout} s")


def large_infer(url: str, rows: int) -> None:
    """iris-mlp on rows x 4 FP32 features, binary both ways; checked against the same request made small."""
    features = np.random.default_rng(0).random((rows, 4), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [{"name": "features", "datatype": "FP32", "shape": list(features.shape), "parameters": {"binary_data_size": features.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = requests.post(f"{url}/v2/models/iris-mlp/infer", data=header + features.tobytes(), headers={HEADER_LENGTH: str(len(header))}, timeout=300)
    response.raise_for_status()
    length = int(response.headers[HEADER_LENGTH])
    probabilities = np.frombuffer(response.content[length:], dtype=np.float32).reshape(rows, 3)
    few = requests.post(
        f"{url}/v2/models/iris-mlp/infer",
        json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [3, 4], "data": features[-3:].ravel().tolist()}],
            "outputs": [{"name": "probabilities"}],
        },
        timeout=30,
    )
    few.raise_for_status()
    expected = np.array(few.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 3)
    if not np.allclose(probabilities[-3:], expected, rtol=1e-5, atol=1e-6):
        raise AssertionError(f"the large request's last rows {probabilities[-3:]} differ from the same rows alone {expected}")
    print(f"{features.nbytes / 2**20:.0f} MiB in, {probabilities.nbytes / 2**20:.0f} MiB out over binary REST: answers match")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="the Dockerfile's EXTRAS build argument, e.g. sklearn,onnx")
    parser.add_argument("--python", type=Path, default=Path(sys.executable), help="the Python the virtualenv is built on (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (virtualenv, context, log)")
    args = parser.parse_args()

    build, runtime = dockerfile_stages(ROOT / "Dockerfile")
    work = Path(tempfile.mkdtemp(prefix="gateway-install-"))
    work.chmod(0o755)  # readable by the unprivileged user the gateway may run as
    context, venv, models, tmpdir = work / "context", work / "venv", work / "models", work / "tmp"
    log_path = work / "gateway.log"
    try:
        step(f"build context from .dockerignore -> {context}")
        files = build_context(ROOT)
        for path in files:
            target = context / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        print(f"{len(files)} files: {sorted({p.relative_to(ROOT).parts[0] for p in files})}")

        (install,) = [r for r in instruction(build, "RUN") if BUILD_PREFIX in r]
        install = install.replace(BUILD_PREFIX, str(venv))
        step(f"the Dockerfile's install, EXTRAS={args.extras!r}: {install}")
        started = time.monotonic()
        python_dir = work / "python"  # `python` for the RUN line, as the base image has it
        python_dir.mkdir()
        (python_dir / "python").symlink_to(args.python.absolute())
        env = {**os.environ, "EXTRAS": args.extras, "PATH": f"{python_dir}{os.pathsep}{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("PYTHONPATH", None)
        subprocess.run(["sh", "-c", install], cwd=context, env=env, check=True)
        print(f"installed in {time.monotonic() - started:.0f} s")

        shutil.copytree(ROOT / "config", models)
        tmpdir.mkdir()
        entrypoint = exec_form(instruction(runtime, "ENTRYPOINT")[-1])
        cmd = [str(models) if a == "/models" else a for a in exec_form(instruction(runtime, "CMD")[-1])]
        image_env = {}
        for arguments in instruction(runtime, "ENV"):
            image_env.update(env_pairs(arguments))
        image_env = {k: v.replace(BUILD_PREFIX, str(venv)).replace("$PATH", os.environ["PATH"]) for k, v in image_env.items()}
        http_port = free_port()
        url = f"http://127.0.0.1:{http_port}"
        run_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "PYTHONPATH"},
            **image_env,
            "HOME": "/nonexistent",
            "TMPDIR": str(tmpdir),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_GRPC_PORT": str(free_port()),
            "GATEWAY_METRICS_PORT": str(free_port()),
        }
        argv = [str(venv / "bin" / entrypoint[0]), *entrypoint[1:], *cmd]
        isolated = can_isolate()
        as_user = isolated and usable_by_user(venv / "bin" / "python")
        if isolated:
            how = f"PID 1, read-only root, TMPDIR and /dev/shm ({DEV_SHM_BYTES >> 20} MiB) fresh tmpfs, user {USER_ID if as_user else f'0 (user {USER_ID} cannot run the Python the virtualenv is built on)'}"
            launch = container_like(argv, tmpdir, as_user)
        else:
            how = "a plain process (needs root and unshare for the container-like run)"
            launch = argv
        step(f"start: {' '.join(entrypoint + cmd)} as {how}")
        with log_path.open("wb") as log:
            launcher = subprocess.Popen(launch, env=run_env, stdout=log, stderr=subprocess.STDOUT, cwd=models, start_new_session=True)
        try:
            gateway_pid = namespace_pid1(launcher) if isolated else launcher.pid
            print(f"ready after {wait_ready(url, launcher):.1f} s")

            step(f"the Dockerfile's HEALTHCHECK: {' '.join(healthcheck_command(ROOT / 'Dockerfile', Path('/models')))}")
            healthcheck = subprocess.run(healthcheck_command(ROOT / "Dockerfile", models), env=run_env, capture_output=True, text=True, timeout=10)
            if healthcheck.returncode != 0:
                raise AssertionError(f"HEALTHCHECK failed ({healthcheck.returncode}): {healthcheck.stderr}")
            print("exit 0")

            step("memory, idle")
            for pid in [gateway_pid, *descendants(gateway_pid)]:
                print(memory_line(pid))

            step("a tensor larger than /dev/shm")
            large_infer(url, rows=6 * 1024 * 1024)  # 96 MiB of FP32 features
            arenas = [
                line
                for line in requests.get(f"http://127.0.0.1:{run_env['GATEWAY_METRICS_PORT']}/metrics", timeout=5).text.splitlines()
                if line.startswith("gateway_shared_memory_bytes")
            ]
            print("\n".join(arenas))
            print("memory after it:")
            for pid in [gateway_pid, *descendants(gateway_pid)]:
                print(memory_line(pid))

            step("SIGTERM")
            started = time.monotonic()
            os.kill(gateway_pid, signal.SIGTERM)
            code = launcher.wait(120)
            print(f"exit code {code} after {time.monotonic() - started:.1f} s")
            if code != 0 or "gateway stopped" not in log_path.read_text():
                raise AssertionError(f"the gateway did not stop cleanly (exit {code}); log: {log_path}")
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
    except Exception:
        if log_path.exists():
            print(f"\n-- gateway log --\n{log_path.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        raise
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nOK: the Dockerfile's install and start commands work on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
