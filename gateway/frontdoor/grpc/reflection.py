"""gRPC server reflection (grpc.reflection.v1.ServerReflection), over our descriptor pool.

What `grpcurl -plaintext HOST:PORT list` and `describe` use. Our generated messages live in
a private descriptor pool (generated/__init__.py, scripts/generate_stubs.py), so the
descriptors served are read from that pool: the default pool, which grpcio-reflection reads
unless told otherwise, may hold tritonclient's or MLServer's copy of the same `inference`
names, or none. The older name grpc.reflection.v1alpha.ServerReflection (grpcurl before 1.9,
grpc_cli) is served too, with the same messages, which are the same on the wire; only v1 is
listed.

Each request gets one answer on the stream; a name that is not found is an ErrorResponse
(NOT_FOUND) on the stream, not the end of it, as the protocol says.
"""

from __future__ import annotations

from typing import AsyncIterator, Iterator

import grpc
from google.protobuf.descriptor import FileDescriptor

from ...protocol.generated import POOL
from ...protocol.generated import reflection_pb2 as pb
from .handlers import Malformed, method_handlers

SERVICE = "grpc.reflection.v1.ServerReflection"
ALPHA_SERVICE = "grpc.reflection.v1alpha.ServerReflection"


def _with_imports(file: FileDescriptor) -> Iterator[FileDescriptor]:
    """The file first, then every file it imports, directly or not, once each."""
    seen, pending = set(), [file]
    while pending:
        file = pending.pop(0)
        if file.name not in seen:
            seen.add(file.name)
            yield file
            pending.extend(file.dependencies)


class ReflectionServicer:
    services = (SERVICE,)

    def __init__(self, services: list[str]):
        self.listed = pb.ListServiceResponse(service=[pb.ServiceResponse(name=name) for name in services])

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        service = pb.DESCRIPTOR.services_by_name["ServerReflection"]
        return [method_handlers(self, service, pb), method_handlers(self, service, pb, served_as=ALPHA_SERVICE)]

    async def ServerReflectionInfo(self, requests, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)

    def answer(self, request: pb.ServerReflectionRequest | Malformed) -> pb.ServerReflectionResponse:
        if isinstance(request, Malformed):
            return _error(grpc.StatusCode.INVALID_ARGUMENT, request.error.message)
        asked = request.WhichOneof("message_request")
        answer = pb.ServerReflectionResponse(valid_host=request.host, original_request=request)
        try:
            if asked == "list_services":
                answer.list_services_response.CopyFrom(self.listed)
            elif asked == "file_by_filename":
                answer.file_descriptor_response.CopyFrom(_files(POOL.FindFileByName(request.file_by_filename)))
            elif asked == "file_containing_symbol":
                answer.file_descriptor_response.CopyFrom(_files(_file_containing(request.file_containing_symbol)))
            elif asked == "file_containing_extension":
                wanted = request.file_containing_extension
                extension = POOL.FindExtensionByNumber(POOL.FindMessageTypeByName(wanted.containing_type), wanted.extension_number)
                answer.file_descriptor_response.CopyFrom(_files(extension.file))
            elif asked == "all_extension_numbers_of_type":
                message = POOL.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = [extension.number for extension in POOL.FindAllExtensions(message)]
                answer.all_extension_numbers_response.CopyFrom(pb.ExtensionNumberResponse(base_type_name=message.full_name, extension_number=numbers))
            else:
                answer.error_response.CopyFrom(_error(grpc.StatusCode.INVALID_ARGUMENT, "the request asks for nothing this server knows").error_response)
        except KeyError as exc:  # the pool's answer for a name it does not hold
            answer.error_response.CopyFrom(_error(grpc.StatusCode.NOT_FOUND, str(exc.args[0] if exc.args else exc)).error_response)
        return answer


def _file_containing(symbol: str) -> FileDescriptor:
    try:
        return POOL.FindFileContainingSymbol(symbol)
    except KeyError:
        # a method (`grpcurl describe Service.Method`): protobuf's upb pool finds services, not their methods
        service, _, method = symbol.rpartition(".")
        try:
            found = POOL.FindServiceByName(service)
        except KeyError:
            found = None
        if found is None or method not in found.methods_by_name:
            raise KeyError(f"Couldn't find symbol {symbol}") from None
        return found.file


def _files(file: FileDescriptor) -> pb.FileDescriptorResponse:
    return pb.FileDescriptorResponse(file_descriptor_proto=[f.serialized_pb for f in _with_imports(file)])


def _error(code: grpc.StatusCode, message: str) -> pb.ServerReflectionResponse:
    return pb.ServerReflectionResponse(error_response=pb.ErrorResponse(error_code=code.value[0], error_message=message))
