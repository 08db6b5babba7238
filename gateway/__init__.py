"""An Open Inference Protocol (KServe V2) model server.

Custom runtimes subclass `MLModel`; `gateway.types` has the protocol types,
`gateway.codecs` the codecs, and `log` / `register` (also in `gateway.metrics`)
the runtimes' custom metrics: the names of `mlserver`'s Python API.
"""

from .metrics import log, register
from .model import MLModel
from .settings import ModelSettings

__all__ = ["MLModel", "ModelSettings", "log", "register"]
