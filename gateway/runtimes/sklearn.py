"""scikit-learn models saved with joblib or pickle (MLServer's `mlserver_sklearn.SKLearnModel`).

Outputs `predict` (by default), `predict_proba` and `transform`, as MLServer's.
Loading a pickle runs code from it: serve only model files you trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..codecs import PandasCodec
from ..errors import BadRequest
from ..types import RequestOutput, ResponseOutput
from .base import EstimatorModel, import_framework

import_framework("sklearn", "sklearn", "scikit-learn")  # what unpickling the model imports
joblib = import_framework("joblib", "sklearn", "joblib")


class SKLearnModel(EstimatorModel):
    model_files = ("model.joblib", "model.pickle", "model.pkl")
    output_methods = ("predict", "predict_proba", "transform")

    def load_model(self, path: Path) -> Any:
        return joblib.load(path)  # reads plain pickles too

    def encode_result(self, result: Any, request_output: RequestOutput, outputs_requested: int) -> list[ResponseOutput]:
        # a DataFrame (a transform with set_output(transform="pandas")) answers one output per column, as in MLServer
        if not PandasCodec.can_encode(result):
            return super().encode_result(result, request_output, outputs_requested)
        if outputs_requested > 1:
            raise BadRequest(f"{request_output.name!r} returns a DataFrame, whose columns become the outputs: request it alone")
        return PandasCodec.encode_outputs(result)
