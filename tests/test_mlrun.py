"""MLRun's serving API over plain HTTP, against a real gateway serving the folders of tests/mlrun:
the model list, /v2/health, the body's model and operation, plain inputs, infer_dict, data_url and
binary bodies, and the 400s of each, every one followed by a large answer from the same model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import requests

from tests.conftest import ROOT, assert_serves_large
from tests.test_observability import labels, metrics_of

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# 64 KiB of FP64 rows: through shared memory both ways
ONE = [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]  # V2 inputs, for models that declare none
LARGE_ROWS = np.arange(2048 * 4, dtype=np.float64).reshape(2048, 4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The config folder: tests/mlrun's models, and a data folder of files for data_url (and a
    secret beside it, which no data_url may reach)."""
    config = tmp_path_factory.mktemp("mlrun") / "config"
    shutil.copytree(ROOT / "tests" / "mlrun", config)
    folder = config / "data"
    (folder / "batch").mkdir(parents=True)
    (folder / "batch" / "plain.json").write_text(json.dumps(IRIS))
    (folder / "v2.json").write_text(json.dumps([{"name": "features", "datatype": "FP64", "shape": [2, 4], "data": IRIS}]))
    (folder / "rows.json").write_text(json.dumps([dict(zip(FEATURES, row)) for row in IRIS]))
    np.save(folder / "rows.npy", np.array(IRIS))
    np.save(folder / "point.npy", np.array(IRIS[0], dtype=np.float32))  # one data point, FP32: rounds to FP64 exactly
    np.save(folder / "big-ints.npy", np.array([[2**40, 1, 2, 3]]))  # fits FP64
    np.save(folder / "pixels.npy", np.array([[[[300, 0, 0]]]]))  # out of UINT8's range
    np.save(folder / "halves.npy", np.array([[1.5, -2.0], [0.25, 65504.0]]))  # FP64 values FP16 holds exactly
    np.save(folder / "too-large.npy", np.array([[1e6, 1.0]]))  # infinity as FP16
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (folder / "broken.json").write_text("[1, 2")
    (folder / "notes.txt").write_text("[1, 2, 3, 4]")
    (folder / "huge.json").write_text("[" + "1," * 600_000 + "1]")
    (config / "secret.json").write_text(json.dumps(IRIS))
    os.symlink(config / "secret.json", folder / "escape.json")  # leads outside the data folder
    os.symlink(folder / "rows.json", folder / "inside.json")  # stays inside it
    return config


@pytest.fixture(scope="module")
def gateway(start_gateway, data):
    return start_gateway(data, data_folder="data").wait_ready()


def post(gateway, path, **kwargs):
    return requests.post(f"{gateway.url}{path}", timeout=30, **kwargs)


def outputs(response) -> dict:
    assert response.status_code == 200, response.text
    return {o["name"]: (o["shape"], o["data"]) for o in response.json()["outputs"]}


def assert_refused(response, message: str) -> None:
    assert response.status_code == 400, response.text
    assert message in response.json()["error"], response.json()["error"]


def assert_rows_serve_large(gateway) -> None:
    assert_serves_large(gateway, "rows", {"features": LARGE_ROWS})


# --- listing and server info ----------------------------------------------------------------------


def test_models_are_listed_with_their_versions_as_mlrun_lists_them(gateway):
    expected = {"models": ["digest", "echo", "half", "image", "m3:v1", "m3:v2", "rows"]}
    assert requests.get(f"{gateway.url}/v2/models/").json() == expected
    assert requests.get(f"{gateway.url}/v2/models").json() == expected


def test_health_answers_server_info_as_the_root_does(gateway):
    info = requests.get(f"{gateway.url}/v2/health")
    assert info.status_code == 200
    assert info.json() == requests.get(f"{gateway.url}/").json()
    assert set(info.json()) == {"name", "version", "extensions"}


# --- the model (and operation) named in the body -------------------------------------------------------


def test_post_to_the_root_serves_the_model_the_body_names(gateway):
    answer = post(gateway, "/", json={"model": "rows", "inputs": IRIS[0]})
    assert answer.json()["model_name"] == "rows"
    assert outputs(answer) == {"features": ([1, 4], IRIS[0])}
    # name:version, as the list gives it
    assert outputs(post(gateway, "/", json={"model": "m3:v1", "inputs": ONE})) == {"version": ([1], ["v1"])}
    assert outputs(post(gateway, "/", json={"model": "m3", "inputs": ONE})) == {"version": ([1], ["v2"])}  # the newest
    # the operation too, as MLRun's streaming clients send it
    explained = post(gateway, "/", json={"model": "rows", "operation": "explain", "inputs": IRIS})
    assert explained.status_code == 200 and explained.json()["parameters"] == {"explained": True}
    rows = post(gateway, "/", json={"model": "rows", "operation": "predict_dict", "inputs": [dict(zip(FEATURES, IRIS[1]))]})
    assert outputs(rows) == {"features": ([1, 4], IRIS[1])}


def test_a_body_naming_its_version_picks_it_where_the_url_names_none(gateway):
    assert outputs(post(gateway, "/v2/models/m3/infer", json={"model": "m3:v1", "inputs": ONE})) == {"version": ([1], ["v1"])}
    assert outputs(post(gateway, "/v2/models/m3/versions/v1/infer", json={"model": "m3", "inputs": ONE})) == {"version": ([1], ["v1"])}


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("/", {"inputs": IRIS}, 'POST / takes the model in the body: {"model": "<name>" or "<name>:<version>", ...}'),
        ("/", {"model": "nope", "inputs": IRIS}, "model 'nope'"),
        ("/", {"model": 5, "inputs": IRIS}, "model must be a model name, or name:version, got 5"),
        ("/", {"model": "rows", "operation": "train", "inputs": IRIS}, "operation must be one of"),
        ("/v2/models/rows/infer", {"model": "image", "inputs": IRIS}, "the body names model 'image', the URL names 'rows'"),
        ("/v2/models/m3/versions/v2/infer", {"model": "m3:v1", "inputs": ONE}, "the body names model 'm3:v1', the URL names 'm3:v2'"),
        ("/v2/models/rows/infer", {"operation": "explain", "inputs": IRIS}, "the body names operation 'explain', the URL asks for infer"),
    ],
    ids=["no-model", "unknown-model", "model-not-a-string", "unknown-operation", "other-model", "other-version", "other-operation"],
)
def test_a_body_and_its_url_must_agree(gateway, path, body, message):
    response = post(gateway, path, json=body)
    assert response.status_code in (400, 404), response.text
    assert message in response.json()["error"], response.json()["error"]
    assert_rows_serve_large(gateway)


# --- inputs as MLRun sends them ---------------------------------------------------------------------------


def test_one_data_point_and_a_batch_as_plain_lists(gateway):
    assert outputs(post(gateway, "/v2/models/rows/infer", json={"inputs": IRIS[0]})) == {"features": ([1, 4], IRIS[0])}
    flat = [value for row in IRIS for value in row]
    assert outputs(post(gateway, "/v2/models/rows/predict", json={"id": "b", "inputs": IRIS})) == {"features": ([2, 4], flat)}


def test_images_as_nested_rgb_lists(gateway):
    image = np.arange(2 * 3 * 5 * 3).reshape(2, 3, 5, 3).astype(np.uint8)  # a batch of two 3x5 RGB images
    answer = outputs(post(gateway, "/v2/models/image/infer", json={"inputs": image.tolist()}))
    assert answer == {"pixels": ([2, 3, 5, 3], image.ravel().tolist())}
    one = outputs(post(gateway, "/v2/models/image/infer", json={"inputs": image[0].tolist()}))  # one image: a batch of one
    assert one == {"pixels": ([1, 3, 5, 3], image[0].ravel().tolist())}


@pytest.mark.parametrize(
    "model, body, message",
    [
        (
            "rows",
            {"inputs": [[[1.0, 2.0, 3.0, 4.0]]]},
            "input 'features' has shape [-1, 4]: inputs must be one data point of 1 dimension(s) or a batch of 2, got nested lists of shape [1, 1, 4]",
        ),
        ("rows", {"inputs": [[1.0, 2.0], [3.0]]}, "input 'features': the inputs are a ragged nested list"),
        ("rows", {"inputs": [1.0, 2.0, 3.0]}, "input 'features' must have shape [-1, 4] (-1: any), got [1, 3]"),
        ("rows", {"inputs": ["a", "b", "c", "d"]}, "input 'features': FP64 data must be numbers, got strings"),
        ("image", {"inputs": [[[[256, 0, 0]]]]}, "input 'pixels'"),
        ("echo", {"inputs": [1, 2]}, "plain inputs need(s) a model that declares exactly one input"),
    ],
    ids=["too-deep", "ragged", "wrong-width", "strings", "out-of-range", "nothing-declared"],
)
def test_plain_inputs_that_do_not_fit_the_input_are_refused(gateway, model, body, message):
    assert_refused(post(gateway, f"/v2/models/{model}/infer", json=body), message)
    if model == "rows":
        assert_rows_serve_large(gateway)
    else:
        assert_serves_large(gateway, model, {"x" if model == "echo" else "pixels": np.ones((64, 16, 16, 3), np.uint8)})


# --- infer_dict ------------------------------------------------------------------------------------------------


def test_infer_dict_orders_named_features_by_the_schema(gateway):
    scrambled = ["petal_width", "sepal_length", "sepal_width", "petal_length"]
    rows = [{name: row[FEATURES.index(name)] for name in scrambled} for row in IRIS]
    flat = [value for row in IRIS for value in row]
    assert outputs(post(gateway, "/v2/models/rows/infer_dict", json={"inputs": rows})) == {"features": ([2, 4], flat)}
    # one data point as one object, and MLRun's other name for the route
    assert outputs(post(gateway, "/v2/models/rows/predict_dict", json={"inputs": rows[0]})) == {"features": ([1, 4], IRIS[0])}
    # the schema is the model's metadata: a client can read the feature names from it
    metadata = requests.get(f"{gateway.url}/v2/models/rows").json()
    assert metadata["inputs"][0]["parameters"]["features"] == FEATURES


@pytest.mark.parametrize(
    "model, inputs, message",
    [
        ("rows", [dict(zip(FEATURES[:3], IRIS[0]))], "row 0: missing features ['petal_width'], unknown features []"),
        ("rows", [{**dict(zip(FEATURES, IRIS[0])), "color": 1}], "row 0: missing features [], unknown features ['color']"),
        ("rows", [{**dict(zip(FEATURES, IRIS[0])), "sepal_width": [1, 2]}], "row 0: feature 'sepal_width' must be a single value, got [1, 2]"),
        ("rows", [], "infer_dict takes inputs as an object of features (one data point) or a non-empty list of them"),
        ("rows", [IRIS[0]], "infer_dict takes inputs as an object of features"),
        ("image", [{"r": 1}], "infer_dict needs the model's feature schema: declare the feature names, in order, as parameters.features of its input 'pixels'"),
    ],
    ids=["missing", "unknown", "nested", "empty", "lists", "no-schema"],
)
def test_infer_dict_refuses_rows_that_do_not_fit_the_schema(gateway, model, inputs, message):
    assert_refused(post(gateway, f"/v2/models/{model}/infer_dict", json={"inputs": inputs}), message)
    assert_rows_serve_large(gateway)


# --- data_url ----------------------------------------------------------------------------------------------------


def test_data_url_loads_inputs_from_a_file_below_the_data_folder(gateway):
    flat = [value for row in IRIS for value in row]
    assert outputs(post(gateway, "/v2/models/rows/infer", json={"data_url": "batch/plain.json"})) == {"features": ([2, 4], flat)}
    assert outputs(post(gateway, "/v2/models/rows/infer", json={"data_url": "v2.json"})) == {"features": ([2, 4], flat)}
    assert outputs(post(gateway, "/v2/models/rows/infer_dict", json={"data_url": "rows.json"})) == {"features": ([2, 4], flat)}
    assert outputs(post(gateway, "/v2/models/rows/infer", json={"data_url": "rows.npy"})) == {"features": ([2, 4], flat)}
    point = np.array(IRIS[0], dtype=np.float32).astype(np.float64).tolist()
    assert outputs(post(gateway, "/v2/models/rows/infer", json={"data_url": "point.npy"})) == {"features": ([1, 4], point)}
    assert outputs(post(gateway, "/v2/models/rows/infer", json={"data_url": "big-ints.npy"})) == {"features": ([1, 4], [2.0**40, 1.0, 2.0, 3.0])}
    assert outputs(post(gateway, "/v2/models/half/infer", json={"data_url": "halves.npy"})) == {"h": ([2, 2], [1.5, -2.0, 0.25, 65504.0])}
    # a symbolic link is followed where it stays inside the folder
    assert outputs(post(gateway, "/v2/models/rows/infer_dict", json={"data_url": "./batch/../inside.json"})) == {"features": ([2, 4], flat)}
    # with the model named in the body
    assert outputs(post(gateway, "/", json={"model": "rows", "data_url": "rows.npy"})) == {"features": ([2, 4], flat)}


@pytest.mark.parametrize(
    "model, body, message",
    [
        ("rows", {"data_url": "../secret.json"}, "data_url '../secret.json' leads outside the data folder"),
        ("rows", {"data_url": "escape.json"}, "data_url 'escape.json' leads outside the data folder"),
        ("rows", {"data_url": "/etc/hostname"}, "data_url '/etc/hostname' must be relative to the data folder"),
        ("rows", {"data_url": "s3://bucket/rows.json"}, "only files below the data folder are read, given as a relative path (no URLs)"),
        ("rows", {"data_url": "missing.json"}, "data_url 'missing.json': no such file in the data folder"),
        ("rows", {"data_url": "batch"}, "the file must be .json or .npy"),
        ("rows", {"data_url": "notes.txt"}, "data_url 'notes.txt': the file must be .json or .npy"),
        ("rows", {"data_url": "broken.json"}, "data_url 'broken.json': malformed JSON"),
        ("rows", {"data_url": "huge.json"}, "a .json file is read whole and may have less than 1048576 bytes; save large inputs as .npy"),
        ("rows", {"data_url": "objects.npy"}, "data_url 'objects.npy': not an array numpy can read without pickle"),
        ("rows", {"data_url": 7}, "data_url must be a file's path below the data folder, got 7"),
        ("rows", {"data_url": "rows.npy", "inputs": IRIS}, "give inputs or data_url, not both"),
        ("image", {"data_url": "pixels.npy"}, "input 'pixels' (from data_url) is UINT8: the array holds values out of its range"),
        ("half", {"data_url": "too-large.npy"}, "input 'h' (from data_url) is FP16: the array holds values too large for it (they would become infinity)"),
        ("echo", {"data_url": "rows.npy"}, "an array from data_url need(s) a model that declares exactly one input"),
    ],
    ids=["dot-dot", "symlink-out", "absolute", "url", "missing", "folder", "txt", "malformed", "too-large", "pickle", "not-a-string", "both",
         "out-of-range", "too-large-for-fp16", "nothing-declared"],
)  # fmt: skip
def test_data_url_refuses_anything_but_a_json_or_npy_file_below_the_folder(gateway, model, body, message):
    assert_refused(post(gateway, f"/v2/models/{model}/infer", json=body), message)
    assert_rows_serve_large(gateway)


# --- binary bodies ---------------------------------------------------------------------------------------------------


def test_a_binary_body_is_one_bytes_input(gateway):
    jpeg = bytes(range(256)) * 100  # not UTF-8, as an image is not
    for path in ("/v2/models/digest/infer", "/v2/models/digest/predict"):
        answer = post(gateway, path, data=jpeg, headers={"Content-Type": "image/jpeg"})
        assert outputs(answer) == {"size": ([1], [len(jpeg)]), "sha256": ([1], [hashlib.sha256(jpeg).hexdigest()])}


@pytest.mark.parametrize(
    "path, message",
    [
        ("/v2/models/rows/infer", "a binary body is one BYTES element, but input 'features' is FP64"),
        ("/v2/models/echo/infer", "a binary body need(s) a model that declares exactly one input"),
        ("/", "POST / takes a JSON body that names its model; send raw and binary bodies to /v2/models/{model}/infer"),
    ],
    ids=["not-bytes", "nothing-declared", "root"],
)
def test_a_binary_body_needs_a_model_of_one_bytes_input(gateway, path, message):
    assert_refused(post(gateway, path, data=b"\xff\xd8\xff" * 10, headers={"Content-Type": "image/png"}), message)
    blobs = np.array([bytes([i]) * 300 for i in range(64)], dtype=object)  # 19 KiB of BYTES
    sizes, digests = np.full(64, 300, dtype=np.int64), np.array([hashlib.sha256(b).hexdigest().encode() for b in blobs], dtype=object)
    assert_serves_large(gateway, "digest", {"blob": blobs}, expect=lambda inputs: {"size": sizes, "sha256": digests})


def test_a_request_to_the_root_counts_for_the_model_its_body_names(gateway):
    counted = labels(model="m3", version="v1", protocol="rest", outcome="success")
    before = metrics_of(gateway)["gateway_requests_total"][counted]
    assert outputs(post(gateway, "/", json={"model": "m3:v1", "inputs": ONE})) == {"version": ([1], ["v1"])}
    assert metrics_of(gateway)["gateway_requests_total"][counted] == before + 1
