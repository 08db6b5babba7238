#!/usr/bin/env python3
"""Train the example models on the iris data set that scikit-learn ships (needs `pip install -e ".[sklearn]"`).

    python examples/train.py              writes examples/iris-sklearn/model.joblib
    python examples/train.py --iris-mlp   also retrains config/iris-mlp/weights.npz (committed, so
                                          that config/ serves with numpy alone)
    python examples/train.py --sklearn-out DIR   writes DIR/model.joblib instead (scripts/benchmark.py
                                          trains it so with each server's own scikit-learn)

Both are deterministic: the same scikit-learn gives the same models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def iris_named() -> tuple[np.ndarray, np.ndarray]:
    """The iris features and each flower's class name."""
    iris = load_iris()
    return iris.data, iris.target_names[iris.target]


def train_iris_sklearn(folder: Path = HERE / "iris-sklearn") -> Pipeline:
    """Scaling + logistic regression; predict answers class names. Saved as folder/model.joblib."""
    features, names = iris_named()
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=1000))]).fit(features, names)
    joblib.dump(model, folder / "model.joblib")
    return model


def train_iris_mlp(path: Path = HERE.parent / "config" / "iris-mlp" / "weights.npz") -> MLPClassifier:
    """The 4 -> 16 -> 3 ReLU perceptron that config/iris-mlp/mlp.py computes with numpy (softmax output);
    the classes are in the order of iris.target_names, as its model-settings.json lists them."""
    iris = load_iris()
    model = MLPClassifier(hidden_layer_sizes=(16,), activation="relu", solver="lbfgs", max_iter=5000, random_state=0)
    model.fit(iris.data, iris.target)
    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    np.savez(path, **{k: v.astype(np.float32) for k, v in {"w1": w1, "b1": b1, "w2": w2, "b2": b2}.items()})
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iris-mlp", action="store_true", help="also retrain config/iris-mlp/weights.npz")
    parser.add_argument("--sklearn-out", type=Path, default=HERE / "iris-sklearn", help="folder for the scikit-learn model.joblib")
    args = parser.parse_args()
    model = train_iris_sklearn(args.sklearn_out)
    features, names = iris_named()
    print(f"{args.sklearn_out / 'model.joblib'}: accuracy on iris {np.mean(model.predict(features) == names):.3f}")
    if args.iris_mlp:
        mlp = train_iris_mlp()
        print(f"config/iris-mlp/weights.npz: accuracy on iris {mlp.score(features, load_iris().target):.3f}")


if __name__ == "__main__":
    main()
