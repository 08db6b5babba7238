"""Log lines of the gateway and its workers: text or JSON, each tagged with the
request being served, and one access line per request.

The request id (the inference request's `id`, or the UUID the gateway gave it)
is a context variable: the data plane sets it in the front door, and a worker
sets it from the message header while it runs that request. Every line logged
meanwhile, in either process, carries it, so one request can be followed
across processes with a grep.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Optional

import orjson

REQUEST_ID: ContextVar[Optional[str]] = ContextVar("request_id", default=None)

access_log = logging.getLogger("gateway.access")


class TextFormatter(logging.Formatter):
    def __init__(self, source: str):
        super().__init__(f"%(asctime)s %(levelname)s [{source}]%(request)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = REQUEST_ID.get()
        record.request = f" [request {request_id}]" if request_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; an access line adds its fields (`extra={"fields": {...}}`)."""

    def __init__(self, worker: Optional[str]):
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if self.worker:
            line["worker"] = self.worker
        request_id = REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, style: str, worker: Optional[str] = None) -> None:
    """Log to stderr at `level`, as "text" or "json" lines; `worker`: the worker's identity, in a worker."""
    # no line shows the caller, thread or process: skip collecting them for every record
    # (the "Optimization" section of the logging HOWTO): an access line costs a third less
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if style == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        handler.setFormatter(TextFormatter(f"worker {worker}" if worker else "%(name)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def access(protocol: str, method: str, path: str, status: int | str, ns: int, model: Optional[str], version: Optional[str]) -> None:
    """The access line of one request (REST: HTTP method and status; gRPC: the RPC and its status code)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    ms = round(ns / 1e6, 3)
    fields = {"protocol": protocol, "method": method, "path": path, "status": status, "latency_ms": ms, "model": model, "version": version}
    about = (f" model={model}" + (f" version={version}" if version else "")) if model else ""
    access_log.info("%s %s %s %s %.3f ms%s", protocol, method, path, status, ms, about, extra={"fields": fields})
