"""JSON helpers (as `mlserver.codecs.json`): values as JSON text in BYTES tensors, and
JSON documents that may hold bytes or numpy values."""

from __future__ import annotations

import json
from typing import Any, List, Union

import numpy as np
import orjson

from .errors import CodecError
from .utils import InputOrOutput, bytes_elements, tensor_label


def _bytes_as_text(obj: Any) -> str:
    """orjson's fallback: bytes become text (best effort, as MLServer's REST answers do)."""
    if isinstance(obj, bytes):
        return obj.decode()
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def encode_to_json_bytes(v: Any) -> bytes:
    """JSON of a document that may hold bytes (written as UTF-8 text)."""
    return orjson.dumps(v, default=_bytes_as_text)


def decode_from_bytelike_json_to_dict(v: Union[bytes, str]) -> dict:
    return orjson.loads(v)


class JSONEncoderWithArray(json.JSONEncoder):
    """`json.JSONEncoder` that also writes numpy arrays and numpy numbers."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.floating):
            return float(obj)
        if isinstance(obj, np.integer):
            return int(obj)
        return super().default(obj)


def encode_to_json(v: Any, use_bytes: bool = True) -> Union[str, bytes]:
    """Compact JSON of one value (NaN is refused: JSON has none); UTF-8 bytes unless use_bytes=False."""
    encoded = json.dumps(v, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"), cls=JSONEncoderWithArray)
    return encoded.encode("utf-8") if use_bytes else encoded


def decode_json_input_or_output(input_or_output: InputOrOutput) -> List[Any]:
    """Each element of a BYTES tensor read as one JSON document."""
    decoded = []
    for index, item in enumerate(bytes_elements(input_or_output, "pd_json")):
        try:
            decoded.append(json.loads(item))
        except (ValueError, TypeError) as exc:
            raise CodecError(f"{tensor_label(input_or_output)}: element {index} is not JSON ({exc})") from None
    return decoded
