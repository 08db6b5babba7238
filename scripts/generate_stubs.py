"""Generate the committed gRPC stubs (gateway/protocol/generated/) from protos/inference.proto.

    python scripts/generate_stubs.py           # rewrite the stubs after editing the .proto
    python scripts/generate_stubs.py --check   # exit 1 if the committed stubs are not what it generates (CI)

The stubs are committed so that a fresh checkout imports without a build step, and editors
and type checkers see them (the .pyi). They are generated with an OLD protoc on purpose:
generated code needs a protobuf runtime at least as new as the protoc that wrote it (and
grpcio at least as new as grpcio-tools), while our users install us next to tritonclient,
MLServer and KServe, which hold protobuf below 7 (MLServer 1.7 accepts 5.27.2 and up). So
grpcio-tools is pinned to the release whose protoc is 5.27.2 (TOOLS below), installed into a
virtualenv of its own so it never touches the project's protobuf. pyproject.toml's floors
(protobuf >= 5.27.2, grpcio >= 1.66.2) follow from it: change them together.

Two edits are made to protoc's output, both checked:
- the messages are registered in a private descriptor pool instead of protobuf's default
  one. tritonclient, MLServer and KServe register the same `inference.*` names in the
  default pool, and importing two of them in one process fails with "duplicate symbol
  'inference.ServerLiveRequest'"; with a private pool our stubs live next to any of them.
  Message and service names, and so the wire format and RPC paths, are unchanged;
- the service module imports its messages relatively (protoc writes `import inference_pb2`).
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
PROTO = ROOT / "protos" / "inference.proto"
STUBS = ROOT / "gateway" / "protocol" / "generated"
TOOLS = "grpcio-tools==1.66.2"  # protoc 5.27.2; see the module docstring before changing it
FILES = ("__init__.py", "inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")

_PRIVATE_POOL = (
    "_descriptor_pool.Default().AddSerializedFile(",
    "_descriptor_pool.DescriptorPool().AddSerializedFile(",
)
_RELATIVE_IMPORT = ("\nimport inference_pb2 as inference__pb2\n", "\nfrom . import inference_pb2 as inference__pb2\n")
_INIT = f'"""Generated from protos/{PROTO.name} by scripts/generate_stubs.py ({TOOLS}); do not edit."""\n'


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
            str(tools_python()), "-m", "grpc_tools.protoc", f"-I{PROTO.parent}",
            f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", str(PROTO),
        ],
        check=True,
    )  # fmt: skip
    _rewrite(out_dir / "inference_pb2.py", *_PRIVATE_POOL)
    _rewrite(out_dir / "inference_pb2_grpc.py", *_RELATIVE_IMPORT)
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
        raise SystemExit(f"the committed stubs are stale: run `python scripts/generate_stubs.py` after editing {PROTO.name}")
    print("the committed gRPC stubs match protos/inference.proto")


if __name__ == "__main__":
    main()
