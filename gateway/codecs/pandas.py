"""Content type "pd": a whole request or response as a pandas DataFrame, one tensor per
column (as `mlserver.codecs.pandas`).

pandas is optional (`pip install inference-gateway[pandas]`) and imported only
when the codec is used: it costs a worker process a few tenths of a second and
tens of MiB. Without it the codec stays registered, so "pd" remains a known
content type, but using it raises NotSupported saying what to install.
"""

from __future__ import annotations

import math
import sys
from typing import Any, List, Optional, Tuple

import numpy as np

from ..errors import NotSupported
from ..types import Datatype, InferenceRequest, InferenceResponse, Parameters, RequestInput, ResponseOutput
from .base import RequestCodec, register_request_codec
from .errors import CodecError
from .json import decode_json_input_or_output, encode_to_json
from .lists import ListElement
from .numpy import _encode_data, to_datatype, to_dtype, to_ndarray
from .string import StringCodec, encode_str
from .utils import InputOrOutput, get_decoded, has_decoded, inject_batch_dimension


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise NotSupported("content type 'pd' (PandasCodec) needs pandas, which is not installed: pip install pandas") from None
    return pandas


class _DataFrameType:
    """PandasCodec.TypeHint: `pandas.DataFrame` once pandas is imported (a signature that names
    it has imported it), without importing pandas just to look codecs up."""

    def __get__(self, instance: Any, owner: type) -> Any:
        pd = sys.modules.get("pandas")
        return pd.DataFrame if pd is not None else "pandas.DataFrame"


def _to_series(input_or_output: InputOrOutput) -> Any:
    """One column. Each tensor's own decoded value is used when a content type decoded it
    before (`decode_inference_request` does: "pd" stacks with per-input content types)."""
    pd = _pandas()
    parameters = input_or_output.parameters
    if parameters and parameters.content_type == PandasCodec.JsonContentType:
        return pd.Series(decode_json_input_or_output(input_or_output))
    payload = get_decoded(input_or_output) if has_decoded(input_or_output) else to_ndarray(input_or_output)
    if isinstance(payload, np.ndarray):
        return pd.Series(_one_per_row(payload))
    if input_or_output.datatype == Datatype.BYTES:
        return pd.Series(payload)
    return pd.Series(payload, dtype=to_dtype(input_or_output))


def _one_per_row(array: np.ndarray) -> Any:
    """A [N] or [N, 1] tensor is one value per row; a wider one gives each row its own array
    (MLServer refuses those)."""
    if array.ndim > 1 and math.prod(array.shape[1:]) != 1:
        return list(array)
    return array.reshape(len(array) if array.ndim else 1)


def _to_response_output(series: Any, use_bytes: bool = True) -> ResponseOutput:
    name = str(series.name)
    numpy_dtype = _numpy_dtype(series.dtype)
    datatype = to_datatype(numpy_dtype)
    parameters = None
    if datatype is Datatype.BYTES:
        values = _nulls_as_none(series)
        data, content_type = _process_bytes(values, use_bytes)
        if content_type is None:
            data = [encode_to_json(item, use_bytes) for item in values]
            content_type = PandasCodec.JsonContentType
        parameters = Parameters(content_type=content_type)
    else:
        try:
            data = _encode_data(series.to_numpy(dtype=numpy_dtype))
        except (ValueError, TypeError):
            raise TypeError(
                f"PandasCodec cannot encode column {name!r} of dtype {series.dtype}: it has missing values, "
                f"which {datatype} cannot hold (fill them, or cast the column to float)"
            ) from None
    return ResponseOutput(
        name=name,
        shape=inject_batch_dimension(list(series.shape)),
        datatype=datatype,
        data=data,
        parameters=parameters,
    )


def _numpy_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype of a column's values: nullable Int64, boolean, ... name theirs;
    other pandas dtypes of Python objects ("str", "category") are object."""
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if isinstance(numpy_dtype, np.dtype):
        return numpy_dtype
    if isinstance(dtype, np.dtype):
        return dtype
    if dtype.kind == "O":
        return np.dtype(object)
    raise TypeError(f"PandasCodec cannot encode a column of dtype {dtype}: it has no V2 datatype")


def _nulls_as_none(series: Any) -> list:
    """The column's values, any missing value (None, NaN, NA, NaT) as None."""
    values = series.tolist()
    if series.isnull().any():
        pd = _pandas()
        return [None if value is None or value is pd.NA or value is pd.NaT or _is_nan(value) else value for value in values]
    return values


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _process_bytes(data: List[Any], use_bytes: bool = True) -> Tuple[List[Any], Optional[str]]:
    """All str and bytes: a "str" column (str encoded unless use_bytes=False). Anything else
    (numbers, None, lists, dicts...) leaves the content type open: the caller writes JSON."""
    content_type: Optional[str] = StringCodec.ContentType
    processed: List[ListElement] = []
    for item in data:
        if not isinstance(item, (str, bytes)):
            content_type = None
        elif isinstance(item, str) and use_bytes:
            item = encode_str(item)
        processed.append(item)
    return processed, content_type


@register_request_codec
class PandasCodec(RequestCodec):
    """Each input (output) is one column. Numeric and boolean columns travel as their
    datatype; columns of str or bytes as BYTES with content type "str"; any other column
    (numbers mixed with text, None, lists, dicts) as one JSON document per row, "pd_json"."""

    ContentType = "pd"
    JsonContentType = "pd_json"
    TypeHint = _DataFrameType()

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        # a DataFrame can exist only if pandas was imported already
        pd = sys.modules.get("pandas")
        return pd is not None and isinstance(payload, pd.DataFrame)

    @classmethod
    def encode_response(cls, model_name: str, payload: Any, model_version: Optional[str] = None, use_bytes: bool = True, **kwargs) -> InferenceResponse:
        return InferenceResponse(
            model_name=model_name,
            model_version=model_version,
            parameters=Parameters(content_type=cls.ContentType),
            outputs=cls.encode_outputs(payload, use_bytes=use_bytes),
        )

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        return cls._frame(response.outputs)

    @classmethod
    def encode_outputs(cls, payload: Any, use_bytes: bool = True) -> List[ResponseOutput]:
        pd = _pandas()
        if not isinstance(payload, pd.DataFrame):
            raise TypeError(f"PandasCodec encodes a pandas DataFrame, got {type(payload).__name__}")
        return [_to_response_output(payload[column], use_bytes=use_bytes) for column in payload]

    @classmethod
    def encode_request(cls, payload: Any, use_bytes: bool = True, **kwargs) -> InferenceRequest:
        return InferenceRequest(
            parameters=Parameters(content_type=cls.ContentType),
            inputs=[
                RequestInput(
                    name=output.name,
                    datatype=output.datatype,
                    shape=output.shape,
                    data=output.data,
                    parameters=output.parameters,
                )
                for output in cls.encode_outputs(payload, use_bytes=use_bytes)
            ],
        )

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        return cls._frame(request.inputs)

    @classmethod
    def _frame(cls, tensors: list) -> Any:
        pd = _pandas()
        columns = {tensor.name: _to_series(tensor) for tensor in tensors}
        rows = {name: len(column) for name, column in columns.items()}
        if len(set(rows.values())) > 1:
            # pandas would pad the short columns with NaN: a table the client never sent
            counts = ", ".join(f"{name!r} has {count} rows" for name, count in rows.items())
            raise CodecError(f"the tensors of content type 'pd' are columns of different lengths: {counts}")
        return pd.DataFrame(columns)
