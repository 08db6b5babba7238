"""The OpenAPI 3.1 document of the REST port: every route the gateway serves, in one table.

Serving a new REST route means adding its `Endpoint` to `ENDPOINTS` (tests/test_openapi.py fails
while a route and the table disagree). An endpoint's `served` says under which settings it exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from ....control.models import MODEL_NAME
from ....version import __version__
from ...access import Scope, configured_scopes, rest_scope

if TYPE_CHECKING:
    from ....settings import ServerSettings

OPENAPI_VERSION = "3.1.0"
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
MODEL_STATES = ["LOADING", "READY", "UNLOADING", "UNAVAILABLE"]
HEADER_LENGTH = "Inference-Header-Content-Length"
REQUEST_TIMEOUT_HEADER = "Request-Timeout"


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties: dict) -> dict:
    return {"type": "object", "required": required, "properties": properties}


SCHEMAS: dict[str, dict] = {
    "Error": _object(["error"], error={"type": "string", "description": "what went wrong, for a person to read"}),
    "Parameters": {
        "type": ["object", "null"],
        "description": "Strings, numbers or booleans; null (here or as a value) counts as absent. Known ones must have their type (README, REST API).",
        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    },
    "TensorData": {
        "type": "array",
        "description": "The tensor's elements in row-major order, flat or nested as its shape: numbers, booleans (BOOL) or strings (BYTES).",
        "items": {},
    },
    "Datatype": {"type": "string", "enum": DATATYPES},
    "Shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "RequestInput": {
        **_object(
            ["name", "shape", "datatype"],
            name={"type": "string"},
            shape=ref("Shape"),
            datatype=ref("Datatype"),
            parameters=ref("Parameters"),
            data=ref("TensorData"),
        ),
        "description": "`data`, or `parameters.binary_data_size` with the bytes after the JSON header (binary tensor data extension).",
    },
    "RequestOutput": _object(["name"], name={"type": "string"}, parameters=ref("Parameters")),
    # null counts as absent, for a request's optional fields as for parameters
    "InferenceRequest": {
        **_object(
            [],
            id={"type": ["string", "null"]},
            model={"type": "string", "description": "MLRun: the model, or name:version; the URL's if it names one (another is a 400)"},
            operation={
                "type": "string",
                "enum": ["infer", "predict", "infer_dict", "predict_dict", "explain"],
                "description": "MLRun: the operation; the URL's if it names one",
            },
            data_url={"type": "string", "description": "MLRun: a .json or .npy file below the data_folder setting to read the inputs from (instead of inputs)"},
            parameters=ref("Parameters"),
            inputs={
                "description": "V2 tensors; or, for a model that declares one input, MLRun's plain form: one data point (a list of features) or a batch (a list of data points)",
                "anyOf": [
                    {"type": "array", "minItems": 1, "items": ref("RequestInput")},
                    {"type": "array", "minItems": 1, "items": {"not": {"type": "object"}}},
                ],
            },
            outputs={"type": ["array", "null"], "items": ref("RequestOutput")},
        ),
        "anyOf": [{"required": ["inputs"]}, {"required": ["data_url"]}],
    },
    "ResponseOutput": _object(
        ["name", "shape", "datatype"],
        name={"type": "string"},
        shape=ref("Shape"),
        datatype=ref("Datatype"),
        parameters=ref("Parameters"),
        data=ref("TensorData"),
    ),
    "InferenceResponse": _object(
        ["model_name", "id", "outputs"],
        model_name={"type": "string"},
        model_version={"type": "string"},
        id={"type": "string"},
        parameters=ref("Parameters"),
        outputs={"type": "array", "items": ref("ResponseOutput")},
    ),
    "InferDictRequest": {
        **_object(
            [],
            id={"type": ["string", "null"]},
            model={"type": "string", "description": "MLRun: the model, or name:version; the URL's if it names one (another is a 400)"},
            data_url={"type": "string", "description": "a .json file of rows below the data_folder setting (instead of inputs)"},
            parameters=ref("Parameters"),
            inputs={
                "description": "One object per data point (or one object): the feature names of the model's input (its parameters.features) and their values",
                "anyOf": [{"type": "array", "minItems": 1, "items": {"type": "object"}}, {"type": "object"}],
            },
            outputs={"type": ["array", "null"], "items": ref("RequestOutput")},
        ),
        "anyOf": [{"required": ["inputs"]}, {"required": ["data_url"]}],
    },
    "NamedInferenceRequest": {
        "allOf": [ref("InferenceRequest"), {"required": ["model"]}],
        "description": "An InferenceRequest (or, with operation infer_dict, an InferDictRequest) that names its model",
    },
    "ServerMetadata": _object(
        ["name", "version", "extensions"], name={"type": "string"}, version={"type": "string"}, extensions={"type": "array", "items": {"type": "string"}}
    ),
    "Live": _object(["live"], live={"type": "boolean"}),
    "Ready": _object(["ready"], ready={"type": "boolean"}),
    "ModelList": _object(["models"], models={"type": "array", "items": {"type": "string"}}),
    "MetadataTensor": _object(
        ["name", "datatype", "shape"],
        name={"type": "string"},
        datatype=ref("Datatype"),
        shape={"type": "array", "items": {"type": "integer"}},
        parameters={
            "type": ["object", "null"],
            "description": "As a request's, and `features`: the names of the input's last dimension, in order (MLRun's feature schema, for infer_dict)",
            "properties": {"features": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
    ),
    "ModelMetadata": _object(
        ["name", "platform", "inputs", "outputs"],
        name={"type": "string"},
        versions={"type": ["array", "null"], "items": {"type": "string"}},
        platform={"type": "string"},
        inputs={"type": "array", "items": ref("MetadataTensor")},
        outputs={"type": "array", "items": ref("MetadataTensor")},
        parameters=ref("Parameters"),
    ),
    "ModelReady": _object(
        ["name", "ready"],
        name={"type": "string"},
        ready={"type": "boolean"},
        state={"type": "string", "enum": MODEL_STATES},
        reason={"type": "string"},
    ),
    "RepositoryIndexRequest": {"type": "object", "properties": {"ready": {"type": "boolean", "description": "list only ready model versions"}}},
    "RepositoryIndex": {
        "type": "array",
        "items": _object(
            ["name", "state"],
            name={"type": "string"},
            version={"type": ["string", "null"]},
            state={"type": "string", "enum": MODEL_STATES},
            reason={"type": "string"},
        ),
    },
    "Duration": _object(["count", "ns"], count={"type": "integer"}, ns={"type": "integer"}),
    "ModelStatistics": _object(
        ["name", "version", "last_inference", "inference_count", "execution_count", "inference_stats", "batch_stats"],
        name={"type": "string"},
        version={"type": "string"},
        last_inference={"type": "integer", "description": "milliseconds since the epoch"},
        inference_count={"type": "integer"},
        execution_count={"type": "integer"},
        inference_stats={
            "type": "object",
            "additionalProperties": ref("Duration"),
            "description": "success, fail, queue, compute_input, compute_infer, compute_output",
        },
        batch_stats={
            "type": "array",
            "items": _object(
                ["batch_size", "compute_input", "compute_infer", "compute_output"],
                batch_size={"type": "integer"},
                compute_input=ref("Duration"),
                compute_infer=ref("Duration"),
                compute_output=ref("Duration"),
            ),
        },
    ),
    "StreamEvent": {
        "type": "object",
        "description": "One server-sent event (its fields as the event stream format defines them).",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "description": "An InferenceResponse as JSON; or, ending a stream that failed, an Error",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": [ref("InferenceResponse"), ref("Error")]},
            },
            "event": {"type": "string"},
        },
    },
    "V1ModelReady": _object(["name", "ready"], name={"type": "string"}, ready={"type": "boolean"}),
    "Statistics": _object(["model_stats"], model_stats={"type": "array", "items": ref("ModelStatistics")}),
}


def json_content(schema: dict, example: Any = None) -> dict:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


# what "Try it out" starts from: the iris-mlp model of the README
EXAMPLE_REQUEST = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
EXAMPLE_RESPONSE = {
    "model_name": "iris-mlp",
    "model_version": "1",
    "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.97, 0.02, 0.01]}],
}


def response(description: str, content: Optional[dict] = None, headers: Optional[dict] = None) -> dict:
    answer: dict[str, Any] = {"description": description}
    if content is not None:
        answer["content"] = content
    if headers:
        answer["headers"] = headers
    return answer


ERRORS = {
    "4XX": response("The request is at fault (README, REST API): bad input, unknown model or route, body too large or too slow", json_content(ref("Error"))),
    "5XX": response(
        "The model or the server failed: the runtime's exception (500), no explainer (501), not ready or its queue full (503, the latter with "
        "Retry-After), no answer within the request's deadline (504)",
        json_content(ref("Error")),
    ),
}
BINARY_HEADER = {HEADER_LENGTH: {"description": "length of the JSON header that starts the body", "schema": {"type": "integer", "minimum": 0}}}
INFER_BODY: dict[str, Any] = {
    "required": False,  # a raw body may be empty: a zero-size input (README, Inference details)
    "description": f"An InferenceRequest as JSON; or, with the binary tensor data extension, a JSON InferenceRequest of "
    f"{HEADER_LENGTH} bytes followed by the inputs' bytes; or, with {HEADER_LENGTH}: 0, the bytes of a single-input model's input.",
    "content": {**json_content(ref("InferenceRequest"), EXAMPLE_REQUEST), "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
BINARY_BODY = {"schema": {"type": "string", "format": "binary"}}
# MLRun's forms: plain inputs, a binary body (an image: one BYTES element of a model's one BYTES input)
MLRUN_INFER_BODY = {
    **INFER_BODY,
    "description": INFER_BODY["description"] + " MLRun's forms too: inputs as plain lists, data_url, and a body of Content-Type "
    "image/*, audio/* or video/*, which becomes one BYTES element of the model's one input.",
    "content": {**INFER_BODY["content"], "image/*": BINARY_BODY, "audio/*": BINARY_BODY, "video/*": BINARY_BODY},
}
INFER_DICT_BODY = {
    "required": True,
    "content": json_content(ref("InferDictRequest"), {"inputs": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}),
}
INFER_RESPONSES = {
    "200": response(
        "The outputs: JSON, or with binary outputs (requested by binary_data / binary_data_output) a JSON header and the outputs' bytes",
        {**json_content(ref("InferenceResponse"), EXAMPLE_RESPONSE), "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        BINARY_HEADER,
    ),
}

STREAM_RESPONSES = {
    "200": response(
        "Server-sent events, as MLServer sends them: each response of the model's predict_stream as `data: <InferenceResponse JSON>` "
        "and a blank line, its outputs always JSON. A failure after the first event ends the stream with an event "
        '`data: {"error": "..."}`; one before it is an ordinary JSON error answer. A model without predict_stream answers '
        "with one event, its predict's answer.",
        {"text/event-stream": {"schema": ref("StreamEvent"), "example": "data: " + json.dumps(EXAMPLE_RESPONSE) + "\n\n"}},
    ),
}

# KServe's V1 protocol: the body is the model's to read (as JSON unless its content type says otherwise), the answer is the model's
V1_BODY = {
    "required": True,
    "description": 'What the model takes, usually {"instances": [...]}: JSON (application/json), or other bytes the model reads itself',
    "content": json_content({"type": "object"}, {"instances": [[5.1, 3.5, 1.4, 0.2]]}),
}
V1_RESPONSES = {"200": response('What the model answers, usually {"predictions": [...]}', {"*/*": {"schema": {}}})}
V1_PREDICT_RESPONSES = {
    "200": response(
        'What the model answers, usually {"predictions": [...]}. A model whose predict returns an async iterator streams: its '
        "chunks are the body as they come (chunked transfer encoding, content type application/octet-stream, as KServe's "
        "StreamingResponse). A failure before the first chunk is an ordinary error answer; after it the connection is cut, "
        "so the client sees a body that did not end.",
        {"*/*": {"schema": {}}, "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    )
}


HEADERS = {
    HEADER_LENGTH: {
        "name": HEADER_LENGTH,
        "in": "header",
        "required": False,
        "description": "binary tensor data extension: the JSON header's length in bytes (decimal digits); 0: a raw single-input body",
        "schema": {"type": "integer", "minimum": 0},
    },
    REQUEST_TIMEOUT_HEADER: {
        "name": REQUEST_TIMEOUT_HEADER,
        "in": "header",
        "required": False,
        "description": "seconds the client waits for its answer (as the request parameter timeout, in microseconds); at most request_timeout",
        "schema": {"type": "number", "exclusiveMinimum": 0},
    },
}
MODEL = {"name": "model", "in": "path", "required": True, "description": "model name", "schema": {"type": "string"}}
# the model repository extension checks a name before it looks for it
REPOSITORY_MODEL = {**MODEL, "description": "model name: letters, digits, '.', '_' and '-'", "schema": {"type": "string", "pattern": MODEL_NAME.pattern}}
VERSION = {"name": "version", "in": "path", "required": True, "description": "model version (default: the newest)", "schema": {"type": "string"}}
ASSET = {"name": "asset", "in": "path", "required": True, "description": "a file of the documentation page", "schema": {"type": "string"}}


@dataclass(frozen=True)
class Endpoint:
    name: str  # the operationId (with "_version" for the versioned twin), as the route's name
    method: str
    path: str  # a versioned endpoint is also served at .../models/{model}/versions/{version}/...
    summary: str
    tag: str
    responses: dict  # success, and the errors whose body is not ERRORS'
    body: Optional[dict] = None
    versioned: bool = False
    headers: tuple[str, ...] = ()  # request headers it reads (described in HEADERS)
    model: dict = field(default_factory=lambda: MODEL)  # its {model} path parameter
    served: Callable[["ServerSettings"], bool] = field(default=lambda settings: True)

    def paths(self) -> list[str]:
        if not self.versioned:
            return [self.path]
        return [self.path, self.path.replace("{model}", "{model}/versions/{version}", 1)]


ENDPOINTS = [
    Endpoint("server_metadata", "GET", "/", "Server metadata", "Server", {"200": response("name, version, extensions", json_content(ref("ServerMetadata")))}),
    Endpoint(
        "server_metadata_v2", "GET", "/v2", "Server metadata", "Server", {"200": response("name, version, extensions", json_content(ref("ServerMetadata")))}
    ),
    Endpoint(
        "server_metadata_health",
        "GET",
        "/v2/health",
        "Server metadata (MLRun)",
        "Server",
        {"200": response("name, version, extensions", json_content(ref("ServerMetadata")))},
    ),
    Endpoint("live", "GET", "/v2/health/live", "Liveness", "Health", {"200": response("The server is live", json_content(ref("Live")))}),
    Endpoint(
        "ready",
        "GET",
        "/v2/health/ready",
        "Readiness: every model meant to be served is ready",
        "Health",
        {
            "200": response("Ready", json_content(ref("Ready"))),
            "503": response("Not ready (models loading, failed, or the gateway stopping)", json_content(ref("Ready"))),
        },
    ),
    Endpoint(
        "list_models",
        "GET",
        "/v2/models",
        "Names of the models (also at /v2/models/), a versioned one as name:version for each version (as MLRun)",
        "Models",
        {"200": response("The model names", json_content(ref("ModelList")))},
    ),
    Endpoint(
        "model_metadata",
        "GET",
        "/v2/models/{model}",
        "Model metadata",
        "Models",
        {"200": response("The model's metadata", json_content(ref("ModelMetadata")))},
        versioned=True,
    ),
    Endpoint(
        "model_ready",
        "GET",
        "/v2/models/{model}/ready",
        "Model readiness",
        "Models",
        {
            "200": response("Ready", json_content(ref("ModelReady"))),
            "503": response("Not ready: its state and the reason", json_content(ref("ModelReady"))),
        },
        versioned=True,
    ),
    Endpoint(
        "infer",
        "POST",
        "/v2/models/{model}/infer",
        "Inference",
        "Inference",
        INFER_RESPONSES,
        MLRUN_INFER_BODY,
        versioned=True,
        headers=(HEADER_LENGTH, REQUEST_TIMEOUT_HEADER),
    ),
    Endpoint(
        "generate",
        "POST",
        "/v2/models/{model}/generate",
        "Inference: infer's other name (MLServer's, for LLMs)",
        "Inference",
        INFER_RESPONSES,
        MLRUN_INFER_BODY,
        versioned=True,
        headers=(HEADER_LENGTH, REQUEST_TIMEOUT_HEADER),
    ),
    Endpoint(
        "predict",
        "POST",
        "/v2/models/{model}/predict",
        "Inference (MLRun's name for infer)",
        "Inference",
        INFER_RESPONSES,
        MLRUN_INFER_BODY,
        versioned=True,
        headers=(HEADER_LENGTH, REQUEST_TIMEOUT_HEADER),
    ),
    Endpoint(
        "explain",
        "POST",
        "/v2/models/{model}/explain",
        "Explanation by the model's explain()",
        "Inference",
        INFER_RESPONSES,
        MLRUN_INFER_BODY,
        versioned=True,
        headers=(HEADER_LENGTH, REQUEST_TIMEOUT_HEADER),
    ),
    Endpoint(
        "infer_dict",
        "POST",
        "/v2/models/{model}/infer_dict",
        "Inference on rows of named features, ordered by the model's feature schema (MLRun)",
        "Inference",
        INFER_RESPONSES,
        INFER_DICT_BODY,
        versioned=True,
        headers=(REQUEST_TIMEOUT_HEADER,),
    ),
    *(
        Endpoint(
            name, "POST", f"/v2/models/{{model}}/{name}", summary, "Inference", STREAM_RESPONSES, MLRUN_INFER_BODY, versioned=True, headers=(HEADER_LENGTH,)
        )
        for name, summary in (
            ("infer_stream", "Streamed inference by the model's predict_stream (server-sent events)"),
            ("generate_stream", "Streamed inference: infer_stream's other name (MLServer's, for LLMs)"),
        )
    ),
    Endpoint(
        "predict_dict",
        "POST",
        "/v2/models/{model}/predict_dict",
        "Inference on rows of named features (MLRun's name for infer_dict)",
        "Inference",
        INFER_RESPONSES,
        INFER_DICT_BODY,
        versioned=True,
    ),
    Endpoint(
        "infer_named_in_body",
        "POST",
        "/",
        "Inference (or the body's operation) on the model the body names (MLRun, for clients that cannot put it in a URL)",
        "Inference",
        INFER_RESPONSES,
        {"required": True, "content": json_content(ref("NamedInferenceRequest"), {"model": "iris-mlp", "inputs": [[5.1, 3.5, 1.4, 0.2]]})},
    ),
    Endpoint(
        "statistics_all",
        "GET",
        "/v2/models/stats",
        "Statistics of every model version",
        "Statistics",
        {"200": response("Statistics", json_content(ref("Statistics")))},
    ),
    Endpoint(
        "statistics",
        "GET",
        "/v2/models/{model}/stats",
        "Statistics of a model's versions, or of one",
        "Statistics",
        {"200": response("Statistics", json_content(ref("Statistics")))},
        versioned=True,
    ),
    Endpoint(
        "repository_index",
        "POST",
        "/v2/repository/index",
        "Every model version and its state",
        "Model repository",
        {"200": response("The index", json_content(ref("RepositoryIndex")))},
        {"required": False, "content": json_content(ref("RepositoryIndexRequest"))},
    ),
    Endpoint(
        "repository_load",
        "POST",
        "/v2/repository/models/{model}/load",
        "(Re)load a model from its model-settings.json",
        "Model repository",
        {"200": response("Loaded", json_content({"type": "object"}))},
        model=REPOSITORY_MODEL,
    ),
    Endpoint(
        "repository_unload",
        "POST",
        "/v2/repository/models/{model}/unload",
        "Unload a model once its requests are done",
        "Model repository",
        {"200": response("Unloaded", json_content({"type": "object"}))},
        model=REPOSITORY_MODEL,
    ),
    Endpoint(
        "metrics_endpoint",
        "GET",
        "/metrics",
        "Prometheus metrics (also on metrics_port)",
        "Metrics",
        {"200": response("Prometheus' text format", {"text/plain": {"schema": {"type": "string"}}})},
        served=lambda settings: settings.metrics_on_http,
    ),
    Endpoint(
        "v1_models", "GET", "/v1/models", "Names of the models (KServe V1)", "KServe V1", {"200": response("The model names", json_content(ref("ModelList")))}
    ),
    Endpoint(
        "v1_model_ready",
        "GET",
        "/v1/models/{model}",
        "Whether the model is ready (KServe V1: 503 when it is not)",
        "KServe V1",
        {"200": response("The model is ready", json_content(ref("V1ModelReady")))},
    ),
    Endpoint(
        "v1_predict",
        "POST",
        "/v1/models/{model}:predict",
        "Prediction (KServe V1; models of gateway.kserve), streamed when predict returns an async iterator",
        "KServe V1",
        V1_PREDICT_RESPONSES,
        V1_BODY,
        headers=(REQUEST_TIMEOUT_HEADER,),
    ),
    Endpoint(
        "v1_explain",
        "POST",
        "/v1/models/{model}:explain",
        "Explanation (KServe V1; models of gateway.kserve)",
        "KServe V1",
        V1_RESPONSES,
        V1_BODY,
        headers=(REQUEST_TIMEOUT_HEADER,),
    ),
    Endpoint("openapi", "GET", "/openapi.json", "This document", "API documentation", {"200": response("OpenAPI 3.1", json_content({"type": "object"}))}),
    Endpoint(
        "docs",
        "GET",
        "/docs",
        "The API's documentation page (Swagger UI)",
        "API documentation",
        {"200": response("An HTML page", {"text/html": {"schema": {"type": "string"}}})},
        served=lambda settings: settings.enable_docs_url,
    ),
    Endpoint(
        "docs_asset",
        "GET",
        "/docs/{asset}",
        "A file of the documentation page",
        "API documentation",
        {"200": response("The file", {"*/*": {"schema": {"type": "string"}}}), "404": response("No such file", json_content(ref("Error")))},
        served=lambda settings: settings.enable_docs_url,
    ),
]


# bearer tokens (gateway/frontdoor/access.py): one scheme per scope, so that the page asks for each token apart
SECURITY_SCHEMES = {
    Scope.INFERENCE: "inferenceToken",
    Scope.REPOSITORY: "repositoryToken",
    Scope.METRICS: "metricsToken",
}
UNAUTHENTICATED = response(
    "No valid bearer token for this endpoint's scope (the same answer for a missing, malformed or wrong token)", json_content(ref("Error"))
)


def _security_scheme(scope: Scope) -> dict:
    return {
        "type": "http",
        "scheme": "bearer",
        "description": f"a token of the {scope.value} scope (settings {scope.value}_tokens_file or GATEWAY_{scope.value.upper()}_TOKENS; docs/SECURITY.md)",
    }


def _operation(endpoint: Endpoint, path: str, protected: set[Scope]) -> dict:
    versioned = "{version}" in path
    operation: dict[str, Any] = {
        "operationId": endpoint.name + ("_version" if versioned else ""),
        "summary": endpoint.summary + (" (one version)" if versioned else ""),
        "tags": [endpoint.tag],
    }
    in_path = {"{model}": endpoint.model, "{version}": VERSION, "{asset}": ASSET}
    parameters = [parameter for name, parameter in in_path.items() if name in path]
    parameters += [HEADERS[name] for name in endpoint.headers]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = endpoint.body
    # any request may fail (a body too large or too slow, a server stopping): ERRORS, unless the endpoint says otherwise
    operation["responses"] = {**endpoint.responses, **{code: answer for code, answer in ERRORS.items() if code not in endpoint.responses}}
    scope = rest_scope(endpoint.name)
    if scope in protected:
        operation["security"] = [{SECURITY_SCHEMES[scope]: []}]
        operation["responses"] = {"401": UNAUTHENTICATED, **operation["responses"]}
    return operation


def served(settings: "ServerSettings") -> list[Endpoint]:
    return [endpoint for endpoint in ENDPOINTS if endpoint.served(settings)]


def document(settings: "ServerSettings") -> dict:
    """The OpenAPI document of what a gateway with these settings serves on its REST port."""
    paths: dict[str, dict] = {}
    protected = configured_scopes(settings)
    for endpoint in served(settings):
        for path in endpoint.paths():
            paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, path, protected)
    components: dict[str, Any] = {"schemas": SCHEMAS}
    if protected:
        components["securitySchemes"] = {SECURITY_SCHEMES[scope]: _security_scheme(scope) for scope in sorted(protected, key=list(Scope).index)}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": settings.server_name,
            "version": __version__,
            "description": "Open Inference Protocol (KServe V2) REST API, with the model repository and statistics extensions, "
            "MLRun's serving API (infer_dict, plain inputs, data_url, the model named in the body) and KServe's V1 protocol for models "
            'of gateway.kserve. Errors are always JSON {"error": "..."}. Metrics are also served at /metrics on metrics_port.',
        },
        "paths": paths,
        "components": components,
    }
