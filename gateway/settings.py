"""Server settings (`settings.json` + GATEWAY_* environment) and model settings
(`model-settings.json`, MLServer-compatible)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .types import MetadataTensor

log = logging.getLogger("gateway")

MIB = 1024 * 1024
SERVER_SETTINGS_FILE = "settings.json"
MODEL_SETTINGS_FILE = "model-settings.json"
ENV_PREFIX = "GATEWAY_"


class ConfigError(Exception):
    """A settings file or value is wrong; the message says which and why."""


class ServerSettings(BaseSettings):
    """Every field can be set in `settings.json` or as GATEWAY_<FIELD> (environment wins)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", protected_namespaces=())

    server_name: str = "inference-gateway"
    server_version: str = "0.1.0"
    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 8081
    grpc_max_message_bytes: int = Field(256 * MIB, gt=0, le=2**31 - 1, description="largest gRPC message received or sent (a 64 MiB tensor fits with room to spare); larger ones get RESOURCE_EXHAUSTED")
    metrics_port: int = Field(8082, ge=0, le=65535, description="Prometheus /metrics on a port of its own; 0: none")
    metrics_on_http: bool = Field(False, description="also serve /metrics on the REST port")
    model_repository: Optional[Path] = Field(None, description="folder searched for model-settings.json; default: the config folder")
    parallel_workers: int = Field(1, ge=1, description="worker processes per model unless its model-settings.json says otherwise")
    worker_blas_threads: int = Field(1, ge=1, description="OMP/OpenBLAS/MKL threads in each worker process")
    max_request_bytes: int = Field(256 * MIB, gt=0, description="largest REST request body")
    max_tensor_bytes: int = Field(256 * MIB, gt=0, description="largest tensor a request may declare")
    request_timeout: float = Field(60.0, gt=0, description="seconds a request may wait for its worker")
    load_timeout: float = Field(300.0, gt=0, description="seconds a model's load() may take")
    shm_arena_bytes: int = Field(256 * MIB, gt=0, description="each worker's input and output shared-memory arena (pages are used only when written)")
    heartbeat_interval: float = Field(2.0, gt=0, description="seconds between pings of an idle worker")
    heartbeat_timeout: float = Field(10.0, gt=0, description="an idle worker silent this long is hung: killed and restarted")
    restart_backoff: float = Field(0.5, ge=0, description="first restart delay after a worker crash; doubles per crash in a row, up to 30 s")
    header_timeout: float = Field(10.0, gt=0, description="seconds a REST request's headers may take to arrive, from its first byte (408 and close beyond)")
    body_timeout: float = Field(60.0, gt=0, description="seconds a REST request's body may take to arrive, once its headers are in (408 and close beyond)")
    drain_delay: float = Field(5.0, ge=0, description="on SIGTERM: seconds during which ready answers 503 while requests are still served, before the listeners close")
    shutdown_grace: float = Field(15.0, gt=0, description="seconds in-flight requests get to finish when the gateway stops (REST and gRPC alike) or a model is unloaded")
    worker_stop_grace: float = Field(10.0, gt=0, description="seconds a worker may take to unload() before it is killed")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field("text", description="log lines of the gateway and its workers: text, or one JSON object per line")
    access_log: bool = Field(True, description="one log line per request (logger gateway.access)")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        # the environment overrides settings.json (passed as init values)
        return env_settings, init_settings

    @classmethod
    def from_folder(cls, folder: Path) -> "ServerSettings":
        path = folder / SERVER_SETTINGS_FILE
        values = _read_json(path) if path.exists() else {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise ConfigError("; ".join(_blame(error, path) for error in exc.errors())) from None
        if settings.model_repository is None:
            settings.model_repository = folder
        elif not settings.model_repository.is_absolute():
            settings.model_repository = (folder / settings.model_repository).resolve()
        return settings


def _blame(error: dict, path: Path) -> str:
    """One validation error, blamed on where its value came from: an environment variable (which
    wins over the file) or settings.json."""
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = ENV_PREFIX + field.upper()
    # pydantic-settings matches variable names in any case
    source = f"environment variable {variable}" if variable in {name.upper() for name in os.environ} else str(path)
    return f"{source}: {field}: {error['msg']} (got {error['input']!r})"


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
    parallel_workers: Optional[int] = Field(None, ge=1)
    # where model-settings.json was found; relative URIs resolve against it
    folder: Optional[Path] = None

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
        values = _read_json(path)
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        settings.folder = path.parent.resolve()
        if not settings.name:
            settings.name = path.parent.name
        if settings.model_extra:
            log.warning("%s: ignoring settings this gateway does not use: %s", path, ", ".join(sorted(settings.model_extra)))
        return settings


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
        try:
            settings: ModelSettings | ConfigError = ModelSettings.from_file(path)
            key = (settings.name, settings.version)
        except ConfigError as exc:
            settings, key = exc, _declared_name(path)
        candidates.setdefault(key, []).append((path, settings))
    usable, unusable = [], []
    for (name, version), found in candidates.items():
        paths = [path for path, _ in found]
        errors = [str(settings) for _, settings in found if isinstance(settings, ConfigError)]
        if len(found) == 1 and not errors:
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
