"""Malformed requests for the three front doors, made by mutating valid ones, and how to send them.

Used by tests/test_fuzz.py (a fixed number of cases in CI) and scripts/fuzz_soak.py (as many as
asked, mixed with valid traffic). Every case is a pure function of (seed, door, index): a failing
case is reproduced alone with `python -m tests.fuzzing DOOR INDEX [--seed SEED]`, which prints it.

Doors:
- `rest-json`: V2 JSON bodies for `infer` and `infer_dict`: keys dropped, duplicated, reordered,
  values of every wrong JSON type, deep nesting, huge and negative numbers, long and odd strings,
  bytes of the text cut, flipped or extended; odd model names and versions in the path.
- `rest-binary`: the binary tensor extension: the same header mutations, and the body truncated,
  extended or flipped, a wrong Inference-Header-Content-Length, wrong binary_data_size, BYTES
  length prefixes out of place; raw bodies (`Inference-Header-Content-Length: 0`).
- `grpc`: random bytes as the message of any read-only RPC (sent through a raw channel method with
  identity serializers), a valid message's bytes cut or flipped, field-level mutations of
  ModelInferRequest (names, datatypes, shapes, typed contents, raw_input_contents that do not match
  the inputs, parameters of every type), some of them in a ModelStreamInfer stream.

Cases stay small (under about 1 MiB) so that thousands take seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import grpc
import numpy as np
import requests

from gateway.protocol.generated import inference_pb2 as pb

DOORS = ("rest-json", "rest-binary", "grpc")
DEFAULT_SEED = 13

# The fuzz gateway's models: an echo model (no declared inputs), one declaring a single FP32 input
# (with MLRun's feature schema, for infer_dict) and its output, one declaring a single BYTES input
# (raw bodies and MLRun's plain inputs of strings), and an echo with adaptive batching on.
MODELS = {
    "echo": {"implementation": "tests.runtimes.Echo"},
    "declared": {
        "implementation": "tests.runtimes.Echo",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4], "parameters": {"features": ["a", "b", "c", "d"]}}],
        "outputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    },
    "text": {"implementation": "tests.runtimes.Echo", "inputs": [{"name": "s", "datatype": "BYTES", "shape": [-1]}]},
    "batched": {"implementation": "tests.runtimes.Echo", "max_batch_size": 4},
}

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
NUMPY = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1", "INT16": "<i2",
    "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
CONTENTS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
HEADER_LENGTH = "Inference-Header-Content-Length"


# --- odd values ---------------------------------------------------------------------------------


@dataclass
class Deep:
    """`leaf` inside `depth` nested lists: written as text by `to_json` (Python's and orjson's encoders
    both stop short of 1,000 levels), and never walked into by the mutations."""

    depth: int
    leaf: Any


def _deep(depth: int, leaf: Any = 1) -> Any:
    return Deep(depth, leaf)


def to_json(value: Any) -> str:
    if isinstance(value, Deep):
        return "[" * value.depth + to_json(value.leaf) + "]" * value.depth
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


ODD_VALUES: list[Callable[[random.Random], Any]] = [
    lambda r: None,
    lambda r: True,
    lambda r: False,
    lambda r: 0,
    lambda r: -1,
    lambda r: r.choice([2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, -(2**31) - 1]),
    lambda r: r.choice([1.5, -0.0, 1e308, -1e308, 5e-324, 3.4e39]),
    lambda r: "",
    lambda r: "x" * r.choice([300, 10_000, 100_000]),
    lambda r: r.choice(["é€😀", "\x00", "\u202e", "\n\r\t", "'\"\\", "%00%ff", "FP32\x00", "../../etc"]),
    lambda r: [],
    lambda r: {},
    lambda r: [None],
    lambda r: [[]],
    lambda r: {"name": "x"},
    lambda r: list(range(r.choice([10, 1000]))),
    lambda r: _deep(r.choice([40, 1000])),
    lambda r: _deep(r.choice([40, 1000]), "a"),
    lambda r: ["a", ["b"], [[1]]],
    lambda r: [1, "2", 3.5, None, True],
]

# what each field of a V2 request is most likely to be mistaken for
FIELD_VALUES: dict[str, Callable[[random.Random], Any]] = {
    "datatype": lambda r: r.choice(DATATYPES + ["BF16", "fp32", "FP 32", "STRING", "TYPE_FP32", "", "INT128", "FP32 "]),
    "shape": lambda r: r.choice(
        [
            [],
            [0],
            [-1],
            [1, -1],
            [2**31, 2**31],
            [2147483648, 4611686018427387904, 0],
            [2**63 - 1, 0],
            [1] * 40,
            [1] * 33,
            [1.0],
            ["1"],
            [True],
            [None],
            [[1]],
            [10**9],
            [0, 10**18],
            [10**18, 0],
            [2**40, 0, 3],
            [3, 0, 5],
        ]
    ),  # fmt: skip
    "data": lambda r: r.choice(
        [
            [],
            [1],
            [1.5],
            [True],
            ["a"],
            [[1, 2], [3]],
            [None],
            [1e39],
            [-1],
            [2**64],
            [float(2**63)],
            ["1"],
            [{}],
            "abc",
            5,
            [0.5] * 5000 + ["x" * 20_000],
        ]  # numpy would make each of 5,001 numbers a 20,000-character string: 400 MB
    ),
    "name": lambda r: r.choice(["", "x", "y", "s", " x", "x" * 10_000, "é€😀", "\x00", "x\ny", 5, None]),
    "binary_data_size": lambda r: r.choice([0, -1, 1, 2**31, 2**63 - 1, 2**64, -(2**63), 3.0, "8", True, None]),
    "binary_data_output": lambda r: r.choice([True, False, 1, 0, "true", None, [], {}]),
    "binary_data": lambda r: r.choice([True, False, 1, "false", None]),
    "content_type": lambda r: r.choice(["np", "str", "pd", "base64", "", 5, None, "x" * 5000]),
    "id": lambda r: r.choice(["", "a", "x" * 10_000, "é\n", 5, None, []]),
    "parameters": lambda r: r.choice([{}, None, [], {"a": [1]}, {"a": {}}, {"headers": {}}, {"": 1}, {"x" * 1000: "y"}]),
}


def odd_value(rng: random.Random, key: Any = None) -> Any:
    if key in FIELD_VALUES and rng.random() < 0.6:
        return FIELD_VALUES[key](rng)
    return rng.choice(ODD_VALUES)(rng)


# --- valid requests to start from --------------------------------------------------------------


def _json_values(rng: random.Random, datatype: str, count: int) -> list:
    if datatype == "BOOL":
        return [rng.random() < 0.5 for _ in range(count)]
    if datatype == "BYTES":
        return [rng.choice(["", "a", "héllo", "x" * 20, "0"]) for _ in range(count)]
    if datatype.startswith("FP"):
        return [rng.choice([0.0, -0.0, 1.5, -2.25, 100.0, 1e-3]) for _ in range(count)]
    info = np.iinfo(NUMPY[datatype])
    return [rng.choice([int(info.min), 0, 1, int(info.max)]) for _ in range(count)]


def _shape(rng: random.Random, rank: Optional[int] = None) -> list[int]:
    rank = rng.choice([0, 1, 1, 2, 2, 3]) if rank is None else rank
    return [rng.choice([0, 1, 2, 3]) for _ in range(rank)]


def _count(shape: list[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _raw(rng: random.Random, datatype: str, values: list) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    return np.array(values, dtype=NUMPY[datatype]).tobytes()


@dataclass
class Seed:
    """A valid inference request: its model and tensors (name, datatype, shape, JSON values)."""

    model: str
    tensors: list[tuple[str, str, list[int], list]]
    parameters: dict = field(default_factory=dict)
    outputs: Optional[list[dict]] = None
    id: Optional[str] = None


def valid_seed(rng: random.Random) -> Seed:
    model = rng.choice(list(MODELS))
    if model == "declared":
        rows = rng.choice([0, 1, 2, 5])
        tensors = [("x", "FP32", [rows, 4], _json_values(rng, "FP32", rows * 4))]
    elif model == "text":
        rows = rng.choice([0, 1, 3])
        tensors = [("s", "BYTES", [rows], _json_values(rng, "BYTES", rows))]
    elif model == "batched":
        rows = rng.choice([1, 2])
        tensors = [("x", "INT32", [rows, 3], _json_values(rng, "INT32", rows * 3))]
    else:
        tensors = []
        for name in rng.sample(["a", "b", "c"], rng.choice([1, 1, 2, 3])):
            datatype, shape = rng.choice(DATATYPES), _shape(rng)
            tensors.append((name, datatype, shape, _json_values(rng, datatype, _count(shape))))
    seed = Seed(model, tensors)
    if rng.random() < 0.3:
        seed.id = f"fuzz-{rng.randrange(10**6)}"
    if rng.random() < 0.2:
        seed.parameters = {"note": "fuzz", "n": 3}
    if rng.random() < 0.2 and model in ("echo", "batched", "declared"):
        seed.outputs = [{"name": t[0]} for t in tensors]
    return seed


def json_document(seed: Seed, binary: set[str] = frozenset()) -> tuple[dict, list[bytes]]:
    """The V2 JSON document of a seed; the inputs named in `binary` go as binary data (returned apart)."""
    inputs, chunks = [], []
    for name, datatype, shape, values in seed.tensors:
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if name in binary:
            raw = _raw(random.Random(0), datatype, values)
            item["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            item["data"] = values
        inputs.append(item)
    document: dict[str, Any] = {"inputs": inputs}
    if seed.id is not None:
        document["id"] = seed.id
    if seed.parameters:
        document["parameters"] = dict(seed.parameters)
    if seed.outputs is not None:
        document["outputs"] = copy.deepcopy(seed.outputs)
    return document, chunks


# --- JSON tree mutations -------------------------------------------------------------------------


def _places(node: Any, out: list) -> list:
    """(container, key) of every value in the tree, the containers themselves included."""
    if isinstance(node, dict):
        for key in list(node):
            out.append((node, key))
            _places(node[key], out)
    elif isinstance(node, list):
        for index in range(len(node)):
            out.append((node, index))
            _places(node[index], out)
    return out


def mutate_tree(rng: random.Random, document: Any, rounds: Optional[int] = None) -> Any:
    """A copy of the JSON document with 1-3 structural mutations (the root may be replaced)."""
    root = [copy.deepcopy(document)]
    for _ in range(rounds or rng.choice([1, 1, 1, 2, 3])):
        places = _places(root[0], [(root, 0)])
        container, key = rng.choice(places)
        value = container[key]
        operation = rng.choice(["drop", "duplicate", "reorder", "retype", "retype", "retype", "nest", "number", "string", "add"])
        if operation == "drop" and container is not root:
            del container[key]
        elif operation == "duplicate" and isinstance(container, list):
            container.insert(key, copy.deepcopy(value))
        elif operation == "reorder" and isinstance(value, (list, dict)):
            items = list(value.items()) if isinstance(value, dict) else list(value)
            rng.shuffle(items)
            container[key] = dict(items) if isinstance(value, dict) else items
        elif operation == "nest":
            container[key] = _deep(rng.choice([1, 2, 40, 1000]), value)
        elif operation == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            container[key] = rng.choice([-value, value + 1, value - 1, value * 2**40, -(2**63), 2**64, 1e300, 0.5, value * 1.0])
        elif operation == "string" and isinstance(value, str):
            longer = value * (1000 if len(value) <= 100 else 2)  # no case much over 1 MiB
            container[key] = rng.choice([longer, value.lower(), value + "\x00", " " + value, value[:-1], value.encode().hex(), "é" + value])
        elif operation == "add" and isinstance(value, dict):
            new_key = rng.choice(["parameters", "data", "shape", "datatype", "name", "binary_data_size", "outputs", "inputs", "zz", ""])
            value[new_key] = odd_value(rng, new_key)
        else:
            container[key] = odd_value(rng, key if isinstance(key, str) else None)
    return root[0]


def mutate_text(rng: random.Random, text: bytes) -> bytes:
    """Byte-level damage to a serialised document: cut, flipped, extended, a key repeated."""
    operation = rng.choice(["cut", "flip", "extend", "duplicate-key", "garbage"])
    if operation == "cut" and text:
        return text[: rng.randrange(len(text))]
    if operation == "flip" and text:
        data = bytearray(text)
        for _ in range(rng.choice([1, 2, 8])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if operation == "extend":
        return text + rng.choice([b"}", b"]", b",", b"\x00", rng.randbytes(16), b" " * 100, b'{"a":1}'])
    if operation == "duplicate-key":
        # a key written twice (a dict cannot hold that): before one of its occurrences, the key again with another value
        keys = [k for k in (b'"inputs": ', b'"name": ', b'"datatype": ', b'"shape": ', b'"data": ', b'"parameters": ') if k in text]
        if keys:
            key = rng.choice(keys)
            at = text.index(key)
            return text[:at] + key + to_json(odd_value(rng, key.strip(b'": ').decode())).encode() + b", " + text[at:]
    return rng.randbytes(rng.choice([0, 1, 10, 1000]))


# --- the front doors' cases ------------------------------------------------------------------------


@dataclass
class RestCase:
    path: str
    body: bytes
    headers: dict = field(default_factory=dict)

    def describe(self) -> str:
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"... (%d bytes)" % len(self.body)
        return f"POST {self.path[:300]} headers={self.headers} body={body!r}"


def _odd_path(rng: random.Random, model: str) -> str:
    choice = rng.random()
    if choice < 0.85:
        return f"/v2/models/{model}/infer"
    if choice < 0.9:
        return f"/v2/models/{model}/versions/{rng.choice(['1', '', '0', 'x' * 200, '%00', '-1'])}/infer"
    return f"/v2/models/{rng.choice(['nope', 'x' * 1000, '%e9%80', 'echo%00', '..%2Fecho', 'ECHO'])}/infer"


def rest_json_case(rng: random.Random) -> RestCase:
    seed = valid_seed(rng)
    if seed.model == "declared" and rng.random() < 0.3:
        # MLRun's infer_dict: one object of named features per row
        _, _, shape, values = seed.tensors[0]
        rows = [dict(zip("abcd", values[i * 4 : (i + 1) * 4])) for i in range(shape[0])] or [{"a": 1}]
        document: Any = {"inputs": rows}
        path = f"/v2/models/{seed.model}/infer_dict"
    elif seed.model == "text" and rng.random() < 0.3:
        # MLRun's plain inputs: the single input's values, no tensor around them
        document = {"inputs": seed.tensors[0][3] or ["a"]}
        path = f"/v2/models/{seed.model}/infer"
    else:
        document, _ = json_document(seed)
        path = _odd_path(rng, seed.model)
    valid = to_json(document).encode()
    body = valid
    while body == valid:  # a mutation may happen to change nothing (a list of one item reordered)
        body = to_json(mutate_tree(rng, document)).encode() if rng.random() < 0.85 else mutate_text(rng, valid)
    return RestCase(path, body)


def rest_binary_case(rng: random.Random) -> RestCase:
    seed = valid_seed(rng)
    if seed.model in ("declared", "text") and rng.random() < 0.15:
        # a raw body: the single declared input's bytes alone
        name, datatype, shape, values = seed.tensors[0]
        body = _damage_binary(rng, _raw(rng, datatype, values), datatype)
        return RestCase(f"/v2/models/{seed.model}/infer", body, {HEADER_LENGTH: "0"})
    binary = {t[0] for t in seed.tensors if rng.random() < 0.8}
    document, chunks = json_document(seed, binary)
    if rng.random() < 0.5:
        document.setdefault("parameters", {})["binary_data_output"] = True
    operation = rng.choice(["header", "header", "length", "size", "body", "body", "bytes-prefix"])
    if operation == "header":
        valid = to_json(document)
        while to_json(document) == valid:
            document = mutate_tree(rng, document)
    elif operation == "size":
        target = rng.choice(document["inputs"])
        size = target.setdefault("parameters", {}).get("binary_data_size", 0)
        target["parameters"]["binary_data_size"] = rng.choice([size + 1, size - 1, -size - 1, size * 2 + 1, 2**62, size + 4])
    elif operation == "bytes-prefix" and chunks:
        damaged = rng.randrange(len(chunks))
        chunks[damaged] = _damage_binary(rng, chunks[damaged], "BYTES")
    header = to_json(document).encode()
    payload = b"".join(chunks)
    length = str(len(header))
    if operation == "length":
        length = rng.choice(
            [
                str(len(header) + rng.choice([-2, -1, 1, 5])),
                "0",
                str(10**30),
                "-1",
                "abc",
                "",
                "+5",
                "0x10",
                "1_0",
                "9" * 5000,
                "0" * 5000 + "1",
                str(len(header) + len(payload) + 1),
            ]
        )
    body = header + payload
    if operation == "body":
        body = header + _damage_binary(rng, payload, "") if rng.random() < 0.7 else _damage_binary(rng, body, "")
    return RestCase(_odd_path(rng, seed.model), body, {HEADER_LENGTH: length})


def _damage_binary(rng: random.Random, data: bytes, datatype: str) -> bytes:
    operation = rng.choice(["cut", "extend", "flip", "random"] + (["prefix"] * 3 if datatype == "BYTES" else []))
    if operation == "cut" and data:
        return data[: rng.randrange(len(data))]
    if operation == "extend":
        return data + rng.randbytes(rng.choice([1, 3, 4, 100]))
    if operation == "flip" and data:
        damaged = bytearray(data)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        return bytes(damaged)
    if operation == "prefix":
        # a length prefix that lies: huge, big-endian, or past the end
        if len(data) >= 4:
            return rng.choice([struct.pack("<I", 2**32 - 1), struct.pack(">I", 3), struct.pack("<I", len(data))]) + data[4:]
        return struct.pack("<I", rng.choice([1, 2**31])) + data
    return rng.randbytes(rng.choice([0, 1, 4, 7, 64]))


# gRPC: RPCs that only read (a random message to RepositoryModelUnload could unload a model)
READ_ONLY_RPCS = {
    "ServerLive": pb.ServerLiveRequest,
    "ServerReady": pb.ServerReadyRequest,
    "ModelReady": pb.ModelReadyRequest,
    "ServerMetadata": pb.ServerMetadataRequest,
    "ModelMetadata": pb.ModelMetadataRequest,
    "ModelConfig": pb.ModelConfigRequest,
    "ModelStatistics": pb.ModelStatisticsRequest,
    "RepositoryIndex": pb.RepositoryIndexRequest,
    "ModelInfer": pb.ModelInferRequest,
}
SERVICE = "/inference.GRPCInferenceService/"


@dataclass
class GrpcCase:
    rpc: str  # a unary RPC, or ModelStreamInfer
    messages: list[bytes]  # serialised (or not even that): one for a unary RPC

    def describe(self) -> str:
        shown = []
        for raw in self.messages:
            try:
                shown.append(str(pb.ModelInferRequest.FromString(raw))[:600] if self.rpc in ("ModelInfer", "ModelStreamInfer") else raw[:600])
            except Exception:
                shown.append(f"unparsable {raw[:600]!r}")
        return f"{self.rpc}: {shown}"


def infer_message(seed: Seed, typed: bool) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=seed.model, id=seed.id or "")
    for name, datatype, shape, values in seed.tensors:
        item = message.inputs.add(name=name, datatype=datatype, shape=shape)
        if typed and datatype != "FP16":
            getattr(item.contents, CONTENTS[datatype]).extend(v.encode() if datatype == "BYTES" else v for v in values)
    if not typed or any(t[1] == "FP16" for t in seed.tensors):
        for item in message.inputs:
            item.ClearField("contents")
        message.raw_input_contents.extend(_raw(random.Random(0), t[1], t[3]) for t in seed.tensors)
    for key, value in seed.parameters.items():
        _set_parameter(message.parameters[key], value)
    for output in seed.outputs or ():
        message.outputs.add(name=output["name"])
    return message


def _set_parameter(parameter, value) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def _odd_parameter(rng: random.Random, parameter) -> None:
    choice = rng.randrange(5)
    if choice == 0:
        parameter.bool_param = rng.random() < 0.5
    elif choice == 1:
        parameter.int64_param = rng.choice([-1, 0, 2**63 - 1, -(2**63)])
    elif choice == 2:
        parameter.uint64_param = rng.choice([0, 2**64 - 1])
    elif choice == 3:
        parameter.double_param = rng.choice([float("nan"), float("inf"), -0.0, 1e308])
    else:
        parameter.string_param = rng.choice(["", "np", "x" * 10_000, "é\x00"])


def _odd_string(rng: random.Random) -> str:
    return rng.choice(["", "x", "echo", "declared", "x" * 10_000, "é€😀", "\x00", "a\nb", "FP32", "../x"])


def mutate_message(rng: random.Random, message: pb.ModelInferRequest) -> None:
    """1-3 field-level mutations of a ModelInferRequest, in place."""
    for _ in range(rng.choice([1, 1, 2, 3])):
        operation = rng.choice(
            ["model", "version", "id", "drop-input", "dup-input", "swap", "name", "datatype", "datatype", "shape", "shape",
             "contents", "contents", "raw-count", "raw-bytes", "raw-bytes", "parameter", "output", "clear"]
        )  # fmt: skip
        inputs = message.inputs
        item = rng.choice(inputs) if inputs else None
        if operation == "model":
            message.model_name = _odd_string(rng)
        elif operation == "version":
            message.model_version = rng.choice(["1", "0", "x" * 1000, "é"])
        elif operation == "id":
            message.id = _odd_string(rng)
        elif operation == "drop-input" and inputs:
            del inputs[rng.randrange(len(inputs))]
        elif operation == "dup-input" and item is not None:
            inputs.add().CopyFrom(item)
        elif operation == "swap" and len(inputs) > 1:
            first, second = copy.deepcopy(inputs[0]), copy.deepcopy(inputs[1])
            inputs[0].CopyFrom(second)
            inputs[1].CopyFrom(first)
        elif operation == "name" and item is not None:
            item.name = _odd_string(rng)
        elif operation == "datatype" and item is not None:
            item.datatype = rng.choice(DATATYPES + ["BF16", "fp32", "", "x" * 10_000, "STRING"])
        elif operation == "shape" and item is not None:
            del item.shape[:]
            item.shape.extend(rng.choice(
                [[], [0], [-1], [2**62, 2**62], [2147483648, 4611686018427387904, 0], [1] * 40, [2**63 - 1], [-(2**63)], [3, 0, 5], [10**9],
                 [2**40, 0]]
            ))  # fmt: skip
        elif operation == "contents" and item is not None:
            contents = item.contents
            field_name = rng.choice(list(set(CONTENTS.values())))
            values = {
                "bool_contents": [True, False],
                "int_contents": [2**31 - 1, -(2**31), 300, -129],
                "int64_contents": [2**63 - 1, -(2**63)],
                "uint_contents": [2**32 - 1, 256],
                "uint64_contents": [2**64 - 1],
                "fp32_contents": [float("nan"), 3.4e38, -0.0],
                "fp64_contents": [float("inf"), 1e308],
                "bytes_contents": [b"", b"\xff\xfe", b"x" * 1000],
            }[field_name]
            getattr(contents, field_name).extend(rng.choice(values) for _ in range(rng.choice([0, 1, 2, 7, 1000])))
        elif operation == "raw-count":
            raw = message.raw_input_contents
            if raw and rng.random() < 0.5:
                del raw[rng.randrange(len(raw))]
            else:
                raw.append(rng.randbytes(rng.choice([0, 4, 8])))
        elif operation == "raw-bytes" and message.raw_input_contents:
            index = rng.randrange(len(message.raw_input_contents))
            message.raw_input_contents[index] = _damage_binary(rng, message.raw_input_contents[index], "BYTES")
        elif operation == "parameter":
            target = rng.choice([message.parameters, *(i.parameters for i in inputs), *(o.parameters for o in message.outputs)])
            key = rng.choice(["content_type", "binary_data", "binary_data_output", "binary_data_size", "headers", "x" * 1000, "", "n"])
            _odd_parameter(rng, target[key])
        elif operation == "output":
            message.outputs.add(name=_odd_string(rng) if rng.random() < 0.7 else (item.name if item is not None else ""))
        elif operation == "clear":
            message.ClearField(rng.choice(["inputs", "raw_input_contents", "outputs", "parameters", "model_name"]))


def grpc_case(rng: random.Random) -> GrpcCase:
    choice = rng.random()
    if choice < 0.12:
        # random bytes as the message of a read-only RPC
        rpc = rng.choice(list(READ_ONLY_RPCS))
        return GrpcCase(rpc, [rng.randbytes(rng.choice([1, 3, 10, 100, 1000]))])
    seed = valid_seed(rng)
    message = infer_message(seed, typed=rng.random() < 0.5)
    valid = message.SerializeToString()
    while message.SerializeToString() == valid:
        mutate_message(rng, message)
    raw = message.SerializeToString()
    if choice < 0.25:
        raw = _damage_binary(rng, raw, "")  # a valid message's bytes, damaged
    if choice > 0.9:
        # a stream: the case's message among valid ones
        others = [infer_message(valid_seed(rng), typed=False).SerializeToString() for _ in range(rng.choice([0, 1, 2]))]
        messages = others + [raw]
        rng.shuffle(messages)
        return GrpcCase("ModelStreamInfer", messages)
    return GrpcCase("ModelInfer", [raw])


def case(door: str, index: int, seed: int = DEFAULT_SEED) -> RestCase | GrpcCase:
    rng = random.Random(f"{seed}:{door}:{index}")
    return {"rest-json": rest_json_case, "rest-binary": rest_binary_case, "grpc": grpc_case}[door](rng)


# --- sending them, and what is acceptable ------------------------------------------------------


# the client's fault is a 4xx; a refused body may also be a 413 (too large) or a 405
def rest_acceptable(status: int) -> bool:
    return status < 500


GRPC_ACCEPTABLE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def send_rest(session: requests.Session, url: str, rest_case: RestCase, timeout: float = 30) -> tuple[int, str]:
    response = session.post(url + rest_case.path, data=rest_case.body, headers=rest_case.headers, timeout=timeout)
    return response.status_code, response.text[:500]


def send_grpc(channel: grpc.Channel, grpc_case_: GrpcCase, timeout: float = 30) -> list[tuple[grpc.StatusCode, str]]:
    """The status of each answer: one for a unary RPC; for a stream, OK per reply and the stream's own
    status (the stream's error_message replies count by the gateway's metrics, not here)."""
    identity = lambda data: data  # noqa: E731
    path = SERVICE + grpc_case_.rpc
    try:
        if grpc_case_.rpc == "ModelStreamInfer":
            call = channel.stream_stream(path, request_serializer=identity, response_deserializer=identity)
            replies = list(call(iter(grpc_case_.messages), timeout=timeout))
            return [(grpc.StatusCode.OK, "") for _ in replies]
        call = channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)
        call(grpc_case_.messages[0], timeout=timeout)
        return [(grpc.StatusCode.OK, "")]
    except grpc.RpcError as exc:
        return [(exc.code(), exc.details() or "")]


def main() -> None:
    parser = argparse.ArgumentParser(description="print one fuzz case (to reproduce a failure of tests/test_fuzz.py)")
    parser.add_argument("door", choices=DOORS)
    parser.add_argument("index", type=int)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    print(case(args.door, args.index, args.seed).describe())


if __name__ == "__main__":
    main()
