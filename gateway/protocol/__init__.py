"""The Open Inference Protocol's own forms, for whoever speaks it: the gRPC messages and service
stubs generated from protos/inference.proto (`generated/`, by scripts/generate_stubs.py).

The SDK (`gateway.kserve`'s InferRequest.to_grpc / from_grpc) and the gRPC front door both use
them, so they live here rather than under either; so do the protocol's names that both use.
"""

# the binary tensor data extension: the length of the JSON header that precedes the raw tensors
HEADER_LENGTH = "Inference-Header-Content-Length"

# the typed-contents field of each datatype; FP16 (and BF16) travel raw only
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
