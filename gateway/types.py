"""Pydantic models of the Open Inference Protocol (KServe V2).

These are the types a custom runtime sees: `predict` receives an
`InferenceRequest` and returns an `InferenceResponse`. Field names follow the
V2 specification (and MLServer's types, so runtimes port over unchanged).

Inside a worker, `RequestInput.data` is usually a read-only numpy array viewing
the tensor bytes (not a list): the codecs accept both. `ResponseOutput.data`
may be a list (flat or nested) or a numpy array.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, RootModel


class _Base(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())


class Datatype(str, Enum):
    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class Parameters(_Base):
    """Free-form parameters; `content_type` and `headers` are the known keys."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    content_type: Optional[str] = None
    headers: Optional[Dict[str, Any]] = None


class TensorData(RootModel[Any]):
    """Tensor contents as sent over JSON: a flat or nested list."""


class RequestInput(_Base):
    name: str
    shape: List[int]
    datatype: Datatype
    parameters: Optional[Parameters] = None
    data: Any = None


class RequestOutput(_Base):
    name: str
    parameters: Optional[Parameters] = None


class InferenceRequest(_Base):
    id: Optional[str] = None
    parameters: Optional[Parameters] = None
    inputs: List[RequestInput]
    outputs: Optional[List[RequestOutput]] = None


class ResponseOutput(_Base):
    name: str
    shape: List[int]
    datatype: Datatype
    parameters: Optional[Parameters] = None
    data: Any = None


class InferenceResponse(_Base):
    model_name: str = ""
    model_version: Optional[str] = None
    id: Optional[str] = None
    parameters: Optional[Parameters] = None
    outputs: List[ResponseOutput]


class MetadataTensor(_Base):
    name: str
    datatype: Datatype
    shape: List[int]
    parameters: Optional[Parameters] = None


class MetadataServerResponse(_Base):
    name: str
    version: str
    extensions: List[str]


class MetadataServerErrorResponse(_Base):
    error: str


class MetadataModelResponse(_Base):
    name: str
    versions: Optional[List[str]] = None
    platform: str = ""
    inputs: Optional[List[MetadataTensor]] = None
    outputs: Optional[List[MetadataTensor]] = None
    parameters: Optional[Parameters] = None


class MetadataModelErrorResponse(_Base):
    error: str


class InferenceErrorResponse(_Base):
    error: Optional[str] = None


class State(str, Enum):
    UNKNOWN = "UNKNOWN"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


class RepositoryIndexRequest(_Base):
    ready: Optional[bool] = None


class RepositoryIndexResponseItem(_Base):
    name: str
    version: Optional[str] = None
    state: State
    reason: str = ""


class RepositoryIndexResponse(RootModel[List[RepositoryIndexResponseItem]]):
    pass


class RepositoryLoadErrorResponse(_Base):
    error: Optional[str] = None


class RepositoryUnloadErrorResponse(_Base):
    error: Optional[str] = None
