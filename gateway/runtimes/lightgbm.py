"""LightGBM boosters saved with `save_model` as text (.txt, or MLServer's model.bst)
(MLServer's `mlserver_lightgbm.LightGBMModel`).

One output, `predict`: the booster's prediction (class probabilities for a classifier), as MLServer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import EstimatorModel, import_framework

lightgbm = import_framework("lightgbm", "lightgbm", "LightGBM")


class LightGBMModel(EstimatorModel):
    model_files = ("model.bst", "model.txt")
    input_errors = (ValueError, lightgbm.basic.LightGBMError)  # the latter for a wrong feature count

    def load_model(self, path: Path) -> Any:
        return lightgbm.Booster(model_file=str(path))
