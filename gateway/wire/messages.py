"""The messages between the gateway and its worker processes (ZeroMQ multipart).

Every message is `[kind, header, *inline buffers]`. The header is a small JSON
document describing the tensors. A tensor's bytes are placed in the sender's
shared-memory arena (the header gives offset and length) or, when small or
when the arena is full, travel inline as a frame of their own; either way they
are never pickled nor turned into JSON. Both sides use only these functions.

A worker has SLOTS call slots, each a region of its input arena and one of its output arena
(wire/arena.py). A call's header names its "slot": its inputs are in that slot's input region,
and the worker writes its outputs to that slot's output region. A region holds one call at a
time, so placement is a bump from its offset 0. The gateway gives a worker a call whenever one of
its slots is free (control/pool.py), so the next call waits in the worker while one runs, and
starts the moment it has replied; the worker runs its calls one at a time, in the order they came.

A call carries a list of "requests" (request_frames): one (a lone request, or a batch merged into
one), or a bundle, several unbatched requests that were waiting, which the worker runs one after
the other, each exactly as a lone request (its own outputs, its own error). It answers them by
their index in the call, in one REPLY or several (`Answers`): what it has finished is sent once
BUNDLE_SECONDS have passed since its previous message for the call, the rest later; the call
has been answered once every request has. Their outputs follow one another in the slot's output
region, across the REPLYs of the call.

Kinds, gateway -> worker: INFER, EXPLAIN, PREDICT_V1, EXPLAIN_V1 (KServe's V1 protocol: the
request body as one UINT8 tensor, answered by one), PING, STOP, CANCEL (stop the call "seq":
every request it carries is gone; the worker answers it at once, with ERROR 499 if it stopped;
a call still waiting in the worker behind another is answered ERROR 499 at once, never run).
Kinds, worker -> gateway: READY (loaded; header has metadata), FAILED (load
failed; header has the reason), REPLY ("answers": each request's outputs, or its HTTP status,
gRPC code and message), ERROR (HTTP status, gRPC code and message: every request of the call not
answered yet fails with it), PONG.

An INFER or EXPLAIN header may carry the request's "headers" (for KServe models, whose hooks
take them); a reply's parameters may carry "headers" for the REST answer (MLServer's
`parameters.headers`, KServe's `response_headers`).

A stream (the runtime's predict_stream) is one call that lasts: STREAM opens it
with its first request (in the input arena, which it holds for the stream's
life); NEXT carries a further request (inline: the arena is taken), END says no
more will come, CANCEL (as for any call) stops the generator. The worker answers ITEM after ITEM
(each a reply of one answer, item_frames; its outputs in the output arena) and writes the next only after
a CREDIT, the gateway's word that the previous one has been read and sent on:
so a slow client holds the generator back. TAKEN tells the gateway that the
generator took a further request (the gateway keeps only a few unread in the
worker); DONE, or ERROR, ends the stream, after which the worker is idle. A stream is given only
to a worker with no call in flight, and the worker is given no other call while it streams.
Every stream message names the stream's "seq": a late one (a CREDIT crossing
the stream's DONE) is ignored.

STREAM_V1 opens a stream too: KServe's V1 `:predict` to a model whose `predict` may answer
an async iterator (the request as PREDICT_V1's). Its ITEMs are the iterator's chunks, each one
UINT8 tensor with the parameter "chunk"; a model that answered a whole answer instead sends it as
one ITEM, PREDICT_V1's reply.

A relay front door (gateway/frontdoor/relay.py; `frontdoor_workers` above 1) speaks to the main
process with the same framing, its tensors always inline: INFER, EXPLAIN, PREDICT_V1 and EXPLAIN_V1
of one request (its description adds "model", "version", "deadline", "timeout" and "priority": what the main's
pool needs), CANCEL, ACCOUNT (the requests it answered in one loop turn, for the main's metrics) and
ASK (metrics, statistics, load, unload); the main answers REPLY (one answer: reply_frames), ERROR
(with "retry_after" for a full queue) and ANSWER. Streams go as to a worker (STREAM, STREAM_V1,
NEXT, END, CREDIT; ITEM, TAKEN, DONE, ERROR). Before it reads its registry for a scrape, the main
sends each front door SYNC, which it answers at once with ANSWER: every ACCOUNT it sent before is then in.

READY, REPLY, ERROR and PONG headers carry a "report" for the gateway's
metrics (gateway/control/stats.py): "register" and "log", the runtime's custom metrics
(gateway/metrics.py) noted since the worker's previous message; each answer of a REPLY its
"times", the request's [input, infer, output] stage times in ns, and "waited", the ns it waited in
the worker before it ran (behind the call before it, or the requests before it in its bundle).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import orjson

from ..errors import GatewayError, from_status
from .arena import Region, aligned
from .datatypes import array_from_raw
from .packed import PackedBytes
from .request import RequestedOutput, Tensor, WireRequest, raw_bytes

INFER = b"infer"
EXPLAIN = b"explain"
PREDICT_V1 = b"v1predict"
EXPLAIN_V1 = b"v1explain"
PING = b"ping"
STOP = b"stop"
CANCEL = b"cancel"
READY = b"ready"
FAILED = b"failed"
REPLY = b"reply"
ERROR = b"error"
PONG = b"pong"
STREAM = b"stream"
STREAM_V1 = b"v1stream"
NEXT = b"next"
END = b"end"
CREDIT = b"credit"
ITEM = b"item"
TAKEN = b"taken"
DONE = b"done"
ACCOUNT = b"account"
ASK = b"ask"
ANSWER = b"answer"
SYNC = b"sync"

V1_BODY = "body"  # the one UINT8 tensor a V1 request (PREDICT_V1, EXPLAIN_V1) and its answer travel as
V1_CHUNK = "chunk"  # the parameter of a STREAM_V1 ITEM's tensor that is a chunk (not a whole answer)

# Below this size a tensor is copied into the ZeroMQ message instead of shared
# memory: one small copy is cheaper than the bookkeeping (see docs/PERFORMANCE.md).
INLINE_BELOW = 16 * 1024

# Call slots per worker: 2 is double buffering (a call waits in the worker while one runs, so
# the hop to the worker overlaps with compute). Each slot costs a region of each arena.
SLOTS = 2

# A bundle carries at most BUNDLE_LIMIT requests, and no more than the model computes in about
# BUNDLE_SECONDS (by its recent requests: control/pool.py); a worker sends the answers it has
# finished once BUNDLE_SECONDS have passed since its previous message for the call (workers/worker.py).
# See docs/PERFORMANCE.md, "Bundles", for the numbers that chose them.
BUNDLE_LIMIT = 16
BUNDLE_SECONDS = 0.001

# the kinds that are calls: each takes a slot, and runs in its turn
CALLS = frozenset((INFER, EXPLAIN, PREDICT_V1, EXPLAIN_V1, STREAM, STREAM_V1))


def _place(tensors: list[Tensor], arena: Region | None, offset: int, frames: list) -> tuple[list[dict], int]:
    """Describe the tensors; put each one's bytes in the arena from `offset` on, or in an inline frame
    appended to `frames` (which the descriptions number). Returns the descriptions and the offset
    after them; on an error, nothing is appended."""
    descriptions: list[dict] = []
    inline: list = []
    for tensor in tensors:
        raw = raw_bytes(tensor)
        size = len(raw)
        description: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape, "parameters": tensor.parameters}
        data = tensor.data
        if type(data) is PackedBytes and data.bounds is not None:
            description["bounds"] = data.bounds
        if arena is not None and size >= INLINE_BELOW and offset + size <= arena.size:
            arena.buf[offset : offset + size] = raw
            description["shm"] = [offset, size]
            offset = aligned(offset + size)
        else:
            description["frame"] = len(frames) + len(inline)
            inline.append(raw)
        descriptions.append(description)
    frames.extend(inline)
    return descriptions, offset


def _views(descriptions: list[dict], frames: Sequence[Any], arena: Region | None) -> list[Tensor]:
    """Tensors over the placed bytes: read-only numpy views, no copies (a runtime
    writing in place would change the sender's shared memory); BYTES stay packed."""
    tensors = []
    for d in descriptions:
        if "shm" in d:
            offset, size = d["shm"]
            assert arena is not None, "a tensor placed in shared memory, but no arena to read it from"
            buf = arena.buf[offset : offset + size]
        else:
            buf = _buffer(frames[d["frame"]])
        array = array_from_raw(d["datatype"], d["shape"], buf.toreadonly(), d["name"])
        if type(array) is PackedBytes and "bounds" in d:
            array.bounds = d["bounds"]
        tensors.append(Tensor(d["name"], d["datatype"], d["shape"], array, d["parameters"]))
    return tensors


def _buffer(frame: Any) -> memoryview:
    # zmq.Frame (received with copy=False) exposes its bytes without a copy
    return frame.buffer if hasattr(frame, "buffer") else memoryview(frame)


def request_frames(
    kind: bytes, seq: int, requests: list[WireRequest], arena: Region | None, slot: int = 0, batch: list[int] | None = None, relayed: bool = False
) -> list:
    """A call in `slot`: one request, or a bundle's (run one after the other, each alone), their inputs
    placed one after the other in `arena`, that slot's input region (None: inline, as a stream's
    further request or a relayed one). `batch`: for one merged request, the rows of each request it
    holds, so that the worker can mark where each one's rows start in its BYTES outputs
    (`PackedBytes.bounds`). `relayed`: a relay front door's request to the main process, which adds
    what the main's pool needs."""
    frames: list = []
    described, offset = [], 0
    for request in requests:
        inputs, offset = _place(request.inputs, arena, offset, frames)
        description: dict[str, Any] = {
            "id": request.id,
            "parameters": request.parameters,
            "inputs": inputs,
            "outputs": None if request.outputs is None else [{"name": o.name, "parameters": o.parameters} for o in request.outputs],
            "headers": request.headers,
            "from_grpc": request.from_grpc,
        }
        if relayed:
            description.update(
                model=request.model_name, version=request.model_version, deadline=request.deadline, timeout=request.timeout, priority=request.priority
            )
        described.append(description)
    header = {"seq": seq, "slot": slot, "batch": batch, "requests": described}
    return [kind, orjson.dumps(header), *frames]


def v1_request(model: str, body: bytes, headers: dict[str, str]) -> WireRequest:
    """A KServe V1 request: its body, as it came, in one tensor (the worker decodes it as KServe does)."""
    data = np.frombuffer(body, dtype=np.uint8)
    return WireRequest(model, None, "", [Tensor(V1_BODY, "UINT8", [data.size], data, {})], headers=headers)


def request_header(frames: Sequence[Any]) -> dict:
    """A call's header; its "seq" names the call a reply answers, its "slot" where its tensors
    are, its "requests" each request (parse_request), "batch" the rows of each request a batched
    call's one request holds (None: not a batch)."""
    header = frames[1]
    return orjson.loads(getattr(header, "bytes", header))  # a zmq.Frame's bytes: orjson reads them quicker than a view


def parse_request(described: dict, frames: Sequence[Any], arena: Region | None, model_name: str, model_version: str | None) -> WireRequest:
    """One of a call header's "requests"."""
    outputs = described["outputs"]
    request = WireRequest(
        model_name=model_name,
        model_version=model_version,
        id=described["id"],
        inputs=_views(described["inputs"], frames[2:], arena),
        parameters=described["parameters"],
        outputs=None if outputs is None else [RequestedOutput(o["name"], o["parameters"]) for o in outputs],
        headers=described["headers"],
        from_grpc=described["from_grpc"],
    )
    if "deadline" in described:  # relayed: CLOCK_MONOTONIC is one clock for every process of the machine
        request.deadline, request.timeout, request.priority = described["deadline"], described["timeout"], described["priority"]
    return request


class Answers:
    """The worker's answers to the requests of one call, sent as they come: `add` or `fail` each
    request (by its index in the call) when it is done, `frames` makes a REPLY of those not sent yet.
    The outputs are placed in the call's slot's output region one after the other, across every
    REPLY of the call: never over an answer sent already, which the gateway may still be reading."""

    def __init__(self, seq: int, arena: Region | None):
        self.seq, self._arena = seq, arena
        self._offset = 0
        self._answers: list[dict | orjson.Fragment] = []
        self._frames: list = []

    def __len__(self) -> int:
        """Answers not sent yet."""
        return len(self._answers)

    def add(self, index: int, outputs: list[Tensor], parameters: dict, times: list[int] | None = None, waited: int | None = None) -> None:
        """Request `index` answered (`times`: its [input, infer, output] stage times in ns; `waited`: ns it
        waited in the worker before it ran)."""
        described, offset = _place(outputs, self._arena, self._offset, self._frames)
        answer = {"index": index, "parameters": parameters, "outputs": described, "times": times, "waited": waited}
        try:  # serialized now, so that what JSON cannot carry (a numpy scalar among the parameters) fails this answer alone
            self._answers.append(orjson.Fragment(orjson.dumps(answer)))
        except orjson.JSONEncodeError as exc:  # its inline frames, if any, stay unread; the arena's bytes are overwritten
            raise TypeError(f"the answer's parameters must be JSON values: {exc}") from None
        self._offset = offset

    def fail(self, index: int, error: GatewayError, waited: int | None = None) -> None:
        self._answers.append({"index": index, "status": error.http_status, "code": error.grpc_code, "message": error.message, "waited": waited})

    def frames(self, report: dict, kind: bytes = REPLY) -> list:
        """A REPLY (or a stream's ITEM: item_frames) of the answers not sent yet, and the worker's `report`."""
        header = {"seq": self.seq, "answers": self._answers, "report": report}
        frames = [kind, orjson.dumps(header), *self._frames]
        self._answers, self._frames = [], []
        return frames


def reply_frames(seq: int, outputs: list[Tensor], parameters: dict, arena: Region | None, report: dict, kind: bytes = REPLY) -> list:
    """A REPLY of one answer (index 0): a relayed call's; or a stream's ITEM, placed from the start of
    the stream's output region (the ITEM before it has been given back: CREDIT)."""
    answers = Answers(seq, arena)
    answers.add(0, outputs, parameters)
    return answers.frames(report, kind)


def error_frames(seq: int, error: GatewayError, report: dict) -> list:
    """An ERROR: every request of the call "seq" not answered yet fails with `error` (a stream: it has ended so)."""
    header = {"seq": seq, "status": error.http_status, "code": error.grpc_code, "message": error.message, "report": report}
    retry_after = getattr(error, "retry_after", None)  # a full queue, relayed to a front door: when to come back
    if retry_after is not None:
        header["retry_after"] = retry_after
    return [ERROR, orjson.dumps(header)]


def reply_header(frames: Sequence[Any]) -> dict:
    """A REPLY's, ITEM's or ERROR's header: its "seq" names the call it answers, its "answers" (a
    REPLY's, an ITEM's) the requests answered, by their index in the call (parse_answer)."""
    return orjson.loads(_buffer(frames[1]))


def call_error(header: dict) -> GatewayError:
    """What an ERROR fails the call's unanswered requests with."""
    error = from_status(header["status"], header["message"], header["code"])
    if "retry_after" in header:
        error.retry_after = header["retry_after"]  # type: ignore[attr-defined]  # read with getattr by the front doors
    return error


def parse_reply(header: dict, frames: Sequence[Any], arena: Region | None) -> tuple[tuple[list[Tensor], dict] | GatewayError, bool]:
    """A one-answer REPLY or ITEM (reply_frames), or an ERROR: ((outputs, parameters) or the error,
    whether the outputs view `arena`)."""
    if bytes(_buffer(frames[0])) == ERROR:
        return call_error(header), False
    return parse_answer(header["answers"][0], frames, arena)


def parse_answer(answer: dict, frames: Sequence[Any], arena: Region | None) -> tuple[tuple[list[Tensor], dict] | GatewayError, bool]:
    """One of a reply's "answers": ((outputs, parameters) or its error, whether the outputs view
    `arena`, the output region of the slot of the call it answers)."""
    if "status" in answer:
        return from_status(answer["status"], answer["message"], answer["code"]), False
    descriptions = answer["outputs"]
    in_arena = any("shm" in d for d in descriptions)
    return (_views(descriptions, frames[2:], arena), answer["parameters"]), in_arena


def control_frames(kind: bytes, payload: dict | None = None) -> list:
    """READY / FAILED / PING / PONG / STOP / CANCEL, and a stream's END / CREDIT / TAKEN / DONE
    ({"seq": ...}): a kind and a small JSON payload."""
    return [kind, orjson.dumps(payload or {})]


def parse_control(frames: Sequence[Any]) -> dict:
    return orjson.loads(_buffer(frames[1]))


def cancel_frames(seq: int) -> list:
    return control_frames(CANCEL, {"seq": seq})
