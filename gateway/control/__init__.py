"""The control plane, in the front-door process: which models exist and in which state, the worker
processes that serve them, each model's queue and batches, and the measurements.

- `models`: the model table (states, readiness, metadata) and the repository operations;
- `pool`: a model's queue, its workers and the one ROUTER socket to them (`Router`);
- `batching`: which requests may share a call, merged and split along axis 0;
- `stats`: the Prometheus registry and the statistics extension's counters.

It imports the wire and the SDK, never the front door (`gateway.frontdoor`).
"""
