#!/usr/bin/env python3
"""A lean closed-loop load generator for Open Inference Protocol (KServe V2) servers.

Protocols:
  rest-json    POST /v2/models/{m}/infer with a JSON body
  rest-binary  the same with the binary tensor data extension (binary input, binary outputs asked for)
  grpc         inference.GRPCInferenceService/ModelInfer, raw_input_contents (or typed contents)

`--concurrency N` workers each keep one request in flight on their own keep-alive
connection (REST) or on a shared HTTP/2 channel (gRPC) for `--warmup` + `--duration`
seconds, then stop; `--rate R` spaces their requests so that at most R start per second
(a steady load below capacity). The request is built and encoded once; every worker sends the same
bytes. It prints infer/s (requests x batch per second), requests/s, p50/p90/p99 latency,
the errors by kind, and the CPU this process used (resource.getrusage) during the
measured window, so you can see how much of a shared machine the client itself took.

The REST client is a small asyncio HTTP/1.1 protocol (Content-Length and chunked
responses); the gRPC client is grpc.aio with a generic unary-unary method and
hand-encoded protobuf bytes, so no generated stubs or protobuf package are needed.

As a library:
    from loadgen import run
    result = run(url="http://127.0.0.1:8080", model="iris-mlp", protocol="rest-json",
                 concurrency=8, duration=5)
    result["infer_per_s"], result["latency_ms"]["p99"], result["client_cpu_pct"]

Only the standard library and numpy are needed at import time; orjson, uvloop and
grpcio are used when installed (grpcio is required for --protocol grpc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

import numpy as np

try:  # optional: faster JSON encoding of numpy arrays
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

PROTOCOLS = ("rest-json", "rest-binary", "grpc")
HEADER_LENGTH = "Inference-Header-Content-Length"
GRPC_SERVICE = "/inference.GRPCInferenceService/"
NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


class LoadgenError(Exception):
    """The run could not start: bad options, server unreachable, or the first request failed."""


# --------------------------------------------------------------------------- request data


def make_data(shape: list[int], datatype: str, seed: int = 0, text: str = "the quick brown fox") -> Any:
    """A deterministic input tensor: a numpy array, or a list of bytes for BYTES."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return [text.encode() for _ in range(count)]
    if datatype not in NUMPY_DTYPES:
        raise LoadgenError(f"unsupported datatype {datatype!r} (use one of {', '.join([*NUMPY_DTYPES, 'BYTES'])})")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(NUMPY_DTYPES[datatype])
    if dtype.kind == "f":
        array = rng.standard_normal(count).astype(dtype)
    elif dtype.kind == "b":
        array = rng.integers(0, 2, count).astype(dtype)
    else:
        array = rng.integers(0, 100, count).astype(dtype)
    return array.reshape(shape)


def raw_bytes(data: Any, datatype: str) -> bytes:
    """Little-endian row-major bytes; BYTES elements are 4-byte length-prefixed."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(item)) + item for item in data)
    return np.ascontiguousarray(data, dtype=np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")).tobytes()


def _dumps(document: Any) -> bytes:
    if orjson is not None:
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(document, separators=(",", ":"), default=lambda a: a.tolist()).encode()


def build_rest_body(name: str, shape: list[int], datatype: str, data: Any, binary: bool, binary_output: bool) -> tuple[bytes, Optional[int]]:
    """The infer body and, for the binary extension, the JSON header's length."""
    tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
    document: dict[str, Any] = {"inputs": [tensor]}
    if binary_output:
        document["parameters"] = {"binary_data_output": True}
    if not binary:
        if datatype == "BYTES":
            tensor["data"] = [item.decode() for item in data]
        else:
            tensor["data"] = data.reshape(-1)
        return _dumps(document), None
    raw = raw_bytes(data, datatype)
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = _dumps(document)
    return header + raw, len(header)


# --------------------------------------------------------------------------- protobuf by hand


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field_bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _field_str(field: int, text: str) -> bytes:
    return _field_bytes(field, text.encode())


def _packed_varints(field: int, values) -> bytes:
    return _field_bytes(field, b"".join(_varint(int(v)) for v in values))


# InferTensorContents field numbers and how each is packed
_TYPED_CONTENTS = {
    "BOOL": (1, "varint"),
    "INT8": (2, "varint"),
    "INT16": (2, "varint"),
    "INT32": (2, "varint"),
    "INT64": (3, "varint"),
    "UINT8": (4, "varint"),
    "UINT16": (4, "varint"),
    "UINT32": (4, "varint"),
    "UINT64": (5, "varint"),
    "FP32": (6, "<f4"),
    "FP64": (7, "<f8"),
    "BYTES": (8, "bytes"),
}


def build_grpc_request(model: str, version: Optional[str], name: str, shape: list[int], datatype: str, data: Any, contents: str = "raw") -> bytes:
    """A serialized inference.ModelInferRequest with one input."""
    tensor = _field_str(1, name) + _field_str(2, datatype) + _packed_varints(3, shape)
    message = _field_str(1, model)
    if version:
        message += _field_str(2, version)
    if contents == "typed":
        if datatype not in _TYPED_CONTENTS:
            raise LoadgenError(f"{datatype} has no typed gRPC contents; use --grpc-contents raw")
        field, kind = _TYPED_CONTENTS[datatype]
        if kind == "bytes":
            typed = b"".join(_field_bytes(field, item) for item in data)
        elif kind == "varint":
            typed = _packed_varints(field, np.asarray(data).reshape(-1).tolist())
        else:
            typed = _field_bytes(field, np.ascontiguousarray(data, dtype=kind).tobytes())
        tensor += _field_bytes(5, typed)
        message += _field_bytes(5, tensor)
    else:
        message += _field_bytes(5, tensor) + _field_bytes(7, raw_bytes(data, datatype))
    return message


def parse_protobuf(buffer: bytes) -> list[tuple[int, int, Any]]:
    """Top-level (field, wire type, value) of a protobuf message; value is int or bytes."""
    fields = []
    view = memoryview(buffer)
    pos, end = 0, len(buffer)

    def read_varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= end:
                raise ValueError("truncated varint")
            byte = view[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < end:
        key = read_varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            fields.append((field, wire, read_varint()))
        elif wire == 2:
            size = read_varint()
            if pos + size > end:
                raise ValueError("truncated field")
            fields.append((field, wire, bytes(view[pos : pos + size])))
            pos += size
        elif wire == 1:
            fields.append((field, wire, bytes(view[pos : pos + 8])))
            pos += 8
        elif wire == 5:
            fields.append((field, wire, bytes(view[pos : pos + 4])))
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def _unpack_varints(payload: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(payload):
        shift = result = 0
        while True:
            byte = payload[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        values.append(result - (1 << 64) if result >= 1 << 63 else result)
    return values


def describe_grpc_response(payload: bytes) -> dict[str, Any]:
    """Output names/datatypes/shapes of a ModelInferResponse, for the first-request check."""
    outputs, raw = [], 0
    for field, _, value in parse_protobuf(payload):
        if field == 5:
            tensor: dict[str, Any] = {}
            for f, w, v in parse_protobuf(value):
                if f == 1:
                    tensor["name"] = v.decode()
                elif f == 2:
                    tensor["datatype"] = v.decode()
                elif f == 3:
                    tensor.setdefault("shape", []).extend(_unpack_varints(v) if w == 2 else [v])
            outputs.append(tensor)
        elif field == 6:
            raw += len(value)
    return {"outputs": outputs, "raw_output_bytes": raw}


def _metadata_from_grpc(payload: bytes) -> dict[str, Any]:
    inputs = []
    for field, _, value in parse_protobuf(payload):
        if field == 4:
            tensor: dict[str, Any] = {"shape": []}
            for f, w, v in parse_protobuf(value):
                if f == 1:
                    tensor["name"] = v.decode()
                elif f == 2:
                    tensor["datatype"] = v.decode()
                elif f == 3:
                    tensor["shape"].extend(_unpack_varints(v) if w == 2 else [v - (1 << 64) if v >= 1 << 63 else v])
            inputs.append(tensor)
    return {"inputs": inputs}


# --------------------------------------------------------------------------- REST client


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.waiter: Optional[asyncio.Future] = None
        self.keep_body = False
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.in_body = False
        self.status = 0
        self.remaining = 0
        self.chunked = False
        self.close_after = False
        self.body = bytearray()
        self.headers: dict[str, str] = {}
        self.received = 0

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed by server: {exc or 'EOF'}"))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            return
        if self.in_body and not self.chunked:
            self._body_bytes(data)
            return
        self.buffer += data
        self._parse()

    # parsing
    def _parse(self) -> None:
        if not self.in_body:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).split(b"\r\n")
            del self.buffer[: end + 4]
            try:
                self.status = int(head[0][9:12])
            except ValueError:
                self._fail(ValueError(f"bad status line {head[0][:60]!r}"))
                return
            length = None
            for line in head[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                value = value.strip()
                if key == b"content-length":
                    length = int(value)
                elif key == b"transfer-encoding" and b"chunked" in value.lower():
                    self.chunked = True
                elif key == b"connection" and value.lower() == b"close":
                    self.close_after = True
                if self.keep_body:
                    self.headers[key.decode()] = value.decode(errors="replace")
            self.in_body = True
            if not self.chunked:
                if length is None:
                    self._fail(ValueError("response without Content-Length or chunked encoding"))
                    return
                self.remaining = length
                pending = bytes(self.buffer)
                self.buffer.clear()
                self._body_bytes(pending)
                return
        self._parse_chunks()

    def _body_bytes(self, data: bytes) -> None:
        take = min(len(data), self.remaining)
        if self.keep_body:
            self.body += data[:take]
        self.received += take
        self.remaining -= take
        if self.remaining == 0:
            self._finish()

    def _parse_chunks(self) -> None:
        while True:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self.buffer[:line_end]).split(b";")[0], 16)
            if size == 0:
                # last chunk; no trailers expected: "0\r\n\r\n"
                if len(self.buffer) < line_end + 4:
                    return
                del self.buffer[: line_end + 4]
                self._finish()
                return
            if len(self.buffer) < line_end + 2 + size + 2:
                return
            chunk = self.buffer[line_end + 2 : line_end + 2 + size]
            if self.keep_body:
                self.body += chunk
            self.received += size
            del self.buffer[: line_end + 2 + size + 2]

    def _finish(self) -> None:
        waiter, self.waiter = self.waiter, None
        result = (self.status, self.received, bytes(self.body) if self.keep_body else b"", self.headers)
        close = self.close_after
        self._reset()
        if close and self.transport is not None:
            self.transport.close()
            self.closed = True
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if self.transport is not None:
            self.transport.close()
        self.closed = True
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def request(self, head: bytes, body: bytes) -> asyncio.Future:
        """Send pre-encoded bytes; the future gives (status, body bytes received, body if kept, headers)."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.transport.write(head)
        if body:
            self.transport.write(body)
        return self.waiter


async def _http_connect(host: str, port: int) -> _HttpConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(_HttpConnection, host, port)
    return conn


def _split_url(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if parsed.scheme not in ("http", "grpc", ""):
        raise LoadgenError(f"only plain http:// is supported, not {url!r}")
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def _infer_path(model: str, version: Optional[str]) -> str:
    path = f"/v2/models/{urllib.parse.quote(model)}"
    if version:
        path += f"/versions/{urllib.parse.quote(version)}"
    return path + "/infer"


# --------------------------------------------------------------------------- CPU accounting


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_group_cpu(pgids) -> Optional[tuple[float, float]]:
    """CPU seconds (user+system) of every live process in these process groups, from /proc:
    (all of them, the gateway's model workers among them). A worker is a `python -m workers`
    process (or one forked by such a fork server); the rest is front door and supervisor."""
    if not pgids:
        return None
    wanted = set(pgids)
    total = workers = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[2]) not in wanted:  # pgrp
                continue
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        total += ticks
        if b"-m\0workers\0" in command:
            workers += ticks
    return total / _TICKS, workers / _TICKS


def machine_busy_cpu() -> Optional[float]:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat), or None off Linux."""
    try:
        with open("/proc/stat", "rb") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    values = [int(v) for v in fields[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS


# --------------------------------------------------------------------------- the run


class _Stats:
    def __init__(self, trace: Optional[list] = None) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.last_done = 0.0
        self.first_start = math.inf
        self.trace = trace  # if a list: (start, done, outcome) of every measured request is appended to it

    def succeeded(self, start: float, done: float) -> None:
        self.latencies.append(done - start)
        if done > self.last_done:
            self.last_done = done
        if self.trace is not None:
            self.trace.append((start, done, "ok"))

    def error(self, kind: str, detail: str, start: float) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{kind}: {detail[:300]}")
        if self.trace is not None:
            self.trace.append((start, time.perf_counter(), kind))


class _Pacer:
    """Starts one worker's requests at most every `interval` seconds (`rate`); no wait without a rate."""

    def __init__(self, interval: float, offset: float) -> None:
        self.interval = interval
        self.next = time.perf_counter() + offset

    async def wait(self) -> None:
        if not self.interval:
            return
        delay = self.next - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # a request that outlasts the interval delays the next one: the load never bursts to catch up
        self.next = max(self.next, time.perf_counter()) + self.interval


def _percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _pacers(opts: dict[str, Any]):
    """One `_Pacer` per worker, their starts spread evenly over one interval."""
    concurrency, rate = opts["concurrency"], opts["rate"]
    interval = concurrency / rate if rate else 0.0
    for index in range(concurrency):
        yield _Pacer(interval, interval * index / concurrency)


async def _rest_run(opts: dict[str, Any], head: bytes, body: bytes, stats: _Stats, times: dict[str, float]) -> None:
    host, port = opts["host"], opts["port"]
    measure_start = times["measure_start"]
    clock = time.perf_counter
    pacers = _pacers(opts)

    async def worker() -> None:
        pacer = next(pacers)
        conn = await _http_connect(host, port)
        measured = False  # every worker makes at least one measured request, even when requests outlast the window
        try:
            while True:
                await pacer.wait()
                start = clock()
                if start >= times["end"] and measured:
                    return
                if start >= measure_start:
                    measured = True
                    if start < stats.first_start:
                        stats.first_start = start
                if conn.closed:
                    conn = await _http_connect(host, port)
                try:
                    status, _, _, _ = await conn.request(head, body)
                except (ConnectionError, OSError, ValueError) as exc:
                    if start >= measure_start:
                        stats.error("connection", repr(exc), start)
                    conn.closed = True
                    continue
                if start < measure_start:
                    continue
                if status == 200:
                    stats.succeeded(start, clock())
                else:
                    stats.error(f"http {status}", "", start)
        finally:
            if conn.transport is not None:
                conn.transport.close()

    await _run_workers(worker, opts, times)


async def _grpc_run(opts: dict[str, Any], payload: bytes, stats: _Stats, times: dict[str, float]) -> None:
    import grpc

    measure_start = times["measure_start"]
    clock = time.perf_counter
    channels = [_grpc_channel(opts["grpc_target"]) for _ in range(max(1, opts["grpc_channels"]))]
    calls = [ch.unary_unary(GRPC_SERVICE + "ModelInfer", request_serializer=None, response_deserializer=None) for ch in channels]
    timeout = opts["timeout"]
    counter = iter(range(1 << 62))
    pacers = _pacers(opts)

    async def worker() -> None:
        call = calls[next(counter) % len(calls)]
        pacer = next(pacers)
        measured = False
        while True:
            await pacer.wait()
            start = clock()
            if start >= times["end"] and measured:
                return
            if start >= measure_start:
                measured = True
                if start < stats.first_start:
                    stats.first_start = start
            try:
                await call(payload, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if start >= measure_start:
                    stats.error(f"grpc {exc.code().name}", exc.details() or "", start)
                continue
            if start >= measure_start:
                stats.succeeded(start, clock())

    try:
        await _run_workers(worker, opts, times)
    finally:
        for channel in channels:
            await channel.close()


async def _end_on(stop, times: dict[str, float]) -> None:
    """Close the window when `stop` (a threading.Event, set from another thread) is set."""
    while not stop.is_set():
        await asyncio.sleep(0.05)
    times["end"] = min(times["end"], time.perf_counter())


async def _run_workers(worker, opts: dict[str, Any], times: dict[str, float]) -> None:
    loop = asyncio.get_running_loop()
    # snapshot CPU exactly when the measured window opens
    offset = time.perf_counter() - loop.time()
    loop.call_at(times["measure_start"] - offset, _snapshot, times, opts, "start")
    stopper = asyncio.ensure_future(_end_on(opts["stop"], times)) if opts["stop"] is not None else None
    tasks = [asyncio.ensure_future(worker()) for _ in range(opts["concurrency"])]
    # everything stops by itself: in-flight requests get `timeout` seconds after the window (which `stop` may end early)
    pending = set(tasks)
    while pending and (left := times["end"] + opts["timeout"] - time.perf_counter()) > 0:
        _, pending = await asyncio.wait(pending, timeout=min(left, 0.5))
    done = [task for task in tasks if task not in pending]
    if stopper is not None:
        stopper.cancel()
    times["stopped_in_flight"] = len(pending)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    _snapshot(times, opts, "end")


def _snapshot(times: dict[str, float], opts: dict[str, Any], label: str) -> None:
    if f"cpu_{label}" in times:
        return
    times[f"cpu_{label}"] = _own_cpu()
    times[f"wall_{label}"] = time.perf_counter()
    server = process_group_cpu(opts["server_pgids"])
    if server is not None:
        times[f"server_cpu_{label}"], times[f"worker_cpu_{label}"] = server
    machine = machine_busy_cpu()
    if machine is not None:
        times[f"machine_cpu_{label}"] = machine


def _grpc_channel(target: str):
    import grpc

    options = [
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
        # a connection of its own: channels with the same target and options share one otherwise
        ("grpc.use_local_subchannel_pool", 1),
    ]
    return grpc.aio.insecure_channel(target, options=options)


def _grpc_target(grpc_url: str) -> str:
    if "://" in grpc_url:
        parsed = urllib.parse.urlsplit(grpc_url)
        return f"{parsed.hostname}:{parsed.port or 8081}"
    return grpc_url


async def _probe_rest(opts, head: bytes, body: bytes) -> dict[str, Any]:
    conn = await _http_connect(opts["host"], opts["port"])
    conn.keep_body = True
    try:
        status, size, content, headers = await asyncio.wait_for(conn.request(head, body), opts["timeout"])
    finally:
        conn.transport.close()
    if status != 200:
        raise LoadgenError(f"first request failed: HTTP {status}: {content[:500].decode(errors='replace')}")
    header_length = headers.get(HEADER_LENGTH.lower())
    document = content[: int(header_length)] if header_length else content
    try:
        reply = json.loads(document)
    except ValueError as exc:
        raise LoadgenError(f"first response is not V2 JSON: {exc}: {content[:200]!r}") from None
    outputs = [{k: o.get(k) for k in ("name", "datatype", "shape")} for o in reply.get("outputs", [])]
    if not outputs:
        raise LoadgenError(f"first response has no outputs: {document[:300]!r}")
    return {"response_bytes": size, "outputs": outputs, "binary_response": header_length is not None}


async def _probe_grpc(opts, payload: bytes) -> dict[str, Any]:
    import grpc

    channel = _grpc_channel(opts["grpc_target"])
    try:
        call = channel.unary_unary(GRPC_SERVICE + "ModelInfer", request_serializer=None, response_deserializer=None)
        try:
            reply = await call(payload, timeout=opts["timeout"])
        except grpc.aio.AioRpcError as exc:
            raise LoadgenError(f"first request failed: gRPC {exc.code().name}: {exc.details()}") from None
    finally:
        await channel.close()
    described = describe_grpc_response(reply)
    if not described["outputs"]:
        raise LoadgenError("first gRPC response has no outputs")
    return {"response_bytes": len(reply), **described}


def fetch_metadata(
    model: str, version: Optional[str] = None, url: Optional[str] = None, grpc_url: Optional[str] = None, timeout: float = 10.0
) -> dict[str, Any]:
    """The model's V2 metadata (inputs with name/datatype/shape), over REST if a URL is given, else gRPC."""
    if url:
        path = _infer_path(model, version)[: -len("/infer")]
        try:
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout) as reply:
                return json.loads(reply.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LoadgenError(f"cannot read metadata of {model!r} from {url}: {exc}") from None
    if grpc_url:
        request = _field_str(1, model) + (_field_str(2, version) if version else b"")

        async def ask() -> bytes:
            import grpc

            channel = _grpc_channel(_grpc_target(grpc_url))
            try:
                call = channel.unary_unary(GRPC_SERVICE + "ModelMetadata", request_serializer=None, response_deserializer=None)
                try:
                    return await call(request, timeout=timeout)
                except grpc.aio.AioRpcError as exc:
                    raise LoadgenError(f"cannot read metadata of {model!r}: gRPC {exc.code().name}: {exc.details()}") from None
            finally:
                await channel.close()

        return _metadata_from_grpc(asyncio.run(ask()))
    raise LoadgenError("give --url or --grpc-url")


def _new_loop(kind: str, protocol: str) -> asyncio.AbstractEventLoop:
    if kind == "auto":
        kind = "asyncio" if protocol == "grpc" else "uvloop"
    if kind == "uvloop":
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


def run(
    model: str,
    url: Optional[str] = None,
    grpc_url: Optional[str] = None,
    protocol: str = "rest-json",
    shape: Optional[list[int]] = None,
    datatype: Optional[str] = None,
    batch: int = 1,
    concurrency: int = 1,
    duration: float = 10.0,
    warmup: float = 2.0,
    timeout: float = 30.0,
    input_name: Optional[str] = None,
    version: Optional[str] = None,
    binary_output: Optional[bool] = None,
    grpc_contents: str = "raw",
    grpc_channels: int = 1,
    server_pgids: tuple[int, ...] = (),
    loop: str = "auto",
    seed: int = 0,
    text: str = "the quick brown fox",
    rate: Optional[float] = None,
    trace: Optional[list] = None,
    stop: Optional[threading.Event] = None,
) -> dict[str, Any]:
    """Run one bounded load test and return its result as a dict (see the module docstring).

    `shape` is one request's input shape without the batch dimension; the request's
    shape is [batch, *shape]. Name, shape and datatype default to the model's metadata.
    `rate` caps the requests started per second (all workers together). `trace`, a list,
    receives (start, done, outcome) for every measured request: perf_counter() times and
    "ok" or the error's kind. `stop`, set from another thread, ends the window early
    (`duration` stays the bound).
    """
    if protocol not in PROTOCOLS:
        raise LoadgenError(f"protocol must be one of {', '.join(PROTOCOLS)}")
    if concurrency < 1 or batch < 1 or duration <= 0 or warmup < 0 or (rate is not None and rate <= 0):
        raise LoadgenError("concurrency and batch must be >= 1, duration and rate > 0, warmup >= 0")
    if protocol == "grpc" and not grpc_url:
        raise LoadgenError("--protocol grpc needs --grpc-url")
    if protocol != "grpc" and not url:
        raise LoadgenError(f"--protocol {protocol} needs --url")
    if protocol == "grpc":
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise LoadgenError("--protocol grpc needs grpcio (pip install grpcio)") from None

    if input_name is None or shape is None or datatype is None:
        metadata = fetch_metadata(model, version, url if protocol != "grpc" else None, grpc_url if protocol == "grpc" else None, timeout)
        inputs = metadata.get("inputs") or []
        if not inputs:
            raise LoadgenError(f"model {model!r} declares no inputs: give --input-name, --shape and --datatype")
        declared = inputs[0]
        input_name = input_name or declared["name"]
        datatype = datatype or declared["datatype"]
        if shape is None:
            dims = list(declared.get("shape") or [])
            if dims and dims[0] == -1:
                dims = dims[1:]
            shape = [1 if d == -1 else int(d) for d in dims]
    full_shape = [batch, *shape]
    data = make_data(full_shape, datatype, seed, text)
    opts: dict[str, Any] = {
        "concurrency": concurrency,
        "timeout": timeout,
        "server_pgids": tuple(server_pgids),
        "grpc_channels": grpc_channels,
        "rate": rate,
        "stop": stop,
    }
    if protocol == "grpc":
        opts["grpc_target"] = _grpc_target(grpc_url)
        payload = build_grpc_request(model, version, input_name, full_shape, datatype, data, grpc_contents)
        head, body, request_bytes = b"", b"", len(payload)
    else:
        binary = protocol == "rest-binary"
        body, header_length = build_rest_body(input_name, full_shape, datatype, data, binary, binary if binary_output is None else binary_output)
        host, port = _split_url(url)
        opts["host"], opts["port"] = host, port
        lines = [
            f"POST {_infer_path(model, version)} HTTP/1.1",
            f"Host: {host}:{port}",
            "Content-Type: " + ("application/octet-stream" if header_length is not None else "application/json"),
            f"Content-Length: {len(body)}",
        ]
        if header_length is not None:
            lines.append(f"{HEADER_LENGTH}: {header_length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        request_bytes = len(head) + len(body)
    del data

    stats = _Stats(trace)
    event_loop = _new_loop(loop, protocol)
    try:
        asyncio.set_event_loop(event_loop)
        if protocol == "grpc":
            probe = event_loop.run_until_complete(_probe_grpc(opts, payload))
        else:
            probe = event_loop.run_until_complete(_probe_rest(opts, head, body))
        now = time.perf_counter()
        times = {"measure_start": now + warmup, "end": now + warmup + duration}
        if protocol == "grpc":
            event_loop.run_until_complete(_grpc_run(opts, payload, stats, times))
        else:
            event_loop.run_until_complete(_rest_run(opts, head, body, stats, times))
    except (asyncio.TimeoutError, TimeoutError):
        raise LoadgenError(f"first request got no answer within --timeout {timeout:g} s") from None
    except OSError as exc:
        raise LoadgenError(f"cannot connect: {exc}") from None
    finally:
        asyncio.set_event_loop(None)
        event_loop.close()

    # the window runs from the first measured request's start (the window's opening unless requests
    # are slower than the warm-up) to the last completion (past the window's end when requests are slow)
    window = max(stats.last_done, times["end"]) - min(stats.first_start, times["end"])
    if not stats.latencies:
        window = times.get("wall_end", times["end"]) - times["measure_start"]
    cpu_wall = times.get("wall_end", times["end"]) - times.get("wall_start", times["measure_start"])
    client_cpu = times.get("cpu_end", 0.0) - times.get("cpu_start", 0.0)
    ordered = sorted(stats.latencies)
    count = len(ordered)
    in_flight = times.get("stopped_in_flight", 0)
    if in_flight:
        stats.errors["stopped in flight"] = in_flight
    result: dict[str, Any] = {
        "protocol": protocol,
        "target": grpc_url if protocol == "grpc" else url,
        "model": model,
        "input": {"name": input_name, "datatype": datatype, "shape": full_shape},
        "batch": batch,
        "concurrency": concurrency,
        "rate": rate,
        "duration_s": round(window, 4),
        "warmup_s": warmup,
        "requests": count,
        "requests_per_s": count / window if window > 0 else 0.0,
        "infer_per_s": count * batch / window if window > 0 else 0.0,
        "latency_ms": {
            "p50": _percentile(ordered, 50) * 1e3,
            "p90": _percentile(ordered, 90) * 1e3,
            "p99": _percentile(ordered, 99) * 1e3,
            "mean": (sum(ordered) / count * 1e3) if count else float("nan"),
            "min": ordered[0] * 1e3 if count else float("nan"),
            "max": ordered[-1] * 1e3 if count else float("nan"),
        },
        "errors": stats.errors,
        "error_count": sum(stats.errors.values()),
        "error_samples": stats.error_samples,
        "request_bytes": request_bytes,
        "response_bytes": probe["response_bytes"],
        "outputs": probe["outputs"],
        "client_cpu_s": round(client_cpu, 4),
        "client_cpu_pct": 100.0 * client_cpu / cpu_wall if cpu_wall > 0 else 0.0,
        "client_cpu_ms_per_request": 1e3 * client_cpu / count if count else None,
    }
    if protocol != "grpc":
        result["binary_response"] = probe.get("binary_response", False)
    if "server_cpu_end" in times and "server_cpu_start" in times:
        server_cpu = times["server_cpu_end"] - times["server_cpu_start"]
        result["server_cpu_s"] = round(server_cpu, 4)
        result["server_cpu_pct"] = 100.0 * server_cpu / cpu_wall if cpu_wall > 0 else 0.0
        result["server_cpu_ms_per_request"] = 1e3 * server_cpu / count if count else None
        # the gateway's split: its model workers, and the rest (front doors, supervisor); a peer has no workers of this kind
        worker_cpu = times["worker_cpu_end"] - times["worker_cpu_start"]
        result["worker_cpu_ms_per_request"] = 1e3 * worker_cpu / count if count else None
        result["frontdoor_cpu_ms_per_request"] = 1e3 * (server_cpu - worker_cpu) / count if count else None
    if "machine_cpu_end" in times and "machine_cpu_start" in times and cpu_wall > 0:
        # everything else running on the machine meanwhile: a busy neighbour makes numbers noisy
        machine = 100.0 * (times["machine_cpu_end"] - times["machine_cpu_start"]) / cpu_wall
        result["machine_cpu_pct"] = machine
        result["other_cpu_pct"] = max(0.0, machine - result["client_cpu_pct"] - result.get("server_cpu_pct", 0.0))
    return result


def format_result(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    shape = "x".join(str(d) for d in result["input"]["shape"])
    load = f"concurrency {result['concurrency']}" + (f" at most {result['rate']:g} requests/s" if result["rate"] else "")
    lines = [
        f"{result['protocol']} {result['model']} {result['input']['datatype']}[{shape}] "
        f"{load}, {result['duration_s']:.1f} s measured after {result['warmup_s']:g} s warm-up",
        f"  throughput: {result['infer_per_s']:.1f} infer/s ({result['requests_per_s']:.1f} requests/s, {result['requests']} requests)",
        f"  latency ms: p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  (mean {lat['mean']:.3f}, max {lat['max']:.3f})",
        f"  errors: {result['error_count']} {result['errors']}" if result["error_count"] else "  errors: 0",
    ]
    per_request = result["client_cpu_ms_per_request"]
    lines.append(
        f"  client CPU: {result['client_cpu_s']:.2f} s = {result['client_cpu_pct']:.0f}% of one core"
        + (f" ({per_request:.3f} ms/request)" if per_request is not None else "")
    )
    if "server_cpu_s" in result:
        per = result["server_cpu_ms_per_request"]
        lines.append(
            f"  server CPU: {result['server_cpu_s']:.2f} s = {result['server_cpu_pct']:.0f}% of one core"
            + (f" ({per:.3f} ms/request)" if per is not None else "")
        )
        if per is not None and result["worker_cpu_ms_per_request"]:
            lines.append(
                f"    of it, per request: model workers {result['worker_cpu_ms_per_request']:.3f} ms, the rest {result['frontdoor_cpu_ms_per_request']:.3f} ms"
            )
    if "machine_cpu_pct" in result:
        lines.append(
            f"  machine CPU: {result['machine_cpu_pct']:.0f}% of one core ({os.cpu_count()} cores), "
            f"{result['other_cpu_pct']:.0f}% of it neither this client" + (" nor the server" if "server_cpu_s" in result else "")
        )
    lines.append(f"  request {result['request_bytes']} B, response {result['response_bytes']} B")
    for sample in result["error_samples"]:
        lines.append(f"  e.g. {sample}")
    return "\n".join(lines)


def _shape(text: str) -> list[int]:
    text = text.strip().strip("[]")
    if not text:
        return []
    return [int(part) for part in text.replace("x", ",").split(",") if part.strip()]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="REST base URL")
    parser.add_argument("--grpc-url", default="127.0.0.1:8081", help="gRPC host:port")
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-version", default=None)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="rest-json")
    parser.add_argument("--input-name", default=None, help="default: the model's first input from its metadata")
    parser.add_argument(
        "--shape", type=_shape, default=None, help="one request's input shape WITHOUT the batch dimension, e.g. 16 or 3,224,224 (default: from metadata)"
    )
    parser.add_argument("--datatype", default=None, help="V2 datatype, e.g. FP32, INT64, BYTES (default: from metadata)")
    parser.add_argument("--batch", type=int, default=1, help="rows per request (the leading dimension)")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument(
        "--rate", type=float, default=None, help="at most this many requests started per second, spread over the workers (default: as fast as answered)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before the window")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take; also the grace after the window")
    parser.add_argument("--binary-output", choices=("auto", "yes", "no"), default="auto", help="REST: ask for binary outputs (auto: yes for rest-binary)")
    parser.add_argument("--grpc-contents", choices=("raw", "typed"), default="raw", help="gRPC: raw_input_contents or typed InferTensorContents")
    parser.add_argument("--grpc-channels", type=int, default=1, help="gRPC channels (HTTP/2 connections) the workers share")
    parser.add_argument("--text", default="the quick brown fox", help="element value for BYTES inputs")
    parser.add_argument("--server-pgid", type=int, action="append", default=[], help="also report the CPU of this process group (repeatable)")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop (auto: uvloop for REST if installed, asyncio for gRPC)"
    )
    parser.add_argument("--json-out", default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    binary_output = {"auto": None, "yes": True, "no": False}[args.binary_output]
    try:
        result = run(
            model=args.model,
            url=args.url,
            grpc_url=args.grpc_url,
            protocol=args.protocol,
            shape=args.shape,
            datatype=args.datatype,
            batch=args.batch,
            concurrency=args.concurrency,
            rate=args.rate,
            duration=args.duration,
            warmup=args.warmup,
            timeout=args.timeout,
            input_name=args.input_name,
            version=args.model_version,
            binary_output=binary_output,
            grpc_contents=args.grpc_contents,
            grpc_channels=args.grpc_channels,
            server_pgids=tuple(args.server_pgid),
            loop=args.loop,
            text=args.text,
        )
    except LoadgenError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130
    print(format_result(result))
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0 if result["requests"] and not result["error_count"] else 1


if __name__ == "__main__":
    sys.exit(main())
