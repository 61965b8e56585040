"""GET /openapi.json describes every route, and schemathesis, generating requests from the live document, finds no
5xx and no answer the document does not allow: with no key configured, and with one (sent, and left off to get
the documented 401). The server is the real one, serving a small real SavedModel exported the way the Trainer
exports; the model is loaded from its folder, not the registry, since the document does not depend on where it
came from and the test then needs no MLflow server."""

from __future__ import annotations

import http.client
import socket

import pytest
import requests
import schemathesis
from schemathesis.engine import events
from tfx.utils.path_constants import SERVING_MODEL_DIR

from components.trainer.export import export
from core.config import IngestConfig, ServingConfig
from data_schema import TUTORIAL_CLASSES
from serving import openapi
from serving.model import SceneModel
from serving.server import running
from tests.champion import small_model

pytestmark = pytest.mark.slow

KEY = "openapi-key-5d02a7"  # a secret only for these tests
SERVING = ServingConfig()
# What a client may rely on: no 5xx; each answer's status, headers, media type and body as documented; 405 with
# an Allow header for a method a path does not answer; and, with a key configured, a request without it refused.
# Left out: positive_data_acceptance and negative_data_rejection, which take every request the JSON schemas allow
# for one the server accepts, while base64 that is no image, or an Inference-Header-Content-Length other than the
# JSON's length, fits the schemas and is still refused (400).
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
          "response_headers_conformance", "unsupported_method", "allow_header_conformance", "missing_required_header",
          "ignored_auth")
# Stateless: the document's examples, the coverage phase's edge cases and a few generated requests per operation,
# the same each run.
RUN = {"checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
       "phases": {"stateful": {"enabled": False}},
       "generation": {"max-examples": 8, "deterministic": True, "database": "none"}}
OPEN_ROUTES = ("/ping", "/v2/health/live", "/v2/health/ready")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> SceneModel:
    folder = str(tmp_path_factory.mktemp("openapi-model") / SERVING_MODEL_DIR)
    export(small_model(), list(TUTORIAL_CLASSES), folder)
    return SceneModel(folder, "openapi-tests", "3", IngestConfig().max_image_pixels)


@pytest.fixture(scope="module")
def open_url(model) -> str:
    with running(model, SERVING) as server:
        yield server.url


@pytest.fixture(scope="module")
def keyed_url(model) -> str:
    with running(model, SERVING, api_key=KEY) as server:
        yield server.url


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def schemathesis_findings(url: str, headers: dict[str, str], coverage: bool = True) -> tuple[list[str], int]:
    """What schemathesis's stateless run against the live document found (each failed check, or an error, with
    its request), and how many requests it sent; `coverage`: with the coverage phase's edge cases."""
    phases = {**RUN["phases"], "coverage": {"enabled": coverage}}
    config = schemathesis.Config.from_dict({**RUN, "phases": phases, "headers": headers})
    schema = schemathesis.openapi.from_url(url + openapi.OPENAPI_PATH, config=config, headers=headers)
    findings, requests_sent = [], 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            requests_sent += len(event.recorder.interactions)
            findings += [f"{check.failure_info.failure.title}: {check.failure_info.code_sample}"
                         for checks in event.recorder.checks.values() for check in checks
                         if check.failure_info is not None]
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            findings.append(f"error {getattr(event, 'label', '')}: {getattr(event, 'value', None) or event.exception}")
    return findings, requests_sent


def test_without_a_key_every_answer_is_one_the_document_allows(open_url):
    findings, sent = schemathesis_findings(open_url, {})
    assert findings == [] and sent > 100


def test_with_the_key_every_answer_is_one_the_document_allows(keyed_url):
    # The bodies' edge cases are the same with a key and without: the open run above has them, and most of its time.
    findings, sent = schemathesis_findings(keyed_url, bearer(KEY), coverage=False)
    assert findings == [] and sent > 50


def concrete(path: str, model: SceneModel) -> str:
    return path.replace("{name}", model.name).replace("{version}", model.version)


def test_without_the_key_every_keyed_route_answers_the_documented_401(keyed_url, model):
    document = requests.get(keyed_url + openapi.OPENAPI_PATH, headers=bearer(KEY)).json()
    scheme = document["components"]["securitySchemes"]["apiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "$PLACES_API_KEY" in scheme["description"]
    assert document["security"] == [{"apiKey": []}] and KEY not in str(document)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            response = requests.request(method, keyed_url + concrete(path, model), json={})
            if path in OPEN_ROUTES:
                assert operation["security"] == [] and response.status_code == 200, path
            else:
                assert "security" not in operation and response.status_code == 401, (method, path)
                assert set(operation["responses"]["401"]["content"]) == {"application/json"}
                assert set(response.json()) == {"error"}
                assert response.headers["WWW-Authenticate"] == 'Bearer realm="places"'


def test_the_document_covers_every_route_and_demands_no_key_when_none_is_configured(open_url, model):
    document = requests.get(open_url + openapi.OPENAPI_PATH).json()
    assert set(document["paths"]) == {
        "/ping", "/metrics", "/invocations", "/openapi.json", "/v2", "/v2/health/live", "/v2/health/ready",
        *(f"/v2/models/{{name}}{version}{action}" for version in ("", "/versions/{version}")
          for action in ("", "/ready", "/infer"))}
    assert "security" not in document and "securitySchemes" not in document["components"]
    assert not any(status in operation["responses"] for operations in document["paths"].values()
                   for operation in operations.values() for status in ("401", "403"))
    assert document["info"]["version"] == model.version
    assert document["components"]["schemas"]["InvocationsAnswer"]["properties"]["class_names"]["const"] == list(
        model.class_names)
    invocations = document["paths"]["/invocations"]["post"]["responses"]
    assert set(invocations) == {"200", "400", "411", "413", "500", "501", "503"}
    assert str(SERVING.max_request_bytes) in invocations["413"]["description"]


def test_a_get_with_a_body_leaves_the_connection_to_the_next_request(open_url):
    # schemathesis found the body read as the next request's first line (400), before the server dropped it.
    connection = http.client.HTTPConnection(open_url.removeprefix("http://"))
    for _ in range(2):
        connection.request("GET", "/v2/models/openapi-tests/infer", body=b'{"inputs": []}')
        response = connection.getresponse()
        assert response.status == 405 and response.getheader("Allow") == "POST"
        response.read()
    connection.close()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "QUERY"])
def test_the_other_standard_methods_get_405_and_the_allowed_one(open_url, method):
    # http.server answered these 501 (not implemented), which schemathesis counts as a server error.
    for path, allowed in (("/ping", "GET"), ("/invocations", "POST"), ("/v2/models/any/infer", "POST")):
        response = requests.request(method, open_url + path)
        assert response.status_code == 405 and response.headers["Allow"] == allowed
        assert f"answers {allowed} only, not {method}" in response.json()["error"]
    assert requests.request(method, open_url + "/nothing").status_code == 404


def status_line(url: str, request: bytes) -> bytes:
    """The first line of the server's answer to `request`, sent as these bytes (requests would refuse them)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        return connection.makefile("rb").readline().rstrip()


def test_a_length_header_with_a_superscript_digit_is_a_bad_request(open_url, keyed_url):
    # b"\xb2" is '²' in Latin-1, as http.server reads headers: str.isdigit took it, int() did not (500, or with a
    # wrong key no answer at all).
    request = (b"POST /v2/models/openapi-tests/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: \xb2\r\n"
               b"Content-Length: 2\r\n\r\n{}")
    assert status_line(open_url, request) == b"HTTP/1.1 400 Bad Request"
    request = b"POST /invocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: \xb2\r\n\r\n{}"
    assert status_line(keyed_url, request) == b"HTTP/1.1 403 Forbidden"
