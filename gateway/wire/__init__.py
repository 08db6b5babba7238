"""What the front door and the worker processes share: the wire between them.

- `messages`: the ZeroMQ messages (kinds, headers, tensors placed in shared memory or inline);
- `arena`: the shared-memory arenas (memfd) that carry tensor bytes;
- `sockets`: a ZeroMQ socket on an asyncio loop;
- `request`: the internal request form (`WireRequest`, its tensors);
- `datatypes`: the V2 datatypes, their checks, and tensor data from JSON values or raw bytes;
- `packed`: BYTES tensors in their wire form (4-byte length, then the bytes), packed and unpacked.

Nothing here imports the front door (`gateway.frontdoor`) or the control plane (`gateway.control`):
a worker imports this package, the SDK, `gateway.errors` and `gateway.logs`, and nothing else.
"""
