"""The Open Inference Protocol's own forms, for whoever speaks it: the gRPC messages and service
stubs generated from protos/inference.proto (`generated/`, by scripts/generate_stubs.py).

The SDK (`gateway.kserve`'s InferRequest.to_grpc / from_grpc) and the gRPC front door both use
them, so they live here rather than under either.
"""
