"""An Open Inference Protocol (KServe V2) model server.

Custom runtimes subclass `MLModel`; `gateway.types` has the protocol types,
`gateway.codecs` the codecs and `gateway.metrics` the runtimes' custom metrics.
"""

from .model import MLModel
from .settings import ModelSettings

__all__ = ["MLModel", "ModelSettings"]
