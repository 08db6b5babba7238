"""Built-in runtimes: serve a saved scikit-learn, XGBoost, LightGBM or ONNX model with no code.

A model-settings.json names one as its `implementation`, by our name or by
MLServer's, so MLServer model folders start unchanged:

    gateway.runtimes.sklearn.SKLearnModel    mlserver_sklearn.SKLearnModel
    gateway.runtimes.xgboost.XGBoostModel    mlserver_xgboost.XGBoostModel
    gateway.runtimes.lightgbm.LightGBMModel  mlserver_lightgbm.LightGBMModel
    gateway.runtimes.onnx.ONNXModel          (MLServer has no ONNX runtime)

Each framework is an optional extra (`pip install "inference-gateway[sklearn]"`,
`[xgboost]`, `[lightgbm]`, `[onnx]`) and is imported only by the worker of a
model that uses it; this package itself imports nothing but the standard library.
"""

from __future__ import annotations

# MLServer's runtime classes cannot run here (they subclass mlserver.MLModel), so their
# names always mean ours, even where the mlserver_* packages happen to be installed.
MLSERVER_NAMES = {
    "mlserver_sklearn.SKLearnModel": "gateway.runtimes.sklearn.SKLearnModel",
    "mlserver_xgboost.XGBoostModel": "gateway.runtimes.xgboost.XGBoostModel",
    "mlserver_lightgbm.LightGBMModel": "gateway.runtimes.lightgbm.LightGBMModel",
}


def resolve_implementation(implementation: str) -> str:
    """The `module.Class` to import for a model-settings `implementation`."""
    return MLSERVER_NAMES.get(implementation, implementation)
