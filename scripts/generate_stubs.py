"""Generate the committed gRPC stubs (gateway/protocol/generated/) from protos/*.proto.

    python scripts/generate_stubs.py           # rewrite the stubs after editing a .proto
    python scripts/generate_stubs.py --check   # exit 1 if the committed stubs are not what it generates (CI)

The stubs are committed so that a fresh checkout imports without a build step, and editors
and type checkers see them (the .pyi). They are generated with an OLD protoc on purpose:
generated code needs a protobuf runtime at least as new as the protoc that wrote it (and
grpcio at least as new as grpcio-tools), while our users install us next to tritonclient,
MLServer and KServe, which hold protobuf below 7 (MLServer 1.7 accepts 5.27.2 and up). So
grpcio-tools is pinned to the release whose protoc is 5.27.2 (TOOLS below), installed into a
virtualenv of its own so it never touches the project's protobuf. pyproject.toml's floors
(protobuf >= 5.27.2, grpcio >= 1.66.2) follow from it: change them together.

The protos: inference.proto (the V2 service), health.proto (grpc.health.v1.Health) and
reflection.proto (grpc.reflection.v1.ServerReflection). The last two are gRPC's standard
services, generated here rather than taken from grpcio-health-checking and grpcio-reflection:
each release of those pins protobuf to one major version at or above the protoc it was built
with (1.71: <6, 1.80: >=6.31.1,<7, 1.85: >=7.35.1), so pip installing the newest next to an
older protobuf upgrades protobuf and grpcio under tritonclient, MLServer or KServe; and their
modules register in the default pool, where reflection would not see our services.

Two edits are made to protoc's output, both checked:
- the messages are registered in one private descriptor pool (`POOL` in the package's
  __init__.py) instead of protobuf's default one. tritonclient, MLServer and KServe register
  the same `inference.*` names in the default pool, and importing two of them in one process
  fails with "duplicate symbol 'inference.ServerLiveRequest'"; with a private pool our stubs
  live next to any of them (and next to grpcio-health-checking's). The reflection service
  serves the descriptors of this pool. Message and service names, and so the wire format and
  RPC paths, are unchanged;
- the service modules import their messages relatively (protoc writes `import inference_pb2`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
MODULES = ("inference", "health", "reflection")  # protos/<module>.proto
STUBS = ROOT / "gateway" / "protocol" / "generated"
TOOLS = "grpcio-tools==1.66.2"  # protoc 5.27.2; see the module docstring before changing it
FILES = ("__init__.py", *(f"{module}{suffix}" for module in MODULES for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")))

_PRIVATE_POOL = (
    "_descriptor_pool.Default().AddSerializedFile(",
    "POOL.AddSerializedFile(",
)
_POOL_IMPORT = (
    "\nfrom google.protobuf.internal import builder as _builder\n",
    "\nfrom google.protobuf.internal import builder as _builder\nfrom . import POOL\n",
)
_INIT = f'''"""Generated from protos/{{{", ".join(f"{module}.proto" for module in MODULES)}}} by scripts/generate_stubs.py ({TOOLS}); do not edit."""

from google.protobuf import descriptor_pool

# the descriptors of every module here: private, so that other copies of the same protos in the default pool do not clash
POOL = descriptor_pool.DescriptorPool()
'''


def _relative_import(module: str) -> tuple[str, str]:
    return f"\nimport {module}_pb2 as {module}__pb2\n", f"\nfrom . import {module}_pb2 as {module}__pb2\n"


def tools_python() -> Path:
    """The interpreter of a virtualenv holding the pinned grpcio-tools (made once, then reused)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inference-gateway" / TOOLS.replace("==", "-")
    python = cache / "bin" / "python"
    if not python.exists():
        print(f"installing {TOOLS} into {cache}", file=sys.stderr)
        venv.create(cache, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", TOOLS], check=True)
    return python


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{path}: expected exactly one {old.strip()!r} in protoc's output; has {TOOLS} changed?")
    path.write_text(text.replace(old, new))


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(tools_python()), "-m", "grpc_tools.protoc", f"-I{PROTOS}",
            f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
            *(str(PROTOS / f"{module}.proto") for module in MODULES),
        ],
        check=True,
    )  # fmt: skip
    for module in MODULES:
        _rewrite(out_dir / f"{module}_pb2.py", *_PRIVATE_POOL)
        _rewrite(out_dir / f"{module}_pb2.py", *_POOL_IMPORT)
        _rewrite(out_dir / f"{module}_pb2_grpc.py", *_relative_import(module))
    (out_dir / "__init__.py").write_text(_INIT)


def differences(generated: Path) -> list[str]:
    lines = []
    for name in FILES:
        committed = STUBS / name
        old = committed.read_text().splitlines(keepends=True) if committed.exists() else []
        new = (generated / name).read_text().splitlines(keepends=True)
        lines += difflib.unified_diff(old, new, f"committed/{name}", f"generated/{name}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed stubs instead of writing them")
    args = parser.parse_args()
    if not args.check:
        generate(STUBS)
        print(f"wrote {', '.join(FILES)} in {STUBS.relative_to(ROOT)}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        diff = differences(Path(scratch))
    if diff:
        sys.stdout.writelines(diff[:200])
        raise SystemExit("the committed stubs are stale: run `python scripts/generate_stubs.py` after editing protos/")
    print(f"the committed gRPC stubs match protos/{{{','.join(MODULES)}}}.proto")


if __name__ == "__main__":
    main()
