"""Adaptive batching: which requests may share one call of the runtime, how
they are merged along the batch axis (axis 0), and how the outputs are split
back so that each caller gets exactly its own rows.

The pool (gateway/control/pool.py) decides when a batch leaves; this module only
knows tensors.
"""

from __future__ import annotations

from typing import Hashable, Optional, cast

import numpy as np

from ..errors import RuntimeFailure
from ..wire.packed import PackedBytes
from ..wire.request import Tensor, WireRequest

# parameters that only tell the front door how to write the answer
_FRONT_DOOR_PARAMETERS = frozenset({"binary_data_output"})
_FRONT_DOOR_OUTPUT_PARAMETERS = frozenset({"binary_data"})


def _frozen(parameters: dict, ignored: frozenset = _FRONT_DOOR_PARAMETERS) -> Hashable:
    if not parameters:
        return ()  # the usual case, on every request of a batching model
    return tuple(sorted((k, repr(v)) for k, v in parameters.items() if k not in ignored))


def batch_key(request: WireRequest) -> Optional[Hashable]:
    """Requests with equal keys can be concatenated; None: this one runs alone.

    Equal keys mean the same inputs (names, datatypes, dimensions after the
    first, parameters), the same request parameters and the same requested
    outputs (names and parameters, in order): one call then answers every
    request with exactly the outputs it asked for, and a wrong output name
    fails only the requests that asked for it. A request carrying its HTTP headers (for a KServe
    model's hooks) runs alone: a call has one set of headers."""
    if request.headers:
        return None
    rows = None
    described = []
    for tensor in request.inputs:
        if not tensor.shape or (rows is not None and tensor.shape[0] != rows):
            return None  # no batch axis, or inputs disagree on it
        if type(tensor.data) is PackedBytes and not _framing_known(tensor.data):
            return None  # the worker refuses it, and must not fail the batch-mates with it
        rows = tensor.shape[0]
        described.append((tensor.name, tensor.datatype, tuple(tensor.shape[1:]), _frozen(tensor.parameters)))
    outputs = None if request.outputs is None else tuple((o.name, _frozen(o.parameters, _FRONT_DOOR_OUTPUT_PARAMETERS)) for o in request.outputs)
    return (tuple(described), _frozen(request.parameters), outputs)


# raw BYTES (binary extension, gRPC raw contents) of up to this many elements are checked here before
# they may join a batch (the worker checks a lone request's); larger ones run alone
CHECK_FRAMING_UP_TO = 65536


def _framing_known(packed: PackedBytes) -> bool:
    return packed.framed or (packed.count <= CHECK_FRAMING_UP_TO and packed.check_framing())


def rows_of(request: WireRequest) -> int:
    return request.inputs[0].shape[0]


def merge(requests: list[WireRequest]) -> WireRequest:
    """One request holding every request's rows, in order."""
    first = requests[0]
    inputs = []
    for i, tensor in enumerate(first.inputs):
        parts = [r.inputs[i].data for r in requests]
        data: np.ndarray | PackedBytes
        if tensor.datatype == "BYTES":  # row-major: the rows of each request follow the previous one's
            packed = cast(list[PackedBytes], parts)
            data = PackedBytes(b"".join(p.buffer for p in packed), sum(p.count for p in packed))
        else:
            data = np.concatenate(cast(list[np.ndarray], parts), axis=0)
        rows = sum(r.inputs[i].shape[0] for r in requests)
        inputs.append(Tensor(tensor.name, tensor.datatype, [rows, *tensor.shape[1:]], data, tensor.parameters))
    # every caller's id, so that the worker's log lines of the call name each of them
    merged_id = ",".join(r.id for r in requests)
    # batch-mates asked for the same outputs (batch_key): they differ at most in how the front door writes them
    return WireRequest(first.model_name, first.model_version, merged_id, inputs, first.parameters, first.outputs)


def split(outputs: list[Tensor], requests: list[WireRequest]) -> list[list[Tensor]]:
    """Each request's rows of each output (views, no copies). Batch-mates asked for the
    same outputs, so every output of the call is one each of them asked for."""
    total = sum(rows_of(r) for r in requests)
    for tensor in outputs:
        if not tensor.shape or tensor.shape[0] != total:
            raise RuntimeFailure(
                f"output {tensor.name!r} has shape {tensor.shape}, but the batch had {total} rows: "
                "this model's outputs do not follow the batch axis; set max_batch_size to 0 or 1"
            )
        if type(tensor.data) is PackedBytes and (tensor.data.bounds is None or len(tensor.data.bounds) != len(requests) + 1):
            raise RuntimeFailure(f"output {tensor.name!r}: the worker did not say where each request's BYTES rows start")
    answers, start = [], 0
    for i, request in enumerate(requests):
        stop = start + rows_of(request)
        answers.append([Tensor(t.name, t.datatype, [stop - start, *t.shape[1:]], _rows(t, i, start, stop), t.parameters) for t in outputs])
        start = stop
    return answers


def _rows(tensor: Tensor, i: int, start: int, stop: int) -> "np.ndarray | PackedBytes":
    """Rows start:stop of an output, which are batch-mate i's."""
    data = tensor.data
    if not isinstance(data, PackedBytes):
        return data[start:stop]
    # the worker marked where each batch-mate's elements start (transport.request_frames' batch)
    per_row = data.count // tensor.shape[0] if tensor.shape[0] else 0
    bounds = cast(list[int], data.bounds)  # split() checked that the worker gave them
    return PackedBytes(data.buffer[bounds[i] : bounds[i + 1]], (stop - start) * per_row)
