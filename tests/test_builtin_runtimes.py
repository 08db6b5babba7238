"""The built-in runtimes (scikit-learn, XGBoost, LightGBM, ONNX) through one real gateway.

The models are trained here, when the module starts, on data sets scikit-learn ships.
Every answer is compared with the framework's own predict / predict_proba /
InferenceSession.run on the same rows, over REST JSON, REST binary
(tritonclient.http) and gRPC (tritonclient.grpc); the output names, datatypes and
shapes MLServer's runtimes give are spelled out here, not taken from our codecs.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import xgboost
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from tritonclient.utils import InferenceServerException

from gateway.codecs.numpy import to_datatype
from gateway.wire.datatypes import NUMPY_DTYPES

from .conftest import ROOT
from .test_observability import labels, metrics_of

IRIS = load_iris()
IRIS_NAMES = IRIS.target_names[IRIS.target]
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_FRAME = pd.DataFrame(IRIS.data, columns=COLUMNS)
DIABETES = load_diabetes()
# 600 x 4 FP64 = 19.2 KB and 442 x 10 FP64 = 35 KB go through shared memory; 3 rows travel inline (< 16 KiB)
IRIS_ROWS = np.tile(IRIS.data, (4, 1))
FEW_ROWS = IRIS.data[[0, 75, 149]]
DIABETES_ROWS = DIABETES.data
PROTOCOLS = ["rest-json", "rest-binary", "grpc"]
# model folders whose load must fail: their parameters, and the reason their ready answer gives
UNLOADABLE = {
    "sk-no-file": (
        {},
        "FileNotFoundError: no model file in {folder}: expected one of model.joblib, model.pickle, model.pkl, or parameters.uri naming the file",
    ),
    "sk-remote": (
        {"uri": "s3://models/iris.joblib"},
        "ValueError: parameters.uri 's3://models/iris.joblib': only local files are supported; put the model file in the model's folder",
    ),
    "sk-bad-predict-fn": (
        {"uri": "../sk-iris/classifier.joblib", "extra": {"predict_fn": "explode"}},
        "ValueError: parameters.extra.predict_fn is 'explode': LogisticRegression has no such method",
    ),
}
# model folder -> (module the runtime imports, its package's name, the extra that installs it)
FRAMEWORKS = {
    "no-sklearn": ("sklearn", "scikit-learn", "sklearn", "mlserver_sklearn.SKLearnModel"),
    "no-xgboost": ("xgboost", "XGBoost", "xgboost", "gateway.runtimes.xgboost.XGBoostModel"),
    "no-lightgbm": ("lightgbm", "LightGBM", "lightgbm", "mlserver_lightgbm.LightGBMModel"),
    "no-onnxruntime": ("onnxruntime", "ONNX Runtime", "onnx", "gateway.runtimes.onnx.ONNXModel"),
}


def folder(root: Path, name: str, settings: dict) -> Path:
    path = root / name
    path.mkdir()
    (path / "model-settings.json").write_text(json.dumps({"name": name, **settings}))
    return path


def iris_onnx_graph(classifier: LogisticRegression) -> onnx.ModelProto:
    """The logistic regression as an ONNX graph: probabilities, the class index, and a ZipMap
    of the probabilities (a sequence of maps, which V2 cannot carry)."""
    weights = numpy_helper.from_array(classifier.coef_.T.astype(np.float32), "weights")
    bias = numpy_helper.from_array(classifier.intercept_.astype(np.float32), "bias")
    nodes = [
        helper.make_node("MatMul", ["features", "weights"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        helper.make_node("ZipMap", ["probabilities"], ["zipped"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]),
    ]
    zipped_type = helper.make_sequence_type_proto(helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    graph = helper.make_graph(
        nodes,
        "iris",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_value_info("zipped", zipped_type),
        ],
        [weights, bias],
    )
    return _onnx_model(graph, helper.make_opsetid("ai.onnx.ml", 3))


def text_onnx_graph() -> onnx.ModelProto:
    """Strings in, strings and numbers out: each word's class index (-1 for none) and the words themselves."""
    nodes = [
        helper.make_node(
            "LabelEncoder", ["words"], ["index"], domain="ai.onnx.ml", keys_strings=list(IRIS.target_names), values_int64s=[0, 1, 2], default_int64=-1
        ),
        helper.make_node("Identity", ["words"], ["echo"]),
    ]
    graph = helper.make_graph(
        nodes,
        "text",
        [helper.make_tensor_value_info("words", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("index", TensorProto.INT64, [None]), helper.make_tensor_value_info("echo", TensorProto.STRING, [None])],
    )
    return _onnx_model(graph, helper.make_opsetid("ai.onnx.ml", 3))


def _onnx_model(graph, *opsets) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *opsets])
    model.ir_version = 8  # what every ONNX Runtime since 1.10 reads
    onnx.checker.check_model(model)
    return model


def train_shipped_example(target: Path):
    """examples/iris-sklearn, trained by examples/train.py into a copy of its folder."""
    shutil.copytree(ROOT / "examples" / "iris-sklearn", target)
    spec = importlib.util.spec_from_file_location("example_train", ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.train_iris_sklearn(target)


def build_repository(root: Path) -> dict:
    """Train every model into its folder; returns the trained models by model name."""
    trained = {}
    sk = "gateway.runtimes.sklearn.SKLearnModel"

    trained["sk-iris"] = LogisticRegression(max_iter=1000).fit(IRIS.data, IRIS_NAMES)
    path = folder(root, "sk-iris", {"implementation": sk, "parameters": {"uri": "./classifier.joblib", "version": "1"}})
    joblib.dump(trained["sk-iris"], path / "classifier.joblib")
    path = folder(root, "sk-iris-batched", {"implementation": sk, "max_batch_size": 16, "parameters": {"uri": "./classifier.joblib"}})
    joblib.dump(trained["sk-iris"], path / "classifier.joblib")

    # a plain pickle under a well-known name, and no uri: MLServer then looks in the model's folder
    trained["sk-diabetes"] = Ridge().fit(DIABETES.data, DIABETES.target)
    path = folder(root, "sk-diabetes", {"implementation": sk})
    (path / "model.pkl").write_bytes(pickle.dumps(trained["sk-diabetes"]))

    trained["sk-frame"] = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=1000))]).fit(IRIS_FRAME, IRIS.target)
    path = folder(root, "sk-frame", {"implementation": sk, "parameters": {"uri": "./model.joblib", "extra": {"predict_fn": "predict_proba"}}})
    joblib.dump(trained["sk-frame"], path / "model.joblib")

    trained["sk-scaler"] = StandardScaler().set_output(transform="pandas").fit(IRIS_FRAME)
    path = folder(root, "sk-scaler", {"implementation": sk, "parameters": {"content_type": "pd", "extra": {"predict_fn": "transform"}}})
    joblib.dump(trained["sk-scaler"], path / "model.joblib")

    # a transform answering a sparse matrix
    trained["sk-onehot"] = OneHotEncoder(handle_unknown="ignore").fit(np.round(IRIS.data).astype(np.int64))
    path = folder(root, "sk-onehot", {"implementation": sk, "parameters": {"extra": {"predict_fn": "transform"}}})
    joblib.dump(trained["sk-onehot"], path / "model.joblib")

    # MLServer's own example folder (docs/examples/sklearn), unchanged but for the model
    trained["mlserver-sklearn"] = SVC().fit(IRIS.data, IRIS.target)
    path = folder(
        root, "mlserver-sklearn", {"implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./iris-svm.joblib", "version": "v0.1.0"}}
    )
    joblib.dump(trained["mlserver-sklearn"], path / "iris-svm.joblib")

    trained["xgb-iris"] = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(IRIS.data, IRIS.target)
    path = folder(root, "xgb-iris", {"implementation": "mlserver_xgboost.XGBoostModel", "parameters": {"uri": "./iris.json"}})
    trained["xgb-iris"].save_model(path / "iris.json")
    # a folder uri: the well-known model.ubj in it
    trained["xgb-diabetes"] = xgboost.XGBRegressor(n_estimators=8, max_depth=3).fit(DIABETES.data, DIABETES.target)
    path = folder(root, "xgb-diabetes", {"implementation": "gateway.runtimes.xgboost.XGBoostModel", "parameters": {"uri": "."}})
    trained["xgb-diabetes"].save_model(path / "model.ubj")

    params = {"verbose": -1, "num_threads": 1}
    trained["lgb-iris"] = lightgbm.train({**params, "objective": "multiclass", "num_class": 3}, lightgbm.Dataset(IRIS.data, IRIS.target), 8)
    path = folder(root, "lgb-iris", {"implementation": "mlserver_lightgbm.LightGBMModel", "parameters": {"uri": "./iris.txt"}})
    trained["lgb-iris"].save_model(path / "iris.txt")
    trained["lgb-diabetes"] = lightgbm.train({**params, "objective": "regression"}, lightgbm.Dataset(DIABETES.data, DIABETES.target), 8)
    path = folder(root, "lgb-diabetes", {"implementation": "gateway.runtimes.lightgbm.LightGBMModel"})
    trained["lgb-diabetes"].save_model(path / "model.bst")

    for name, graph in (("onnx-iris", iris_onnx_graph(trained["sk-iris"])), ("onnx-text", text_onnx_graph())):
        path = folder(root, name, {"implementation": "gateway.runtimes.onnx.ONNXModel"})
        onnx.save(graph, path / "model.onnx")
        trained[name] = onnxruntime.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])

    trained["iris-sklearn"] = train_shipped_example(root / "iris-sklearn")

    for name, (parameters, _) in UNLOADABLE.items():
        folder(root, name, {"implementation": sk, "parameters": parameters})

    # a machine without the framework: the model's folder comes first on the worker's sys.path,
    # so a module of the framework's name there fails its import as a missing package does
    for name, (module, _, _, implementation) in FRAMEWORKS.items():
        path = folder(root, name, {"implementation": implementation})
        (path / f"{module}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    return trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtimes")
    models = build_repository(root)
    models["repository"] = root
    return models


@pytest.fixture(scope="module")
def gateway(start_gateway, trained):
    """One gateway serving every folder; fails at once, with the reasons, if a model did not load as expected."""
    gateway = start_gateway(trained["repository"])
    index = lambda: requests.post(f"{gateway.url}/v2/repository/index", json={}).json()  # noqa: E731
    gateway.wait_for(lambda: all(model["state"] not in ("LOADING", "UNKNOWN") for model in index()), timeout=120, what="every model's load")
    states = {model["name"]: (model["state"], model["reason"]) for model in index()}
    expected = {path.name: "UNAVAILABLE" if path.name in {*FRAMEWORKS, *UNLOADABLE} else "READY" for path in trained["repository"].iterdir()}
    assert {name: state for name, (state, _) in states.items()} == expected, states
    yield gateway
    while CLIENTS:  # closed and dropped here, in this thread, while grpc and gevent still stand
        CLIENTS.popitem()[1].close()


# --------------------------------------------------------------------------- calling the gateway three ways

# one tritonclient per protocol for the module, closed with its gateway: a tritonclient.http client
# garbage-collected in another thread (the batching test's) fails in gevent
CLIENTS: dict = {}


def client(gateway, protocol: str):
    if protocol not in CLIENTS:
        CLIENTS[protocol] = (
            httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
            if protocol == "rest-binary"
            else grpcclient.InferenceServerClient(gateway.grpc_url)
        )
    return CLIENTS[protocol]


def infer(gateway, protocol: str, model: str, inputs: dict[str, np.ndarray], outputs=None, parameters=None) -> list[tuple]:
    """The answer as [(name, datatype, shape, array)], in the order the gateway gave them."""
    if protocol == "rest-json":
        body = {"inputs": [{"name": n, "datatype": to_datatype(a.dtype).value, "shape": list(a.shape), "data": json_data(a)} for n, a in inputs.items()]}
        if outputs is not None:
            body["outputs"] = [{"name": o} for o in outputs]
        if parameters:
            body["parameters"] = parameters
        response = requests.post(f"{gateway.url}/v2/models/{model}/infer", data=json.dumps(body), timeout=30)
        if response.status_code != 200:
            raise InferenceServerException(response.json()["error"], status=str(response.status_code))
        return [(o["name"], o["datatype"], o["shape"], from_json(o)) for o in response.json()["outputs"]]
    module = httpclient if protocol == "rest-binary" else grpcclient
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(name, list(array.shape), to_datatype(array.dtype).value)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    requested = None if outputs is None else [module.InferRequestedOutput(o) for o in outputs]
    result = client(gateway, protocol).infer(model, tensors, outputs=requested, parameters=parameters)
    if protocol == "rest-binary":
        described = [(o["name"], o["datatype"], o["shape"]) for o in result.get_response()["outputs"]]
    else:
        described = [(o.name, o.datatype, list(o.shape)) for o in result.get_response().outputs]
    return [(name, datatype, shape, result.as_numpy(name)) for name, datatype, shape in described]


def json_data(array: np.ndarray) -> list:
    return [item.decode() for item in array.ravel()] if array.dtype == object else array.ravel().tolist()


def from_json(output: dict) -> np.ndarray:
    if output["datatype"] == "BYTES":
        return np.array([item.encode() for item in output["data"]], dtype=object).reshape(output["shape"])
    return np.array(output["data"], dtype=NUMPY_DTYPES[output["datatype"]]).reshape(output["shape"])


def assert_answers(gateway, model: str, inputs, expected: list[tuple], outputs=None, parameters=None) -> None:
    """Every protocol answers exactly `expected`: [(name, datatype, array of the expected shape)]."""
    if isinstance(inputs, np.ndarray):
        inputs = {"input-0": inputs}
    for protocol in PROTOCOLS:
        answer = infer(gateway, protocol, model, inputs, outputs, parameters)
        assert [(n, d, s) for n, d, s, _ in answer] == [(n, d, list(a.shape)) for n, d, a in expected], protocol
        for (name, _, _, got), (_, _, want) in zip(answer, expected):
            np.testing.assert_array_equal(got, want, err_msg=f"{protocol}: output {name}")


def assert_refused(gateway, model: str, inputs, message: str, outputs=None, parameters=None, protocols=PROTOCOLS) -> None:
    """Every protocol refuses the request as the client's fault, with `message` in the error."""
    if isinstance(inputs, np.ndarray):
        inputs = {"input-0": inputs}
    for protocol in protocols:
        with pytest.raises(InferenceServerException) as refused:
            infer(gateway, protocol, model, inputs, outputs, parameters)
        assert refused.value.status() == ("StatusCode.INVALID_ARGUMENT" if protocol == "grpc" else "400"), protocol
        assert message in refused.value.message(), protocol


def names(labels) -> np.ndarray:
    """Class names as a BYTES column, as MLServer answers a string predict: [n, 1]."""
    return np.array([label.encode() for label in labels], dtype=object).reshape(-1, 1)


def column(values: np.ndarray) -> np.ndarray:
    """MLServer's NumpyCodec answers a 1-D result as one column."""
    return values.reshape(-1, 1)


# --------------------------------------------------------------------------- scikit-learn


def test_sklearn_classifier_answers_predict_by_default_and_the_outputs_requested(gateway, trained):
    classifier = trained["sk-iris"]
    for rows in (IRIS_ROWS, FEW_ROWS):
        assert_answers(gateway, "sk-iris", rows, [("predict", "BYTES", names(classifier.predict(rows)))])
        assert_answers(
            gateway,
            "sk-iris",
            rows,
            [("predict_proba", "FP64", classifier.predict_proba(rows)), ("predict", "BYTES", names(classifier.predict(rows)))],
            outputs=["predict_proba", "predict"],
        )
    # float32 rows are given to the model as they are
    rows32 = IRIS_ROWS.astype(np.float32)
    assert_answers(gateway, "sk-iris", rows32, [("predict_proba", "FP64", classifier.predict_proba(rows32))], outputs=["predict_proba"])


def test_sklearn_regressor_from_a_pickle_found_in_the_model_folder(gateway, trained):
    regressor = trained["sk-diabetes"]
    assert_answers(gateway, "sk-diabetes", DIABETES_ROWS, [("predict", "FP64", column(regressor.predict(DIABETES_ROWS)))])
    assert_refused(gateway, "sk-diabetes", DIABETES_ROWS, "Ridge models do not support 'predict_proba'", outputs=["predict_proba"])
    assert_answers(gateway, "sk-diabetes", DIABETES_ROWS, [("predict", "FP64", column(regressor.predict(DIABETES_ROWS)))])


def test_sklearn_dataframe_input_and_predict_fn(gateway, trained):
    """Content type pd: one tensor per column, as MLServer's PandasCodec sends a DataFrame; extra.predict_fn
    makes predict_proba the default output."""
    pipeline = trained["sk-frame"]
    frame = pd.concat([IRIS_FRAME] * 4, ignore_index=True)
    columns = {name: frame[name].to_numpy().reshape(-1, 1) for name in COLUMNS}
    assert_answers(gateway, "sk-frame", columns, [("predict_proba", "FP64", pipeline.predict_proba(frame))], parameters={"content_type": "pd"})
    assert_answers(
        gateway, "sk-frame", columns, [("predict", "INT64", column(pipeline.predict(frame)))], outputs=["predict"], parameters={"content_type": "pd"}
    )


def test_sklearn_dataframe_result_answers_one_output_per_column(gateway, trained):
    """A transform returning a DataFrame answers its columns, each [n, 1], as MLServer's PandasCodec encodes them;
    the model declares content type pd in its settings, so the request need not."""
    scaled = trained["sk-scaler"].transform(IRIS_FRAME)
    columns = {name: IRIS_FRAME[name].to_numpy() for name in COLUMNS}
    assert_answers(gateway, "sk-scaler", columns, [(name, "FP64", column(scaled[name].to_numpy())) for name in COLUMNS])
    assert_refused(
        gateway, "sk-scaler", columns, "'transform' returns a DataFrame, whose columns become the outputs: request it alone", outputs=["transform", "transform"]
    )
    assert_answers(gateway, "sk-scaler", columns, [(name, "FP64", column(scaled[name].to_numpy())) for name in COLUMNS])


def test_sklearn_sparse_result_answers_its_dense_form(gateway, trained):
    rows = np.round(IRIS_ROWS).astype(np.int64)
    encoded = trained["sk-onehot"].transform(rows)
    assert hasattr(encoded, "toarray")  # scipy sparse
    assert_answers(gateway, "sk-onehot", rows, [("transform", "FP64", encoded.toarray())])


def test_mlserver_model_folder_starts_unchanged(gateway, trained):
    svm = trained["mlserver-sklearn"]
    metadata = requests.get(f"{gateway.url}/v2/models/mlserver-sklearn/versions/v0.1.0").json()
    assert metadata["name"] == "mlserver-sklearn"
    assert_answers(gateway, "mlserver-sklearn", IRIS_ROWS, [("predict", "INT64", column(svm.predict(IRIS_ROWS)))])
    assert "mlserver_sklearn.SKLearnModel is served by the built-in gateway.runtimes.sklearn.SKLearnModel" in gateway.log_text()


def test_refused_outputs_and_inputs_and_the_models_keep_serving(gateway, trained):
    classifier = trained["sk-iris"]
    assert_refused(
        gateway,
        "sk-iris",
        IRIS_ROWS,
        "SKLearnModel only supports 'predict', 'predict_proba' and 'transform' as outputs ('decision_function' was requested)",
        outputs=["decision_function"],
    )
    assert_refused(gateway, "sk-iris", IRIS_ROWS, "LogisticRegression models do not support 'transform'", outputs=["transform"])
    assert_refused(gateway, "mlserver-sklearn", IRIS_ROWS, "SVC models do not support 'predict_proba'", outputs=["predict_proba"])
    two_tensors = {"a": IRIS_ROWS, "b": IRIS_ROWS}
    assert_refused(gateway, "sk-iris", two_tensors, "The 'np' codec only supports a single input tensor (2 were received)")
    five_features = np.ones((3, 5))
    assert_refused(
        gateway, "sk-iris", five_features, "LogisticRegression.predict refused the input: X has 5 features, but LogisticRegression is expecting 4 features"
    )
    assert_refused(gateway, "xgb-iris", five_features, "XGBClassifier.predict refused the input: Feature shape mismatch, expected: 4, got 5")
    assert_refused(
        gateway,
        "lgb-iris",
        five_features,
        "Booster.predict refused the input: The number of features in data (5) is not the same as it was in training data (4)",
    )
    assert_answers(gateway, "xgb-iris", IRIS_ROWS, [("predict", "INT64", column(trained["xgb-iris"].predict(IRIS_ROWS)))])
    assert_answers(gateway, "lgb-iris", IRIS_ROWS, [("predict", "FP64", trained["lgb-iris"].predict(IRIS_ROWS))])
    assert_answers(gateway, "sk-iris", IRIS_ROWS, [("predict", "BYTES", names(classifier.predict(IRIS_ROWS)))])


def test_shipped_sklearn_example_answers_class_names(gateway, trained):
    example = trained["iris-sklearn"]
    readme_rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    assert_answers(gateway, "iris-sklearn", readme_rows, [("predict", "BYTES", names(["setosa", "virginica"]))])
    answer = infer(gateway, "rest-json", "iris-sklearn", {"features": IRIS.data})
    predicted = [label.decode() for label in answer[0][3].ravel()]
    assert predicted == example.predict(IRIS.data).tolist()
    assert np.mean(np.array(predicted) == IRIS_NAMES) > 0.95


# --------------------------------------------------------------------------- XGBoost and LightGBM


def test_xgboost_classifier(gateway, trained):
    classifier = trained["xgb-iris"]
    assert_answers(gateway, "xgb-iris", IRIS_ROWS, [("predict", "INT64", column(classifier.predict(IRIS_ROWS)))])
    assert_answers(gateway, "xgb-iris", IRIS_ROWS, [("predict_proba", "FP32", classifier.predict_proba(IRIS_ROWS))], outputs=["predict_proba"])


def test_xgboost_regressor_from_a_folder_uri(gateway, trained):
    regressor = trained["xgb-diabetes"]
    assert_answers(gateway, "xgb-diabetes", DIABETES_ROWS, [("predict", "FP32", column(regressor.predict(DIABETES_ROWS)))])
    assert_refused(gateway, "xgb-diabetes", DIABETES_ROWS, "XGBRegressor models do not support 'predict_proba'", outputs=["predict_proba"])
    assert_answers(gateway, "xgb-diabetes", DIABETES_ROWS, [("predict", "FP32", column(regressor.predict(DIABETES_ROWS)))])


def test_lightgbm_classifier_answers_the_boosters_probabilities(gateway, trained):
    booster = trained["lgb-iris"]
    assert_answers(gateway, "lgb-iris", IRIS_ROWS, [("predict", "FP64", booster.predict(IRIS_ROWS))])
    assert_refused(
        gateway, "lgb-iris", IRIS_ROWS, "LightGBMModel only supports 'predict' as outputs ('predict_proba' was requested)", outputs=["predict_proba"]
    )
    assert_answers(gateway, "lgb-iris", IRIS_ROWS, [("predict", "FP64", booster.predict(IRIS_ROWS))], outputs=["predict"])


def test_lightgbm_regressor_from_the_wellknown_model_bst(gateway, trained):
    booster = trained["lgb-diabetes"]
    assert_answers(gateway, "lgb-diabetes", DIABETES_ROWS, [("predict", "FP64", column(booster.predict(DIABETES_ROWS)))])


# --------------------------------------------------------------------------- ONNX


def test_onnx_metadata_comes_from_the_graph(gateway):
    metadata = requests.get(f"{gateway.url}/v2/models/onnx-iris").json()
    assert metadata == {
        "name": "onnx-iris",
        "versions": [],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        # the ZipMap output (a sequence of maps) has no V2 form
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}, {"name": "label", "datatype": "INT64", "shape": [-1]}],
    }
    assert "outputs zipped (seq(map(int64,tensor(float)))) are not tensors" in gateway.log_text()
    text = requests.get(f"{gateway.url}/v2/models/onnx-text").json()
    assert text["inputs"] == [{"name": "words", "datatype": "BYTES", "shape": [-1]}]
    assert text["outputs"] == [{"name": "index", "datatype": "INT64", "shape": [-1]}, {"name": "echo", "datatype": "BYTES", "shape": [-1]}]


def test_onnx_answers_the_graphs_outputs_with_their_shapes(gateway, trained):
    session = trained["onnx-iris"]
    rows = IRIS_ROWS.astype(np.float32)
    probabilities, label = session.run(["probabilities", "label"], {"features": rows})
    assert_answers(gateway, "onnx-iris", {"features": rows}, [("probabilities", "FP32", probabilities), ("label", "INT64", label)])
    assert_answers(gateway, "onnx-iris", {"features": rows}, [("label", "INT64", label)], outputs=["label"])


def test_onnx_string_tensors(gateway, trained):
    words = np.array([b"setosa", b"virginica", "b\xc3\xa9ta".encode()] * 1000, dtype=object)  # 16+ KiB of BYTES
    index, echo = trained["onnx-text"].run(["index", "echo"], {"words": np.array([w.decode() for w in words], dtype=object)})
    assert index[:3].tolist() == [0, 2, -1]
    assert_answers(gateway, "onnx-text", {"words": words}, [("index", "INT64", index), ("echo", "BYTES", np.array([e.encode() for e in echo], dtype=object))])


def test_onnx_refuses_inputs_that_do_not_fit_the_graph(gateway, trained):
    rows = IRIS_ROWS.astype(np.float32)
    assert_refused(gateway, "onnx-iris", {"features": IRIS_ROWS}, "input 'features' must be FP32, got FP64")
    assert_refused(gateway, "onnx-iris", {"petals": rows}, "unknown input 'petals'")
    assert_refused(gateway, "onnx-iris", {"features": np.ones((3, 5), np.float32)}, "input 'features' must have shape [-1, 4]")
    assert_refused(gateway, "onnx-iris", {"features": rows}, "unknown output(s) ['zipped']", outputs=["zipped"])
    assert_refused(
        gateway, "onnx-text", {"words": np.array([b"\xff"], dtype=object)}, "input 'words': a string tensor needs UTF-8", protocols=["rest-binary", "grpc"]
    )  # JSON cannot carry it
    probabilities, label = trained["onnx-iris"].run(["probabilities", "label"], {"features": rows})
    assert_answers(gateway, "onnx-iris", {"features": rows}, [("probabilities", "FP32", probabilities), ("label", "INT64", label)])


# --------------------------------------------------------------------------- batching


def inflight(gateway, model: str) -> float:
    return metrics_of(gateway)["gateway_inflight_requests"][labels(model=model, version="")]


def merged_calls(gateway, model: str) -> int:
    stats = requests.get(f"{gateway.url}/v2/models/{model}/stats").json()["model_stats"][0]["batch_stats"]
    return sum(entry["compute_infer"]["count"] for entry in stats if entry["batch_size"] > 1)


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(gateway, trained):
    """While a large request keeps the worker busy, small ones queue and leave together; each gets exactly the
    rows of its own flowers. Merging depends on timing, so a round that merged nothing is tried again."""
    classifier = trained["sk-iris"]
    big = np.tile(IRIS.data, (4000, 1))  # 600,000 rows
    for _ in range(5):
        before = merged_calls(gateway, "sk-iris-batched")
        answers: dict = {}
        blocker = threading.Thread(target=lambda: answers.update(big=infer(gateway, "grpc", "sk-iris-batched", {"x": big}, outputs=["predict_proba"])))
        blocker.start()
        gateway.wait_for(lambda: inflight(gateway, "sk-iris-batched") >= 1, what="the large request")
        start = threading.Barrier(8)

        def small(i: int) -> None:
            rows = IRIS.data[i * 17 : i * 17 + 1 + i]  # 1 to 8 rows, different flowers for each caller
            start.wait()
            answers[i] = (rows, infer(gateway, "rest-json", "sk-iris-batched", {"x": rows}))

        callers = [threading.Thread(target=small, args=(i,)) for i in range(8)]
        for thread in callers:
            thread.start()
        for thread in [blocker, *callers]:
            thread.join()
        np.testing.assert_array_equal(answers["big"][0][3], classifier.predict_proba(big))
        for i in range(8):
            rows, answer = answers[i]
            assert [(n, d, s) for n, d, s, _ in answer] == [("predict", "BYTES", [len(rows), 1])]
            np.testing.assert_array_equal(answer[0][3], names(classifier.predict(rows)))
        if merged_calls(gateway, "sk-iris-batched") > before:
            return
    pytest.fail("no two requests were merged in 5 rounds")


# --------------------------------------------------------------------------- a missing framework


@pytest.mark.parametrize("model", sorted(FRAMEWORKS))
def test_a_missing_framework_fails_the_load_naming_the_extra(gateway, trained, model):
    module, package, extra, _ = FRAMEWORKS[model]
    reason = (
        f"MissingExtra: {package} is needed by this runtime and cannot be imported "
        f"(ModuleNotFoundError: No module named '{module}'); install it with: pip install \"inference-gateway[{extra}]\""
    )
    ready = requests.get(f"{gateway.url}/v2/models/{model}/ready")
    assert (ready.status_code, ready.json()) == (503, {"name": model, "ready": False, "state": "UNAVAILABLE", "reason": reason})
    # the extra it names exists and installs that framework
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    distribution = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnxruntime"}[extra]
    assert any(requirement.startswith(distribution) for requirement in extras[extra])
    # other models of the same runtimes, in their own workers, serve
    assert_answers(gateway, "sk-iris", IRIS_ROWS, [("predict", "BYTES", names(trained["sk-iris"].predict(IRIS_ROWS)))])


@pytest.mark.parametrize("model", sorted(UNLOADABLE))
def test_a_model_that_cannot_load_says_why(gateway, trained, model):
    reason = UNLOADABLE[model][1].format(folder=trained["repository"] / model)
    ready = requests.get(f"{gateway.url}/v2/models/{model}/ready")
    assert (ready.status_code, ready.json()) == (503, {"name": model, "ready": False, "state": "UNAVAILABLE", "reason": reason})


def test_the_base_install_imports_no_framework():
    """Starting the gateway and its workers imports none of the frameworks: they are optional extras."""
    frameworks = ["sklearn", "joblib", "xgboost", "lightgbm", "onnxruntime"]
    code = f"import sys, gateway.cli, gateway.runtimes, workers.worker; print([m for m in {frameworks!r} if m in sys.modules])"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    assert imported == "[]"
