"""Server settings (defaults < MLSERVER_* environment < `settings.json` < GATEWAY_* environment <
command-line flags) and model settings (`model-settings.json`), both MLServer-compatible."""

from __future__ import annotations

import inspect
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator

from . import mlserver_settings
from .types import MetadataTensor
from .version import __version__

log = logging.getLogger("gateway")

MIB = 1024 * 1024
SERVER_SETTINGS_FILE = "settings.json"
MODEL_SETTINGS_FILE = "model-settings.json"
ENV_PREFIX = "GATEWAY_"
# settings whose value is a secret: taken from the environment only, never from settings.json or a flag
SECRET_SETTINGS = ("inference_tokens", "repository_tokens", "metrics_tokens")
SECRET_VARIABLES = frozenset(ENV_PREFIX + setting.upper() for setting in SECRET_SETTINGS)  # matched in any case, as all GATEWAY_*


# settings naming a file or folder: relative to the config folder (a flag's: to the current folder)
def without_secrets(environment: dict[str, str]) -> dict[str, str]:
    """The environment less the token variables: what the gateway's child processes get (a worker
    needs no token; a relay front door gets its settings, tokens included, through a pipe)."""
    return {name: value for name, value in environment.items() if name.upper() not in SECRET_VARIABLES}


PATH_SETTINGS = ("model_repository", "inference_tokens_file", "repository_tokens_file", "metrics_tokens_file", "tls_cert_file", "tls_key_file", "tls_ca_file")


class ConfigError(Exception):
    """A settings file or value is wrong; the message says which and why."""


@dataclass
class Layer:
    """Settings from one source, and where each came from (for the messages about them)."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, value: Any, source: str) -> None:
        self.values[key] = value
        self.sources[key] = source


class ServerSettings(BaseModel):
    """The gateway's settings; MLServer's settings are accepted too (gateway/mlserver_settings.py)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    server_name: str = "inference-gateway"
    server_version: str = __version__
    host: str = Field("0.0.0.0", description="address to listen on")
    http_port: int = Field(8080, ge=0, le=65535, description="REST port")
    grpc_port: int = Field(8081, ge=0, le=65535, description="gRPC port")
    grpc_max_message_bytes: int = Field(
        256 * MIB,
        gt=0,
        le=2**31 - 1,
        description="largest gRPC message received or sent (a 64 MiB tensor fits with room to spare); larger ones get RESOURCE_EXHAUSTED",
    )
    grpc_max_connection_age: float = Field(
        0.0,
        ge=0,
        description="seconds after which a gRPC client connection is asked to reconnect (HTTP/2 GOAWAY while serving; its calls finish first), so that clients behind a connection-level balancer move between replicas; 0: never",
    )
    metrics_port: int = Field(8082, ge=0, le=65535, description="Prometheus /metrics on a port of its own; 0: none")
    metrics_on_http: bool = Field(False, description="also serve /metrics on the REST port")
    enable_grpc: bool = Field(True, description="serve gRPC on grpc_port")
    enable_docs_url: bool = Field(False, description="serve the API's documentation page (Swagger UI) at /docs")
    model_repository: Optional[Path] = Field(None, description="folder searched for model-settings.json files, relative to the config folder")
    data_folder: Optional[Path] = Field(
        None, description="folder MLRun's data_url files are read from (relative to the config folder); unset: data_url is refused"
    )
    parallel_workers: int = Field(1, ge=0, description="worker processes per model unless its model-settings.json says otherwise (0: 1, as MLServer's 0)")
    frontdoor_workers: int = Field(
        default_factory=lambda: default_frontdoor_workers(),
        ge=1,
        le=64,
        description="front-door processes serving the REST, gRPC and metrics ports (SO_REUSEPORT); above 1, the others relay their requests to the main one, "
        "where every model's queue and batches stay whole; by default 1 up to 3 cores, else half the cores, at most 4",
    )
    worker_blas_threads: int = Field(1, ge=1, description="OMP/OpenBLAS/MKL threads in each worker process")
    max_request_bytes: int = Field(256 * MIB, gt=0, description="largest REST request body")
    max_tensor_bytes: int = Field(256 * MIB, gt=0, description="largest tensor a request may declare")
    request_timeout: float = Field(60.0, gt=0, description="seconds a request may wait for its worker")
    load_timeout: float = Field(300.0, gt=0, description="seconds a model's load() may take")
    shm_arena_bytes: int = Field(
        256 * MIB, gt=0, description="shared memory for a call's inputs, and for its outputs, per worker call slot (pages are used only when written)"
    )
    heartbeat_interval: float = Field(2.0, gt=0, description="seconds between pings of an idle worker")
    heartbeat_timeout: float = Field(
        10.0, gt=0, description="an idle worker silent this long is hung, and so is one still running a request this long after request_timeout cancelled it"
    )
    restart_backoff: float = Field(0.5, ge=0, description="first restart delay after a worker crash; doubles per crash in a row, up to 30 s")
    header_timeout: float = Field(10.0, gt=0, description="seconds a REST request's headers may take to arrive, from its first byte (408 and close beyond)")
    body_timeout: float = Field(60.0, gt=0, description="seconds a REST request's body may take to arrive, once its headers are in (408 and close beyond)")
    drain_delay: float = Field(
        5.0, ge=0, description="on SIGTERM: seconds during which ready answers 503 while requests are still served, before the listeners close"
    )
    shutdown_grace: float = Field(
        15.0, gt=0, description="seconds in-flight requests get to finish when the gateway stops (REST and gRPC alike) or a model is unloaded"
    )
    worker_stop_grace: float = Field(10.0, gt=0, description="seconds a worker may take to unload() before it is killed")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL, for the gateway and its workers")
    log_format: Literal["text", "json"] = Field("text", description="log lines of the gateway and its workers: text, or one JSON object per line")
    access_log: bool = Field(True, description="one log line per request (logger gateway.access)")
    # access control (gateway/access.py, docs/SECURITY.md): a scope with neither setting is open
    inference_tokens: Optional[SecretStr] = Field(
        None, description="bearer tokens for inference and model metadata, separated by commas (environment variable GATEWAY_INFERENCE_TOKENS only)"
    )
    inference_tokens_file: Optional[Path] = Field(None, description="file of bearer tokens (one per line) for inference and model metadata; unset: open")
    repository_tokens: Optional[SecretStr] = Field(
        None, description="bearer tokens for the model repository API: index, load, unload (environment variable GATEWAY_REPOSITORY_TOKENS only)"
    )
    repository_tokens_file: Optional[Path] = Field(
        None, description="file of bearer tokens (one per line) for the model repository API: index, load, unload; unset: open"
    )
    metrics_tokens: Optional[SecretStr] = Field(
        None, description="bearer tokens for /metrics and the statistics endpoints (environment variable GATEWAY_METRICS_TOKENS only)"
    )
    metrics_tokens_file: Optional[Path] = Field(None, description="file of bearer tokens (one per line) for /metrics and the statistics endpoints; unset: open")
    # TLS (gateway/tls.py): on every port the gateway listens on
    tls_cert_file: Optional[Path] = Field(None, description="PEM certificate (chain) of the server: REST, gRPC and metrics are served over TLS")
    tls_key_file: Optional[Path] = Field(None, description="PEM private key of tls_cert_file")
    tls_ca_file: Optional[Path] = Field(None, description="PEM certificates of the CAs that sign client certificates: clients must present one (mutual TLS)")

    @model_validator(mode="before")
    @classmethod
    def _mlserver_settings(cls, values: Any, info: ValidationInfo) -> Any:
        if not isinstance(values, dict):
            return values
        sources = (info.context or {}).get("sources", {})
        return mlserver_settings.translate(values, sources)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()

    @field_validator("parallel_workers")
    @classmethod
    def _parallel_workers(cls, value: int) -> int:
        # MLServer's 0 runs inference in its main process; here a model always runs in a worker
        # process of its own (its crash or hang never takes the server down): 0 means one worker
        if value == 0:
            log.info("parallel_workers is 0 (MLServer: inference in the main process): the gateway runs 1 worker process")
            return 1
        return value

    @model_validator(mode="after")
    def _shared_ports_are_fixed(self) -> "ServerSettings":
        # port 0 (any free port) would give each front-door process a port of its own
        if self.frontdoor_workers > 1:
            ports = {"http_port": self.http_port, "grpc_port": self.grpc_port if self.enable_grpc else None, "metrics_port": self.metrics_port or None}
            chosen = [name for name, port in ports.items() if port == 0]
            if chosen:
                raise ValueError(f"frontdoor_workers above 1 needs fixed ports, the same for every front door: {', '.join(chosen)} is 0 (any free port)")
        return self

    @model_validator(mode="after")
    def _security_settings_agree(self) -> "ServerSettings":
        for scope in ("inference", "repository", "metrics"):
            if getattr(self, f"{scope}_tokens") is not None and getattr(self, f"{scope}_tokens_file") is not None:
                raise ValueError(f"{scope} tokens are given twice: set {scope}_tokens_file or GATEWAY_{scope.upper()}_TOKENS, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both to serve TLS, or neither")
        if self.tls_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_ca_file (client certificates) needs TLS: set tls_cert_file and tls_key_file too")
        return self

    @classmethod
    def from_folder(cls, folder: Path, flags: Optional[Layer] = None) -> "ServerSettings":
        """The settings of a config folder: each layer overrides the ones before it (README, Configuration)."""
        path = folder / SERVER_SETTINGS_FILE
        layers = [_mlserver_environment(), _file_layer(path), _environment(), flags or Layer()]
        values, sources = {}, {}
        for layer in layers:
            values.update(layer.values)
            sources.update(layer.sources)
        try:
            settings = cls.model_validate(values, context={"sources": sources})
        except ValidationError as exc:
            raise ConfigError("; ".join(_blame(error, sources, path) for error in exc.errors())) from None
        if settings.model_repository is None:
            settings.model_repository = folder
        for setting in PATH_SETTINGS:
            value = getattr(settings, setting)
            if value is not None and not value.is_absolute():
                setattr(settings, setting, (folder / value).resolve())
        if settings.data_folder is not None:
            # resolved once: a data_url must lead below this path, symbolic links followed
            settings.data_folder = (folder / settings.data_folder).resolve()
            if not settings.data_folder.is_dir():
                raise ConfigError(f"{sources.get('data_folder', path)}: data_folder: {settings.data_folder} is not a folder")
        return settings

    @classmethod
    def for_script(cls, defaults: dict[str, Any], given: dict[str, Any]) -> "ServerSettings":
        """A script's settings (KServe's ModelServer): `defaults` < GATEWAY_* variables < `given`."""
        environment = _environment()
        sources = {**dict.fromkeys(defaults, "the default"), **environment.sources, **dict.fromkeys(given, "ModelServer()")}
        try:
            return cls.model_validate({**defaults, **environment.values, **given}, context={"sources": sources})
        except ValidationError as exc:
            raise ConfigError("; ".join(_blame(error, sources, Path("ModelServer()")) for error in exc.errors())) from None


def default_frontdoor_workers() -> int:
    """1 up to 3 cores: a relay front door costs the main process CPU (the relay hop), which a
    small machine needs for its workers; above, half the cores (the workers need the rest), at most 4:
    every relayed request still passes through the main process (docs/PERFORMANCE.md, "Several front
    doors"). The cores this process may run on (a container's cpuset), not the machine's."""
    cores = len(os.sched_getaffinity(0))
    return 1 if cores <= 3 else min(4, cores // 2)


def settings_document(settings: ServerSettings) -> bytes:
    """The settings as JSON, tokens included: what a relay front door is given (through a pipe, never
    its command line or environment) to be configured as the main process is."""
    values = settings.model_dump(mode="json")
    for key in SECRET_SETTINGS:
        secret = getattr(settings, key)
        values[key] = None if secret is None else secret.get_secret_value()
    return json.dumps(values).encode()


# MLServer's names (`mlserver.settings`), for code that builds settings: `Settings(http_port=..., debug=...)`
# takes MLServer's keys as settings.json does (mapped to ours, or ignored with a warning), but does not
# read MLSERVER_* variables by itself (ServerSettings.from_folder does)
Settings = ServerSettings


class CORSSettings(BaseModel):
    """MLServer's CORS settings, so that code passing `cors_settings=CORSSettings(...)` runs; the gateway
    sends no CORS headers, and says so when asked for them."""

    allow_origins: Optional[list[str]] = []
    allow_origin_regex: Optional[str] = None
    allow_credentials: Optional[bool] = False
    allow_methods: Optional[list[str]] = ["GET"]
    allow_headers: Optional[list[str]] = []
    expose_headers: Optional[list[str]] = []
    max_age: Optional[int] = 600


def _file_layer(path: Path) -> Layer:
    layer = Layer()
    if not path.exists():
        return layer
    values = _read_json(path)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    for key, value in values.items():
        if key in SECRET_SETTINGS:
            raise ConfigError(
                f"{path}: {key}: tokens are never read from settings.json, where they would sit in clear next to the models; "
                f"put them in a file of one token per line named by {key}_file, or in the environment variable {ENV_PREFIX}{key.upper()}"
            )
        layer.set(key, value, str(path))
    return layer


def _environment() -> Layer:
    """GATEWAY_<SETTING> variables, matched in any case."""
    layer = Layer()
    variables = {name.upper(): name for name in os.environ}
    for key in ServerSettings.model_fields:
        name = variables.get(ENV_PREFIX + key.upper())
        if name is not None:
            layer.set(key, os.environ[name], f"environment variable {name}")
    return layer


def _mlserver_environment() -> Layer:
    layer = Layer()
    for key, (variable, value) in mlserver_settings.server_environment().items():
        layer.set(key, value, f"environment variable {variable}")
    return layer


def _blame(error: Any, sources: dict[str, str], path: Path) -> str:
    """One validation error, blamed on where its value came from."""
    if not error["loc"]:  # from a validator of the whole settings: its message says where
        return error["msg"].removeprefix("Value error, ")
    setting = str(error["loc"][0])
    return f"{sources.get(setting, path)}: {setting}: {error['msg']} (got {error['input']!r})"


class ModelParameters(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    uri: Optional[str] = None
    version: Optional[str] = None
    content_type: Optional[str] = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ModelSettings(BaseModel):
    """One model, as MLServer's model-settings.json describes it."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str = ""
    implementation: str
    platform: str = ""
    versions: list[str] = Field(default_factory=list)
    inputs: list[MetadataTensor] = Field(default_factory=list)
    outputs: list[MetadataTensor] = Field(default_factory=list)
    parameters: ModelParameters = Field(default_factory=ModelParameters)
    max_batch_size: int = Field(0, ge=0)
    # MLServer's: seconds a batch may wait for max_batch_size requests; 0: none waits while a worker is idle
    max_batch_time: float = Field(0.0, ge=0)
    parallel_workers: Optional[int] = Field(None, ge=0)
    # load the model once, in a fork server, and fork its workers from it: they share its memory
    # (README, "Loading a model once"); not safe for a load() that starts threads or a GPU context
    load_once: bool = False
    # a request whose worker died is run again once, on a sibling or the restarted worker; False for
    # runtimes whose predict has side effects that must not happen twice
    retry_on_worker_death: bool = True
    # requests waiting for a worker beyond which new ones are refused (503 / UNAVAILABLE); 0: no limit
    max_queue_size: int = Field(0, ge=0)
    # the priority level of requests that send none (or 0); lower levels are served first
    default_priority_level: int = Field(1, ge=1)
    # where model-settings.json was found; relative URIs resolve against it
    folder: Optional[Path] = None
    # the model-settings.json it was read from; None: the MLSERVER_MODEL_* variables (or code)
    path: Optional[Path] = None

    @field_validator("implementation", mode="before")
    @classmethod
    def _import_path(cls, value: Any) -> Any:
        # MLServer's ModelSettings(implementation=SomeRuntime): the class's import path
        return f"{value.__module__}.{value.__name__}" if inspect.isclass(value) else value

    @field_validator("inputs")
    @classmethod
    def _feature_schema(cls, inputs: list[MetadataTensor]) -> list[MetadataTensor]:
        for spec in inputs:
            feature_names(spec)  # MLRun's infer_dict: a bad schema is an error at start, not on each request
        return inputs

    @field_validator("parallel_workers")
    @classmethod
    def _parallel_workers(cls, value: Optional[int]) -> Optional[int]:
        return 1 if value == 0 else value  # MLServer's "no parallel inference", as the server's 0

    @property
    def version(self) -> Optional[str]:
        return self.parameters.version

    @property
    def uri(self) -> Optional[str]:
        """parameters.uri resolved against the model's folder."""
        uri = self.parameters.uri
        if uri is None or self.folder is None or "://" in uri or Path(uri).is_absolute():
            return uri
        return str((self.folder / uri).resolve())

    @classmethod
    def from_file(cls, path: Path) -> "ModelSettings":
        """A model-settings.json file, with what it leaves out taken from MLSERVER_MODEL_* variables."""
        values = _read_json(path)
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        settings = cls._with_environment(values, str(path), path.parent.resolve(), path.parent.name)
        settings.path = path
        return settings

    @classmethod
    def from_environment(cls) -> Optional["ModelSettings"]:
        """MLServer's model of a repository without any model-settings.json: the one the
        MLSERVER_MODEL_* variables define, if MLSERVER_MODEL_IMPLEMENTATION is set. Its folder (for
        a relative uri, and the runtime's imports) is the current folder, as in MLServer."""
        if mlserver_settings.MODEL_ENV_PREFIX + "IMPLEMENTATION" not in os.environ:
            return None
        settings = cls._with_environment({}, "the MLSERVER_MODEL_* environment variables", Path.cwd(), "")
        if not settings.name:
            raise ConfigError("MLSERVER_MODEL_IMPLEMENTATION defines a model, but MLSERVER_MODEL_NAME does not name it")
        return settings

    @classmethod
    def _with_environment(cls, values: dict, where: str, folder: Path, default_name: str) -> "ModelSettings":
        try:
            from_environment, parameters, variables = mlserver_settings.model_environment()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if parameters and isinstance(values.get("parameters", {}), dict):
            values["parameters"] = {**parameters, **values.get("parameters", {})}
        values = {**from_environment, **values}
        try:
            settings = cls(**values)
        except ValidationError as exc:
            also = f" (with the environment variables {', '.join(variables)})" if variables and values else ""
            raise ConfigError(f"{where}{also}: {exc}") from None
        settings.folder = folder
        if not settings.name:
            settings.name = default_name
        if settings.model_extra:
            log.warning("%s: ignoring settings this gateway does not use: %s", where, ", ".join(sorted(settings.model_extra)))
        return settings


def feature_names(spec: MetadataTensor) -> Optional[list[str]]:
    """MLRun's feature schema an input declares, for infer_dict (`parameters.features`: the names of its last
    dimension, in order), checked; None if it declares none."""
    extra = (spec.parameters.model_extra or {}) if spec.parameters is not None else {}
    features = extra.get("features")
    if features is None:
        return None
    if not isinstance(features, list) or not features or not all(isinstance(f, str) and f for f in features):
        raise ValueError(f"input {spec.name!r}: parameters.features must be a non-empty list of feature names")
    if len(set(features)) != len(features):
        raise ValueError(f"input {spec.name!r}: parameters.features names a feature twice")
    if len(spec.shape) != 2 or spec.shape[1] not in (-1, len(features)):
        raise ValueError(f"input {spec.name!r}: with {len(features)} features its shape must be [-1, {len(features)}], not {spec.shape}")
    return features


@dataclass
class UnusableSettings:
    """A model version that cannot be served because of its settings file(s): a file that does not
    parse or validate, or two files declaring the same name and version. It is named as far as its
    file can be read (else after its folder), so that it can be listed, and fixed."""

    name: str
    version: Optional[str]
    paths: list[Path]
    reason: str


def scan_model_settings(repository: Path) -> tuple[list[ModelSettings], list[UnusableSettings]]:
    """Every model-settings.json under the repository (sorted by path): the model versions that
    can be served, and those that cannot, with the reason. One bad file spoils only its own."""
    candidates: dict[tuple[str, Optional[str]], list[tuple[Path, ModelSettings | ConfigError]]] = {}
    for path in sorted(path.resolve() for path in repository.rglob(MODEL_SETTINGS_FILE)):
        settings: ModelSettings | ConfigError
        try:
            settings = ModelSettings.from_file(path)
            key = (settings.name, settings.version)
        except ConfigError as exc:
            settings, key = exc, _declared_name(path)
        candidates.setdefault(key, []).append((path, settings))
    if not candidates:  # as MLServer: the model the MLSERVER_MODEL_* variables define, if any
        try:
            from_environment = ModelSettings.from_environment()
        except ConfigError as exc:
            prefix = mlserver_settings.MODEL_ENV_PREFIX
            return [], [UnusableSettings(os.environ.get(prefix + "NAME", ""), os.environ.get(prefix + "VERSION"), [], str(exc))]
        return ([from_environment] if from_environment else []), []
    usable: list[ModelSettings] = []
    unusable: list[UnusableSettings] = []
    for (name, version), found in candidates.items():
        paths = [path for path, _ in found]
        errors = [str(settings) for _, settings in found if isinstance(settings, ConfigError)]
        if len(found) == 1 and isinstance(found[0][1], ModelSettings):
            usable.append(found[0][1])
            continue
        if len(found) > 1:
            errors.insert(0, f"model {name!r} version {version!r} is defined more than once: in {', '.join(str(p) for p in paths)}")
        unusable.append(UnusableSettings(name, version, paths, "; ".join(errors)))
    return usable, unusable


def _declared_name(path: Path) -> tuple[str, Optional[str]]:
    """The name and version a settings file that does not validate declares, as far as they can be
    read; the folder's name otherwise."""
    try:
        values = _read_json(path)
    except ConfigError:
        values = None
    if not isinstance(values, dict):
        return path.parent.name, None
    name = values.get("name")
    parameters = values.get("parameters")
    version = parameters.get("version") if isinstance(parameters, dict) else None
    return (name if isinstance(name, str) and name else path.parent.name), (version if isinstance(version, str) else None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise ConfigError(f"{path}: {exc}") from None
