"""Treat a payload as a list, whether it is a list or a single element (MLServer's `mlserver.codecs.lists`)."""

from __future__ import annotations

from typing import Any, Iterator, List, Union

import numpy as np

ListElement = Union[bytes, str]
ListPayload = Union[ListElement, List[ListElement]]


def is_list_of(payload: Any, instance_type: type) -> bool:
    """Whether payload is a list whose every element is an `instance_type` (an empty list is)."""
    return isinstance(payload, list) and all(isinstance(item, instance_type) for item in payload)


def as_list(payload: Any) -> Iterator[Any]:
    """The elements of a payload: a list's (nested lists and arrays flattened, row-major),
    else the payload itself as the one element."""
    if isinstance(payload, np.ndarray):
        yield from payload.ravel().tolist()
    elif isinstance(payload, (list, tuple)):
        for item in payload:
            if isinstance(item, (list, tuple, np.ndarray)):
                yield from as_list(item)
            else:
                yield item
    else:
        yield payload
