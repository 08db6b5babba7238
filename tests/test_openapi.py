"""GET /openapi.json describes exactly the REST routes served; /docs renders it in a real browser
(Debian's Chromium); schemathesis, driven by the document, finds no 5xx against a real gateway."""

import itertools
import json
import os
import re
import shutil

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from sanic import Sanic
from schemathesis.checks import negative_data_rejection, not_a_server_error, response_schema_conformance, status_code_conformance

from gateway.frontdoor.access import Access
from gateway.frontdoor.rest.apidoc import spec
from gateway.frontdoor.server import build
from gateway.settings import ServerSettings
from tests.conftest import ROOT
from tests.test_examples import iris_rows

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# every combination of the settings that add or remove routes
VARIANTS = [dict(zip(("metrics_on_http", "enable_docs_url"), flags)) for flags in itertools.product((False, True), repeat=2)]


def served_routes(settings: ServerSettings) -> set[tuple[str, str]]:
    """(method, path) of every route of the REST app a gateway with these settings serves, as OpenAPI writes them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sanic, "test_mode", True)  # several apps of one name in this process
        app = build(settings, Access(settings), None)
    app.router.finalize()
    routes = set()
    for route in app.router.routes:
        path = "/" + re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", route.path)
        if path == "/v1/models/{target}":  # Sanic has no "{model}:verb" segments: one route serves both verbs
            routes |= {("POST", "/v1/models/{model}:predict"), ("POST", "/v1/models/{model}:explain")}
            continue
        routes |= {(method, path) for method in route.methods}
    return routes


def described_routes(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(k for k, on in v.items() if on) or "defaults")
def test_the_document_describes_every_route_and_only_those(variant, tmp_path):
    settings = ServerSettings(model_repository=tmp_path, **variant)
    document = spec.document(settings)
    validate(document)  # a valid OpenAPI 3.1 document
    assert described_routes(document) == served_routes(settings)
    assert (("GET", "/docs") in described_routes(document)) == variant["enable_docs_url"]
    assert (("GET", "/metrics") in described_routes(document)) == variant["metrics_on_http"]


@pytest.fixture(scope="module")
def gateway(start_gateway):
    return start_gateway(ROOT / "config", enable_docs_url=True, metrics_on_http=True).wait_ready()


def test_the_gateway_serves_the_document_of_its_settings(gateway):
    served = requests.get(f"{gateway.url}/openapi.json").json()
    validate(served)
    settings = ServerSettings(model_repository=ROOT / "config", enable_docs_url=True, metrics_on_http=True)
    assert described_routes(served) == described_routes(spec.document(settings))
    assert {("GET", "/metrics"), ("GET", "/docs"), ("POST", "/v2/models/{model}/versions/{version}/infer")} <= described_routes(served)


def test_docs_assets_are_ours_and_a_wrong_name_is_a_json_404(gateway):
    bundle = requests.get(f"{gateway.url}/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    assert bundle.content == (ROOT / "gateway" / "frontdoor" / "rest" / "apidoc" / "swagger-ui" / "swagger-ui-bundle.js").read_bytes()
    missing = requests.get(f"{gateway.url}/docs/..%2Fspec.py")
    assert missing.status_code == 404 and "error" in missing.json()
    iris_rows(gateway)


def _chromium_or_skip() -> None:
    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        return
    message = "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
    if os.environ.get("CI"):
        pytest.fail(message)  # never skipped in CI
    pytest.skip(message)


def test_the_docs_page_renders_every_endpoint_in_chromium(gateway, monkeypatch, tmp_path):
    _chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # as the machine's notes say: without the networking flags Chromium reaches for Google's hosts
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(f"{gateway.url}/docs")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
        shown = {
            (
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
            )
            for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
        }
        assert shown == described_routes(requests.get(f"{gateway.url}/openapi.json").json())
        assert browser.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("inference-gateway")
        # everything the page loaded came from the gateway: no CDN
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(gateway.url) for url in loaded), loaded
    finally:
        browser.quit()
    iris_rows(gateway)


# --- schemathesis ---------------------------------------------------------------------------

MODELS = {"iris-mlp": "1", "text-sentiment": "1"}
EXPLAINERS = ["text-sentiment"]


@pytest.fixture(scope="module")
def api_schema(gateway):
    """The served document, with the served models' names as the likelier values of {model} and
    {version} (a random name is a 404 before the body is read). The repository's load and unload keep
    random names: unloading a served model would make its requests 503."""
    document = requests.get(f"{gateway.url}/openapi.json").json()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            names = EXPLAINERS if path.endswith(("/explain", ":explain")) else list(MODELS)  # iris-mlp has no explainer: 501
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "model" and not path.startswith("/v2/repository/"):
                    parameter["schema"] = {"anyOf": [{"enum": names}, parameter["schema"]]}
                if parameter["in"] == "path" and parameter["name"] == "version":
                    parameter["schema"] = {"anyOf": [{"enum": sorted(set(MODELS.values()))}, parameter["schema"]]}
    # a body may name its operation; explain on a model without an explainer is a 501 by design
    operation = document["components"]["schemas"]["InferenceRequest"]["properties"]["operation"]
    operation["enum"] = [name for name in operation["enum"] if name != "explain"]
    schema = schemathesis.openapi.from_dict(document)
    schema.config.base_url = gateway.url
    return schema


@schemathesis.check
def errors_are_json(ctx, response, case):
    """A client fault is a 4xx whose body is {"error": "..."} (the other checks catch any 5xx)."""
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), f"{response.status_code} without an error message: {response.text[:200]}"


@schemathesis.check
def no_server_error_but_a_deadline(ctx, response, case):
    """not_a_server_error, but a request that sets its own deadline (Request-Timeout: 5e-324, say)
    may see it pass: 504, as it should."""
    if response.status_code == 504 and spec.REQUEST_TIMEOUT_HEADER in (case.headers or {}):
        return None
    return not_a_server_error(ctx, response, case)


schema = schemathesis.pytest.from_fixture("api_schema")
CHECKS = [no_server_error_but_a_deadline, status_code_conformance, response_schema_conformance, negative_data_rejection, errors_are_json]


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_schemathesis_finds_no_server_error(case, gateway):
    # positive_data_acceptance is left out: a document for every model cannot say which inputs each
    # takes, so a schema-valid request is often a 400 (unknown input), as it should be. With
    # Inference-Header-Content-Length: 0 the body is the input's raw bytes, whatever they look like:
    # no body is schema-violating then
    raw = (case.headers or {}).get(spec.HEADER_LENGTH) == "0"
    case.call_and_validate(checks=[check for check in CHECKS if not (raw and check is negative_data_rejection)])


def test_after_schemathesis_the_models_still_answer(gateway):
    assert requests.get(f"{gateway.url}/v2/health/ready").status_code == 200
    iris_rows(gateway)
