"""The front door: the process clients talk to.

- `server`: wires everything together and runs it (start, drain, stop);
- `dataplane`: the one dispatch path both protocols call;
- `rest/`: V2 REST (Sanic): `app` (routes), `body` (request and response bodies),
  `largejson` (JSON bodies of 1 MiB or more), `connection` (read deadlines), `apidoc/`;
- `grpc/`: V2 gRPC (grpc.aio): `server` (the servicer), `convert` (messages <-> internal form).

Nothing below `gateway.frontdoor` is imported by the control plane, the wire or a worker.
"""
