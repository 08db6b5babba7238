"""The gateway's measurements: its Prometheus registry and the statistics extension.

Everything is counted in the front-door process, which sees every request:
workers measure only what they alone can see (time spent in the runtime,
custom metric values) and send it with the messages they send anyway
(gateway/wire/messages.py, the "report" field). So there is one registry, exact, with no
multiprocess files to clean up when a worker dies or restarts.

One `ModelStats` per model version receives the events of its requests
(front door, data plane, pool, supervisor) and updates both the Prometheus
series (labelled children cached here, so no label lookup per request) and
the statistics extension's counters. All of it runs on the front door's event
loop, as do both metrics endpoints, so nothing here needs a lock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..types import State

log = logging.getLogger("gateway.metrics")

disable_created_metrics()  # no `_created` series: they would double the exposition for little use
REGISTRY = CollectorRegistry()
MODEL = ["model", "version"]
PROTOCOLS = ("rest", "grpc")
# cancelled: the client went away (499); deadline_exceeded: its deadline passed (504); neither is an error
OUTCOMES = ("success", "client_error", "server_error", "cancelled", "deadline_exceeded")
MODEL_STATES = [state for state in State if state is not State.UNKNOWN]  # UNKNOWN is never a model's state
# from 0.1 ms (a short wait in a queue) to a minute (request_timeout's default)
SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter(
    "gateway_requests",
    "Inference requests answered, by protocol and outcome (success, client_error: 4xx, server_error: 5xx, "
    "cancelled: the client went away, deadline_exceeded: its deadline passed).",
    [*MODEL, "protocol", "outcome"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "gateway_request_duration_seconds",
    "Time from receiving an inference request to handing its response to the connection.",
    [*MODEL, "protocol"],
    buckets=SECONDS,
    registry=REGISTRY,
)
QUEUE_SECONDS = Histogram(
    "gateway_queue_duration_seconds",
    "Time a request waited in its model's queue before it was sent to a worker.",
    MODEL,
    buckets=SECONDS,
    registry=REGISTRY,
)
WORKER_WAIT_SECONDS = Histogram(
    "gateway_worker_wait_duration_seconds",
    "Time a request waited in its worker before it ran: behind the call the worker was computing when it came, "
    "or behind the requests before it in its bundle (with the queue time, the wait before the inference).",
    MODEL,
    buckets=SECONDS,
    registry=REGISTRY,
)
INFERENCE_SECONDS = Histogram(
    "gateway_inference_duration_seconds",
    "Time a worker spent on one call: preprocess, predict, postprocess and output conversion.",
    MODEL,
    buckets=SECONDS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "gateway_batch_size",
    "Requests carried by one call to a worker (a batch: several, merged into one run of the model).",
    MODEL,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
BUNDLE_SIZE = Histogram(
    "gateway_bundle_size",
    "Calls carried by one message to a worker: 1, or a bundle's (unbatched requests that were waiting, sent together and run one after the other).",
    MODEL,
    buckets=(1, 2, 4, 8, 16, 32),
    registry=REGISTRY,
)
INFLIGHT = Gauge("gateway_inflight_requests", "Requests queued, running in a worker or being rendered.", MODEL, registry=REGISTRY)
SHED = Counter(
    "gateway_requests_shed",
    "Inference requests refused because their model's queue held max_queue_size requests (503 / UNAVAILABLE).",
    MODEL,
    registry=REGISTRY,
)
RETRIES = Counter(
    "gateway_request_retries",
    "Inference requests run again because the worker running them died.",
    MODEL,
    registry=REGISTRY,
)
RESTARTS = Counter("gateway_worker_restarts", "Worker processes started to replace one that died or hung.", MODEL, registry=REGISTRY)

# custom metrics from runtimes (gateway/metrics.py), by name; None: refused (name taken or invalid)
_custom: dict[str, Optional[Histogram]] = {}


def _custom_family(name: str, description: str) -> Optional[Histogram]:
    if name not in _custom:
        try:
            _custom[name] = Histogram(name, description, MODEL, registry=REGISTRY)
        except ValueError as exc:
            log.warning("custom metric %r refused: %s", name, exc)
            _custom[name] = None
    return _custom[name]


_OUTCOME_OF_STATUS = {499: "cancelled", 504: "deadline_exceeded"}


def _outcome(http_status: int) -> str:
    if http_status in _OUTCOME_OF_STATUS:
        return _OUTCOME_OF_STATUS[http_status]
    return OUTCOMES[0] if http_status < 400 else OUTCOMES[1] if http_status < 500 else OUTCOMES[2]


class _Duration:
    """A statistics-extension duration: how many, and their total in ns."""

    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, count: int, ns: int) -> None:
        self.count += count
        self.ns += ns

    def document(self) -> dict:
        return {"count": self.count, "ns": self.ns}


class ModelStats:
    """The measurements of one model version (labels `model`, `version`; no version: "")."""

    def __init__(self, name: str, version: Optional[str]):
        self.name, self.version = name, version or ""
        labels = (self.name, self.version)
        self._requests = {(p, o): REQUESTS.labels(*labels, p, o) for p in PROTOCOLS for o in OUTCOMES}
        self._request_seconds = {p: REQUEST_SECONDS.labels(*labels, p) for p in PROTOCOLS}
        self._queue_seconds = QUEUE_SECONDS.labels(*labels)
        self._worker_wait_seconds = WORKER_WAIT_SECONDS.labels(*labels)
        self._inference_seconds = INFERENCE_SECONDS.labels(*labels)
        self._batch_size = BATCH_SIZE.labels(*labels)
        self._bundle_size = BUNDLE_SIZE.labels(*labels)
        self._inflight = INFLIGHT.labels(*labels)
        self._restarts = RESTARTS.labels(*labels)
        self._shed = SHED.labels(*labels)
        self._retries = RETRIES.labels(*labels)
        self._custom: dict[str, Any] = {}  # name -> this model's child of the custom histogram (None: refused)
        # the statistics extension
        self.last_inference = 0  # ms since the epoch
        self.inference_count = 0
        self.execution_count = 0
        self.stages = {k: _Duration() for k in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")}
        self.batches: dict[int, tuple[_Duration, _Duration, _Duration]] = {}

    # --- front doors: one call per inference request, whatever its fate ---

    def request_done(self, protocol: str, http_status: int, ns: int) -> None:
        self._requests[protocol, _outcome(http_status)].inc()
        self._request_seconds[protocol].observe(ns / 1e9)

    # --- data plane: a request that reached the model's queue ---

    def request_started(self) -> int:
        self._inflight.inc()
        self.last_inference = time.time_ns() // 1_000_000
        return time.perf_counter_ns()

    def request_finished(self, started: int, ok: bool) -> None:
        self._inflight.dec()
        if ok:
            self.inference_count += 1
        self.stages["success" if ok else "fail"].add(1, time.perf_counter_ns() - started)

    # --- pool: calls sent to workers, and what workers report ---

    def dispatched(self, calls: list[list[int]]) -> None:
        """One message to a worker: its calls (one, or a bundle's), each carrying the requests queued
        at these perf_counter_ns times (one, or a batch's)."""
        now = time.perf_counter_ns()
        self._bundle_size.observe(len(calls))
        for queued in calls:
            self._batch_size.observe(len(queued))
            for started in queued:
                self._queue_seconds.observe((now - started) / 1e9)
                self.stages["queue"].add(1, now - started)

    def waited_in_worker(self, ns: int, requests: int) -> None:
        """What a run of `requests` requests (a lone one, or a batch's) waited in its worker before it
        ran: in the statistics extension, queue time as the wait in the pool's queue is."""
        for _ in range(requests):
            self._worker_wait_seconds.observe(ns / 1e9)
        self.stages["queue"].add(0, requests * ns)

    def shed(self) -> None:
        self._shed.inc()

    def retried(self, requests: int) -> None:
        self._retries.inc(requests)

    def worker_report(self, report: dict) -> None:
        """The report a worker message carries: custom metrics."""
        if not report:
            return
        for name, description in report.get("register", {}).items():
            _custom_family(name, description)
        for name, values in report.get("log", {}).items():
            self._observe_custom(name, values)

    def executed(self, times: list[int], requests: int) -> None:
        """One run of the model that succeeded, carrying `requests` requests (a batch's, or one: a
        bundle's requests each ran alone), and its [input, infer, output] stage times in ns."""
        self.execution_count += 1
        self._inference_seconds.observe(sum(times) / 1e9)
        if requests not in self.batches:
            self.batches[requests] = (_Duration(), _Duration(), _Duration())
        for stage, in_batch, ns in zip(("compute_input", "compute_infer", "compute_output"), self.batches[requests], times):
            self.stages[stage].add(requests, requests * ns)  # each request of the call took the call's time
            in_batch.add(1, ns)

    def _observe_custom(self, name: str, values: list[float]) -> None:
        if name not in self._custom:
            family = _custom.get(name)
            self._custom[name] = None if family is None else family.labels(self.name, self.version)
        child = self._custom[name]
        if child is not None:
            for value in values:
                child.observe(value)

    # --- supervisor ---

    def worker_restarted(self) -> None:
        self._restarts.inc()

    # --- the statistics extension ---

    def document(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {stage: duration.document() for stage, duration in self.stages.items()},
            "batch_stats": [
                {"batch_size": size, "compute_input": i.document(), "compute_infer": f.document(), "compute_output": o.document()}
                for size, (i, f, o) in sorted(self.batches.items())
            ],
        }


_models: dict[tuple[str, Optional[str]], ModelStats] = {}


def model_stats(name: str, version: Optional[str]) -> ModelStats:
    """The one ModelStats of a model version; kept across unload and reload, so counters never go back."""
    key = (name, version)
    if key not in _models:
        _models[key] = ModelStats(name, version)
    return _models[key]


@dataclass(frozen=True)
class ModelGauges:
    """What is read when scraped, rather than counted, of one model version."""

    name: str
    version: Optional[str]
    state: State
    shared_memory_bytes: int


class _ModelsCollector:
    """Model states and shared memory, read from whoever registered them (`watch`) at each scrape."""

    def __init__(self, read: Callable[[], Iterable[ModelGauges]]):
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        states = GaugeMetricFamily("gateway_model_state", "1 for the state the model version is in, 0 for the others.", labels=[*MODEL, "state"])
        shm = GaugeMetricFamily(
            "gateway_shared_memory_bytes", "Memory held by the shared-memory arenas of the model's workers (pages written at least once).", labels=MODEL
        )
        for model in self.read():
            labels = [model.name, model.version or ""]
            for state in MODEL_STATES:
                states.add_metric([*labels, state.value], float(model.state == state))
            shm.add_metric(labels, float(model.shared_memory_bytes))
        yield states
        yield shm


def watch(read: Callable[[], Iterable[ModelGauges]]) -> None:
    """Serve the gauges `read` returns at each scrape (the model table registers its own)."""
    REGISTRY.register(_ModelsCollector(read))


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)
