#!/usr/bin/env python3
"""A rolling restart of gateway replicas behind HAProxy, under steady REST and gRPC load.

Starts `--replicas` gateways (each on free 127.0.0.1 ports, in a process group of its
own, as a pod's) and HAProxy in front of them: one frontend for REST (HTTP/1.1), one for
gRPC (cleartext HTTP/2), each balancing requests over the replicas. HAProxy checks every
replica's `GET /v2/health/ready`; a replica's gRPC server follows its REST check
(`track`). Then `loadgen.py` sends a steady load through HAProxy, REST and gRPC at once,
recording every request, while the replicas are restarted one after the other:
SIGTERM to its process group, wait until it has left HAProxy's rotation and exited,
start it again on the same ports, wait until HAProxy has it back in rotation, then the
next. Every request's outcome and latency, HAProxy's view of each replica (read from its
admin socket every 20 ms) and each replica's stop and start are recorded, relative to
the start of the load.

Needs `haproxy` on the PATH (Debian: `apt-get install -y haproxy`) and what loadgen.py
needs (numpy, grpcio); `--plot` needs matplotlib (the bench extra). Only 127.0.0.1 is
used, every port is chosen by the OS, and a run stops by itself: every wait is bounded,
and every process it started is stopped when it ends, however it ends.

    python scripts/rolling_restart.py                              # 3 replicas, the figures of docs/DEPLOY.md
    python scripts/rolling_restart.py --replicas 2 --drain-delay 2 --json-out run.json --plot run.png
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402  (scripts/loadgen.py)
from ports import free_port, refused  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition, timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


class Replica:
    """One gateway process, restartable on the same ports (a pod of a Deployment, here)."""

    def __init__(self, name: str, config: Path, settings: dict[str, Any], folder: Path):
        self.name, self.config, self.settings = name, config, settings
        self.log_path = folder / f"{name}.log"
        self.http_port, self.grpc_port = free_port(), free_port()
        self.process: Optional[subprocess.Popen] = None

    def spawn(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_HTTP_PORT": str(self.http_port),
            "GATEWAY_GRPC_PORT": str(self.grpc_port),
            "GATEWAY_METRICS_PORT": "0",
            "GATEWAY_ACCESS_LOG": "false",
            **{f"GATEWAY_{key.upper()}": str(value) for key, value in self.settings.items()},
        }
        with open(self.log_path, "ab") as log:
            log.write(f"---- {time.strftime('%H:%M:%S')} start on ports {self.http_port}, {self.grpc_port}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "start", "--config", str(self.config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )

    def lost_its_port(self) -> bool:
        """It exited because one of its ports was taken meanwhile (by any process on the machine)."""
        return self.process.poll() == 1 and "cannot listen on" in self.log_path.read_text(errors="replace").rsplit("---- ", 1)[-1]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)  # the whole group, as Kubernetes signals a container

    def stop(self) -> None:
        """SIGINT (no drain delay), SIGKILL after 20 s: the run's own clean-up."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()


HAPROXY_CONFIG = """\
global
    maxconn 4000
    stats socket {socket} mode 600 level admin
    log stderr format raw local0 notice

defaults
    mode http
    log global
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout check {check_timeout}ms
    # a connection refused or failed (the request was never sent) is tried again, on another replica
    retries 2
    option redispatch 1
    retry-on {retry_on}
    default-server inter {inter}ms fastinter {fastinter}ms downinter {downinter}ms fall {fall} rise {rise}

frontend rest
    bind 127.0.0.1:{rest_port}
    default_backend rest

frontend grpc
    mode {grpc_mode}
    bind 127.0.0.1:{grpc_port}{grpc_bind}
    default_backend grpc

backend rest
    balance roundrobin
    option httpchk
    http-check send meth GET uri /v2/health/ready ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
{rest_servers}

backend grpc
    mode {grpc_mode}
    balance roundrobin
{grpc_servers}
"""


class Balancer:
    """HAProxy in front of the replicas, with an admin socket to read and change its servers."""

    def __init__(self, folder: Path, replicas: list[Replica], checks: dict[str, Any], retry_on: str, grpc_balancing: str):
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.socket_path = folder / "haproxy.sock"
        self.log_path = folder / "haproxy.log"
        self.config_path = folder / "haproxy.cfg"
        self.config_path.write_text(
            HAPROXY_CONFIG.format(
                socket=self.socket_path,
                rest_port=self.rest_port,
                grpc_port=self.grpc_port,
                retry_on=retry_on,
                rest_servers="\n".join(f"    server {r.name} 127.0.0.1:{r.http_port} check" for r in replicas),
                # "http": each call balanced over HTTP/2 connections of HAProxy's own; "tcp": each client
                # connection, calls and all, as a Kubernetes Service (kube-proxy) balances
                grpc_mode=grpc_balancing,
                grpc_bind=" proto h2" if grpc_balancing == "http" else "",
                grpc_servers="\n".join(
                    f"    server {r.name} 127.0.0.1:{r.grpc_port}{' proto h2' if grpc_balancing == 'http' else ''} track rest/{r.name}" for r in replicas
                ),
                **checks,
            )
        )
        self.process: Optional[subprocess.Popen] = None

    def start(self, haproxy: str) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([haproxy, "-db", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(
            lambda: self.process.poll() is not None or (self.socket_path.exists() and not refused(self.rest_port) and not refused(self.grpc_port)),
            10,
            "HAProxy listening",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self.process.returncode}:\n{self.log_path.read_text(errors='replace')}")

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        """`show stat`: one row per (proxy, server), FRONTEND and BACKEND included."""
        text = self.command("show stat").lstrip("# ")
        return {(row["pxname"], row["svname"]): row for row in csv.DictReader(text.splitlines()) if row.get("pxname")}

    def move(self, replica: Replica) -> None:
        """Point both backends' server at the replica's (new) ports, as a controller does for a new pod."""
        for backend, port in (("rest", replica.http_port), ("grpc", replica.grpc_port)):
            answer = self.command(f"set server {backend}/{replica.name} addr 127.0.0.1 port {port}")
            if "changed" not in answer and "no need to change" not in answer:
                raise RuntimeError(f"HAProxy refused the new address of {replica.name}: {answer.strip()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Watch:
    """Reads HAProxy's view of every replica every 20 ms and keeps each change of state with its time."""

    def __init__(self, balancer: Balancer, clock_zero: float):
        self.balancer, self.t0 = balancer, clock_zero
        self.state: dict[str, str] = {}
        self.changes: list[tuple[float, str, str]] = []  # (seconds, replica, HAProxy status: UP, "UP 1/2", DOWN, "DOWN 1/2")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="haproxy-watch", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                rows = self.balancer.stats()
            except (OSError, ValueError):  # HAProxy busy or stopping: read it again
                time.sleep(0.1)
                continue
            now = time.perf_counter() - self.t0
            for (proxy, server), row in rows.items():
                if proxy == "rest" and server not in ("FRONTEND", "BACKEND") and self.state.get(server) != row["status"]:
                    self.state[server] = row["status"]
                    self.changes.append((round(now, 3), server, row["status"]))
            time.sleep(0.02)

    def status(self, replica: str) -> str:
        return self.state.get(replica, "")


def summarize(protocol: str, trace: list[tuple[float, float, str]], stopped_in_flight: int, t0: float) -> dict[str, Any]:
    latencies = sorted(done - start for start, done, _ in trace)
    outcomes = Counter(outcome for _, _, outcome in trace)
    if stopped_in_flight:  # no answer within the request timeout once the load stopped: hung
        outcomes["stopped in flight"] = stopped_in_flight
    slowest = max(trace, key=lambda item: item[1] - item[0]) if trace else None
    return {
        "protocol": protocol,
        "requests": len(trace) + stopped_in_flight,
        "ok": outcomes.pop("ok", 0),
        "failures": dict(outcomes),
        "latency_ms": {
            "p50": round(loadgen._percentile(latencies, 50) * 1e3, 2),
            "p99": round(loadgen._percentile(latencies, 99) * 1e3, 2),
            "p999": round(loadgen._percentile(latencies, 99.9) * 1e3, 2),
            "max": round(latencies[-1] * 1e3, 2) if latencies else math.nan,
        },
        "slowest_started_at_s": round(slowest[0] - t0, 3) if slowest else None,
    }


def restart(replica: Replica, balancer: Balancer, watch: Watch, settings: dict[str, Any], t0: float, log) -> dict[str, float]:
    """SIGTERM one replica, follow it out of rotation and out of existence, start it again and
    follow it back into rotation. Returns its events in seconds since t0."""
    events: dict[str, float] = {}

    def mark(name: str) -> None:
        if name not in events:
            events[name] = round(time.perf_counter() - t0, 3)
            log(f"  {events[name]:8.3f} s  {replica.name}: {name}")

    old_pid = replica.process.pid
    mark("SIGTERM")
    replica.signal(signal.SIGTERM)
    bound = time.monotonic() + settings["drain_delay"] + settings["shutdown_grace"] + 30
    while replica.process.poll() is None or watch.status(replica.name) != "DOWN":
        if watch.status(replica.name) == "DOWN":
            mark("out of rotation (HAProxy: DOWN)")
        if refused(replica.http_port):
            mark("listeners closed")
        if replica.process.poll() is not None:
            mark("listeners closed")
            mark(f"exited ({replica.process.returncode})")
        if time.monotonic() > bound:
            replica.signal(signal.SIGKILL)
            raise RuntimeError(f"{replica.name} did not leave in time (HAProxy: {watch.status(replica.name)}); killed")
        time.sleep(0.02)
    mark("out of rotation (HAProxy: DOWN)")
    mark("listeners closed")
    mark(f"exited ({replica.process.returncode})")

    replica.spawn()
    mark("started again")
    deadline = time.monotonic() + 120
    while watch.status(replica.name) != "UP":
        if replica.process.poll() is not None:
            if not replica.lost_its_port():
                raise RuntimeError(f"{replica.name} exited with {replica.process.returncode}; see {replica.log_path}")
            # another process took one of its ports while it was down: new ports, and HAProxy is told
            replica.http_port, replica.grpc_port = free_port(), free_port()
            balancer.move(replica)
            replica.spawn()
            mark("moved to new ports")
        if "ready" not in events and replica.ready():
            mark("ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{replica.name} was not back in rotation within 120 s (HAProxy: {watch.status(replica.name)})")
        time.sleep(0.01)
    mark("ready")
    mark("in rotation (HAProxy: UP)")
    events["pid_before"], events["pid_after"] = old_pid, replica.process.pid
    return events


def run(
    replicas: int = 3,
    config: Path = ROOT / "config",
    model: str = "iris-mlp",
    drain_delay: float = 5.0,
    shutdown_grace: float = 15.0,
    rest_rate: float = 150.0,
    grpc_rate: float = 100.0,
    concurrency: int = 8,
    check_interval: float = 1.0,
    fall: int = 2,
    rise: int = 2,
    retry_on: str = "conn-failure",
    grpc_balancing: str = "http",
    grpc_max_connection_age: float = 0.0,
    settle: float = 3.0,
    haproxy: str = "haproxy",
    request_timeout: float = 30.0,
    log=print,
) -> dict[str, Any]:
    """One rolling restart; returns the figures (see `main` for what they hold)."""
    if shutil.which(haproxy) is None:
        raise RuntimeError(f"{haproxy!r} not found: install HAProxy (Debian: apt-get install -y haproxy)")
    inter_ms = round(check_interval * 1000)
    checks = {
        "inter": inter_ms,
        "fastinter": max(100, inter_ms // 2),
        "downinter": max(100, inter_ms // 2),
        "fall": fall,
        "rise": rise,
        "check_timeout": min(1000, inter_ms),
    }
    # the slowest HAProxy can take to see a replica's 503: a check just missed, then `fall` failed ones
    notice_bound = (checks["inter"] + (fall - 1) * checks["fastinter"] + checks["check_timeout"]) / 1000
    if notice_bound >= drain_delay:
        log(f"warning: HAProxy may take up to {notice_bound:g} s to see a draining replica, drain_delay is {drain_delay:g} s: expect failures")
    if grpc_balancing == "tcp" and notice_bound + 1.1 * grpc_max_connection_age >= drain_delay:
        log(
            "warning: gRPC connections may still be on a draining replica when its listeners close "
            f"(drain_delay {drain_delay:g} s, HAProxy notices within {notice_bound:g} s, grpc_max_connection_age {grpc_max_connection_age:g} s + 10 %)"
        )
    settings = {"drain_delay": drain_delay, "shutdown_grace": shutdown_grace, "grpc_max_connection_age": grpc_max_connection_age}
    with tempfile.TemporaryDirectory(prefix="rolling-restart-") as folder_name:
        folder = Path(folder_name)
        group = [Replica(f"r{index}", config, settings, folder) for index in range(replicas)]
        balancer = Balancer(folder, group, checks, retry_on, grpc_balancing)
        watch: Optional[Watch] = None
        stop_load = threading.Event()
        load_threads: list[threading.Thread] = []
        try:
            for replica in group:
                replica.spawn()
            for replica in group:
                wait_until(lambda: replica.ready() or replica.process.poll() is not None, 120, f"{replica.name} ready", every=0.1)
                if replica.process.poll() is not None:
                    raise RuntimeError(f"{replica.name} exited with {replica.process.returncode}:\n{replica.log_path.read_text(errors='replace')}")
            balancer.start(haproxy)
            t0 = time.perf_counter()
            load_average = [os.getloadavg()[0]]  # the machine is shared: how busy it was, for reading the latencies
            watch = Watch(balancer, t0)
            watch.thread.start()
            wait_until(lambda: all(watch.status(r.name) == "UP" for r in group), 30, "every replica in rotation")
            log(f"{replicas} replicas in rotation behind HAProxy (REST 127.0.0.1:{balancer.rest_port}, gRPC 127.0.0.1:{balancer.grpc_port})")

            # the load: REST and gRPC through HAProxy, bounded in time even if the restart hangs
            bound = settle * (replicas + 2) + replicas * (drain_delay + shutdown_grace + 150)
            traces: dict[str, list] = {"rest": [], "grpc": []}
            results: dict[str, Any] = {}

            def load(protocol: str, rate: float) -> None:
                try:
                    results[protocol] = loadgen.run(
                        model=model,
                        url=f"http://127.0.0.1:{balancer.rest_port}",
                        grpc_url=f"127.0.0.1:{balancer.grpc_port}",
                        protocol="grpc" if protocol == "grpc" else "rest-json",
                        concurrency=concurrency,
                        rate=rate,
                        # behind an L4 balancer, one connection per worker spreads the calls over the replicas
                        grpc_channels=concurrency if grpc_balancing == "tcp" else 1,
                        duration=bound,
                        warmup=0,
                        timeout=request_timeout,
                        trace=traces[protocol],
                        stop=stop_load,
                    )
                except Exception as exc:  # noqa: BLE001 - reported with the figures
                    results[protocol] = {"error": repr(exc)}

            load_threads = [threading.Thread(target=load, args=("rest", rest_rate)), threading.Thread(target=load, args=("grpc", grpc_rate))]
            for thread in load_threads:
                thread.start()
            load_began = time.perf_counter() - t0
            time.sleep(settle)
            restarts = {}
            for replica in group:
                restarts[replica.name] = restart(replica, balancer, watch, settings, t0, log)
                time.sleep(settle)
            stop_load.set()
            for thread in load_threads:
                thread.join(request_timeout + 10)
            load_ended = time.perf_counter() - t0
            load_average.append(os.getloadavg()[0])
            stats = balancer.stats()
        finally:
            stop_load.set()
            if watch is not None:
                watch.stop.set()
            for replica in group:
                replica.stop()
            balancer.stop()
            for thread in load_threads:
                thread.join(request_timeout + 10)

        for protocol in ("rest", "grpc"):
            result = results.get(protocol, {"error": "it did not stop in time"})
            if "error" in result:
                raise RuntimeError(f"the {protocol} load failed: {result['error']}")
        tracebacks = {r.name: r.log_path.read_text(errors="replace").count("Traceback") for r in group}
        backend_counters = {
            backend: {
                name: int(stats[(backend, "BACKEND")][key] or 0)
                for name, key in (("retries", "wretr"), ("redispatches", "wredis"), ("connection errors", "econ"), ("response errors", "eresp"))
            }
            for backend in ("rest", "grpc")
        }
        served = {backend: {r.name: int(stats[(backend, r.name)]["stot"] or 0) for r in group} for backend in ("rest", "grpc")}
    return {
        "settings": {
            "replicas": replicas,
            "model": model,
            "drain_delay_s": drain_delay,
            "shutdown_grace_s": shutdown_grace,
            "grpc_max_connection_age_s": grpc_max_connection_age,
            "rest_rate": rest_rate,
            "grpc_rate": grpc_rate,
            "concurrency": concurrency,
            "haproxy_checks_ms": checks,
            "retry_on": retry_on,
            "grpc_balancing": grpc_balancing,
            "notice_bound_s": notice_bound,
            "haproxy_version": subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.split("\n")[0],
        },
        "load_s": [round(load_began, 3), round(load_ended, 3)],
        "load_average_1min": [round(value, 1) for value in load_average],
        "summary": {
            protocol: summarize(protocol, traces[protocol], results[protocol]["errors"].get("stopped in flight", 0), t0) for protocol in ("rest", "grpc")
        },
        "restarts": restarts,
        "haproxy_changes": watch.changes,
        "haproxy_counters": backend_counters,
        "requests_per_replica": served,
        "gateway_log_tracebacks": tracebacks,
        "trace": {protocol: [(round(s - t0, 4), round(d - t0, 4), o) for s, d, o in traces[protocol]] for protocol in traces},
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Three panels on one time axis: requests answered per 500 ms, each request's latency, each replica's state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"rest": "tab:blue", "grpc": "tab:orange"}
    names = sorted(result["restarts"])
    figure, (rate_axis, latency_axis, replica_axis) = plt.subplots(
        3, 1, sharex=True, figsize=(11, 7.5), gridspec_kw={"height_ratios": [2, 2, 0.5 + 0.45 * len(names)]}
    )
    end = result["load_s"][1]
    bucket = 0.5
    for protocol, trace in result["trace"].items():
        label = "REST" if protocol == "rest" else "gRPC"
        counts = Counter(int(done // bucket) for _, done, outcome in trace if outcome == "ok")
        xs = [i * bucket for i in range(int(end // bucket) + 1)]
        rate_axis.plot(xs, [counts.get(i, 0) / bucket for i in range(len(xs))], color=colours[protocol], lw=0.9, label=f"{label} answered")
        failed = [done for _, done, outcome in trace if outcome != "ok"]
        if failed:
            rate_axis.plot(failed, [0] * len(failed), "x", color="red", ms=7, label=f"{label} failed ({len(failed)})")
        latency_axis.plot(
            [start for start, _, _ in trace], [(done - start) * 1e3 for start, done, _ in trace], ".", color=colours[protocol], ms=1.5, alpha=0.5, label=label
        )
    rate_axis.set_ylabel("answered / s\n(500 ms bins)")
    rate_axis.legend(loc="lower left", fontsize=8, ncol=4)
    rate_axis.set_ylim(bottom=-5)
    latency_axis.set_yscale("log")
    latency_axis.set_ylabel("latency (ms)\nby start time")
    latency_axis.legend(loc="upper left", fontsize=8, markerscale=6)

    spans = [  # (from event, to event, colour, label)
        ("SIGTERM", "listeners closed", "gold", "draining (ready 503, still serving)"),
        ("listeners closed", None, "tomato", "stopping"),
        ("started again", "ready", "silver", "starting"),
        ("ready", "in rotation (HAProxy: UP)", "lightgreen", "ready, HAProxy not yet UP"),
    ]
    labelled = set()
    for row, name in enumerate(names):
        events = result["restarts"][name]
        exited = next(value for key, value in events.items() if key.startswith("exited"))
        for start_event, end_event, colour, label in spans:
            begin, finish = events[start_event], events[end_event] if end_event else exited
            replica_axis.barh(row, finish - begin, left=begin, color=colour, height=0.6, label=None if label in labelled else label)
            labelled.add(label)
        replica_axis.plot([events["out of rotation (HAProxy: DOWN)"]], [row], "v", color="black", ms=7, label=None if "down" in labelled else "HAProxy: DOWN")
        labelled.add("down")
        for axis in (rate_axis, latency_axis):
            axis.axvline(events["SIGTERM"], color="grey", lw=0.6, ls=":")
    replica_axis.set_yticks(range(len(names)), names)
    replica_axis.set_ylim(-0.6, len(names) - 0.4)
    replica_axis.invert_yaxis()
    replica_axis.set_xlabel("seconds since the load started (dotted: SIGTERM to a replica)")
    replica_axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), fontsize=8, ncol=5)
    settings = result["settings"]
    figure.suptitle(
        f"Rolling restart of {settings['replicas']} replicas behind HAProxy: drain_delay {settings['drain_delay_s']:g} s, "
        f"REST {settings['rest_rate']:g}/s + gRPC {settings['grpc_rate']:g}/s",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(result: dict[str, Any]) -> str:
    settings = result["settings"]
    checks = settings["haproxy_checks_ms"]
    lines = [
        f"{settings['replicas']} replicas of {settings['model']}, drain_delay {settings['drain_delay_s']:g} s, "
        f"shutdown_grace {settings['shutdown_grace_s']:g} s, grpc_max_connection_age {settings['grpc_max_connection_age_s']:g} s; {settings['haproxy_version']}",
        f"checks every {checks['inter']} ms ({checks['fastinter']} ms once one failed), fall {checks['fall']}, rise {checks['rise']}, "
        f"timeout {checks['check_timeout']} ms: a draining replica is seen within {settings['notice_bound_s']:g} s; retry-on {settings['retry_on']}; "
        f"gRPC balanced per {'call (HTTP/2)' if settings['grpc_balancing'] == 'http' else 'connection (TCP)'}",
        f"load {result['load_s'][0]:.1f}-{result['load_s'][1]:.1f} s: REST at most {settings['rest_rate']:g}/s, gRPC at most {settings['grpc_rate']:g}/s, "
        f"{settings['concurrency']} workers each; machine load average {result['load_average_1min'][0]:g} at the start, {result['load_average_1min'][1]:g} at the end",
    ]
    for protocol, summary in result["summary"].items():
        latency = summary["latency_ms"]
        lines.append(
            f"  {protocol}: {summary['requests']} requests, {summary['ok']} ok, failed {sum(summary['failures'].values())} {summary['failures'] or ''}; "
            f"latency ms p50 {latency['p50']} p99 {latency['p99']} p99.9 {latency['p999']} max {latency['max']} (started at {summary['slowest_started_at_s']} s)"
        )
    lines.append("restarts (seconds after the replica's SIGTERM):")
    for name, events in result["restarts"].items():
        sigterm = events["SIGTERM"]
        steps = ", ".join(f"{key} {value - sigterm:.2f}" for key, value in events.items() if not key.startswith("pid") and key != "SIGTERM")
        lines.append(f"  {name}: SIGTERM at {sigterm:.2f} s; {steps}")
    lines.append(f"HAProxy: {json.dumps(result['haproxy_counters'])}")
    lines.append(f"requests per replica (HAProxy): {json.dumps(result['requests_per_replica'])}")
    lines.append(f"tracebacks in the gateways' logs: {json.dumps(result['gateway_log_tracebacks'])}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--config", type=Path, default=ROOT / "config", help="the replicas' model repository")
    parser.add_argument("--model", default="iris-mlp", help="the model the load calls")
    parser.add_argument("--drain-delay", type=float, default=5.0, help="GATEWAY_DRAIN_DELAY")
    parser.add_argument("--shutdown-grace", type=float, default=15.0, help="GATEWAY_SHUTDOWN_GRACE")
    parser.add_argument("--grpc-max-connection-age", type=float, default=0.0, help="GATEWAY_GRPC_MAX_CONNECTION_AGE (0: never)")
    parser.add_argument("--rest-rate", type=float, default=150.0, help="REST requests/s through HAProxy")
    parser.add_argument("--grpc-rate", type=float, default=100.0, help="gRPC calls/s through HAProxy")
    parser.add_argument("--concurrency", type=int, default=8, help="loadgen workers per protocol")
    parser.add_argument("--check-interval", type=float, default=1.0, help="seconds between HAProxy's checks of a replica (inter)")
    parser.add_argument("--fall", type=int, default=2, help="failed checks before HAProxy takes a replica out")
    parser.add_argument("--rise", type=int, default=2, help="passed checks before HAProxy puts it back")
    parser.add_argument("--retry-on", default="conn-failure", help="HAProxy's retry-on")
    parser.add_argument(
        "--grpc-balancing",
        choices=("http", "tcp"),
        default="http",
        help="http: HAProxy balances each gRPC call (L7); tcp: each connection, as a Kubernetes Service does (L4)",
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load before the first restart, between restarts and after the last")
    parser.add_argument("--haproxy", default="haproxy", help="the HAProxy binary")
    parser.add_argument("--json-out", type=Path, default=None, help="write the figures and every request's (start, end, outcome)")
    parser.add_argument("--plot", type=Path, default=None, help="write the timeline plot (PNG; needs matplotlib)")
    args = parser.parse_args(argv)
    result = run(
        replicas=args.replicas,
        config=args.config.resolve(),
        model=args.model,
        drain_delay=args.drain_delay,
        shutdown_grace=args.shutdown_grace,
        rest_rate=args.rest_rate,
        grpc_rate=args.grpc_rate,
        concurrency=args.concurrency,
        check_interval=args.check_interval,
        fall=args.fall,
        rise=args.rise,
        retry_on=args.retry_on,
        grpc_balancing=args.grpc_balancing,
        grpc_max_connection_age=args.grpc_max_connection_age,
        settle=args.settle,
        haproxy=args.haproxy,
    )
    print(report(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result))
    if args.plot:
        plot(result, args.plot)
    failures = sum(sum(summary["failures"].values()) for summary in result["summary"].values())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
