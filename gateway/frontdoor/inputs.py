"""The inputs of one inference request, built the same way whichever front door reads them.

REST (JSON, the binary extension, a raw body, infer_dict) and gRPC (raw or typed contents) each
read their own wire form, and hand every input to one `RequestInputs`: it checks what the input
declares (datatype, shape, and the size that shape means against max_tensor_bytes) before any of
its data is read, converts the data by the rules of wire/datatypes.py, and refuses two inputs of
one name. A large input's data may be left for later (`later`): it is read once the whole request
has been checked against the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, shown
from ..wire.datatypes import check_datatype, check_size, data_from_json, data_from_raw, element_count
from ..wire.request import Tensor


@dataclass(slots=True)
class Declared:
    """An input's name, datatype and shape, checked."""

    name: str
    datatype: str
    shape: list[int]
    where: str  # how error messages name it


class RequestInputs:
    def __init__(self, max_tensor_bytes: int):
        self.max_tensor_bytes = max_tensor_bytes
        self.tensors: list[Tensor] = []

    def declare(self, name: str, datatype: Any, shape: Any) -> Declared:
        """Check what an input says of itself, its size included, before any of its data is read."""
        where = f"input {shown(name)}"
        checked = check_datatype(datatype, where)
        check_size(checked, element_count(shape, where), self.max_tensor_bytes, where)
        return Declared(name, checked, list(shape), where)

    def from_raw(self, declared: Declared, buf: memoryview | bytes, parameters: dict) -> Tensor:
        """An input whose data is raw bytes (binary extension, gRPC raw contents, a raw body): a view, no copy."""
        return self._add(declared, data_from_raw(declared.datatype, declared.shape, buf, declared.where, self.max_tensor_bytes), parameters)

    def from_json(self, declared: Declared, values: Any, parameters: dict) -> Tensor:
        """An input whose data is JSON values (or gRPC typed contents, or infer_dict's column)."""
        return self._add(declared, data_from_json(declared.datatype, declared.shape, values, declared.where, self.max_tensor_bytes), parameters)

    def later(self, declared: Declared, parameters: dict) -> Tensor:
        """An input whose data the front door converts once the request is checked (its data is None until then)."""
        return self._add(declared, None, parameters)

    def _add(self, declared: Declared, data: Any, parameters: dict) -> Tensor:
        tensor = Tensor(declared.name, declared.datatype, declared.shape, data, parameters)
        self.tensors.append(tensor)
        return tensor

    def finish(self) -> list[Tensor]:
        if len({t.name for t in self.tensors}) != len(self.tensors):
            raise BadRequest("input names must be unique")
        return self.tensors
