"""Locust load test for any Open Inference Protocol (KServe V2) server, over REST or gRPC.

Two user classes; pick one by name on the command line:
  V2RestUser  POST /v2/models/{model}/infer, JSON body, or the binary tensor extension with --binary
  V2GrpcUser  inference.GRPCInferenceService/ModelInfer with raw_input_contents (no generated stubs)

Options (locust custom arguments; also settable as LOCUST_<NAME> environment variables or in
the web UI's "Custom parameters"):
  --model NAME          model to call (required)
  --model-version V     optional version
  --input-name NAME     input tensor name     (default: the model's first input, from GET /v2/models/NAME)
  --shape DIMS          one request's input shape WITHOUT the batch dimension, e.g. 16 or 3,224,224
                        (default: from the metadata, -1 read as 1)
  --datatype TYPE       V2 datatype, e.g. FP32, INT64, BYTES (default: from the metadata)
  --batch N             rows per request, the leading dimension (default 1)
  --binary              REST: send the input with the binary extension and ask for binary outputs
  --grpc-target H:P     gRPC address (default: the --host's hostname, port 8081)

The request is built once per user and the same bytes are sent every time. Metadata is read
over REST from --host, so give --host even for gRPC, or give --input-name, --shape and
--datatype. Load only servers you run yourself, on 127.0.0.1 in this project's machines.

Examples (pip install -e '.[bench]' or pip install locust grpcio numpy):
  locust -f scripts/locustfile.py V2RestUser --host http://127.0.0.1:8080 --model iris-mlp \\
      --headless -u 8 -r 8 -t 20s
  locust -f scripts/locustfile.py V2RestUser --host http://127.0.0.1:8080 --model echo \\
      --shape 262144 --datatype FP32 --binary --headless -u 4 -r 4 -t 20s
  locust -f scripts/locustfile.py V2GrpcUser --host http://127.0.0.1:8080 --grpc-target 127.0.0.1:8081 \\
      --model iris-mlp --headless -u 8 -r 8 -t 20s

Read the results as locust shows them: requests/s ("RPS"; multiply by --batch for inferences/s),
the latency percentiles in ms, and failures with the server's message. Locust's own Python
overhead is far larger than scripts/loadgen.py's: on a small machine it limits the rate
before the server does; use loadgen.py to measure a server's limits.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loadgen  # noqa: E402  (scripts/loadgen.py: request encoding, metadata)
from locust import User, events, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402
from locust.exception import StopUser  # noqa: E402


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("V2 inference")
    group.add_argument("--model", type=str, default="", help="model to call (required)")
    group.add_argument("--model-version", type=str, default="", help="model version (optional)")
    group.add_argument("--input-name", type=str, default="", help="input name (default: from model metadata)")
    group.add_argument("--shape", type=str, default="", help="input shape without the batch dimension, e.g. 16 or 3,224,224 (default: from metadata)")
    group.add_argument("--datatype", type=str, default="", help="V2 datatype, e.g. FP32 (default: from metadata)")
    group.add_argument("--batch", type=int, default=1, help="rows per request")
    group.add_argument("--binary", action="store_true", default=False, help="REST: binary tensor extension for input and outputs")
    group.add_argument("--grpc-target", type=str, default="", help="gRPC host:port (default: --host's hostname, port 8081)")


def _request_spec(environment) -> dict:
    """Model, input name, full shape and datatype, with the metadata filling what is not given."""
    options = environment.parsed_options
    if not options.model:
        raise StopUser()  # nothing to do without --model; locust reports the users stopping
    name, datatype = options.input_name or None, options.datatype or None
    shape = loadgen._shape(options.shape) if options.shape else None
    if name is None or datatype is None or shape is None:
        metadata = loadgen.fetch_metadata(options.model, options.model_version or None, url=environment.host)
        declared = (metadata.get("inputs") or [{}])[0]
        name = name or declared.get("name")
        datatype = datatype or declared.get("datatype")
        if shape is None:
            dims = list(declared.get("shape") or [])
            if dims and dims[0] == -1:
                dims = dims[1:]
            shape = [1 if d == -1 else int(d) for d in dims]
    if not name or not datatype:
        raise loadgen.LoadgenError("give --input-name and --datatype: the model's metadata does not say")
    return {"model": options.model, "version": options.model_version or None, "name": name, "datatype": datatype, "shape": [options.batch, *shape]}


class V2RestUser(FastHttpUser):
    """V2 REST inference, JSON or binary extension."""

    abstract = False

    def on_start(self) -> None:
        spec = _request_spec(self.environment)
        binary = bool(self.environment.parsed_options.binary)
        data = loadgen.make_data(spec["shape"], spec["datatype"])
        self.body, header_length = loadgen.build_rest_body(spec["name"], spec["shape"], spec["datatype"], data, binary, binary)
        self.headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
        if header_length is not None:
            self.headers[loadgen.HEADER_LENGTH] = str(header_length)
        self.path = loadgen._infer_path(spec["model"], spec["version"])
        self.label = f"infer {spec['model']} {'binary' if binary else 'json'}"

    @task
    def infer(self) -> None:
        with self.client.post(self.path, data=self.body, headers=self.headers, name=self.label, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")


class V2GrpcUser(User):
    """V2 gRPC ModelInfer with raw_input_contents, through a generic unary-unary call."""

    def on_start(self) -> None:
        import grpc
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()  # let grpc's blocking calls yield to other locust users
        options = self.environment.parsed_options
        spec = _request_spec(self.environment)
        data = loadgen.make_data(spec["shape"], spec["datatype"])
        self.payload = loadgen.build_grpc_request(spec["model"], spec["version"], spec["name"], spec["shape"], spec["datatype"], data)
        target = options.grpc_target
        if not target:
            host = urllib.parse.urlsplit(self.environment.host or "http://127.0.0.1").hostname or "127.0.0.1"
            target = f"{host}:8081"
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        self.call = self.channel.unary_unary(loadgen.GRPC_SERVICE + "ModelInfer", request_serializer=None, response_deserializer=None)
        self.label = f"ModelInfer {spec['model']}"
        self.rpc_error = grpc.RpcError

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def infer(self) -> None:
        start = time.perf_counter()
        length, error = 0, None
        try:
            length = len(self.call(self.payload, timeout=60))
        except self.rpc_error as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.label,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=error,
            context={},
        )
