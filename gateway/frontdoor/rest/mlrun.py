"""MLRun's serving API (mlrun/serving/v2_serving.py and routers.py) on the V2 REST front door.

MLRun's clients send bodies that are not V2 tensors: the model and the operation named in the body,
`inputs` as plain lists of features, rows of named features (`infer_dict`), a `data_url` to load
the inputs from, or a binary body such as an image. Each becomes the one tensor of a model that
declares a single input, so that the rest of the gateway sees an ordinary V2 request.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import orjson

from ...errors import BadRequest, shown
from ...settings import feature_names
from ...types import MetadataTensor
from ...wire.datatypes import MAX_RANK, NUMPY_DTYPES, check_size, data_from_json, element_count
from ...wire.packed import pack_bytes
from ...wire.request import Tensor
from ..inputs import RequestInputs
from .largejson import LARGE_JSON

# MLRun's operations: the URL's last segment, or the body's `operation`, and the verb each runs
OPERATIONS = {"infer": "infer", "predict": "infer", "infer_dict": "infer_dict", "predict_dict": "infer_dict", "explain": "explain"}
# a body of one of these content types is the bytes of one BYTES element (MLRun: an image). Not
# application/octet-stream: clients send JSON under it, and the binary tensor extension uses it
BINARY_CONTENT_TYPES = ("image/", "audio/", "video/")
DATA_FILE_TYPES = (".json", ".npy")
# a .npy file's header (its dtype and shape) comes before the array's bytes; numpy keeps it small
NPY_HEADER_BYTES = 65536


# --- which model, which operation -----------------------------------------------------------------


def resolve_target(document: dict, model: Optional[str], version: Optional[str], verb: Optional[str]) -> tuple[str, Optional[str], str]:
    """The model, version and verb a JSON body is for: the URL's, with the body's `model` (a name, or
    `name:version` as GET /v2/models lists them) and `operation` taken where the URL names none.
    A body that names another model or operation than its URL is refused: it would be ignored."""
    named = document.get("model")
    if named is not None:
        if not isinstance(named, str) or not named.partition(":")[0]:
            raise BadRequest(f"model must be a model name, or name:version, got {shown(named)}")
        name, _, after_colon = named.partition(":")
        named_version = after_colon or None
        if model is None:
            model, version = name, named_version
        elif name != model or (named_version is not None and version is not None and named_version != version):
            url = model if version is None else f"{model}:{version}"
            raise BadRequest(f"the body names model {shown(named)}, the URL names {shown(url)}")
        elif version is None:
            version = named_version
    elif model is None:
        raise BadRequest('POST / takes the model in the body: {"model": "<name>" or "<name>:<version>", ...}')
    operation = document.get("operation")
    if operation is not None:
        if operation not in OPERATIONS:
            raise BadRequest(f"operation must be one of {sorted(OPERATIONS)}, got {shown(operation)}")
        if verb is not None and OPERATIONS[operation] != verb:
            raise BadRequest(f"the body names operation {shown(operation)}, the URL asks for {verb}")
        verb = OPERATIONS[operation]
    return model, version, verb or "infer"


# --- MLRun's forms of inputs ------------------------------------------------------------------------


def is_mlrun_form(document: dict, verb: str) -> bool:
    """Whether the body's inputs are MLRun's (rows of features, plain lists, or in a data_url file) rather than V2 tensors."""
    inputs = document.get("inputs")
    return verb == "infer_dict" or "data_url" in document or (isinstance(inputs, list) and bool(inputs) and not any(isinstance(i, dict) for i in inputs))


async def mlrun_inputs(
    document: dict, verb: str, declared: Callable[[], list[MetadataTensor]], data_folder: Optional[Path], max_tensor_bytes: int
) -> list[dict] | Tensor:
    """The inputs of an MLRun body: V2 input objects (from a data_url file holding them), to be parsed
    as a body's, or the one tensor of the model's single declared input."""
    if "data_url" in document:
        if "inputs" in document:
            raise BadRequest("give inputs or data_url, not both")
        inputs = await load_data_url(document["data_url"], data_folder, max_tensor_bytes)
    else:
        inputs = document.get("inputs")
    if isinstance(inputs, np.ndarray):
        return array_tensor(inputs, single_input(declared(), "an array from data_url"), max_tensor_bytes)
    if verb == "infer_dict":
        return rows_tensor(inputs, declared(), max_tensor_bytes)
    if isinstance(inputs, list) and inputs and all(isinstance(i, dict) for i in inputs):
        return inputs  # V2 tensors, from a data_url file
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("inputs must be a non-empty list: V2 tensors, one data point (a list of features) or a batch (a list of data points)")
    return plain_tensor(inputs, single_input(declared(), "plain inputs"), max_tensor_bytes)


def single_input(declared: list[MetadataTensor], what: str) -> MetadataTensor:
    if len(declared) != 1:
        raise BadRequest(
            f"{what} need(s) a model that declares exactly one input (its name, datatype and shape), "
            f"this one declares {len(declared)}: send V2 tensors, or declare the input in model-settings.json"
        )
    return declared[0]


def plain_tensor(inputs: list, spec: MetadataTensor, max_tensor_bytes: int) -> Tensor:
    """MLRun's `inputs`: one data point (a list of features), or a batch (a list of data points;
    images as nested lists of RGB values), as the model's one input. A data point has one dimension
    less than the input's declared shape, and becomes a batch of one."""
    where = f"input {spec.name!r}"
    shape = list(nested_shape(inputs, where))
    if len(shape) == len(spec.shape) - 1:
        shape.insert(0, 1)
    elif len(shape) != len(spec.shape):
        raise BadRequest(
            f"{where} has shape {spec.shape}: inputs must be one data point of {len(spec.shape) - 1} dimension(s) "
            f"or a batch of {len(spec.shape)}, got nested lists of shape {shape}"
        )
    built = RequestInputs(max_tensor_bytes)
    return built.from_json(built.declare(spec.name, spec.datatype.value, shape), inputs, {})


def rows_tensor(inputs: Any, declared: list[MetadataTensor], max_tensor_bytes: int) -> Tensor:
    """MLRun's infer_dict: rows of named features (or one row), ordered by the model's feature
    schema into the [rows, features] tensor of its single input."""
    spec = single_input(declared, "infer_dict")
    features = feature_names(spec)
    if features is None:
        raise BadRequest(
            f"infer_dict needs the model's feature schema: declare the feature names, in order, as parameters.features "
            f"of its input {spec.name!r} in model-settings.json"
        )
    rows = [inputs] if isinstance(inputs, dict) else inputs
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise BadRequest("infer_dict takes inputs as an object of features (one data point) or a non-empty list of them")
    known = set(features)
    for i, row in enumerate(rows):
        missing = [f for f in features if f not in row]
        unknown = [key for key in row if key not in known]
        if missing or unknown:
            raise BadRequest(f"row {i}: missing features {shown(missing)}, unknown features {shown(unknown)}; the model takes {shown(features)}")
        nested = [key for key in features if isinstance(row[key], (list, dict))]
        if nested:
            raise BadRequest(f"row {i}: feature {shown(nested[0])} must be a single value, got {shown(row[nested[0]])}")
    built = RequestInputs(max_tensor_bytes)
    values = [[row[f] for f in features] for row in rows]
    return built.from_json(built.declare(spec.name, spec.datatype.value, [len(rows), len(features)]), values, {})


def nested_shape(value: Any, where: str) -> tuple[int, ...]:
    """The shape of nested lists of equal lengths (a scalar: ()), level by level, without numpy:
    numpy would turn a list holding one long string into as many copies of its length."""
    shape: list[int] = []
    level = [value]
    while level and isinstance(level[0], list):
        if not all(isinstance(item, list) and len(item) == len(level[0]) for item in level):
            raise BadRequest(f"{where}: the inputs are a ragged nested list")
        if len(shape) == MAX_RANK:
            raise BadRequest(f"{where}: the inputs are nested deeper than a tensor's {MAX_RANK} dimensions")
        shape.append(len(level[0]))
        level = [item for items in level for item in items]
    if any(isinstance(item, list) for item in level):
        raise BadRequest(f"{where}: the inputs are a ragged nested list")
    return tuple(shape)


# --- data_url ------------------------------------------------------------------------------------------


async def load_data_url(url: Any, folder: Optional[Path], max_tensor_bytes: int) -> Any:
    """The inputs a data_url names: a .json file's value (what `inputs` may hold), or a .npy
    file's array. Only files below the data folder are read."""
    if folder is None:
        raise BadRequest("data_url is not enabled on this gateway: set data_folder to the folder its files are read from")
    if not isinstance(url, str) or not url:
        raise BadRequest(f"data_url must be a file's path below the data folder, got {shown(url)}")
    if "://" in url:
        raise BadRequest(f"data_url {shown(url)}: only files below the data folder are read, given as a relative path (no URLs)")
    if Path(url).is_absolute():
        raise BadRequest(f"data_url {shown(url)} must be relative to the data folder")
    path = (folder / url).resolve()  # follows symbolic links: where they lead must be below the folder too
    if not path.is_relative_to(folder):
        raise BadRequest(f"data_url {shown(url)} leads outside the data folder")
    suffix = path.suffix.lower()
    if suffix not in DATA_FILE_TYPES:
        raise BadRequest(f"data_url {shown(url)}: the file must be .json or .npy")
    if not path.is_file():
        raise BadRequest(f"data_url {shown(url)}: no such file in the data folder")
    limit = LARGE_JSON if suffix == ".json" else max_tensor_bytes + NPY_HEADER_BYTES
    content = await asyncio.to_thread(_read_at_most, path, limit)
    if len(content) > limit:
        if suffix == ".json":
            raise BadRequest(f"data_url {shown(url)}: a .json file is read whole and may have less than {LARGE_JSON} bytes; save large inputs as .npy")
        raise BadRequest(f"data_url {shown(url)}: the file is larger than the largest tensor a request may send ({max_tensor_bytes} bytes)")
    if suffix == ".json":
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"data_url {shown(url)}: malformed JSON: {exc}") from None
    try:
        return np.load(io.BytesIO(content), allow_pickle=False)
    except ValueError as exc:  # not a .npy file, or an array of Python objects (which needs pickle)
        raise BadRequest(f"data_url {shown(url)}: not an array numpy can read without pickle: {exc}") from None


def _read_at_most(path: Path, limit: int) -> bytes:
    with path.open("rb") as file:
        return file.read(limit + 1)


def array_tensor(array: np.ndarray, spec: MetadataTensor, max_tensor_bytes: int) -> Tensor:
    """A .npy file's array as the model's one input: one data point (a dimension less than the
    input's shape) or a batch, of the input's datatype. Values are converted as JSON numbers are
    (a float rounds to a smaller float type, an integer must fit), never silently changed otherwise."""
    where = f"input {spec.name!r} (from data_url)"
    datatype = spec.datatype.value
    if array.ndim == len(spec.shape) - 1:
        array = array.reshape(1, *array.shape)
    shape = list(array.shape)
    check_size(datatype, element_count(shape, where), max_tensor_bytes, where)
    if datatype == "BYTES":
        if array.dtype.kind not in "US":
            raise BadRequest(f"{where} is BYTES: the array must hold strings, not {array.dtype}")
        return Tensor(spec.name, datatype, shape, data_from_json(datatype, shape, array.ravel().tolist(), where, max_tensor_bytes), {})
    target = NUMPY_DTYPES[datatype]
    kinds = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}[target.kind]  # what each kind of datatype takes
    if array.dtype.kind not in kinds:
        raise BadRequest(f"{where} is {datatype}: the array holds {array.dtype}, which it cannot take")
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"{where} is {datatype}: the array holds values out of its range")
    if target.kind == "f" and array.dtype.kind == "f" and array.dtype.itemsize > target.itemsize:
        finite = np.abs(array[np.isfinite(array)])
        if finite.size and finite.max() > np.finfo(target).max:
            raise BadRequest(f"{where} is {datatype}: the array holds values too large for it (they would become infinity)")
    return Tensor(spec.name, datatype, shape, np.ascontiguousarray(array, dtype=target), {})


# --- binary bodies -----------------------------------------------------------------------------------------


def is_binary_body(content_type: Optional[str]) -> bool:
    return content_type is not None and content_type.split(";")[0].strip().lower().startswith(BINARY_CONTENT_TYPES)


def binary_tensor(body: bytes, declared: list[MetadataTensor], max_tensor_bytes: int) -> Tensor:
    """A binary body (an image, say) as one BYTES element of the model's one input, as MLRun's router does."""
    spec = single_input(declared, "a binary body")
    where = f"input {spec.name!r}"
    if spec.datatype.value != "BYTES":
        raise BadRequest(f"a binary body is one BYTES element, but {where} is {spec.datatype.value}")
    check_size("BYTES", 1, max_tensor_bytes, where, content=len(body))
    return Tensor(spec.name, "BYTES", [1], pack_bytes([bytes(body)]), {})
