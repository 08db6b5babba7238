"""Codecs: convert V2 tensors and requests to and from Python values, by content type
(the names and behaviour of `mlserver.codecs`).

Importing this package registers the built-in codecs, in MLServer's order (the
order they are asked whether they can encode a payload): input codecs "str",
"np", "base64", "datetime"; request codecs "str", "np", "pd".
"""
# ruff: noqa: I001 (the imports run in registration order)

from .numpy import NumpyCodec, NumpyRequestCodec  # first: it registers the string codecs before its own
from .string import StringCodec, StringRequestCodec
from .pandas import PandasCodec
from .base64 import Base64Codec
from .datetime import DatetimeCodec
from .errors import CodecError
from .decorator import decode_args
from .base import (
    InputCodec,
    InputCodecLike,
    RequestCodec,
    RequestCodecLike,
    find_input_codec,
    find_request_codec,
    register_input_codec,
    register_request_codec,
)
from .utils import (
    DecodedParameterName,
    SingleInputRequestCodec,
    decode_inference_request,
    decode_request_input,
    encode_inference_response,
    encode_response_output,
    get_decoded,
    get_decoded_or_raw,
    has_decoded,
)

__all__ = [
    "CodecError",
    "NumpyCodec",
    "NumpyRequestCodec",
    "StringCodec",
    "StringRequestCodec",
    "Base64Codec",
    "DatetimeCodec",
    "PandasCodec",
    "InputCodec",
    "InputCodecLike",
    "RequestCodec",
    "RequestCodecLike",
    "DecodedParameterName",
    "register_input_codec",
    "register_request_codec",
    "has_decoded",
    "get_decoded",
    "get_decoded_or_raw",
    "encode_inference_response",
    "encode_response_output",
    "decode_request_input",
    "decode_inference_request",
    "decode_args",
    # beyond MLServer's list (it has them in submodules)
    "SingleInputRequestCodec",
    "find_input_codec",
    "find_request_codec",
]
