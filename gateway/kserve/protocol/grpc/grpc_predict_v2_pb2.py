"""KServe's gRPC messages (`kserve.protocol.grpc.grpc_predict_v2_pb2`): the gateway's own.

The gateway's `inference` proto (gateway/protocol/generated/inference_pb2) has KServe's
inference messages, with the same package, names and field numbers, so
`pb.ModelInferRequest`, `pb.ModelInferResponse`, `pb.InferParameter`,
`pb.InferTensorContents`, ... are byte-compatible with KServe's. Its repository
messages are Triton's (which the gateway serves), not KServe's variants.
"""

from ....protocol.generated.inference_pb2 import *  # noqa: F401,F403
