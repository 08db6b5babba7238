"""Log lines of the gateway and its workers: text or JSON, each tagged with the
request being served, and one access line per request.

The request id (the inference request's `id`, or the UUID the gateway gave it)
is a context variable: the data plane sets it in the front door, and a worker
sets it from the message header while it runs that request. Every line logged
meanwhile, in either process, carries it, so one request can be followed
across processes with a grep.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, Optional, TextIO

import orjson

REQUEST_ID: ContextVar[Optional[str]] = ContextVar("request_id", default=None)

access_log = logging.getLogger("gateway.access")


class TextFormatter(logging.Formatter):
    def __init__(self, source: str, front_door: str = ""):
        super().__init__(f"%(asctime)s %(levelname)s [{source}]{front_door}%(request)s %(message)s")
        self.front_door = front_door

    def format(self, record: logging.LogRecord) -> str:
        request_id = REQUEST_ID.get()
        record.request = f" [request {request_id}]" if request_id else ""
        return super().format(record)

    def access_line(self, stamp: str, message: str, fields: dict) -> str:
        """What format() makes of an access record (the front door's source is the logger name)."""
        request_id = REQUEST_ID.get()
        request = f" [request {request_id}]" if request_id else ""
        return f"{stamp} INFO [{access_log.name}]{self.front_door}{request} {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; an access line adds its fields (`extra={"fields": {...}}`)."""

    def __init__(self, worker: Optional[str], front_door: Optional[int] = None):
        super().__init__()
        self.worker = worker
        self.front_door = front_door

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if self.worker:
            line["worker"] = self.worker
        if self.front_door is not None:
            line["front_door"] = self.front_door
        request_id = REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()

    def access_line(self, stamp: str, message: str, fields: dict) -> str:
        """What format() makes of an access record."""
        line: dict[str, Any] = {"time": stamp, "level": "INFO", "logger": access_log.name, "message": message}
        if self.front_door is not None:
            line["front_door"] = self.front_door
        request_id = REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        line.update(fields)
        return orjson.dumps(line, default=str).decode()


class _AccessLines:
    """The access lines' short path: the same text as a log record through our handler, at a
    fraction of the cost (docs/PERFORMANCE.md). Each line is formatted at once, in its request's
    context, and the lines of one event-loop turn leave in one write at the end of the turn."""

    def __init__(self, handler: logging.StreamHandler):
        self._handler = handler
        self._formatter: TextFormatter | JsonFormatter = handler.formatter  # type: ignore[assignment]
        self._stream: TextIO = handler.stream
        self._pending: list[str] = []
        self._second = -1
        self._second_text = ""
        atexit.register(self.flush)

    def in_charge(self) -> bool:
        """Whether the access lines would reach our handler alone (nobody changed the set-up)."""
        return not access_log.handlers and access_log.propagate and logging.root.handlers == [self._handler]

    def _stamp(self) -> str:
        # logging's asctime ("2026-11-28 15:30:55,123"); strftime once per second
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._second_text},{int((now - second) * 1000):03d}"

    def add(self, message: str, fields: dict) -> None:
        self._pending.append(self._formatter.access_line(self._stamp(), message, fields))
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write now
                self.flush()

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()


_access_lines: Optional[_AccessLines] = None


def configure(level: str, style: str, worker: Optional[str] = None, front_door: Optional[int] = None) -> None:
    """Log to stderr at `level`, as "text" or "json" lines; `worker`: the worker's identity, in a worker;
    `front_door`: the front-door process's number, when there are several (`frontdoor_workers`)."""
    # no line shows the caller, thread or process: skip collecting them for every record
    # (the "Optimization" section of the logging HOWTO): an access line costs a third less
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if style == "json":
        handler.setFormatter(JsonFormatter(worker, front_door))
    else:
        handler.setFormatter(TextFormatter(f"worker {worker}" if worker else "%(name)s", "" if front_door is None else f" [front door {front_door}]"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    global _access_lines
    _access_lines = None if worker else _AccessLines(handler)


class Held(logging.Handler):
    """What the gateway logs from `hold()` to `release()`: loading the settings that configure
    logging may say things, before that logging exists."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger("gateway")
        self.saved = self.logger.level, self.logger.propagate

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def hold() -> Held:
    held = Held()
    held.logger.addHandler(held)
    held.logger.setLevel(logging.DEBUG)
    held.logger.propagate = False
    return held


def release(held: Held) -> None:
    """Log what was held, as far as the levels configured since let it through."""
    held.logger.removeHandler(held)
    held.logger.setLevel(held.saved[0])
    held.logger.propagate = held.saved[1]
    for record in held.records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def access(
    protocol: str, method: str, path: str, status: int | str, ns: int, model: Optional[str], version: Optional[str], responses: Optional[int] = None
) -> None:
    """The access line of one request (REST: HTTP method and status; gRPC: the RPC and its status code);
    a stream's (one line for the whole stream) also says how many responses it sent."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    ms = round(ns / 1e6, 3)
    fields = {"protocol": protocol, "method": method, "path": path, "status": status, "latency_ms": ms, "model": model, "version": version}
    about = (f" model={model}" + (f" version={version}" if version else "")) if model else ""
    if responses is not None:
        fields["responses"] = responses
        about += f" responses={responses}"
    message = f"{protocol} {method} {path} {status} {ms:.3f} ms{about}"
    if _access_lines is not None and _access_lines.in_charge():
        _access_lines.add(message, fields)
    else:  # logging set up by someone else (an embedding program, a test): the usual path
        access_log.info("%s", message, extra={"fields": fields})
