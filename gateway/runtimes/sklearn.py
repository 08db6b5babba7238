"""scikit-learn models saved with joblib or pickle (MLServer's `mlserver_sklearn.SKLearnModel`).

Outputs `predict` (by default), `predict_proba` and `transform`, as MLServer's.
Loading a pickle runs code from it: serve only model files you trust.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from ..tensors import datatype_of
from ..codecs import StringCodec
from ..types import Parameters, ResponseOutput
from .base import EstimatorModel, import_framework

import_framework("sklearn", "sklearn", "scikit-learn")  # what unpickling the model imports
joblib = import_framework("joblib", "sklearn", "joblib")


class SKLearnModel(EstimatorModel):
    model_files = ("model.joblib", "model.pickle", "model.pkl")
    output_methods = ("predict", "predict_proba", "transform")

    def load_model(self, path: Path) -> Any:
        return joblib.load(path)  # reads plain pickles too

    def encode_result(self, method: str, result: Any, methods_requested: int) -> list[ResponseOutput]:
        # a DataFrame (a transform with set_output(transform="pandas")) answers one output per column, as in MLServer
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(result, pandas.DataFrame):
            return super().encode_result(method, result, methods_requested)
        if methods_requested > 1:
            raise BadRequest(f"{method!r} returns a DataFrame, whose columns become the outputs: request it alone")
        return [_column_output(str(column), series) for column, series in result.items()]


def _column_output(name: str, series: Any) -> ResponseOutput:
    """One DataFrame column as MLServer's PandasCodec encodes it: [n, 1], strings as BYTES of content type str."""
    values = series.to_numpy()
    shape = [len(values), 1]
    if values.dtype.kind in "biuf":
        return ResponseOutput(name=name, datatype=datatype_of(values), shape=shape, data=values.reshape(shape))
    if not all(isinstance(value, (str, bytes)) for value in values):
        raise TypeError(f"column {name!r} of dtype {series.dtype} holds values that are neither numbers nor strings")
    return ResponseOutput(name=name, datatype="BYTES", shape=shape, data=list(values), parameters=Parameters(content_type=StringCodec.ContentType))
