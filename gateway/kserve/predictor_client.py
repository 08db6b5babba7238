"""Transformer mode: a `Model` that does not override `predict` sends the (preprocessed) request to
its predictor, and one that does not override `explain` to its explainer (`kserve.Model`'s defaults).

- v1: POST {predictor}/v1/models/{name}:predict with the dict as JSON; the answer is its JSON.
- v2: POST {predictor}/v2/models/{name}/infer with the InferRequest's REST body (JSON, or the
  binary tensor extension when an input is binary); the answer is an InferResponse.
- grpc-v2: ModelInfer on {predictor} (TLS with predictor_use_ssl); the answer is an InferResponse.
- explain: POST {explainer}/v1/models/{name}:explain (KServe's explainers speak V1 only).

The request's x-request-id, x-b3-traceid and authorization headers go along (KServe's forwardable
headers); the predictor's answer headers join `response_headers`. A connection failure is tried
again `predictor_request_retries` times; each try has `predictor_request_timeout_seconds`. An error
answer keeps the predictor's status (KServe answers them all 500) and its message.

Connections are made in the process that sends (a worker), on its first request: never before a
fork. REST needs aiohttp (`pip install "inference-gateway[kserve]"`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Dict, Optional, Tuple, Union

import grpc
import orjson

from ..errors import GatewayError, Timeout, Unavailable, from_status
from ..protocol.generated import inference_pb2_grpc
from .constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, PredictorProtocol
from .errors import InvalidInput
from .predictor_config import PredictorConfig
from .protocol.infer_type import InferRequest, InferResponse

FORWARDED_HEADERS = ("x-request-id", "x-b3-traceid", "authorization")
_GRPC_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# per process, by (pid, ...): a forked child must not use its parent's connections
_sessions: Dict[Tuple, Any] = {}  # aiohttp.ClientSession (aiohttp is imported only when used)
_stubs: Dict[Tuple, inference_pb2_grpc.GRPCInferenceServiceStub] = {}


def forwarded(headers: Optional[Dict[str, str]], base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    result = dict(base or {})
    for key in FORWARDED_HEADERS:
        if headers and key in headers:
            result[key] = headers[key]
    return result


def _session():
    try:
        import aiohttp
    except ImportError:
        raise ImportError('transformer mode over REST needs aiohttp: pip install "inference-gateway[kserve]"') from None
    key = (os.getpid(), "rest")
    if key not in _sessions:
        _sessions[key] = aiohttp.ClientSession()
    return _sessions[key]


async def _post(config: PredictorConfig, url: str, body: bytes, headers: Dict[str, str]) -> Tuple[int, Dict[str, str], bytes]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=config.predictor_request_timeout_seconds)
    for attempt in range(config.predictor_request_retries + 1):
        try:
            async with _session().post(url, data=body, headers=headers, timeout=timeout) as answer:
                return answer.status, {k.lower(): v for k, v in answer.headers.items()}, await answer.read()
        except asyncio.TimeoutError:
            raise Timeout(f"the predictor at {url} did not answer within {config.predictor_request_timeout_seconds} s") from None
        except aiohttp.ClientConnectionError as exc:
            if attempt == config.predictor_request_retries:
                raise Unavailable(f"cannot reach the predictor at {url}: {exc}") from None
    raise AssertionError("unreachable")


def _failed(url: str, status: int, body: bytes) -> GatewayError:
    try:
        message = orjson.loads(body)["error"]
    except Exception:
        message = body[:2048].decode(errors="replace")
    return from_status(status, f"the predictor at {url} answered {status}: {message}")


async def predict_rest(
    config: PredictorConfig, base_url: str, model_name: str, payload: Union[Dict, InferRequest], headers, response_headers
) -> Union[Dict, InferResponse]:
    v1 = config.predictor_protocol == PredictorProtocol.REST_V1.value
    url = f"{base_url}/v1/models/{model_name}:predict" if v1 else f"{base_url}/v2/models/{model_name}/infer"
    sent = forwarded(headers, {"content-type": "application/json"})
    if isinstance(payload, InferRequest):
        body, json_length = payload.to_rest()
        if json_length is not None:
            sent.update({INFERENCE_CONTENT_LENGTH_HEADER: str(json_length), "content-type": "application/octet-stream"})
    else:
        body = payload
    status, answer_headers, answer = await _post(config, url, body if isinstance(body, bytes) else orjson.dumps(body), sent)
    if not 200 <= status < 300:
        raise _failed(url, status, answer)
    if response_headers is not None:
        response_headers.update({k: v for k, v in answer_headers.items() if k not in ("content-length", "content-type")})
    if v1:
        return orjson.loads(answer)
    answer_json_length = answer_headers.get(INFERENCE_CONTENT_LENGTH_HEADER.lower())
    if answer_json_length is not None:
        return InferResponse.from_bytes(answer, int(answer_json_length))
    return InferResponse.from_rest(orjson.loads(answer))


async def predict_grpc(config: PredictorConfig, payload, headers) -> InferResponse:
    if isinstance(payload, dict):
        raise InvalidInput("a transformer speaking grpc-v2 to its predictor needs an InferRequest from preprocess, not a dict")
    if not isinstance(payload, InferRequest):
        payload = InferRequest.from_grpc(payload)
    key = (os.getpid(), "grpc", config.predictor_host, config.predictor_use_ssl)
    if key not in _stubs:
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        if config.predictor_use_ssl:
            channel = grpc.aio.secure_channel(config.predictor_host, grpc.ssl_channel_credentials(), options=options)
        else:
            channel = grpc.aio.insecure_channel(config.predictor_host, options=options)
        _stubs[key] = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
    stub = _stubs[key]
    metadata = tuple(forwarded(headers).items())
    for attempt in range(config.predictor_request_retries + 1):
        try:
            answer = await stub.ModelInfer(payload.to_grpc(), timeout=config.predictor_request_timeout_seconds, metadata=metadata)
            return InferResponse.from_grpc(answer)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and attempt < config.predictor_request_retries:
                continue
            error = from_status(_GRPC_STATUS.get(exc.code(), 500), f"the predictor at {config.predictor_host} answered {exc.code().name}: {exc.details()}")
            error.grpc_code = exc.code().name
            raise error from None
    raise AssertionError("unreachable")


async def explain(config: Optional[PredictorConfig], explainer_host: str, model_name: str, payload, headers) -> Dict:
    use_ssl = bool(config and config.predictor_use_ssl)
    url = f"{'https' if use_ssl else 'http'}://{explainer_host}/v1/models/{model_name}:explain"
    sent = forwarded(headers, {"content-type": (headers or {}).get("content-type", "application/json")})
    default = config or PredictorConfig(explainer_host)
    status, _, answer = await _post(default, url, payload if isinstance(payload, bytes) else orjson.dumps(payload), sent)
    if not 200 <= status < 300:
        raise _failed(url, status, answer)
    return orjson.loads(answer)
