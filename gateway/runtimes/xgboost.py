"""XGBoost models saved with `save_model` as .json, .ubj or .bst (MLServer's `mlserver_xgboost.XGBoostModel`).

Outputs `predict` (by default) and, for classifiers, `predict_proba`, as MLServer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import EstimatorModel, import_framework

xgboost = import_framework("xgboost", "xgboost", "XGBoost")


class XGBoostModel(EstimatorModel):
    model_files = ("model.bst", "model.json", "model.ubj")
    output_methods = ("predict", "predict_proba")

    def load_model(self, path: Path) -> Any:
        # through the scikit-learn interface, as MLServer: a model saved from an XGBClassifier refuses to
        # load as a regressor (TypeError); anything else, a bare Booster too, loads as a regressor,
        # whose predict is the booster's own output
        try:
            model = xgboost.XGBRegressor()
            model.load_model(str(path))
        except TypeError:
            model = xgboost.XGBClassifier()
            model.load_model(str(path))
        return model
