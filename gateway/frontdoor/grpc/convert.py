"""ModelInferRequest -> wire.request.WireRequest, and WireResponse -> ModelInferResponse.

Inputs arrive either all in `raw_input_contents` (one entry per input, in
order; BYTES elements 4-byte little-endian length-prefixed) or all as typed
`contents`. Raw inputs become numpy views of the received bytes (no copy).
Outputs always go back in `raw_output_contents`, as Triton does and as
tritonclient expects. Sizes are checked before anything is allocated, with
the same helpers as REST.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson

from ...errors import BadRequest, shown
from ...protocol import CONTENTS_FIELD
from ...protocol.generated import inference_pb2 as pb
from ...wire.datatypes import DataBuilder, element_count
from ...wire.request import RequestedOutput, Tensor, WireRequest, WireResponse, check_parameters, raw_bytes
from ..inputs import Declared, RequestInputs

_INT64 = (-(2**63), 2**63 - 1)

# Triton's decoupled streams: a request with this parameter true (tritonclient's enable_empty_final_response)
# is answered in a stream by its responses, each with FINAL_RESPONSE false, then an empty one with it true
EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"
FINAL_RESPONSE = "triton_final_response"


# --- parameters: InferParameter oneof bool/int64/string/double/uint64 <-> Python values


def parameters_from_pb(parameters) -> dict[str, Any]:
    out = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def parameters_to_pb(target, parameters: dict[str, Any]) -> None:
    """Fill a map<string, InferParameter>. None is left out; lists and dicts go as JSON strings."""
    for key, value in parameters.items():
        if value is None:
            continue
        param = target[key]
        if isinstance(value, (bool, np.bool_)):
            param.bool_param = bool(value)
        elif isinstance(value, (int, np.integer)):
            value = int(value)
            if _INT64[0] <= value <= _INT64[1]:
                param.int64_param = value
            elif 0 <= value < 2**64:
                param.uint64_param = value
            else:
                param.string_param = str(value)
        elif isinstance(value, (float, np.floating)):
            param.double_param = float(value)
        elif isinstance(value, str):
            param.string_param = value
        elif isinstance(value, bytes):
            param.string_param = value.decode(errors="replace")
        else:
            param.string_param = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


# --- requests


def _checked_parameters(parameters, where: str) -> dict[str, Any]:
    return check_parameters(parameters_from_pb(parameters), where)


# typed contents of more elements than this are converted this many at a time, between yields
CONTENTS_STEP = 65536


def parse_infer_request(message: pb.ModelInferRequest, max_tensor_bytes: int) -> tuple[WireRequest, list[Tensor]]:
    """The request, and the tensors whose typed contents hold more than CONTENTS_STEP elements:
    their data is converted by `convert_contents` (the request checked first)."""
    if not message.inputs:
        raise BadRequest("inputs must be a non-empty list")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs: it needs one per input, in order")
    built = RequestInputs(max_tensor_bytes)
    pending = []
    for i, item in enumerate(message.inputs):
        if not item.name:
            raise BadRequest(f"input {i} needs a name")
        declared = built.declare(item.name, item.datatype, list(item.shape))
        parameters = _checked_parameters(item.parameters, declared.where)
        if raw:
            if item.HasField("contents"):
                raise BadRequest(f"{declared.where} has contents, but the request uses raw_input_contents: use one or the other for every input")
            built.from_raw(declared, raw[i], parameters)
        else:
            values = _contents(item, declared)
            if values is None:
                pending.append(built.later(declared, parameters))
            else:
                built.from_json(declared, values, parameters)
    tensors = built.finish()
    outputs = [RequestedOutput(o.name, _checked_parameters(o.parameters, f"output {shown(o.name)}")) for o in message.outputs]
    request = WireRequest(
        model_name=message.model_name,
        model_version=message.model_version or None,
        id=message.id,
        inputs=tensors,
        parameters=_checked_parameters(message.parameters, "the request"),
        outputs=outputs or None,
        from_grpc=True,
    )
    return request, pending


async def convert_contents(message: pb.ModelInferRequest, pending: list[Tensor], max_tensor_bytes: int) -> None:
    """The data of the tensors `parse_infer_request` left pending, CONTENTS_STEP elements at a time."""
    items = {item.name: item for item in message.inputs}
    for tensor in pending:
        contents = getattr(items[tensor.name].contents, CONTENTS_FIELD[tensor.datatype])
        builder = DataBuilder(tensor.datatype, tensor.shape, f"input {shown(tensor.name)}", max_tensor_bytes)
        for start in range(0, len(contents), CONTENTS_STEP):
            builder.add(contents[start : start + CONTENTS_STEP])
            await asyncio.sleep(0)
        tensor.data = builder.finish()


def _contents(item, declared: Declared) -> list | None:
    """The typed contents of an input, as values of its datatype's field (converted by the rules of
    JSON numbers: integers range-checked, no silent wrap-around); None when they are more than
    CONTENTS_STEP: converted by convert_contents, a step at a time."""
    datatype, shape, where = declared.datatype, declared.shape, declared.where
    field = CONTENTS_FIELD.get(datatype)
    used = [descriptor.name for descriptor, _ in item.contents.ListFields()]
    if not used and element_count(shape, where) == 0:
        return []  # no elements need no data, whatever the datatype
    if field is None:
        raise BadRequest(f"{where}: {datatype} has no typed contents field; send it in raw_input_contents")
    if any(name != field for name in used):
        raise BadRequest(f"{where}: {datatype} data goes in contents.{field}, got contents.{', contents.'.join(used)}")
    if not used:
        raise BadRequest(f"{where} has no data: send contents.{field} or raw_input_contents")
    contents = getattr(item.contents, field)
    count = element_count(shape, where)
    if len(contents) != count:
        raise BadRequest(f"{where}: data holds {len(contents)} elements, shape {shape} needs {count}")
    return None if count > CONTENTS_STEP else list(contents)


# --- responses


# A protobuf message may be written in pieces: these fields are appended to a serialized message as
# (tag, length, bytes), each tag being the field's number and wire type 2 (length-delimited).
_RAW_OUTPUT_CONTENTS = bytes([pb.ModelInferResponse.RAW_OUTPUT_CONTENTS_FIELD_NUMBER << 3 | 2])
_INFER_RESPONSE = bytes([pb.ModelStreamInferResponse.INFER_RESPONSE_FIELD_NUMBER << 3 | 2])


def _length(value: int) -> bytes:
    """A protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def render_infer_response(response: WireResponse, not_final: bool = False) -> bytes:
    """The serialized ModelInferResponse, rendered while the outputs may still view a worker's shared
    memory: the message without its raw outputs, then each output's bytes as a raw_output_contents
    field, so that they are copied once, into the answer (a message, then its serialization, would
    copy them twice more). `not_final`: a stream's response marked as not its request's last
    (FINAL_RESPONSE false: an empty final response follows)."""
    message = pb.ModelInferResponse(model_name=response.model_name, model_version=response.model_version or "", id=response.id)
    # parameters.headers are HTTP headers for a REST answer (as MLServer's, and KServe's response_headers): gRPC has none
    parameters = {k: v for k, v in response.parameters.items() if k != "headers"}
    if not_final:
        parameters[FINAL_RESPONSE] = False
    parameters_to_pb(message.parameters, parameters)
    parts: list[bytes | bytearray | memoryview] = [b""]
    for tensor in response.outputs:
        output = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=[int(d) for d in tensor.shape])
        parameters_to_pb(output.parameters, tensor.parameters)
        raw = raw_bytes(tensor)
        parts += [_RAW_OUTPUT_CONTENTS, _length(len(raw)), raw]
    parts[0] = message.SerializeToString()
    return b"".join(parts)


def stream_reply(serialized_response: bytes) -> bytes:
    """The serialized ModelStreamInferResponse around a serialized ModelInferResponse."""
    return b"".join([_INFER_RESPONSE, _length(len(serialized_response)), serialized_response])


def final_stream_reply(request: pb.ModelInferRequest) -> bytes:
    """Triton's empty final response of a request that asked for it (EMPTY_FINAL_RESPONSE): no outputs,
    the request's id, and `triton_final_response` true."""
    message = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
    message.parameters[FINAL_RESPONSE].bool_param = True
    return stream_reply(message.SerializeToString())


def serialize(message: Any) -> bytes:
    """The inference RPCs' answer serializer: answers rendered above are serialized already."""
    return message if type(message) is bytes else message.SerializeToString()


def render_metadata(metadata: dict) -> pb.ModelMetadataResponse:
    def tensors(items) -> list:
        return [pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in items or ()]

    return pb.ModelMetadataResponse(
        name=metadata.get("name", ""),
        versions=[str(v) for v in metadata.get("versions") or ()],
        platform=metadata.get("platform") or "",
        inputs=tensors(metadata.get("inputs")),
        outputs=tensors(metadata.get("outputs")),
    )


def render_config(metadata: dict) -> pb.ModelConfig:
    """Triton's ModelConfig from V2 metadata. max_batch_size 0: dims are the full shapes (batch included)."""

    def data_type(datatype: str) -> pb.DataType:
        return pb.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")

    return pb.ModelConfig(
        name=metadata.get("name", ""),
        platform=metadata.get("platform") or "",
        max_batch_size=0,
        input=[pb.ModelInput(name=t["name"], data_type=data_type(t["datatype"]), dims=t["shape"]) for t in metadata.get("inputs") or ()],
        output=[pb.ModelOutput(name=t["name"], data_type=data_type(t["datatype"]), dims=t["shape"]) for t in metadata.get("outputs") or ()],
    )
