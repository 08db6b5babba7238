"""Compare gateway.kserve's wire bytes and decoded objects with KServe 0.21's (not part of the tests).

KServe stays out of the gateway's environment (its many dependencies would move the gateway's),
so the same cases run twice, each in an interpreter of its own, and the results are compared here:

    python -m venv /tmp/ksvenv && /tmp/ksvenv/bin/pip install kserve==0.21.0
    python scripts/kserve_crosscheck.py --kserve-python /tmp/ksvenv/bin/python

Each case prints "same" or what differs. Differences the gateway makes on purpose (see
gateway/kserve/protocol/infer_type.py) are listed in EXPECTED and reported as such.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# case -> why the gateway answers differently from KServe 0.21
EXPECTED = {
    "serialize U array": "KServe refuses numpy str arrays; the gateway serializes them as UTF-8",
    "request to_grpc mixed list+array": "KServe mixes raw and typed contents in one message (invalid V2); the gateway sends all raw",
    "request to_grpc FP16 list": "KServe refuses an FP16 list for gRPC; the gateway sends it raw",
    "request to_grpc FP16 json": "KServe refuses an FP16 list for gRPC; the gateway sends it raw",
    "request from_grpc FP16 json": "(the same FP16 list, sent raw by the gateway)",
    "request from_grpc->to_grpc FP16 json": "(the same FP16 list, sent raw by the gateway)",
    "request to_grpc nested list": "KServe fails on nested lists (TypeError); the gateway flattens them",
    "response to_grpc mixed list+array": "KServe mixes raw and typed contents in one message (invalid V2); the gateway sends all raw",
    "parameters float to_grpc": "KServe refuses float parameters; the gateway sends double_param",
    "parameters double/uint64 to_http": "KServe's InferParameter has no double_param/uint64_param (Triton's has); the gateway keeps them",
    "from_grpc raw -> to_rest": "KServe writes raw inputs without binary_data_size (the receiver cannot split the body); the gateway adds it",
    "from_bytes trailing bytes": "KServe ignores bytes after the last tensor; the gateway refuses the body",
    "from_bytes truncated": "KServe fails with a numpy ValueError; the gateway with InvalidInput",
    "zero-size binary to_rest": 'KServe sends a zero-element binary input as "data": null; the gateway as zero bytes with binary_data_size 0',
}


def load_sdk(which: str) -> SimpleNamespace:
    if which == "kserve":
        from kserve import errors
        from kserve.protocol import infer_type
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.utils import utils
    else:
        sys.path.insert(0, str(ROOT))
        from gateway.kserve import errors
        from gateway.kserve.protocol import infer_type
        from gateway.kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from gateway.kserve.utils import utils
    return SimpleNamespace(t=infer_type, pb=pb, errors=errors, utils=utils)


# --- canonical, picklable forms of what the SDKs return


def plain(value):
    """Protobuf maps and messages, numpy arrays and scalars as plain Python values."""
    if hasattr(value, "WhichOneof"):
        which = value.WhichOneof("parameter_choice")
        return getattr(value, which) if which else None
    if hasattr(value, "items"):
        return {k: plain(v) for k, v in sorted(value.items())}
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def tensor_form(tensor):
    return {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "datatype": tensor.datatype,
        "data": plain(tensor.data),
        "parameters": plain(tensor.parameters),
        "raw": None if tensor._raw_data is None else bytes(tensor._raw_data),
    }


def request_form(request):
    return {
        "id": request.id,
        "model_name": request.model_name,
        "parameters": plain(request.parameters),
        "inputs": [tensor_form(t) for t in request.inputs],
        "outputs": None if request.request_outputs is None else [(o.name, plain(o.parameters)) for o in request.request_outputs],
        "use_binary_outputs": request.use_binary_outputs,
    }


def response_form(response):
    return {
        "id": response.id,
        "model_name": response.model_name,
        "model_version": response.model_version,
        "parameters": plain(response.parameters),
        "outputs": [tensor_form(t) for t in response.outputs],
    }


def rest_form(result):
    body, json_length = result
    return (body if isinstance(body, bytes) else plain(body), json_length)


def grpc_form(message):
    return message.SerializeToString(deterministic=True)


# --- the cases

TENSORS = {
    "INT32": np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32),
    "INT64": np.array([2**40, -1], dtype=np.int64),
    "UINT8": np.array([0, 255, 7], dtype=np.uint8),
    "UINT64": np.array([2**63 + 5, 1], dtype=np.uint64),
    "INT8": np.array([-128, 127], dtype=np.int8),
    "UINT16": np.array([65535, 1], dtype=np.uint16),
    "BOOL": np.array([True, False, True]),
    "FP32": np.array([[1.5, -2.25], [3.1, 0.0]], dtype=np.float32),
    "FP64": np.array([1e-300, 2.5, -7.0], dtype=np.float64),
    "FP16": np.array([1.2, 2.2, 3.2, 65504.0], dtype=np.float16),
    "BYTES": np.array([b"cat", "d\u00f6g", b"", b"\x00\x01"], dtype=np.object_),
    "BYTES text": np.array([["a", "bb"], ["ccc", ""]], dtype=np.object_),
    "BYTES S": np.array([b"ab", b"c"], dtype="S2"),
}


def cases(sdk):
    t = sdk.t

    def infer_input(name, key, binary, parameters=None):
        array = TENSORS[key]
        tensor = t.InferInput(name, list(array.shape), "BYTES" if key.startswith("BYTES") else key, parameters=parameters)
        tensor.set_data_from_numpy(array, binary_data=binary)
        return tensor

    def infer_output(name, key, binary, parameters=None):
        array = TENSORS[key]
        tensor = t.InferOutput(name, list(array.shape), "BYTES" if key.startswith("BYTES") else key, parameters=parameters)
        tensor.set_data_from_numpy(array, binary_data=binary)
        return tensor

    out = {}

    def case(name):
        def record(fn):
            try:
                out[name] = ("ok", fn())
            except Exception as exc:  # the error type is part of the behaviour compared
                out[name] = ("error", type(exc).__name__)
            return fn

        return record

    # serialize_byte_tensor
    for key in ("BYTES", "BYTES text", "BYTES S"):
        case(f"serialize {key}")(lambda key=key: bytes(t.serialize_byte_tensor(TENSORS[key]).item()))
    case("serialize U array")(lambda: bytes(t.serialize_byte_tensor(np.array(["ab", "c"])).item()))
    case("serialize empty")(lambda: plain(t.serialize_byte_tensor(np.array([], dtype=np.object_))))
    case("deserialize")(lambda: plain(t.deserialize_bytes_tensor(b"\x03\x00\x00\x00cat\x00\x00\x00\x00\x01\x00\x00\x00z")))

    # each tensor alone, binary and JSON, through to_rest, from_bytes, to_grpc and from_grpc
    for key in TENSORS:
        for binary in (True, False):
            label = f"{key} {'binary' if binary else 'json'}"

            def request(key=key, binary=binary):
                return t.InferRequest("m", [infer_input("x", key, binary, {"note": "n"})], request_id="r1")

            case(f"request to_rest {label}")(lambda request=request: rest_form(request().to_rest()))
            case(f"request to_grpc {label}")(lambda request=request: grpc_form(request().to_grpc()))

            def from_bytes(request=request):
                body, length = request().to_rest()
                if length is None:
                    import orjson

                    body = orjson.dumps(body)
                    length = len(body)
                return request_form(t.InferRequest.from_bytes(body, length, "m"))

            case(f"request from_bytes {label}")(from_bytes)
            case(f"request from_grpc {label}")(
                lambda request=request: request_form(t.InferRequest.from_grpc(sdk.pb.ModelInferRequest.FromString(grpc_form(request().to_grpc()))))
            )
            case(f"request from_grpc->to_grpc {label}")(
                lambda request=request: grpc_form(t.InferRequest.from_grpc(sdk.pb.ModelInferRequest.FromString(grpc_form(request().to_grpc()))).to_grpc())
            )
            case(f"response to_rest {label}")(
                lambda key=key, binary=binary: rest_form(t.InferResponse("r1", "m", [infer_output("y", key, binary)], use_binary_outputs=binary).to_rest())
            )
            case(f"response to_grpc {label}")(
                lambda key=key, binary=binary: grpc_form(t.InferResponse("r1", "m", [infer_output("y", key, binary)], use_binary_outputs=binary).to_grpc())
            )
            case(f"response from_grpc {label}")(
                lambda key=key, binary=binary: response_form(
                    t.InferResponse.from_grpc(
                        sdk.pb.ModelInferResponse.FromString(
                            grpc_form(t.InferResponse("r1", "m", [infer_output("y", key, binary)], use_binary_outputs=binary).to_grpc())
                        )
                    )
                )
            )

            def response_from_bytes(key=key, binary=binary):
                body, length = t.InferResponse("r1", "m", [infer_output("y", key, binary)], use_binary_outputs=binary).to_rest()
                if length is None:
                    return response_form(t.InferResponse.from_rest(body))
                return response_form(t.InferResponse.from_bytes(body, length))

            case(f"response from_rest/from_bytes {label}")(response_from_bytes)

    # several inputs, some binary, with request and requested-output parameters
    def mixed_request():
        return t.InferRequest(
            "m",
            [infer_input("a", "INT32", False), infer_input("b", "BYTES", True, {"k": 2}), infer_input("c", "FP16", True)],
            request_id="r2",
            parameters={"s": "x", "b": True, "i": 7, "binary_data_output": True},
            request_outputs=[t.RequestedOutput("y", {"binary_data": True}), t.RequestedOutput("z")],
        )

    case("mixed request to_rest")(lambda: rest_form(mixed_request().to_rest()))
    case("mixed request from_bytes")(lambda: request_form(t.InferRequest.from_bytes(*mixed_request().to_rest(), "m")))
    case("request to_grpc mixed list+array")(
        lambda: grpc_form(
            t.InferRequest(
                "m", [t.InferInput("a", [2], "INT32", [1, 2]), t.InferInput("b", [2], "INT32", np.array([3, 4], dtype=np.int32))], request_id="r"
            ).to_grpc()
        )
    )
    case("request to_grpc lists")(
        lambda: grpc_form(
            t.InferRequest(
                "m", [t.InferInput("a", [2], "INT32", [1, 2]), t.InferInput("s", [2], "BYTES", ["x", b"y"])], request_id="r", parameters={"p": 1}
            ).to_grpc()
        )
    )
    case("request to_grpc FP16 list")(lambda: grpc_form(t.InferRequest("m", [t.InferInput("h", [2], "FP16", [1.0, 2.0])], request_id="r").to_grpc()))
    case("request to_grpc nested list")(
        lambda: grpc_form(t.InferRequest("m", [t.InferInput("a", [2, 2], "INT32", [[1, 2], [3, 4]])], request_id="r").to_grpc())
    )
    case("zero-size binary to_rest")(lambda: rest_form(t.InferRequest("m", [infer_input_empty(t)], request_id="r").to_rest()))

    # which binary setting wins for response outputs
    def response(requested, use_binary):
        outputs = [infer_output("y", "FP32", True), infer_output("z", "INT32", False), infer_output("w", "BYTES", True)]
        return t.InferResponse("r3", "m", outputs, use_binary_outputs=use_binary, requested_outputs=requested)

    for use_binary in (True, False):
        case(f"response all outputs use_binary={use_binary}")(lambda use_binary=use_binary: rest_form(response(None, use_binary).to_rest()))
        case(f"response requested use_binary={use_binary}")(
            lambda use_binary=use_binary: rest_form(
                response(
                    [t.RequestedOutput("w", {"binary_data": True}), t.RequestedOutput("y", {"binary_data": False}), t.RequestedOutput("z")], use_binary
                ).to_rest()
            )
        )
    case("response requested missing output")(lambda: rest_form(response([t.RequestedOutput("nope")], False).to_rest()))
    case("response FP16 json")(lambda: rest_form(t.InferResponse("r", "m", [infer_output("h", "FP16", False)]).to_rest()))
    case("response to_grpc FP16 makes all raw")(
        lambda: grpc_form(t.InferResponse("r", "m", [t.InferOutput("a", [2], "INT32", [1, 2]), infer_output("h", "FP16", False)]).to_grpc())
    )
    case("response to_grpc lists")(
        lambda: grpc_form(
            t.InferResponse("r", "m", [t.InferOutput("a", [2], "INT32", [1, 2]), t.InferOutput("s", [1], "BYTES", ["x"])], parameters={"q": "v"}).to_grpc()
        )
    )
    case("response to_grpc mixed list+array")(
        lambda: grpc_form(
            t.InferResponse("r", "m", [t.InferOutput("a", [2], "INT32", [1, 2]), t.InferOutput("b", [1], "FP32", np.array([1.5], dtype=np.float32))]).to_grpc()
        )
    )

    # parameters
    case("parameters to_grpc")(lambda: {k: v.SerializeToString() for k, v in t.to_grpc_parameters({"s": "x", "b": False, "i": -3}).items()})
    case("parameters float to_grpc")(lambda: {k: v.SerializeToString() for k, v in t.to_grpc_parameters({"f": 0.5}).items()})
    case("parameters double/uint64 to_http")(
        lambda: t.to_http_parameters(
            {"d": sdk.pb.InferParameter(double_param=0.5), "u": sdk.pb.InferParameter(uint64_param=2**63), "s": sdk.pb.InferParameter(string_param="x")}
        )
    )

    # use_binary_outputs
    def grpc_raw_request():
        """As tritonclient sends raw inputs: no binary_data_size parameter."""
        return sdk.pb.ModelInferRequest(
            model_name="m", id="r", inputs=[{"name": "x", "shape": [2], "datatype": "FP32"}], raw_input_contents=[TENSORS["FP32"][0].tobytes()]
        )

    case("use_binary_outputs grpc raw")(lambda: t.InferRequest.from_grpc(grpc_raw_request()).use_binary_outputs)
    case("use_binary_outputs grpc contents")(
        lambda: t.InferRequest.from_grpc(t.InferRequest("m", [t.InferInput("a", [1], "INT32", [1])], request_id="r").to_grpc()).use_binary_outputs
    )
    case("use_binary_outputs rest")(lambda: t.InferRequest("m", [], parameters={"binary_data_output": True}).use_binary_outputs)
    case("from_grpc raw -> to_rest")(lambda: rest_form(t.InferRequest.from_grpc(grpc_raw_request()).to_rest()))
    case("from_grpc raw -> as_numpy")(lambda: plain(t.InferRequest.from_grpc(grpc_raw_request()).inputs[0].as_numpy()))

    # REST bodies KServe and the gateway must refuse alike, or that differ on purpose
    header = b'{"id":"1","inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}]}'
    case("from_bytes ok")(lambda: request_form(t.InferRequest.from_bytes(header + b"\x01\x00\x00\x00\x02\x00\x00\x00", len(header), "m")))
    case("from_bytes trailing bytes")(lambda: request_form(t.InferRequest.from_bytes(header + b"\x01\x00\x00\x00\x02\x00\x00\x00\xff", len(header), "m")))
    case("from_bytes truncated")(lambda: request_form(t.InferRequest.from_bytes(header + b"\x01\x00\x00\x00", len(header), "m")))
    case("from_bytes bad json")(lambda: request_form(t.InferRequest.from_bytes(b'{"inputs": [', 12, "m")))
    case("from_bytes FP16 json")(
        lambda: request_form(t.InferRequest.from_bytes(b'{"inputs":[{"name":"h","shape":[1],"datatype":"FP16","data":[1]}]}', 66, "m"))
    )

    # equality as KServe defines it
    case("equality from_grpc round trip")(
        lambda: (
            t.InferRequest.from_grpc(t.InferRequest("m", [t.InferInput("a", [2], "INT32", [1, 2], {"p": "q"})], request_id="r").to_grpc())
            == t.InferRequest("m", [t.InferInput("a", [2], "INT32", [1, 2], {"p": "q"})], request_id="r", from_grpc=True, parameters={})
        )
    )
    case("equality outputs")(lambda: t.InferOutput("a", [1], "INT32", [1]) == t.InferOutput("a", [1], "INT32", [1], None))

    # KServe's model-server helpers
    case("get_predict_response dict")(lambda: sdk.utils.get_predict_response({"instances": [[1, 2]]}, np.array([[0.5, 1.5]]), "m"))
    case("get_predict_response v2")(
        lambda: rest_form(
            sdk.utils.get_predict_response(
                t.InferRequest("m", [t.InferInput("a", [1], "INT32", [1])], request_id="r", parameters={"binary_data_output": True}),
                np.array([1.5, 2.5], dtype=np.float32),
                "m",
            ).to_rest()
        )
    )
    case("get_predict_input v2")(lambda: plain(sdk.utils.get_predict_input(t.InferRequest("m", [t.InferInput("a", [2, 2], "FP32", [1, 2, 3, 4])]))))
    return out


def infer_input_empty(t):
    tensor = t.InferInput("e", [0], "INT32")
    tensor.set_data_from_numpy(np.zeros([0], dtype=np.int32), binary_data=True)
    return tensor


def proto_fields(pb) -> dict:
    """Every field (name, number, type, repeated) of the inference messages, nested ones included."""
    fields = {}

    def walk(descriptor):
        for field in descriptor.fields:
            repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
            fields[f"{descriptor.full_name}.{field.name}"] = (field.number, field.type, repeated)
        for nested in descriptor.nested_types:
            walk(nested)

    for name in ("ModelInferRequest", "ModelInferResponse", "InferParameter", "InferTensorContents"):
        walk(getattr(pb, name).DESCRIPTOR)
    return fields


ARGV = [
    "--workers",
    "3",
    "--enable_grpc",
    "false",
    "--enable_docs_url",
    "yes",
    "--event-loop",
    "uvloop",
    "--timeout-keep-alive",
    "5",
    "--predictor_protocol",
    "grpc-v2",
    "--predictor_use_ssl",
    "1",
    "--enable_predictor_health_check",
    "--model_name",
    "m",
]


def parser_form(which: str) -> dict:
    """The flags of model_server.parser (option strings, dest, default, choices, action) and two parses."""
    sys.argv = [sys.argv[0]]
    if which == "kserve":
        from kserve import model_server
    else:
        from gateway.kserve import model_server
    actions = {tuple(a.option_strings): (a.dest, a.default, a.choices, a.nargs, a.const, type(a).__name__) for a in model_server.parser._actions}
    return {"actions": actions, "defaults": vars(model_server.parser.parse_args([])), "parsed": vars(model_server.parser.parse_args(ARGV))}


def emit(which: str) -> None:
    sdk = load_sdk(which)
    sys.stdout.buffer.write(pickle.dumps({"cases": cases(sdk), "proto": proto_fields(sdk.pb), "parser": parser_form(which)}))


def run(python: str, which: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if which == "gateway" else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([python, __file__, "--emit", which], env=env, capture_output=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{which} run failed:\n{done.stderr.decode()}")
    return pickle.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kserve-python", default="/tmp/ksvenv/bin/python", help="a Python with kserve==0.21.0 installed")
    parser.add_argument("--emit", choices=["gateway", "kserve"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.emit:
        emit(options.emit)
        return
    ours, theirs = run(sys.executable, "gateway"), run(options.kserve_python, "kserve")
    # every field of KServe's messages must be in the gateway's, with its number and type
    proto_same = all(ours["proto"].get(name) == field for name, field in theirs["proto"].items())
    print(f"protobuf inference messages: {'KServe fields all present, same numbers and types' if proto_same else 'INCOMPATIBLE'}")
    for name in sorted(set(ours["proto"]) ^ set(theirs["proto"])):
        print(f"  only in {'gateway' if name in ours['proto'] else 'kserve'}: {name}")
    parser_same = ours["parser"] == theirs["parser"]
    print(f"model_server.parser: {'same flags, defaults and parses' if parser_same else 'DIFFERENT'}")
    if not parser_same:
        for key in ("actions", "defaults", "parsed"):
            if ours["parser"][key] != theirs["parser"][key]:
                print(f"    {key}: gateway {ours['parser'][key]}\n    {key}: kserve  {theirs['parser'][key]}")
    same = expected = unexpected = 0
    for name, result in ours["cases"].items():
        other = theirs["cases"].get(name)
        if result == other:
            same += 1
            continue
        if name in EXPECTED:
            expected += 1
            print(f"differs as intended  {name}: {EXPECTED[name]}\n    gateway {result!r:.200}\n    kserve  {other!r:.200}")
        else:
            unexpected += 1
            print(f"DIFFERS  {name}\n    gateway {result!r:.400}\n    kserve  {other!r:.400}")
    for name in EXPECTED:
        if name in ours["cases"] and ours["cases"][name] == theirs["cases"].get(name):
            print(f"note: {name} listed as a difference but both agree")
    print(f"{len(ours['cases'])} cases: {same} same, {expected} different as intended, {unexpected} unexpected differences")
    sys.exit(1 if unexpected or not proto_same or not parser_same else 0)


if __name__ == "__main__":
    main()
