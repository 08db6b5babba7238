"""Method handlers of a generated service, registered with a deserializer of ours.

A message that does not parse is the client's fault (INVALID_ARGUMENT), where grpcio's
own deserialization would answer UNKNOWN before any handler runs: the handler receives
a `Malformed` in its place and turns it into the error (`check_parsed`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, Optional

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from ...errors import BadRequest


class Malformed:
    """What our deserializer makes of bytes that are not a valid message of the RPC's request type."""

    def __init__(self, message_type: type[Message], error: DecodeError):
        self.error = BadRequest(f"the request is not a valid {message_type.DESCRIPTOR.full_name} message: {error}")


def _deserializer(message_type) -> Callable[[bytes], object]:
    def deserialize(data: bytes):
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Malformed(message_type, exc)

    return deserialize


def authorization(context: grpc.aio.ServicerContext) -> Optional[str]:
    """The call's `authorization` metadata: gRPC's form of the REST header (gateway/frontdoor/access.py)."""
    return dict(context.invocation_metadata() or ()).get("authorization")


def check_parsed(request) -> None:
    if isinstance(request, Malformed):
        raise request.error


def method_handlers(
    servicer: object,
    service: ServiceDescriptor,
    messages: ModuleType,
    serializers: Optional[dict[str, Callable]] = None,
    served_as: Optional[str] = None,
) -> grpc.GenericRpcHandler:
    """The service's handlers, from its descriptor (as the generated registration builds them), calling the
    servicer's methods of the same names; `serializers` replaces the answer's serializer of some methods,
    `served_as` the service's full name in the RPC paths."""
    handlers = {}
    for method in service.methods:
        request, response = getattr(messages, method.input_type.name), getattr(messages, method.output_type.name)
        if method.client_streaming:
            handler = grpc.stream_stream_rpc_method_handler
        elif method.server_streaming:
            handler = grpc.unary_stream_rpc_method_handler
        else:
            handler = grpc.unary_unary_rpc_method_handler
        handlers[method.name] = handler(
            getattr(servicer, method.name),
            request_deserializer=_deserializer(request),
            response_serializer=(serializers or {}).get(method.name, response.SerializeToString),
        )
    return grpc.method_handlers_generic_handler(served_as or service.full_name, handlers)
