"""The predictor configuration of this model server (`kserve.context`), set by `ModelServer()`."""

import contextvars
from typing import Optional

from .predictor_config import PredictorConfig

_predictor_config: contextvars.ContextVar[Optional[PredictorConfig]] = contextvars.ContextVar("predictor_config", default=None)


def set_predictor_config(config: Optional[PredictorConfig]) -> None:
    _predictor_config.set(config)


def get_predictor_config() -> Optional[PredictorConfig]:
    return _predictor_config.get()
