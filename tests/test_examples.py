"""The shipped config/ works as documented: the README's examples, through a real gateway."""

import json
import struct

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from sklearn.datasets import load_iris

from tests.conftest import ROOT, assert_serves_large

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def gateway(start_gateway):
    return start_gateway(ROOT / "config").wait_ready()


def expected_probabilities(features):
    weights = np.load(ROOT / "config" / "iris-mlp" / "weights.npz")
    hidden = np.maximum(np.asarray(features, np.float32) @ weights["w1"] + weights["b1"], 0)
    logits = hidden @ weights["w2"] + weights["b2"]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def iris_rows(gateway, rows: int = 2048) -> None:
    """A correct answer from iris-mlp for a tensor of 32 KiB (through shared memory)."""
    features = np.random.default_rng(rows).uniform(0, 8, size=(rows, 4)).astype(np.float32)
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [rows, 4], "data": features.ravel().tolist()}]}
    answer = requests.post(f"{gateway.url}/v2/models/iris-mlp/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    probabilities = np.array(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(rows, 3)
    np.testing.assert_allclose(probabilities, expected_probabilities(features), rtol=1e-4, atol=1e-6)


def test_config_serves_both_examples(gateway):
    assert requests.get(f"{gateway.url}/v2/models").json() == {"models": ["iris-mlp:1", "text-sentiment:1"]}
    assert requests.get(f"{gateway.url}/v2/health/ready").json() == {"ready": True}


def test_iris_mlp_over_json(gateway):
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 4], "data": IRIS}]}
    answer = requests.post(f"{gateway.url}/v2/models/iris-mlp/infer", data=json.dumps(body)).json()
    assert answer["model_name"] == "iris-mlp" and answer["model_version"] == "1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    probabilities = np.array(outputs["probabilities"]["data"], dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(probabilities, expected_probabilities(IRIS), rtol=1e-5)
    assert (outputs["label"]["datatype"], outputs["label"]["shape"]) == ("BYTES", [2, 1])
    assert outputs["label"]["data"] == ["setosa", "virginica"]


def test_iris_mlp_is_trained(gateway):
    """Its weights classify scikit-learn's iris data set, and the labels are the class names extra.classes gives."""
    iris = load_iris()
    client = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    features = httpclient.InferInput("features", list(iris.data.shape), "FP32")
    features.set_data_from_numpy(iris.data.astype(np.float32))
    labels = client.infer("iris-mlp", [features]).as_numpy("label")
    client.close()
    assert labels.shape == (150, 1)
    assert np.mean(labels.ravel().astype(str) == iris.target_names[iris.target]) > 0.95


def test_iris_mlp_with_tritonclient_binary(gateway):
    client = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    features = httpclient.InferInput("features", [2, 4], "FP32")
    features.set_data_from_numpy(np.array(IRIS, dtype=np.float32))
    result = client.infer("iris-mlp", [features], outputs=[httpclient.InferRequestedOutput("probabilities")])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected_probabilities(IRIS), rtol=1e-5)
    assert result.as_numpy("label") is None  # only the requested output came back
    client.close()


def test_iris_mlp_infer_dict_rows(gateway):
    # MLRun's rows of named features, in any order: the model gets them in its schema's order
    names = ["petal_width", "sepal_length", "petal_length", "sepal_width"]
    order = [3, 0, 2, 1]
    body = {"id": "rows", "inputs": [{name: row[i] for name, i in zip(names, order)} for row in IRIS]}
    answer = requests.post(f"{gateway.url}/v2/models/iris-mlp/infer_dict", json=body).json()
    assert answer["id"] == "rows"
    probabilities = np.array(answer["outputs"][0]["data"], dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(probabilities, expected_probabilities(IRIS), rtol=1e-5)
    bad = requests.post(f"{gateway.url}/v2/models/iris-mlp/infer_dict", json={"inputs": [{"petals": 1}]})
    assert bad.status_code == 400 and "unknown features ['petals']" in bad.json()["error"]
    # 4,096 rows (64 KiB): the two rows above, over and over, so the labels are known (the class names:
    # BYTES, as config/iris-mlp/model-settings.json declares them)
    rows = np.tile(np.array(IRIS, dtype=np.float32), (2048, 1))
    classes = np.array([b"setosa", b"versicolor", b"virginica"], dtype=object)
    labels = classes[np.tile(expected_probabilities(IRIS).argmax(axis=1), 2048)].reshape(-1, 1)
    assert_serves_large(gateway, "iris-mlp", {"features": rows}, expect=lambda inputs: {"label": labels})


def test_text_sentiment_labels_scores_and_explain(gateway):
    body = {"id": "r1", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["I love it, great", "slow and broken", "a table"]}]}
    answer = requests.post(f"{gateway.url}/v2/models/text-sentiment/infer", json=body).json()
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert outputs == {"label": ["positive", "negative", "neutral"], "score": [4.0, -3.0, 0.0]}
    body["inputs"][0].update(shape=[1], data=["great but slow"])
    explained = requests.post(f"{gateway.url}/v2/models/text-sentiment/explain", json=body).json()
    assert json.loads(explained["outputs"][0]["data"][0]) == {"great": 2.0, "slow": -1.0}


def test_text_sentiment_takes_a_raw_body_of_length_prefixed_strings(gateway):
    # Inference-Header-Content-Length 0: the body is the single input's bytes, each element after its
    # 4-byte little-endian length
    texts = [b"I love it, great", b"", b"slow and broken"]
    body = b"".join(struct.pack("<I", len(text)) + text for text in texts)
    response = requests.post(f"{gateway.url}/v2/models/text-sentiment/infer", data=body, headers={"Inference-Header-Content-Length": "0"})
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    label, score = json.loads(response.content[:length])["outputs"]
    assert (label["name"], label["shape"], score["name"], score["shape"]) == ("label", [3, 1], "score", [3, 1])
    labels = response.content[length : length + label["parameters"]["binary_data_size"]]
    assert labels == b"".join(struct.pack("<I", len(x)) + x for x in (b"positive", b"neutral", b"negative"))
    assert np.frombuffer(response.content[length + len(labels) :], dtype=np.float32).tolist() == [4.0, 0.0, -3.0]


def test_text_sentiment_with_tritonclient(gateway):
    client = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"))
    text = httpclient.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"what a great day"], dtype=object))
    result = client.infer("text-sentiment", [text])
    # the codecs give 1-D outputs shape [N, 1], as MLServer's do
    assert result.as_numpy("label").tolist() == [[b"positive"]]
    assert result.as_numpy("score").tolist() == [[2.0]]
    client.close()
