"""gateway.kserve.Model: the preprocess -> predict/explain -> postprocess call, and KServe's errors."""

import asyncio
import logging

import numpy as np
import pytest

from gateway import metrics
from gateway.kserve import (
    BaseKServeModel,
    InferenceModel,
    InferenceVerb,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
    PredictorConfig,
    context,
    errors,
)
from gateway.kserve.logging import trace_logger


@pytest.fixture(autouse=True)
def no_predictor_config():
    """A ModelServer() sets the process's predictor config; each test starts without one."""
    context.set_predictor_config(None)
    yield
    context.set_predictor_config(None)


def call(model, body, headers=None, verb=InferenceVerb.PREDICT):
    return asyncio.run(model(body, headers, verb))


class SyncHooks(Model):
    def __init__(self, name):
        super().__init__(name)
        self.seen = []

    def preprocess(self, payload, headers=None):
        self.seen.append(("preprocess", headers))
        return {"instances": [x * 2 for x in payload["instances"]]}

    def predict(self, payload, headers=None):  # two parameters: called without response_headers
        self.seen.append(("predict", headers))
        return {"predictions": [x + 1 for x in payload["instances"]]}

    def postprocess(self, result, headers=None):
        self.seen.append(("postprocess", headers))
        return {**result, "post": True}


def test_sync_hooks_run_in_order_with_the_request_headers():
    model = SyncHooks("sync")
    headers = {"x-request-id": "abc", "authorization": "t"}
    response, response_headers = call(model, {"instances": [1, 2]}, headers)
    assert response == {"predictions": [3, 5], "post": True}
    assert response_headers == {}
    assert model.seen == [("preprocess", headers), ("predict", headers), ("postprocess", headers)]


class AsyncHooks(Model):
    def __init__(self, name):
        super().__init__(name, return_response_headers=True)

    async def preprocess(self, payload, headers=None):
        await asyncio.sleep(0)
        return payload

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        response_headers["x-predicted-by"] = self.name
        x = payload.inputs[0].as_numpy()
        output = InferOutput("y", list(x.shape), "FP32")
        output.set_data_from_numpy(x * 2)
        return InferResponse(payload.id, self.name, [output])

    async def postprocess(self, result, headers=None, response_headers=None):
        response_headers["x-post"] = headers["x-request-id"]
        return result


def test_async_hooks_and_response_headers():
    request = InferRequest("async", [InferInput("x", [2], "FP32", [1.5, 2.0])], request_id="r1")
    response, response_headers = call(AsyncHooks("async"), request, {"x-request-id": "abc"})
    assert isinstance(response, InferResponse)
    assert response.outputs[0].as_numpy().tolist() == [3.0, 4.0]
    assert response_headers == {"x-predicted-by": "async", "x-post": "abc"}


def test_predict_may_stream_an_async_iterator_through_postprocess():
    class Streaming(Model):
        async def predict(self, payload, headers=None):
            async def tokens():
                for token in payload["prompt"].split():
                    yield token

            return tokens()

    async def run():
        stream, _ = await Streaming("s")({"prompt": "a b c"})
        return [token async for token in stream]

    assert asyncio.run(run()) == ["a", "b", "c"]


def test_explain_verb_calls_explain_not_predict():
    class Explained(Model):
        def predict(self, payload, headers=None):
            raise AssertionError("predict must not run for explain")

        async def explain(self, payload, headers=None):
            return {"explanations": payload["instances"]}

    assert call(Explained("e"), {"instances": [1]}, verb=InferenceVerb.EXPLAIN) == ({"explanations": [1]}, {})


def test_errors_from_hooks_reach_the_caller_with_their_status():
    class Refusing(Model):
        def preprocess(self, payload, headers=None):
            raise errors.InvalidInput("no negative numbers")

    with pytest.raises(errors.InvalidInput, match="no negative numbers") as caught:
        call(Refusing("r"), {"instances": [-1]})
    assert (caught.value.http_status, caught.value.grpc_code) == (400, "INVALID_ARGUMENT")


def test_transformer_defaults_without_a_predictor_or_explainer_raise_not_implemented():
    """As KServe's (forwarding itself: tests/kserve/test_transformer.py, between real servers)."""
    plain = Model("plain")
    with pytest.raises(NotImplementedError, match="Could not find PredictorConfig"):
        call(plain, {"instances": [1]})
    with pytest.raises(NotImplementedError, match="Could not find explainer_host"):
        call(plain, {"instances": [1]}, verb=InferenceVerb.EXPLAIN)
    context.set_predictor_config(PredictorConfig(predictor_host=None))
    with pytest.raises(NotImplementedError, match="Could not find predictor_host"):
        call(plain, {"instances": [1]})


def test_validate_checks_instances_and_inputs_against_the_predictor_protocol():
    echo = SyncHooks("v")
    echo.preprocess = lambda payload, headers=None: payload
    context.set_predictor_config(PredictorConfig(predictor_host=None, predictor_protocol="v1"))
    with pytest.raises(errors.InvalidInput, match='"instances" to be a list'):
        call(echo, {"instances": 3})
    context.set_predictor_config(PredictorConfig(predictor_host=None, predictor_protocol="v2"))
    with pytest.raises(errors.InvalidInput, match='"inputs" to be a list'):
        call(echo, {"inputs": 3, "instances": [1]})
    assert call(echo, {"instances": [1]})[0] == {"predictions": [2], "post": True}


def test_latency_line_and_kserve_latency_metrics(caplog):
    metrics.take_report()
    model = SyncHooks("timed")
    model.enable_latency_logging = True
    trace_logger.addHandler(caplog.handler)  # KServe's logging config stops "kserve.trace" at its own handler
    try:
        with caplog.at_level(logging.INFO, logger="kserve.trace"):
            call(model, {"instances": [1]}, {"x-request-id": "req-9"})
    finally:
        trace_logger.removeHandler(caplog.handler)
    line = next(r.getMessage() for r in caplog.records if r.name == "kserve.trace")
    assert line.startswith("requestId: req-9, preprocess_ms: ") and "explain_ms: 0, predict_ms: " in line and "postprocess_ms: " in line
    logged = metrics.take_report()["log"]
    assert {name: len(values) for name, values in logged.items()} == {
        "request_preprocess_seconds": 1,
        "request_predict_seconds": 1,
        "request_postprocess_seconds": 1,
    }
    assert metrics._registered["request_predict_seconds"] == "predict request latency"


def test_model_lifecycle_hooks():
    model = Model("life")
    assert model.ready is False and model.engine is False and model.explainer_host is None
    assert model.load() is True and model.ready
    assert asyncio.run(model.healthy()) is True
    model.stop()
    assert not asyncio.run(model.healthy())
    model.start()
    assert model.ready
    model.stop_engine()
    assert not model.ready
    asyncio.run(model.start_engine())
    assert model.ready
    assert model.get_input_types() == [] and model.get_output_types() == []
    with pytest.raises(TypeError):
        BaseKServeModel("abstract")
    with pytest.raises(TypeError):
        InferenceModel("abstract")


def test_a_keras_style_model_with_numpy_in_and_out():
    """The shape of KServe's custom-model examples: V2 in, numpy work, V2 out."""

    class Scaler(Model):
        def load(self):
            self.factor = np.float32(0.5)
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers=None):
            x = payload.get_input_by_name("x").as_numpy()
            output = InferOutput("y", list(x.shape), "FP32")
            output.set_data_from_numpy(x * self.factor, binary_data=payload.use_binary_outputs)
            return InferResponse(payload.id, self.name, [output])

    model = Scaler("scaler")
    model.load()
    request = InferRequest.from_bytes(*InferRequest("scaler", [binary_input()], request_id="k").to_rest(), "scaler")
    response, _ = call(model, request)
    assert response.outputs[0].data == [0.5, 1.0, 1.5, 2.0]


def binary_input():
    x = InferInput("x", [2, 2], "FP32")
    x.set_data_from_numpy(np.array([[1, 2], [3, 4]], dtype=np.float32))
    return x


# KServe 0.21's REST exception handlers and gRPC interceptor, error by error
STATUSES = [
    (errors.InvalidInput("bad"), 400, "INVALID_ARGUMENT", "bad", ValueError),
    (errors.InferenceError("failed"), 500, "INVALID_ARGUMENT", "failed", RuntimeError),
    (errors.InferenceError("failed", status="422"), 500, "INVALID_ARGUMENT", "[422] failed", RuntimeError),
    (errors.ModelNotFound("m"), 404, "NOT_FOUND", "Model with name m does not exist.", Exception),
    (errors.ModelNotReady("m", "loading"), 503, "UNAVAILABLE", "Model with name m is not ready. loading", RuntimeError),
    (errors.UnsupportedProtocol("v3"), 501, "INVALID_ARGUMENT", "Unsupported protocol v3.", Exception),
    (errors.ServerNotReady(), 503, "UNAVAILABLE", "Server is not ready.", RuntimeError),
    (errors.ServerNotLive("down"), 503, "UNAVAILABLE", "Server is not live. down", RuntimeError),
    (errors.ModelMissingError("/mnt/models/x"), 500, "INTERNAL", "ModelMissingError : /mnt/models/x", Exception),
    (errors.WorkersShouldBeLessThanMaxWorkersError(4), 500, "INTERNAL", "WorkersShouldBeLessThanMaxWorkersError : Workers cannot be greater than 4", Exception),
    (errors.NoModelReady([Model("a"), Model("b")]), 500, "INTERNAL", "NoModelReady : Models with names a,b are not ready.", RuntimeError),
]


@pytest.mark.parametrize("error, http_status, grpc_code, message, base", STATUSES, ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None)
def test_each_kserve_error_carries_kserves_statuses(error, http_status, grpc_code, message, base):
    assert (error.http_status, error.grpc_code, error.message) == (http_status, grpc_code, message)
    assert isinstance(error, base)
