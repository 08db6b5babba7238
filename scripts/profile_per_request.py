#!/usr/bin/env python3
"""A front door's cProfile profile read per inference request (the DataPlane.infer calls it made).

    python scripts/cpu_at_rate.py --protocol rest-json --concurrency 1 --rounds 1 --cprofile c1.prof
    python scripts/cpu_at_rate.py --protocol rest-json --concurrency 64 --rounds 1 --cprofile c64.prof
    python scripts/profile_per_request.py c1.prof              # function calls per request, by module
    python scripts/profile_per_request.py c1.prof c64.prof     # ... and the same functions' time per call in each

With two profiles, the second table lists the functions that ran about as often per request in both
(the same work) and their time per call in each: where the same code runs slower in the first.

cProfile counts each resumption of a coroutine as a call, and its times are wall-clock times with its
own overhead in them: compare profiles with each other, not with CPU figures. The process's start-up
(imports, loading) is in the profile too; a run of several seconds makes it small per request.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STDLIB = sysconfig.get_paths()["stdlib"]
ANCHOR = ("frontdoor/dataplane.py", "infer")  # called once per inference request, whatever the protocol


def _short(path: str) -> str:
    """A file's path from its package's root (the gateway's tree, site-packages or the standard library)."""
    for root in (f"{ROOT}/", "site-packages/", f"{STDLIB}/"):
        if root in path:
            return path.split(root, 1)[1]
    return path


def load(path: Path) -> tuple[dict, int]:
    """The profile's functions, and how many requests it served."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]  # pstats keeps its table there
    requests = sum(calls for (file, _, name), (_, calls, *_rest) in stats.items() if file.endswith(ANCHOR[0]) and name == ANCHOR[1])
    if not requests:
        raise SystemExit(f"{path}: no call of DataPlane.infer: not a front door's profile under inference load")
    return stats, requests


def by_module(path: Path, top: int) -> None:
    stats, requests = load(path)
    calls: collections.Counter[str] = collections.Counter()
    seconds: collections.Counter[str] = collections.Counter()
    for (file, _, _), (_, count, own, *_rest) in stats.items():
        module = "built-in functions" if file == "~" else _short(file)
        calls[module] += count
        seconds[module] += own
    print(f"{path}: {requests:,} requests, {sum(calls.values()) / requests:,.0f} function calls per request")
    print("  calls/request  own µs/request  module")
    for module, count in calls.most_common(top):
        print(f"  {count / requests:13.1f}  {seconds[module] / requests * 1e6:14.1f}  {module}")


def same_work(first: Path, second: Path, top: int) -> None:
    a, a_requests = load(first)
    b, b_requests = load(second)
    rows = []
    for key, (_, a_calls, a_own, *_rest) in a.items():
        if key not in b or not a_calls:
            continue
        b_calls, b_own = b[key][1], b[key][2]
        per_a, per_b = a_calls / a_requests, b_calls / b_requests
        # the same work: called at least half a time per request in each, about as often in both
        if min(per_a, per_b) >= 0.5 and abs(per_a - per_b) <= 0.1 * max(per_a, per_b) and b_own:
            rows.append((a_own / a_requests, key, per_a, a_own / a_calls, b_own / b_calls))
    rows.sort(reverse=True)
    print(f"\nfunctions run about as often per request in both, by their own time per request in {first}:")
    print(f"  calls/request  µs per call: {first.name} / {second.name}  ratio  function")
    for _, (file, line, name), per_request, a_call, b_call in rows[:top]:
        where = name if file == "~" else f"{_short(file)}:{line} {name}"
        print(f"  {per_request:13.2f}  {a_call * 1e6:10.2f} / {b_call * 1e6:<10.2f}  {a_call / b_call:5.1f}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", type=Path, nargs="+", help="one or two cProfile files of a front door")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    args = parser.parse_args()
    if len(args.profiles) > 2:
        parser.error("one or two profiles")
    for path in args.profiles:
        by_module(path, args.top)
    if len(args.profiles) == 2:
        same_work(*args.profiles, args.top)


if __name__ == "__main__":
    main()
