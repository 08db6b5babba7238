"""Codecs: convert V2 tensors and requests to and from Python values, by content type.

Importing this package registers the built-in codecs, in the order they are
tried when a codec is looked up by payload.
"""

from .base import (
    InputCodec,
    RequestCodec,
    SingleInputRequestCodec,
    find_input_codec,
    find_request_codec,
    register_input_codec,
    register_request_codec,
)
from .numpy import NumpyCodec, NumpyRequestCodec
from .string import StringCodec, StringRequestCodec
from .base64 import Base64Codec
from .pandas import PandasCodec
from .utils import (
    decode_inference_request,
    decode_request_input,
    encode_inference_response,
    encode_response_output,
)

__all__ = [
    "InputCodec",
    "RequestCodec",
    "SingleInputRequestCodec",
    "find_input_codec",
    "find_request_codec",
    "register_input_codec",
    "register_request_codec",
    "NumpyCodec",
    "NumpyRequestCodec",
    "StringCodec",
    "StringRequestCodec",
    "Base64Codec",
    "PandasCodec",
    "decode_inference_request",
    "decode_request_input",
    "encode_inference_response",
    "encode_response_output",
]
