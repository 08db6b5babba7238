"""The import rules of the code's rooms (docs/ARCHITECTURE.md), read from the source with `ast`.

Rooms: the SDK (the top of `gateway/`: what model authors import, `gateway.kserve`,
`gateway.runtimes`, `gateway.codecs`, settings, errors, logs ...), `gateway.protocol` (the V2
protocol's gRPC messages and names), `gateway.wire` (what the front door and the workers share),
`gateway.control` (model table, pool, batching, stats), `gateway.frontdoor` (REST, gRPC, the
data plane, the wiring), `workers` (the worker process) and the entry points (`gateway.cli`,
`gateway.__main__`, `gateway.script`, a KServe script's server, which forks a fork server of
`workers` before it becomes the front door, and `gateway.relay`, a relay front door's process),
which may start anything.

Rules:
- no import cycle between modules at module level (imports inside functions, and under
  `if TYPE_CHECKING:`, run later or never, so they cannot make one);
- each room imports only the rooms below it (ALLOWED), wherever the import is written;
- what a worker process imports, followed through every module it reaches, holds no front-door
  and no control-plane module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "workers")

ALLOWED = {
    "base": {"base"},  # gateway.errors and gateway.logs: every room may use them
    "protocol": {"protocol"},
    "wire": {"wire", "base"},
    "sdk": {"sdk", "base", "wire", "protocol"},
    "control": {"control", "sdk", "base", "wire", "protocol"},
    "frontdoor": {"frontdoor", "control", "sdk", "base", "wire", "protocol"},
    "workers": {"workers", "sdk", "base", "wire"},
    "entry": {"entry", "frontdoor", "control", "sdk", "base", "wire", "protocol", "workers"},
}
# what a worker process may never hold, whichever way it got there
NEVER_IN_A_WORKER = {"frontdoor", "control", "entry"}
# the one import that runs against the rules, on purpose: KServe's `ModelServer.start()` is where a
# script becomes a server, so the SDK imports the serving entry point inside that call (never at
# module level: `test_doors_open_only_inside_a_call`), and only a script's process calls it
DOORS = {("gateway.kserve.model_server", "gateway.script")}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "workers":
        return "workers"
    if module in ("gateway.cli", "gateway.__main__", "gateway.script", "gateway.relay"):
        return "entry"
    if module in ("gateway.errors", "gateway.logs"):
        return "base"
    if len(parts) > 1 and parts[1] in ("protocol", "wire", "control", "frontdoor"):
        return parts[1]
    return "sdk"


def modules(root: Path) -> dict[str, Path]:
    """Every module of our packages under `root`, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _under_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(modules of ours imported at module level, modules of ours imported anywhere)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    at_top: set[str] = set()
    anywhere: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:  # `from .x import Name`: the module is .x
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from package import module` imports the module; `from module import name`, the module
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in child.names]
            for target in targets:
                resolved = resolve(target)
                if resolved is not None and resolved != module:
                    anywhere.add(resolved)
                    if top:
                        at_top.add(resolved)
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _under_type_checking(child):
                visit(child, False)
            else:
                visit(child, top)

    visit(ast.parse(path.read_text(), str(path)), True)
    return at_top, anywhere


def graph(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    known = modules(root)
    at_top, anywhere = {}, {}
    for module, path in known.items():
        at_top[module], anywhere[module] = imports(module, path, known)
    return at_top, anywhere


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def violations(anywhere: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} ({room(module)}) imports {target} ({room(target)})"
        for module, targets in sorted(anywhere.items())
        for target in sorted(targets)
        if room(target) not in ALLOWED[room(module)] and (module, target) not in DOORS
    ]


def reached_by_workers(anywhere: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [module for module in anywhere if room(module) == "workers"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(target for target in anywhere.get(module, ()) if (module, target) not in DOORS)
    return seen


@pytest.fixture(scope="module")
def ours() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    return graph(ROOT)


def test_every_room_is_found(ours):
    at_top, _ = ours
    assert {room(module) for module in at_top} == set(ALLOWED)


def test_doors_open_only_inside_a_call(ours):
    at_top, anywhere = ours
    for module, target in DOORS:
        assert target in anywhere[module] and target not in at_top[module], (module, target)


def test_no_import_cycles(ours):
    at_top, _ = ours
    assert cycles(at_top) == []


def test_rooms_import_only_the_rooms_below(ours):
    _, anywhere = ours
    assert violations(anywhere) == []


def test_a_worker_holds_no_front_door_or_control_code(ours):
    _, anywhere = ours
    reached = reached_by_workers(anywhere)
    assert "gateway.wire.messages" in reached  # the walk works
    assert sorted(m for m in reached if room(m) in NEVER_IN_A_WORKER) == []


# --- the checker itself, on a small tree made to break each rule


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("gateway", "gateway/wire", "gateway/control", "gateway/frontdoor", "workers"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_the_checker_finds_a_cycle_but_not_a_deferred_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "gateway/control/pool.py": "from . import stats\n",
            "gateway/control/stats.py": "from .pool import Pool\n",
            "gateway/control/models.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .table import T\n",
            "gateway/control/table.py": "from .models import M\ndef later():\n    from . import pool\n",
        },
    )
    at_top, _ = graph(root)
    assert cycles(at_top) == [["gateway.control.pool", "gateway.control.stats"]]


def test_the_checker_finds_an_upward_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "gateway/wire/messages.py": "def late():\n    from ..frontdoor import dataplane\n",
            "gateway/frontdoor/dataplane.py": "from ..wire import messages\n",
            "gateway/errors.py": "",
        },
    )
    _, anywhere = graph(root)
    assert violations(anywhere) == ["gateway.wire.messages (wire) imports gateway.frontdoor.dataplane (frontdoor)"]


def test_the_checker_follows_a_worker_through_the_sdk(tmp_path):
    root = _tree(
        tmp_path,
        {
            "workers/worker.py": "from gateway import model\n",
            "gateway/model.py": "import gateway.control.pool\n",
            "gateway/control/pool.py": "",
        },
    )
    _, anywhere = graph(root)
    assert "gateway.control.pool" in reached_by_workers(anywhere)
    assert violations(anywhere) == ["gateway.model (sdk) imports gateway.control.pool (control)"]
