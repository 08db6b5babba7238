"""Pydantic models of the Open Inference Protocol (KServe V2), as `mlserver.types`.

These are the types a custom runtime sees: `predict` receives an
`InferenceRequest` and returns an `InferenceResponse`. Names, fields and
behaviour follow MLServer's types, so runtimes port over unchanged: `data` is a
`TensorData`, and `model_dump()` / `model_dump_json()` leave out unset and None
fields unless told otherwise.

Inside a worker, `RequestInput.data` is not a `TensorData` but a read-only
numpy array viewing the tensor bytes (BYTES: an object array of `bytes`); the
codecs accept both. `ResponseOutput.data` may also be a numpy array, which the
worker sends without ever turning it into a list.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Callable, Dict, List, Optional, TypeVar, Union, cast

import numpy as np
import pydantic
from pydantic import ConfigDict, Field, PlainSerializer, PrivateAttr, RootModel, field_serializer


class BaseModel(pydantic.BaseModel):
    """MLServer's base: dumps leave out unset and None fields by default."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    def model_dump(self, exclude_unset=True, exclude_none=True, **kwargs):
        return super().model_dump(exclude_unset=exclude_unset, exclude_none=exclude_none, **kwargs)

    def model_dump_json(self, exclude_unset=True, exclude_none=True, **kwargs):
        return super().model_dump_json(exclude_unset=exclude_unset, exclude_none=exclude_none, **kwargs)


Model = TypeVar("Model", bound=pydantic.BaseModel)

# what a pydantic 2 model is made of, which `constructed` fills; a pydantic whose models hold other
# slots gets model_construct itself (slower, never wrong)
_MODEL_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
_SLOTS_KNOWN = pydantic.BaseModel.__slots__ == _MODEL_SLOTS


def constructed(cls: type[Model], values: dict[str, Any]) -> Model:
    """What `cls.model_construct(**values)` builds, for `values` that give every field in the
    order `cls` declares them (a model without private attributes or extra fields), without
    model_construct's per-field work (2.4 -> 0.9 us for a RequestInput): the worker builds the
    InferenceRequest of every request so. tests/test_types.py checks it against model_construct,
    slot by slot."""
    if not _SLOTS_KNOWN:
        return cls.model_construct(**values)
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


# StrEnum, so that a member is also its string: `datatype == "FP32"`, f"{datatype}" and
# dict lookups by name work as with MLServer's fields (which hold plain strings).
class Datatype(StrEnum):
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


# a member dumps as its plain string, as MLServer's fields do (they hold enum values)
DatatypeField = Annotated[Datatype, PlainSerializer(str, return_type=str)]


class Parameters(BaseModel):
    """Free-form parameters; `content_type` and `headers` are the known keys."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    content_type: Optional[str] = None
    headers: Optional[Dict[str, Any]] = None


class TensorData(RootModel[Union[List, Any]]):
    """A tensor's contents: a flat or nested list (or whatever was given), as MLServer's.

    A codec can hand over a numpy array instead, with the function that makes
    MLServer's list of it (`TensorData.deferred`). The list is then made the
    first time anything reads it (`root`, iteration, `==`, `model_dump`, repr),
    so it looks exactly like the list it stands for; until then the worker sends
    the array itself, and a large output never becomes Python objects.
    """

    root: Union[List, Any] = Field(..., title="TensorData")
    _array: Optional[np.ndarray] = PrivateAttr(None)
    _make_list: Optional[Callable[[np.ndarray], list]] = PrivateAttr(None)

    @classmethod
    def deferred(cls, array: np.ndarray, make_list: Callable[[np.ndarray], list]) -> "TensorData":
        # what model_construct builds, without its per-field work (this runs for every output),
        # and without "root": __getattr__ makes it when first read
        data = cls.__new__(cls)
        object.__setattr__(data, "__pydantic_fields_set__", {"root"})
        object.__setattr__(data, "__pydantic_extra__", None)
        object.__setattr__(data, "__pydantic_private__", {"_array": array, "_make_list": make_list})
        return data

    @pydantic.field_validator("root", mode="wrap")
    @classmethod
    def _arrays_as_they_are(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        # an array is kept as it is; validating it as a List first (what the Union tries) would
        # build a Python list of every element and throw it away: 217 ms and 11x its size for 16 MiB,
        # and without end for an empty array of 2**40 rows. (On the field, not the model: a model
        # validator's new instance would leave `TensorData(array)` itself without its private state.)
        return value if isinstance(value, np.ndarray) else handler(value)

    def deferred_array(self) -> Optional[np.ndarray]:
        """The array the list is to be made from, while nothing has read (and so perhaps changed) the list."""
        return None if "root" in self.__dict__ else self._private["_array"]

    @property
    def _private(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.__pydantic_private__)

    def __getattr__(self, name: str) -> Any:
        private = self._private
        if name == "root" and private["_make_list"] is not None:
            root = self.__dict__["root"] = private["_make_list"](private["_array"])
            return root
        return super().__getattr__(name)  # type: ignore[misc]  # pydantic's, hidden from type checkers

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, TensorData):
            return NotImplemented
        return self.root == other.root

    def __iter__(self):
        return iter(self.root)

    def __getitem__(self, idx):
        return self.root[idx]

    def __len__(self):
        return len(self.root)


def _dump_data(data: Any) -> Any:
    """How `model_dump` writes a tensor's data. A worker's input array becomes the flat
    list MLServer holds after reading V2 JSON (BYTES as str where they are UTF-8), so
    that a runtime can log or forward its request as MLServer runtimes do."""
    if not isinstance(data, np.ndarray):
        return data
    flat = data.ravel().tolist()
    if data.dtype.kind in "OS":
        return [_text_if_utf8(item) for item in flat]
    return flat


def _text_if_utf8(item: Any) -> Any:
    if isinstance(item, bytes):
        try:
            return item.decode()
        except UnicodeDecodeError:
            return item
    return item


class RequestInput(BaseModel):
    name: str
    shape: List[int]
    datatype: DatatypeField
    parameters: Optional[Parameters] = None
    data: TensorData

    @field_serializer("data")
    def _serialise_data(self, data: Any) -> Any:
        return _dump_data(data)


class RequestOutput(BaseModel):
    name: str
    parameters: Optional[Parameters] = None


class InferenceRequest(BaseModel):
    id: Optional[str] = None
    parameters: Optional[Parameters] = None
    inputs: List[RequestInput]
    outputs: Optional[List[RequestOutput]] = None


class ResponseOutput(BaseModel):
    name: str
    shape: List[int]
    datatype: DatatypeField
    parameters: Optional[Parameters] = None
    data: TensorData

    @field_serializer("data")
    def _serialise_data(self, data: Any) -> Any:
        return _dump_data(data)


class InferenceResponse(BaseModel):
    model_name: str = ""
    model_version: Optional[str] = None
    id: Optional[str] = None
    parameters: Optional[Parameters] = None
    outputs: List[ResponseOutput]


class InferenceErrorResponse(BaseModel):
    error: Optional[str] = None


class MetadataTensor(BaseModel):
    name: str
    datatype: DatatypeField
    shape: List[int]
    parameters: Optional[Parameters] = None


class MetadataServerResponse(BaseModel):
    name: str
    version: str
    extensions: List[str]


class MetadataServerErrorResponse(BaseModel):
    error: str


class MetadataModelResponse(BaseModel):
    name: str
    versions: Optional[List[str]] = None
    platform: str = ""
    inputs: Optional[List[MetadataTensor]] = None
    outputs: Optional[List[MetadataTensor]] = None
    parameters: Optional[Parameters] = None


class MetadataModelErrorResponse(BaseModel):
    error: str


class State(StrEnum):
    UNKNOWN = "UNKNOWN"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


StateField = Annotated[State, PlainSerializer(str, return_type=str)]


class RepositoryIndexRequest(BaseModel):
    ready: Optional[bool] = None


class RepositoryIndexResponseItem(BaseModel):
    name: str
    version: Optional[str] = None
    state: StateField
    reason: str = ""


class RepositoryIndexResponse(RootModel[List[RepositoryIndexResponseItem]]):
    root: List[RepositoryIndexResponseItem] = Field(..., title="RepositoryIndexResponse")

    def __iter__(self):
        return iter(self.root)

    def __getitem__(self, idx):
        return self.root[idx]

    def __len__(self):
        return len(self.root)


class RepositoryLoadErrorResponse(BaseModel):
    error: Optional[str] = None


class RepositoryUnloadErrorResponse(BaseModel):
    error: Optional[str] = None


__all__ = [
    "MetadataServerResponse",
    "MetadataServerErrorResponse",
    "Datatype",
    "MetadataTensor",
    "MetadataModelErrorResponse",
    "Parameters",
    "TensorData",
    "RequestOutput",
    "ResponseOutput",
    "InferenceResponse",
    "InferenceErrorResponse",
    "MetadataModelResponse",
    "RequestInput",
    "InferenceRequest",
    "RepositoryIndexRequest",
    "RepositoryIndexResponseItem",
    "State",
    "RepositoryIndexResponse",
    "RepositoryLoadErrorResponse",
    "RepositoryUnloadErrorResponse",
]
