"""Runtimes the tests serve (each through real worker processes)."""

import asyncio
import hashlib
import os
import time
from pathlib import Path

import numpy as np

from gateway import MLModel, metrics
from gateway.codecs import NumpyCodec
from gateway.kserve import InferOutput, InferResponse
from gateway.kserve import Model as KServeModel
from gateway.types import InferenceRequest, InferenceResponse, MetadataModelResponse, ResponseOutput


def echoed(model: MLModel, payload: InferenceRequest) -> InferenceResponse:
    return InferenceResponse(
        model_name=model.name,
        parameters={"echoed": len(payload.inputs)},
        outputs=[ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, parameters=i.parameters, data=i.data) for i in payload.inputs],
    )


def asked(payload: InferenceRequest, parameter: str) -> bool:
    """Whether the request sets `parameter` to true."""
    return payload.parameters is not None and (payload.parameters.model_extra or {}).get(parameter) is True


class Echo(MLModel):
    """Returns every input unchanged, under the same name (any datatype, any shape)."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return echoed(self, payload)


class ExplainedEcho(Echo):
    """An echo that also explains: the same outputs, with the response parameter explained: true."""

    async def explain(self, payload: InferenceRequest) -> InferenceResponse:
        response = echoed(self, payload)
        response.parameters = {"explained": True}
        return response


class Digest(MLModel):
    """Answers the length and SHA-256 (hex) of each element of its one BYTES input: what a model of
    images sees of a binary body."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        items = list(payload.inputs[0].data.ravel())
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                ResponseOutput(name="size", shape=[len(items)], datatype="INT64", data=[len(item) for item in items]),
                ResponseOutput(name="sha256", shape=[len(items)], datatype="BYTES", data=[hashlib.sha256(item).hexdigest() for item in items]),
            ],
        )


class Described(Echo):
    """An echo whose metadata() says more than its model-settings.json."""

    async def metadata(self) -> MetadataModelResponse:
        metadata = await super().metadata()
        metadata.platform, metadata.versions = "described-by-its-runtime", ["7"]
        return metadata


class Hooked(Echo):
    """An echo with hooks of its own: `preprocess`, a plain function set on the instance at load,
    doubles every input; `postprocess`, an async method, adds the response parameter `postprocessed`."""

    async def load(self) -> bool:
        self.preprocess = doubled  # type: ignore[method-assign]  # a runtime may set its hooks so
        return True

    async def postprocess(self, response: InferenceResponse) -> InferenceResponse:
        response.parameters.postprocessed = True  # type: ignore[union-attr]  # echoed() sets parameters
        return response


def doubled(payload: InferenceRequest) -> InferenceRequest:
    for request_input in payload.inputs:
        request_input.data = request_input.data * 2
    return payload


class InPlace(MLModel):
    """Adds 1 to its input in place, which it must not do: the input views shared memory.
    With the request parameter `copy: true` it adds 1 to a copy, as a runtime should."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = payload.inputs[0].data
        if asked(payload, "copy"):
            x = x.copy()
        x += 1
        return InferenceResponse(model_name=self.name, outputs=[ResponseOutput(name="x", shape=list(x.shape), datatype="FP32", data=x)])


class Environment(MLModel):
    """An echo that also tells, in its answer's parameters, the names of the GATEWAY_* variables its worker sees."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        names = ",".join(sorted(name for name in os.environ if name.upper().startswith("GATEWAY_")))
        return echoed(self, payload).model_copy(update={"parameters": {"gateway_variables": names}})


class Failing(MLModel):
    """Raises inside predict, with a message the client must see; unless the request parameter
    `succeed` is true: then it echoes, so that a test can see the model serve after its failures."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if asked(payload, "succeed"):
            return echoed(self, payload)
        raise ValueError("this model always fails: bad luck")


class BrokenLoad(MLModel):
    async def load(self) -> bool:
        raise FileNotFoundError("weights.bin is missing")


class FalseLoad(MLModel):
    async def load(self) -> bool:
        return False


class Sleepy(MLModel):
    """Sleeps for the number of seconds in its input; answers with its process id and when it ran."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        started = time.time()
        print(f"sleepy {os.getpid()} predict started", flush=True)
        await asyncio.sleep(float(payload.inputs[0].data.ravel()[0]))
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                ResponseOutput(name="pid", shape=[1], datatype="INT64", data=[os.getpid()]),
                ResponseOutput(name="interval", shape=[2], datatype="FP64", data=[started, time.time()]),
            ],
        )

    async def unload(self) -> bool:
        print(f"sleepy {os.getpid()} unload() called", flush=True)
        return True


class SlowLoad(MLModel):
    """Takes parameters.extra.load_seconds to load."""

    async def load(self) -> bool:
        await asyncio.sleep(float(self.settings.parameters.extra.get("load_seconds", 5)))
        return True


class SlowUnload(MLModel):
    """Takes parameters.extra.unload_seconds in unload(), and says when it is done."""

    async def unload(self) -> bool:
        await asyncio.sleep(float(self.settings.parameters.extra.get("unload_seconds", 3)))
        print(f"{self.name} {os.getpid()} unload() finished", flush=True)
        return True


class Configured(MLModel):
    """Answers with parameters.extra.answer, read from model-settings.json at load."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        answer = str(self.settings.parameters.extra["answer"])
        return InferenceResponse(model_name=self.name, outputs=[ResponseOutput(name="answer", shape=[1], datatype="BYTES", data=[answer])])


class Versioned(MLModel):
    """Answers with its own version, so tests can tell versions apart."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(model_name=self.name, outputs=[ResponseOutput(name="version", shape=[1], datatype="BYTES", data=[self.version])])


class BatchProbe(MLModel):
    """Doubles `x`; tells each row which call of predict it ran in and how many rows that call had.

    Request parameters: `delay` (seconds) makes the call slow; `create_file` (a path) is
    created when the call starts; `await_file` (a path) holds the call until that file
    exists, and fails it after 20 s without; `numpy_parameter` answers with a numpy scalar
    among the response's parameters (which JSON cannot carry). A negative input raises."""

    async def load(self) -> bool:
        self.calls = 0
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        self.calls += 1
        x = payload.inputs[0].data
        print(f"probe call {self.calls} started with {x.shape[0]} rows", flush=True)
        parameters = (payload.parameters.model_extra or {}) if payload.parameters else {}
        if "create_file" in parameters:
            Path(parameters["create_file"]).touch()
        if "await_file" in parameters:
            deadline = time.monotonic() + 20
            while not Path(parameters["await_file"]).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{parameters['await_file']} did not appear within 20 s")
                await asyncio.sleep(0.01)
        await asyncio.sleep(float(parameters.get("delay", 0)))
        if (x < 0).any():
            raise ValueError("negative input")
        rows = x.shape[0]
        return InferenceResponse(
            model_name=self.name,
            parameters={"mean": (x * 2).mean()} if parameters.get("numpy_parameter") else None,
            outputs=[
                ResponseOutput(name="y", shape=list(x.shape), datatype="FP32", data=x * 2),
                ResponseOutput(name="call", shape=[rows], datatype="INT64", data=[self.calls] * rows),
                ResponseOutput(name="rows", shape=[rows], datatype="INT64", data=[rows] * rows),
            ],
        )


class Summary(MLModel):
    """Returns one number for the whole call: its outputs do not follow the batch axis."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        await asyncio.sleep(0.2)
        return InferenceResponse(
            model_name=self.name, outputs=[ResponseOutput(name="sum", shape=[1], datatype="FP64", data=[float(payload.inputs[0].data.sum())])]
        )


class Scored(MLModel):
    """Custom metrics: one logged in load() (outside any request), one per request; a negative input fails after logging."""

    async def load(self) -> bool:
        metrics.register("test_input_elements", "Elements in the request's first input")
        metrics.log(test_loads=1)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        data = payload.inputs[0].data
        metrics.log(test_input_elements=data.size)
        if data.sum() < 0:
            raise ValueError("negative input")
        return InferenceResponse(model_name=self.name, outputs=[ResponseOutput(name="n", shape=[1], datatype="INT64", data=[data.size])])


class CodecOutputs(MLModel):
    """Doubles its FP32 input through NumpyCodec, NaN for negative values. With the request
    parameter `edit`, it reads the encoded output's list and sets its first element to 42."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        output = NumpyCodec.encode_output("y", np.where(x < 0, np.nan, x * 2).astype(np.float32))
        if payload.parameters is not None and (payload.parameters.model_extra or {}).get("edit"):
            output.data.root[0] = 42.0
        return InferenceResponse(model_name=self.name, outputs=[output])


class SlowEcho(MLModel):
    """Echo that first sleeps for the request parameter `delay` (seconds), and adds output `rows`:
    how many rows the call had (more than a request's own when batched)."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = payload.inputs[0].shape[0]
        print(f"slow echo call with {rows} rows", flush=True)
        parameters = (payload.parameters.model_extra or {}) if payload.parameters else {}
        await asyncio.sleep(float(parameters.get("delay", 0)))
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                *(ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data) for i in payload.inputs),
                ResponseOutput(name="rows", shape=[rows], datatype="INT64", data=[rows] * rows),
            ],
        )


class Streamer(MLModel):
    """predict_stream: `count` responses (the first request's parameters), each with outputs `index`
    (its position), `pid` (the worker's) and `data` (`size` FP32 elements, all equal to the index: 16 KiB
    and more go through shared memory), `delay` seconds apart. With `fail_at`, it raises instead of
    yielding that response; with `marker` (a file path), it writes there how many responses it has
    produced, and "closed" when its generator ends (its `finally`). With `per_request`, it answers each
    request of the stream (gRPC) with one response echoing its input `x`, until the requests end.
    With `work` (seconds), it computes that long (synchronously, blocking its worker) before each
    response but the first, and asks `self.cancelled()` there, stopping early if it turns true. With
    `report_parameters`, each response also has an output `parameters`: the names of the first
    request's parameters (BYTES), as the model sees them."""

    async def predict_stream(self, payloads):
        first = await payloads.__anext__()
        options = (first.parameters.model_extra or {}) if first.parameters is not None else {}
        marker = Path(options["marker"]) if "marker" in options else None
        produced = 0

        def note(text: str) -> None:
            if marker is not None:
                marker.with_suffix(".tmp").write_text(text)
                marker.with_suffix(".tmp").replace(marker)

        def response(index: int, outputs: list) -> InferenceResponse:
            if options.get("report_parameters"):
                outputs = [*outputs, NumpyCodec.encode_output("parameters", np.array([name.encode() for name in sorted(options)], dtype=np.object_))]
            return InferenceResponse(
                model_name=self.name,
                outputs=[
                    NumpyCodec.encode_output("index", np.array([index], dtype=np.int64)),
                    NumpyCodec.encode_output("pid", np.array([os.getpid()], dtype=np.int64)),
                    *outputs,
                ],
            )

        try:
            if options.get("per_request"):
                payload = first
                while payload is not None:
                    x = NumpyCodec.decode_input(payload.inputs[0])
                    yield response(produced, [NumpyCodec.encode_output("x", x + 1)])
                    produced += 1
                    payload = await anext(payloads, None)
                return
            size = int(options.get("size", 4096))
            for index in range(int(options.get("count", 3))):
                if index and "work" in options:
                    time.sleep(float(options["work"]))  # while the gateway sends the previous response on
                    if self.cancelled():
                        return
                if index == options.get("fail_at"):
                    raise RuntimeError(f"failed at response {index}")
                produced += 1
                note(str(produced))
                yield response(index, [NumpyCodec.encode_output("data", np.full(size, index, dtype=np.float32))])
                await asyncio.sleep(float(options.get("delay", 0)))
        finally:
            note(f"closed {produced}")

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return echoed(self, payload)


def _parameters_of(payload: InferenceRequest) -> dict:
    return (payload.parameters.model_extra or {}) if payload.parameters else {}


class CancellableAsync(MLModel):
    """Echoes after sleeping the request parameter `seconds`; if cancelled meanwhile, it creates the
    file the parameter `marker` names: the worker's side of a cancellation, for a test to see."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        parameters = _parameters_of(payload)
        try:
            await asyncio.sleep(float(parameters.get("seconds", 0)))
        except asyncio.CancelledError:
            Path(parameters["marker"]).write_text(f"{os.getpid()}")
            raise
        return echoed(self, payload)


class Stubborn(MLModel):
    """Blocks its worker for the seconds in its input's first element, never asking self.cancelled();
    answers with its process id (as Sleepy), then its inputs unchanged."""

    def predict(self, payload: InferenceRequest) -> InferenceResponse:
        time.sleep(float(payload.inputs[0].data.ravel()[0]))
        pid = ResponseOutput(name="pid", shape=[1], datatype="INT64", data=[os.getpid()])
        return InferenceResponse(model_name=self.name, outputs=[pid, *echoed(self, payload).outputs])


class CancellableSync(MLModel):
    """The same with a synchronous predict, which blocks its worker's loop: it asks self.cancelled()
    every 10 ms, and stops early when it turns true. The parameter `await_file` (a path) holds it
    until that file exists instead of for `seconds`."""

    def predict(self, payload: InferenceRequest) -> InferenceResponse:
        parameters = _parameters_of(payload)
        print("cancellable sync call started", flush=True)
        deadline = time.monotonic() + float(parameters.get("seconds", 0))
        held = Path(parameters["await_file"]) if "await_file" in parameters else None
        while (time.monotonic() < deadline) if held is None else not held.exists():
            if self.cancelled():
                Path(parameters["marker"]).write_text(f"{os.getpid()}")
                raise RuntimeError("cancelled: stopped early")
            time.sleep(0.01)
        return echoed(self, payload)


class HeaderTag(KServeModel):
    """A KServe model: its input plus the number in the request's `x-tag` header (whose headers each request got)."""

    def load(self) -> bool:
        self.ready = True
        return True

    async def predict(self, payload, headers=None, response_headers=None):
        x = payload.inputs[0].as_numpy()
        output = InferOutput(payload.inputs[0].name, list(x.shape), payload.inputs[0].datatype)
        output.set_data_from_numpy(x + np.float32(headers["x-tag"]))
        return InferResponse(payload.id, self.name, [output])


class SleepyV1(KServeModel):
    """A KServe model: V1 predict sleeps for the first instance's seconds, then answers the instances."""

    def load(self) -> bool:
        self.ready = True
        return True

    async def predict(self, payload, headers=None, response_headers=None):
        await asyncio.sleep(float(payload["instances"][0]))
        return {"predictions": payload["instances"]}
