"""The V2 gRPC front door (package `inference`, service `GRPCInferenceService`).

Process layout: `gateway start` runs ONE front-door process. Sanic owns its
event loop (uvloop); the REST server and this gRPC server (`grpc.aio`) both
run on that loop, started in a `before_server_start` listener and stopped
gracefully from a `before_server_stop` listener, while Sanic drains REST
(gateway/frontdoor/server.py). Both call
the same `DataPlane`, which hands requests to the model worker processes;
nothing about models is decided here.

    clients --V2 REST--> Sanic  \\
                                  DataPlane --ZeroMQ + shared memory--> worker processes
    clients --V2 gRPC--> grpc.aio /
    (one process, one uvloop loop)

With several Sanic workers each would bind the gRPC port; the gateway runs
Sanic in a single process, and the port is bound without SO_REUSEPORT so a
second gateway on the same port fails loudly instead of sharing it.

Modules: `convert` (ModelInferRequest <-> wire.request.WireRequest/WireResponse),
`server` (the V2 servicer, start/stop), `health` (grpc.health.v1.Health: Kubernetes
gRPC probes), `reflection` (server reflection: grpcurl), `handlers` (registration with
our deserializers). The message and stub modules in `gateway/protocol/generated/` are
generated from protos/*.proto by scripts/generate_stubs.py, into a private descriptor
pool, and committed.
"""

import os

# The gateway forks only to exec model workers; gRPC's fork handlers are not needed there, and with
# them every worker spawn logs "Other threads are currently calling into gRPC, skipping fork() handlers".
# (Read when grpc is first imported; set GRPC_ENABLE_FORK_SUPPORT yourself to override.)
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
