"""The endpoint for clients on other machines: an API key (401 without it, 403 with another, /ping open), HTTPS
with a test certificate, `./places serve --host` refusing an open address without a key, and /metrics scraped by
Prometheus's own parser. The server is the real one, serving a champion from a real MLflow server."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from cli.main import main as places
from core.config import Config, ServingConfig
from core.errors import UserError
from serving import model as serving_model
from serving.client import demo_requests
from serving.server import ScoringServer, api_key, running
from tests.champion import register_champion
from tests.serving_support import metric_samples

pytestmark = pytest.mark.slow

KEY = "test-key-8c1f0e"  # a secret only for these tests
SERVING = ServingConfig()  # the serving section of the test session's Config
PIXELS = np.random.default_rng(21).random((2, 128, 128, 3)).tolist()


@pytest.fixture(scope="module")
def model(mlflow_server: Config, tmp_path_factory) -> serving_model.SceneModel:
    """A champion registered in the test MLflow server, loaded through the registry."""
    return serving_model.load(register_champion(mlflow_server, tmp_path_factory.mktemp("champion"), "access-tests"))


@pytest.fixture(scope="module")
def open_url(model) -> str:
    """The server on every address (0.0.0.0), which a key makes allowed; the tests reach it at 127.0.0.1."""
    with running(model, dataclasses.replace(SERVING, host="0.0.0.0"), api_key=KEY) as server:
        yield server.url.replace("0.0.0.0", "127.0.0.1")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_off_loopback_the_right_key_is_answered(open_url):
    response = requests.post(open_url + "/invocations", json={"inputs": PIXELS}, headers=bearer(KEY))
    assert response.status_code == 200 and np.array(response.json()["predictions"]).shape == (2, 10)


@pytest.mark.parametrize("headers, status, message", [
    ({}, 401, "the request has no Authorization header: this server needs 'Authorization: Bearer <key>'"),
    ({"Authorization": KEY}, 401, "an Authorization header without a key"),
    ({"Authorization": f"Basic {KEY}"}, 401, "an Authorization header without a key"),
    (bearer(KEY + "x"), 403, "the API key in the Authorization header is not this server's"),
    (bearer(KEY[:-1]), 403, "not this server's"),
], ids=["no header", "no scheme", "basic", "longer key", "shorter key"])
def test_without_the_key_invocations_and_metrics_are_refused(open_url, headers, status, message):
    for response in (requests.post(open_url + "/invocations", json={"inputs": PIXELS}, headers=headers),
                     requests.get(open_url + "/metrics", headers=headers)):
        assert response.status_code == status
        assert message in response.json()["error"]
        assert KEY not in response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_ping_needs_no_key(open_url):
    response = requests.get(open_url + "/ping")
    assert response.status_code == 200 and response.json()["model"] == "access-tests"


def test_the_demo_client_sends_the_key_it_is_given(open_url, tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)).save(image)
    tutorial_answer, image_answer = demo_requests(open_url, image, KEY)
    assert len(tutorial_answer["predictions"][0]) == 10 and len(image_answer["top_classes"][0]) == 3
    with pytest.raises(UserError, match="answered 401: the request has no Authorization header"):
        demo_requests(open_url, image)


def test_a_key_once_set_is_needed_on_loopback_too(model):
    with running(model, SERVING, api_key=KEY) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert requests.post(server.url + "/invocations", json={"inputs": PIXELS}).status_code == 401
        assert requests.post(server.url + "/invocations", json={"inputs": PIXELS},
                             headers=bearer(KEY)).status_code == 200


def test_an_open_address_without_a_key_is_refused_and_says_what_to_set(model):
    message = ("serving.host is '0.0.0.0', which other machines can reach, and no API key is set: set the "
               "environment variable PLACES_API_KEY (serving.api_key_env) to a secret")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScoringServer(model, dataclasses.replace(SERVING, host="0.0.0.0"), 0)
    for host in ("127.0.0.1", "localhost", "::1"):
        assert api_key(dataclasses.replace(ServingConfig(), host=host), {}) is None
    for host in ("0.0.0.0", "", "10.1.2.3", "::", "scenes.example.org"):
        with pytest.raises(UserError, match="no API key is set"):
            api_key(dataclasses.replace(ServingConfig(), host=host), {"PLACES_API_KEY": ""})
    assert api_key(dataclasses.replace(ServingConfig(), host="0.0.0.0", api_key_env="SCENES_KEY"),
                   {"SCENES_KEY": KEY}) == KEY


def test_serve_refuses_an_open_host_without_a_key_before_loading_anything(monkeypatch):
    monkeypatch.delenv("PLACES_API_KEY", raising=False)
    result = CliRunner().invoke(places, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "set the environment variable PLACES_API_KEY (serving.api_key_env)" in result.stderr


def test_the_key_never_reaches_the_log(model, caplog):
    with caplog.at_level(logging.DEBUG), running(model, SERVING, api_key=KEY) as server:
        for headers in ({}, bearer("wrong"), bearer(KEY)):
            requests.post(server.url + "/invocations", json={"inputs": PIXELS}, headers=headers)
    statuses = [record.getMessage().split()[2] for record in caplog.records if record.name == "serving.server"]
    assert statuses == ["401", "403", "200"]
    assert not any(KEY in record.getMessage() for record in caplog.records)


def self_signed_certificate(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost, valid for a day, and its key: (cert file, key file), PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "places test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_with_a_certificate_the_server_speaks_https_only(model, tmp_path):
    cert_file, key_file = self_signed_certificate(tmp_path)
    config = dataclasses.replace(SERVING, tls_cert_file=cert_file, tls_key_file=key_file)
    with running(model, config, api_key=KEY) as server:
        assert server.url.startswith("https://127.0.0.1:")
        # verify= on each call: requests lets $REQUESTS_CA_BUNDLE override a session's verify.
        response = requests.post(server.url + "/invocations", json={"instances": PIXELS}, headers=bearer(KEY),
                                 verify=cert_file)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 2
        assert requests.post(server.url + "/invocations", json={"inputs": PIXELS}, verify=cert_file).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url + "/ping")  # the system's CAs do not know the test certificate
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url.replace("https", "http") + "/ping")
        assert requests.get(server.url + "/ping", verify=cert_file).status_code == 200


def test_over_https_an_upload_refused_before_its_body_is_read_gets_the_answer(model, tmp_path):
    # A body of several MB is still being sent when the server answers; closing then would reset the connection.
    cert_file, key_file = self_signed_certificate(tmp_path)
    config = dataclasses.replace(SERVING, tls_cert_file=cert_file, tls_key_file=key_file, max_request_bytes=2 ** 20)
    upload = b"x" * (8 * 2 ** 20)
    with running(model, config, api_key=KEY) as server:
        for path, headers, status in (("/invocations", {}, 401), ("/invocations", bearer("other"), 403),
                                      ("/nowhere", bearer(KEY), 404), ("/ping", bearer(KEY), 405),
                                      ("/invocations", bearer(KEY), 413)):
            response = requests.post(server.url + path, data=upload, headers=headers, verify=cert_file)
            assert response.status_code == status, path
            assert response.json()["error"]
        assert requests.get(server.url + "/ping", verify=cert_file).status_code == 200


def test_tls_settings_that_cannot_work_are_named(model, tmp_path):
    cert_file, key_file = self_signed_certificate(tmp_path)
    with pytest.raises(UserError, match="HTTPS needs both serving.tls_cert_file and serving.tls_key_file"):
        ScoringServer(model, dataclasses.replace(SERVING, tls_cert_file=cert_file), 0)
    with pytest.raises(UserError, match=f"cannot read serving.tls_cert_file {tmp_path}/missing.crt"):
        ScoringServer(model, dataclasses.replace(SERVING, tls_cert_file=str(tmp_path / "missing.crt"),
                                                 tls_key_file=key_file), 0)
    with pytest.raises(UserError, match="are not a PEM certificate and its private key"):
        ScoringServer(model, dataclasses.replace(SERVING, tls_cert_file=key_file, tls_key_file=key_file), 0)


def test_metrics_count_requests_by_route_and_status_images_and_name_the_model(model):
    with running(model, SERVING, api_key=KEY) as server:
        for _ in range(3):
            requests.post(server.url + "/invocations", json={"inputs": PIXELS}, headers=bearer(KEY))
        requests.post(server.url + "/invocations", json={"inputs": []}, headers=bearer(KEY))
        requests.post(server.url + "/invocations", json={"inputs": PIXELS})
        requests.get(server.url + "/ping")
        requests.get(server.url + "/no-such-page", headers=bearer(KEY))
        response = requests.get(server.url + "/metrics", headers=bearer(KEY))

    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    scraped = metric_samples(response.text)
    requests_total = {labels: value for (name, labels), value in scraped.items()
                      if name == "places_serving_requests_total"}
    assert requests_total == {(("route", "/invocations"), ("status", "200")): 3,
                              (("route", "/invocations"), ("status", "400")): 1,
                              (("route", "/invocations"), ("status", "401")): 1,
                              (("route", "/ping"), ("status", "200")): 1,
                              (("route", "other"), ("status", "404")): 1}
    assert scraped["places_serving_images_predicted_total", ()] == 6
    assert scraped["places_serving_model_info", (("name", "access-tests"), ("version", "1"))] == 1
    invocations = (("route", "/invocations"),)
    assert scraped["places_serving_request_duration_seconds_count", invocations] == 5
    assert scraped["places_serving_request_duration_seconds_bucket", (("le", "+Inf"), *invocations)] == 5
    assert 0 < scraped["places_serving_request_duration_seconds_sum", invocations] < 60


@pytest.fixture(scope="module")
def triton(open_url):
    """tritonclient's HTTP client, as a KServe or Triton user has it, at the keyed server."""
    import tritonclient.http

    client = tritonclient.http.InferenceServerClient(open_url.removeprefix("http://"), network_timeout=120)
    yield client
    client.close()


def test_an_open_inference_protocol_client_sees_the_server_live_ready_and_the_model_described(triton):
    import tritonclient.utils

    assert triton.is_server_live() and triton.is_server_ready()  # health checks need no key
    assert triton.is_model_ready("access-tests", headers=bearer(KEY))
    metadata = triton.get_model_metadata("access-tests", headers=bearer(KEY))
    assert metadata["versions"] == ["1"]
    assert [(tensor["name"], tensor["datatype"], tensor["shape"]) for tensor in metadata["inputs"]] == [
        ("pixels", "FP32", [-1, 128, 128, 3]), ("images", "BYTES", [-1])]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    with pytest.raises(tritonclient.utils.InferenceServerException, match="no model other: it serves access-tests"):
        triton.get_model_metadata("other", headers=bearer(KEY))
    with pytest.raises(tritonclient.utils.InferenceServerException, match="no Authorization header"):
        triton.get_model_metadata("access-tests")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers_ten_probabilities_per_image_from_pixels(triton, model, binary):
    import tritonclient.http

    pixels = np.asarray(PIXELS, np.float32)
    tensor = tritonclient.http.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    outputs = [tritonclient.http.InferRequestedOutput("probabilities", binary_data=binary)]

    result = triton.infer("access-tests", [tensor], outputs=outputs, headers=bearer(KEY), request_id="r1")

    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 10) and result.get_response()["id"] == "r1"
    np.testing.assert_allclose(probabilities, model.predict_pixels(pixels), atol=1e-6)


def test_tritonclient_infers_from_encoded_images(triton, model):
    import io

    import tritonclient.http
    from PIL import Image

    images = []
    for size, image_format in (((96, 64), "JPEG"), ((200, 300), "PNG")):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(size[0]).integers(0, 255, (*size, 3), np.uint8)).save(buffer,
                                                                                                    image_format)
        images.append(buffer.getvalue())
    tensor = tritonclient.http.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))

    result = triton.infer("access-tests", [tensor], headers=bearer(KEY))  # binary output, tritonclient's default

    np.testing.assert_allclose(result.as_numpy("probabilities"), model.predict_images(images), atol=1e-6)


def test_a_bad_open_inference_request_gets_a_400_naming_the_problem(open_url):
    infer_url = open_url + "/v2/models/access-tests/infer"
    for body, message in (
            ({"inputs": []}, 'the request needs "inputs": [one tensor]'),
            ({"inputs": [{"name": "pixels", "datatype": "INT8", "shape": [1], "data": [1]}]},
             "send 'pixels' as FP32 or 'images' as BYTES"),
            ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 128, 128, 3], "data": [0.5] * 7}]},
             "pixels has 7 values, not the 49152 of shape [1, 128, 128, 3]"),
            ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 128, 128, 3],
                          "data": [255.0] * 49152}]}, "divide them by 255"),
            ({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}]},
             "not valid base64"),
            ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 128, 128, 3], "data": PIXELS[0]}],
              "outputs": [{"name": "logits"}]}, "outputs may only ask for 'probabilities'")):
        response = requests.post(infer_url, json=body, headers=bearer(KEY))
        assert response.status_code == 400 and message in response.json()["error"], response.text
    response = requests.get(infer_url, headers=bearer(KEY))
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
