"""Mutation score of the gateway's core modules: plant one single-line bug at a time, run the
tests that guard that module, and count the bugs they catch (killed) and miss (survived).

    python scripts/mutation_score.py                          # every core module, 20 mutants each
    python scripts/mutation_score.py --module gateway/control/pool.py --mutants 40
    python scripts/mutation_score.py --module gateway/wire/datatypes.py --list     # the candidates only

Mutants are made from the module's syntax tree, one change on one line: a comparison turned
(`<` to `<=`, `==` to `!=`, `in` to `not in`...), `and` and `or` swapped, a `not` dropped, a
condition negated, a number off by one, `True` and `False` swapped, `+` and `-` swapped, a
one-line statement (an assignment, a call, a `raise`, a `return`) replaced by `pass`, a returned
value replaced by None. Log calls and docstrings are left alone. From all candidates, `--mutants`
are drawn with a fixed `--seed` (spread over the module), so runs compare.

Each mutant runs in a copy of this checkout (the tests start their gateways from the copy, so the
planted bug is what the gateway and its workers run): `python -m pytest -x` on the module's test
files, with `--timeout` seconds per test and `--mutant-timeout` seconds in all (a mutant that makes
the suite hang counts as killed: the suite noticed). Outside CI: it takes a while (each mutant
starts gateways); run it on a quiet machine. Prints killed / total per module and every survivor;
`--out` writes them as JSON.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# each core module, and the test files that guard it (the most focused first: -x stops at the first failure)
GUARDS = {
    "gateway/wire/datatypes.py": [
        "test_largejson.py",
        "test_properties.py",
        "test_codecs.py",
        "test_bytes_json.py",
        "test_rest.py",
        "test_grpc.py",
        "test_zero_size.py",
        "test_examples.py",
        "test_fuzz.py",
        "test_worker_plane.py",
    ],
    "gateway/frontdoor/rest/body.py": [
        "test_rest.py",
        "test_largejson.py",
        "test_bytes_json.py",
        "test_properties.py",
        "test_zero_size.py",
        "test_examples.py",
        "test_batching.py",
        "test_fuzz.py",
    ],
    "gateway/frontdoor/grpc/convert.py": ["test_grpc.py", "test_bytes_json.py", "test_properties.py", "test_zero_size.py", "test_fuzz.py"],
    "gateway/control/batching.py": ["test_batching.py", "test_bytes_json.py", "test_pool_faults.py", "test_zero_size.py", "test_observability.py"],
    "gateway/control/pool.py": [
        "test_pool_faults.py",
        "test_batching.py",
        "test_worker_plane.py",
        "test_rest.py",
        "test_observability.py",
        "test_lifecycle.py",
    ],
    "gateway/frontdoor/dataplane.py": [
        "test_rest.py",
        "test_grpc.py",
        "test_load_failures.py",
        "test_mlserver_examples.py",
        "test_batching.py",
        "test_observability.py",
        "test_zero_size.py",
        "test_worker_plane.py",
    ],
    "gateway/wire/messages.py": ["test_worker_plane.py", "test_pool_faults.py", "test_bytes_json.py", "test_rest.py", "test_grpc.py", "test_zero_size.py"],
}

COMPARISONS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
ARITHMETIC = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}


@dataclass
class Mutant:
    line: int  # 1-based
    kind: str
    before: str  # the whole line, as written
    after: str

    def describe(self) -> str:
        return f"line {self.line} ({self.kind}): {self.before.strip()}  ->  {self.after.strip()}"


def _is_log_call(node: ast.AST) -> bool:
    call = node.value if isinstance(node, ast.Expr) else node
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id in ("log", "logging", "logger")
    )


def _replace(line: str, node: ast.AST, text: str) -> str:
    return line[: node.col_offset] + text + line[node.end_col_offset :]


def candidates(source: str) -> list[Mutant]:
    """Every single-line mutant of the module."""
    lines = source.splitlines()
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }  # fmt: skip
    # decorators (@dataclass(slots=True)) and field declarations without a value are not behaviour
    skipped = {id(n) for node in ast.walk(tree) if hasattr(node, "decorator_list") for d in node.decorator_list for n in ast.walk(d)}
    skipped |= {id(node) for node in ast.walk(tree) if isinstance(node, ast.AnnAssign) and node.value is None}
    found: list[Mutant] = []

    def add(node: ast.AST, kind: str, text: str) -> None:
        if node.lineno != node.end_lineno:
            return
        before = lines[node.lineno - 1]
        after = _replace(before, node, text)
        if after != before:
            found.append(Mutant(node.lineno, kind, before, after))

    for node in ast.walk(tree):
        if getattr(node, "lineno", None) is None or id(node) in docstrings or id(node) in skipped or _is_log_call(node):
            continue
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARISONS:
            swapped = ast.Compare(node.left, [COMPARISONS[type(node.ops[0])]()], node.comparators)
            add(node, "comparison", ast.unparse(swapped))
        elif isinstance(node, ast.BoolOp):
            other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            add(node, "and/or", ast.unparse(ast.BoolOp(other, node.values)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            add(node, "not dropped", ast.unparse(node.operand))
        elif isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
            add(node, "arithmetic", ast.unparse(ast.BinOp(node.left, ARITHMETIC[type(node.op)](), node.right)))
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            add(node, "boolean", repr(not node.value))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            add(node, "number", repr(node.value + 1))
        if isinstance(node, (ast.If, ast.While)) and node.test.lineno == node.test.end_lineno:
            add(node.test, "condition negated", f"not ({ast.unparse(node.test)})")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.Expr, ast.Return, ast.Delete)):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            if node.lineno == node.end_lineno:
                before = lines[node.lineno - 1]
                found.append(Mutant(node.lineno, "statement dropped", before, before[: node.col_offset] + "pass" + before[node.end_col_offset :]))
            if isinstance(node, ast.Return) and node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
                add(node, "return None", "return None")
    # one mutant per (line, change): ast.walk can reach a node twice through its parents
    unique = {(m.line, m.after): m for m in found}
    return sorted(unique.values(), key=lambda m: (m.line, m.kind))


def sample(mutants: list[Mutant], count: int, seed: int) -> list[Mutant]:
    """`count` mutants spread over the module: the lines in a fixed shuffled order, one mutant of each line in turn."""
    rng = random.Random(seed)
    by_line: dict[int, list[Mutant]] = {}
    for mutant in mutants:
        by_line.setdefault(mutant.line, []).append(mutant)
    lines = sorted(by_line)
    rng.shuffle(lines)
    for options in by_line.values():
        rng.shuffle(options)
    chosen: list[Mutant] = []
    while len(chosen) < min(count, len(mutants)):
        for line in lines:
            if by_line[line] and len(chosen) < count:
                chosen.append(by_line[line].pop())
    return sorted(chosen, key=lambda m: m.line)


def copy_checkout(target: Path) -> None:
    ignore = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info", "mutants")
    shutil.copytree(ROOT, target, ignore=ignore, dirs_exist_ok=True)


def run_tests(copy: Path, tests: list[str], per_test: int, overall: int) -> tuple[str, float, str]:
    """('killed' | 'survived' | 'timeout', seconds, the first failure's line)."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", f"--timeout={per_test}", *[f"tests/{t}" for t in tests]]
    started = time.monotonic()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen(command, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=overall)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        return "timeout", time.monotonic() - started, ""
    failed = next((line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))), "")
    return ("survived" if process.returncode == 0 else "killed"), time.monotonic() - started, failed


def score_module(module: str, count: int, seed: int, per_test: int, overall: int, copy: Path) -> dict:
    path = copy / module
    original = path.read_text()
    mutants = sample(candidates(original), count, seed)
    results = []
    try:
        for number, mutant in enumerate(mutants, 1):
            lines = original.splitlines(keepends=True)
            newline = "\n" if lines[mutant.line - 1].endswith("\n") else ""
            lines[mutant.line - 1] = mutant.after + newline
            path.write_text("".join(lines))
            outcome, seconds, failure = run_tests(copy, GUARDS[module], per_test, overall)
            results.append({**asdict(mutant), "outcome": outcome, "seconds": round(seconds, 1), "caught_by": failure})
            print(f"  [{number}/{len(mutants)}] {outcome:8} {seconds:6.1f} s  {mutant.describe()}", flush=True)
    finally:
        path.write_text(original)
    killed = sum(r["outcome"] != "survived" for r in results)
    return {"module": module, "killed": killed, "total": len(results), "mutants": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", action="append", choices=sorted(GUARDS), help="a core module (repeatable; default: all)")
    parser.add_argument("--mutants", type=int, default=20, help="mutants per module (default 20)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test (default 120)")
    parser.add_argument("--mutant-timeout", type=int, default=900, help="seconds for one mutant's whole run (default 900)")
    parser.add_argument("--list", action="store_true", help="print the candidates and the sample, run nothing")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    modules = args.module or list(GUARDS)

    if args.list:
        for module in modules:
            every = candidates((ROOT / module).read_text())
            print(f"{module}: {len(every)} candidates; the sample of {args.mutants}:")
            for mutant in sample(every, args.mutants, args.seed):
                print("  ", mutant.describe())
        return 0

    reports = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as folder:
        copy = Path(folder) / "checkout"
        copy_checkout(copy)
        for module in modules:
            print(f"{module}: running {GUARDS[module]}", flush=True)
            reports.append(score_module(module, args.mutants, args.seed, args.timeout, args.mutant_timeout, copy))
    print("\nmodule | killed / total | score")
    for report in reports:
        print(f"{report['module']} | {report['killed']} / {report['total']} | {100 * report['killed'] / max(report['total'], 1):.0f} %")
    killed, total = sum(r["killed"] for r in reports), sum(r["total"] for r in reports)
    print(f"all | {killed} / {total} | {100 * killed / max(total, 1):.0f} %")
    for report in reports:
        for mutant in report["mutants"]:
            if mutant["outcome"] == "survived":
                print(f"survived: {report['module']} {Mutant(mutant['line'], mutant['kind'], mutant['before'], mutant['after']).describe()}")
    if args.out:
        args.out.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
