"""Content type "pd": a whole request or response as a pandas DataFrame, one
tensor per column.

pandas is optional, and imported only when the codec is used (it costs a
worker process a few tenths of a second and tens of MiB). Without it the codec
stays registered, so "pd" remains a known content type, but using it raises
NotSupported saying what to install.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Optional

import numpy as np

from ..errors import BadRequest, NotSupported
from ..types import InferenceRequest, InferenceResponse, Parameters, RequestInput, ResponseOutput
from .base import RequestCodec, content_type_of, find_input_codec, register_request_codec
from .numpy import NumpyCodec


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise NotSupported("content type 'pd' (PandasCodec) needs pandas, which is not installed: pip install pandas") from None
    return pandas


@register_request_codec
class PandasCodec(RequestCodec):
    """Numeric and boolean columns travel as "np" tensors, str columns as "str",
    bytes columns as "base64"; decoding honours each tensor's own content type."""

    ContentType = "pd"
    TypeHint = "pandas.DataFrame"

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        # a DataFrame can exist only if pandas was imported already
        pd = sys.modules.get("pandas")
        return pd is not None and isinstance(payload, pd.DataFrame)

    @classmethod
    def encode_response(
        cls, model_name: str, payload: Any, model_version: Optional[str] = None, **kwargs
    ) -> InferenceResponse:
        return InferenceResponse(
            model_name=model_name,
            model_version=model_version,
            parameters=Parameters(content_type=cls.ContentType),
            outputs=_encode_columns(payload, as_input=False),
        )

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        return _decode_columns(response.outputs)

    @classmethod
    def encode_request(cls, payload: Any, **kwargs) -> InferenceRequest:
        return InferenceRequest(
            parameters=Parameters(content_type=cls.ContentType),
            inputs=_encode_columns(payload, as_input=True),
        )

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        return _decode_columns(request.inputs)


def _encode_columns(frame: Any, as_input: bool) -> list:
    pd = _pandas()
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"PandasCodec encodes a pandas DataFrame, got {type(frame).__name__}")
    tensors = []
    for column, series in frame.items():
        payload = _column_payload(series)
        codec = find_input_codec(payload=payload)
        if codec is None:
            raise TypeError(
                f"PandasCodec cannot encode column {column!r} of dtype {series.dtype}: "
                "its values must be all numbers, all booleans, all str or all bytes"
            )
        encode = codec.encode_input if as_input else codec.encode_output
        tensors.append(encode(str(column), payload))
    return tensors


def _column_payload(series: Any) -> Any:
    """Numbers and booleans as one array; anything else as a list, for the str/base64 codecs."""
    if series.dtype.kind in "biuf":
        # nullable extension dtypes (Int64, boolean, ...) name their numpy dtype;
        # without it they would become object arrays
        return series.to_numpy(dtype=getattr(series.dtype, "numpy_dtype", None))
    return series.tolist()


def _decode_columns(tensors: list[RequestInput] | list[ResponseOutput]) -> Any:
    pd = _pandas()
    columns = {}
    for tensor in tensors:
        # a tensor without a (known) content type is a plain array
        codec = find_input_codec(content_type_of(tensor)) or NumpyCodec
        decode = codec.decode_input if isinstance(tensor, RequestInput) else codec.decode_output
        columns[tensor.name] = _as_column(decode(tensor))
    try:
        return pd.DataFrame(columns)
    except ValueError as exc:
        raise BadRequest(f"content type 'pd': the tensors do not form a table ({exc})") from None


def _as_column(value: Any) -> Any:
    """A [N, 1] tensor is one value per row; a wider one gives each row its own array."""
    if isinstance(value, np.ndarray) and value.ndim > 1:
        return value.reshape(len(value)) if math.prod(value.shape[1:]) == 1 else list(value)
    return value
