"""Memory of a KServe script serving one model that holds a large numpy array, with N workers:
the gateway (`from gateway import kserve`) against KServe itself (`import kserve`).

    python scripts/kserve_pss.py --kserve-python /tmp/kserve-venv/bin/python [--mib 512] [--workers 4]

Each server runs the same script (only its import differs), loads the model once in the script
(`load()` fills the array, so its pages are real), starts `ModelServer(workers=N)`, is called a
few times over V1 REST, then measured: the sum of Pss (/proc/<pid>/smaps_rollup) over the
script's process and all its descendants. Pss counts a page shared by k processes as 1/k in
each, so the sum is what the tree costs the machine. Without --kserve-python only the gateway is
measured.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import os
import sys

import numpy as np

{import_line}


class Weights(kserve.Model):
    def load(self):
        self.weights = np.ones({mib} * 1024 * 1024 // 8)  # written: resident pages
        self.ready = True
        return True

    def predict(self, payload, headers=None, response_headers=None):
        return {{"predictions": [float(self.weights[::4096].sum())]}}


if __name__ == "__main__":
    model = Weights("weights")
    model.load()
    kserve.ModelServer(http_port=int(sys.argv[1]), grpc_port=int(sys.argv[2]), workers={workers}).start([model])
"""


def tree(root: int) -> list[int]:
    """The process and all its descendants (Linux /proc children lists)."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def settled(root: int, every: float = 3.0, patience: float = 180.0) -> tuple[list[int], int]:
    """The tree and its Pss once they stop changing: a server may answer ready while other workers
    still start (KServe's spawned workers each unpickle the model), so wait for the same processes
    and a Pss within 1 % three readings in a row."""
    readings: list[tuple[list[int], int]] = []
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        pids = tree(root)
        readings.append((pids, sum(pss(pid) for pid in pids)))
        last = readings[-3:]
        if len(last) == 3 and len({tuple(sorted(p)) for p, _ in last}) == 1 and max(t for _, t in last) <= 1.01 * min(t for _, t in last):
            return readings[-1]
        time.sleep(every)
    raise RuntimeError(f"the process tree of {root} did not settle in {patience} s")


def measure(label: str, python: str, import_line: str, mib: int, workers: int, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "serve_weights.py"
        script.write_text(textwrap.dedent(SCRIPT.format(import_line=import_line, mib=mib, workers=workers)))
        http_port, grpc_port = free_port(), free_port()
        log = open(Path(folder) / "log", "w+")
        process = subprocess.Popen([python, str(script), str(http_port), str(grpc_port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{http_port}/v1/models/weights"
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{label} did not become ready:\n{log.read()[-4000:]}")
                try:
                    if requests.get(url, timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.2)
            for _ in range(8):  # a worker that answered has touched what serving touches
                answer = requests.post(f"{url}:predict", json={"instances": [1]}, headers={"content-type": "application/json"}, timeout=30)
                answer.raise_for_status()
            pids, total = settled(process.pid)
            return {"label": label, "processes": len(pids), "pss": total}
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kserve-python", help="a Python with kserve installed (e.g. a venv with kserve==0.21.*)")
    parser.add_argument("--mib", type=int, default=512, help="the model's array, MiB")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    runs = [("gateway", sys.executable, "from gateway import kserve", {**os.environ, "PYTHONPATH": str(ROOT), "GATEWAY_HOST": "127.0.0.1"})]
    if args.kserve_python:
        runs.append(("KServe", args.kserve_python, "import kserve", {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}))
    print(f"one model holding {args.mib} MiB, workers={args.workers}: PSS of the whole process tree")
    for label, python, import_line, env in runs:
        result = measure(label, python, import_line, args.mib, args.workers, env)
        print(f"{label:8} {result['pss'] / 2**20:8.0f} MiB  ({result['processes']} processes)", flush=True)


if __name__ == "__main__":
    main()
