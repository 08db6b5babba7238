"""V2 datatypes <-> numpy dtypes (`kserve.utils.numpy_codec`)."""

from typing import Any, Optional

import numpy as np

from ...wire.datatypes import NUMPY_DTYPES


def to_np_dtype(datatype: str) -> Optional[np.dtype]:
    """The numpy dtype of a V2 datatype (BYTES: object), None for an unknown one."""
    return NUMPY_DTYPES.get(datatype)


def from_np_dtype(np_dtype: Any) -> Optional[str]:
    """The V2 datatype of a numpy dtype, None if it has none.

    Object, bytes, str and datetime64 arrays are BYTES (as KServe). A non-native byte
    order has no datatype: its bytes would be read back wrong."""
    dtype = np.dtype(np_dtype)
    if dtype.kind in "OSUM":
        return "BYTES"
    for datatype, candidate in NUMPY_DTYPES.items():
        if dtype == candidate:
            return datatype
    return None
