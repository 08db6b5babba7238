"""MLServer's settings, read as MLServer 1.7 reads them (`mlserver/settings.py`).

Server settings (`Settings`: settings.json keys and MLSERVER_<KEY> variables): each is taken as the
gateway setting of the same meaning, or ignored, with a warning when ignoring it loses what it asks
for. Model settings: MLSERVER_MODEL_<FIELD> variables fill in what a model-settings.json leaves out,
as they do in MLServer. docs/MLSERVER.md ("Settings") has the table for users; this is its one source.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

from pydantic import TypeAdapter, ValidationError

log = logging.getLogger("gateway")

SERVER_ENV_PREFIX = "MLSERVER_"
MODEL_ENV_PREFIX = "MLSERVER_MODEL_"

# --- server settings ---------------------------------------------------------

# MLServer settings the gateway has under the same name, with the same meaning
SHARED = {"host", "http_port", "grpc_port", "metrics_port", "parallel_workers", "server_name", "server_version"}
# MLServer settings with the gateway's name for the same thing
RENAMED = {
    "grpc_max_message_length": "grpc_max_message_bytes",
    "model_repository_root": "model_repository",
    "parallel_workers_timeout": "worker_stop_grace",
}
_BOOL = TypeAdapter(bool)


def _debug(value: Any) -> dict[str, Any]:
    # MLServer's debug: its loggers at DEBUG and access logs on; off: INFO and no access log
    return {"log_level": "DEBUG"} if _BOOL.validate_python(value) else {"log_level": "INFO", "access_log": False}


def _structured_logging(value: Any) -> dict[str, Any]:
    return {"log_format": "json" if _BOOL.validate_python(value) else "text"}


def _metrics_endpoint(value: Any) -> dict[str, Any]:
    if not value:  # MLServer: no metrics server
        return {"metrics_port": 0}
    if value != "/metrics":
        log.warning("MLServer setting metrics_endpoint=%r: the gateway serves its metrics at /metrics", value)
    return {}


# MLServer settings that become one or more gateway settings by their value
CONVERTED: dict[str, Callable[[Any], dict[str, Any]]] = {
    "debug": _debug,
    "use_structured_logging": _structured_logging,
    "metrics_endpoint": _metrics_endpoint,
}

ANY = object()  # any value is how the gateway works
# MLServer settings the gateway has no use for: why, and the value that asks for what the gateway
# does anyway (ignoring it then loses nothing: no warning)
IGNORED: dict[str, tuple[str, Any]] = {
    "environments_dir": ("the gateway does not unpack model environments", ANY),
    "model_repository_implementation": ("the model repository is always a folder of model-settings.json files", None),
    "model_repository_implementation_args": ("the model repository is always a folder of model-settings.json files", None),
    "load_models_at_startup": ("every model of the repository is loaded at start-up", True),
    "extensions": ("GET /v2 lists the extensions the gateway serves", None),
    "root_path": ("the gateway serves its routes at the root; a proxy in front must strip its prefix", None),
    "cors_settings": ("the gateway sends no CORS headers", None),
    "metrics_rest_server_prefix": ("the gateway's metrics have names of their own (README, Prometheus metrics)", "rest_server"),
    "metrics_dir": ("the gateway needs no folder to share metrics between processes", ANY),
    "logging_settings": ("the gateway's logging is set by log_level and log_format", None),
    "kafka_enabled": ("the gateway has no Kafka server", False),
    "kafka_servers": ("the gateway has no Kafka server", ANY),
    "kafka_topic_input": ("the gateway has no Kafka server", ANY),
    "kafka_topic_output": ("the gateway has no Kafka server", ANY),
    "tracing_server": ("the gateway exports no OpenTelemetry traces", None),
    "cache_enabled": ("the gateway caches no predictions", False),
    "cache_size": ("the gateway caches no predictions", ANY),
    "gzip_enabled": ("the gateway does not compress responses", False),
}
# settings whose MLSERVER_* variable holds JSON (a list or an object), as pydantic-settings reads it
JSON_SETTINGS = {"extensions", "cors_settings", "model_repository_implementation_args", "logging_settings"}

SERVER_SETTINGS = SHARED | RENAMED.keys() | CONVERTED.keys() | IGNORED.keys()  # every key of MLServer's Settings


def _loses_nothing(value: Any, harmless: Any) -> bool:
    if harmless is ANY:
        return True
    if isinstance(harmless, bool):
        try:
            return _BOOL.validate_python(value) == harmless
        except ValidationError:
            return False
    if harmless is None:  # MLServer's default is None or empty
        return not value
    return value == harmless


def translate(values: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """`values` with each MLServer setting the gateway does not share replaced by the gateway
    settings it stands for (or dropped, with a warning if that loses what it asks for).

    A gateway setting given by its own name wins over one derived from an MLServer setting.
    `sources` (setting -> where its value came from) is updated for the derived settings, so that an
    invalid value is blamed on what the user wrote. Unknown keys are left for validation to refuse.
    """
    result = {key: value for key, value in values.items() if key not in SERVER_SETTINGS or key in SHARED}
    for key, value in values.items():
        if key in result:
            continue
        where = sources.get(key, "settings")
        if key in RENAMED:
            derived = {} if value is None else {RENAMED[key]: value}  # None: MLServer's default
        elif key in CONVERTED:
            try:
                derived = CONVERTED[key](value)
            except ValidationError as exc:
                raise ValueError(f"{where}: {key}: {exc.errors()[0]['msg']} (got {value!r})") from None
        else:
            reason, harmless = IGNORED[key]
            if _loses_nothing(value, harmless):
                log.debug("%s: MLServer setting %s=%r: nothing to do (%s)", where, key, value, reason)
            else:
                log.warning("%s: MLServer setting %s=%r is ignored: %s", where, key, value, reason)
            continue
        for field, converted in derived.items():
            if field in values:
                log.warning("%s: MLServer setting %s is overridden by %s", where, key, field)
            elif field not in result:
                result[field] = converted
                sources[field] = f"{where} (MLServer setting {key})"
    return result


def server_environment() -> dict[str, tuple[str, Any]]:
    """MLServer's settings given as MLSERVER_<SETTING> variables: setting -> (variable, value).
    Other MLSERVER_* variables (MLServer's image sets MLSERVER_MODELS_DIR, for example) are not settings."""
    found = {}
    for key in SERVER_SETTINGS:
        variable = SERVER_ENV_PREFIX + key.upper()
        if variable in os.environ:
            text = os.environ[variable]
            found[key] = (variable, _json_or_text(text) if key in JSON_SETTINGS else text)
    return found


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- model settings ------------------------------------------------------------

# fields of MLServer's ModelSettings and ModelParameters that its MLSERVER_MODEL_* variables set;
# those holding lists or objects are JSON, as pydantic-settings reads them
MODEL_FIELDS = {"implementation", "name", "platform", "parallel_workers", "warm_workers", "max_batch_size", "max_batch_time", "cache_enabled"}
MODEL_JSON_FIELDS = {"versions", "inputs", "outputs", "parameters"}
PARAMETER_FIELDS = {
    "uri",
    "version",
    "environment_path",
    "environment_tarball",
    "inference_pool_gid",
    "autogenerate_inference_pool_gid",
    "format",
    "content_type",
}
PARAMETER_JSON_FIELDS = {"extra"}


def model_environment() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The MLSERVER_MODEL_* variables: model settings, model parameters, and the variables used.

    In MLServer they fill in every model-settings.json field the file leaves out (MLSERVER_MODEL_NAME
    names every model that names none), and so they do here."""
    settings: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    used = []
    for variable, text in os.environ.items():
        if not variable.startswith(MODEL_ENV_PREFIX):
            continue
        field = variable[len(MODEL_ENV_PREFIX) :].lower()
        if field in MODEL_FIELDS or field in MODEL_JSON_FIELDS:
            target = settings
        elif field in PARAMETER_FIELDS or field in PARAMETER_JSON_FIELDS:
            target = parameters
        else:
            continue  # a runtime's own variable (MLSERVER_MODEL_HUGGINGFACE_TASK, ...)
        if field in MODEL_JSON_FIELDS or field in PARAMETER_JSON_FIELDS:
            try:
                target[field] = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"environment variable {variable}: not JSON: {exc}") from None
        else:
            target[field] = text
        used.append(variable)
    return settings, parameters, sorted(used)
