"""Build hook: generate the gRPC stubs from protos/ when the package is built.

Everything else about the package is in pyproject.toml. The stubs are not
committed: `build_py` runs grpcio-tools' protoc on protos/inference.proto and
writes `gateway/grpc/generated/` (inference_pb2.py, .pyi, inference_pb2_grpc.py):

- `pip install .` (and wheels): into the build tree, so they ship in the wheel;
- `pip install -e .`: into the source tree (gitignored), where the editable
  install imports `gateway` from. Re-run it after editing the .proto.

Two edits are made to protoc's output, both checked:
- the service module imports its messages relatively (protoc writes a
  top-level `import inference_pb2`);
- the messages are registered in a private descriptor pool instead of
  protobuf's default one. tritonclient, MLServer and KServe all register the
  same `inference.*` names in the default pool, and importing two of them in
  one process fails with "duplicate symbol 'inference.ServerLiveRequest'";
  with a private pool our stubs live next to any of them. Message and service
  names, and so the wire format and RPC paths, are unchanged.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO = HERE / "protos" / "inference.proto"
PACKAGE_DIR = Path("gateway", "grpc", "generated")

_PRIVATE_POOL = (
    "_descriptor_pool.Default().AddSerializedFile(",
    "_descriptor_pool.DescriptorPool().AddSerializedFile(",
)
_RELATIVE_IMPORT = ("\nimport inference_pb2 as inference__pb2\n", "\nfrom . import inference_pb2 as inference__pb2\n")


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise RuntimeError(f"{path}: expected exactly one {old.strip()!r} in protoc's output; has grpcio-tools changed?")
    path.write_text(text.replace(old, new))


def generate_stubs(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO.parent}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    _rewrite(out_dir / "inference_pb2.py", *_PRIVATE_POOL)
    _rewrite(out_dir / "inference_pb2_grpc.py", *_RELATIVE_IMPORT)
    init = out_dir / "__init__.py"
    init.write_text(f'"""Generated from protos/{PROTO.name} by setup.py at build time; do not edit or commit."""\n')
    return [init, *(out_dir / n for n in ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py"))]


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        super().run()
        target = HERE / PACKAGE_DIR if self.editable_mode else Path(self.build_lib) / PACKAGE_DIR
        self._stubs = generate_stubs(target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *(str(p) for p in getattr(self, "_stubs", []))]


setup(cmdclass={"build_py": BuildPyWithStubs})
