"""The endpoint as its users meet it: a champion registered in a real MLflow server (artifacts in Azurite), loaded
through the registry, asked by a client written for the tutorial's endpoint; every bad request answered with a
4xx that names the problem; a bounded load; `./places predict` and `./places serve`."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
import tensorflow as tf
from click.testing import CliRunner

from cli.main import main as places
from core.config import PROJECT_ROOT, Config
from core.errors import UserError
from core.storage import join
from data_schema import TUTORIAL_CLASSES, display_name
from registry import ModelNotFound
from serving import model as serving_model
from serving.client import demo_requests
from serving.server import ScoringServer, running
from tests.champion import cli_environment, register_champion
from tests.fixtures import free_port
from tests.serving_support import base64_of, encoded, scene

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion(mlflow_server: Config, tmp_path_factory) -> Config:
    return register_champion(mlflow_server, tmp_path_factory.mktemp("champion"), "serving-tests")


@pytest.fixture(scope="module")
def model(champion: Config) -> serving_model.SceneModel:
    return serving_model.load(champion)


@pytest.fixture(scope="module")
def url(model, champion: Config) -> str:
    with running(model, champion.serving) as server:
        yield server.url


def test_a_client_written_for_the_tutorial_gets_ten_probabilities(url):
    pixels = np.random.default_rng(1).random((1, 128, 128, 3))

    response = requests.post(url + "/invocations", json={"inputs": pixels.tolist()})

    assert response.status_code == 200
    predictions = np.array(response.json()["predictions"])
    assert predictions.shape == (1, 10)
    assert predictions.sum() == pytest.approx(1, abs=1e-5) and (predictions >= 0).all()


def test_mlflow_and_tf_serving_clients_send_the_pixels_as_instances(url):
    pixels = np.random.default_rng(12).random((2, 128, 128, 3)).tolist()

    by_inputs = requests.post(url + "/invocations", json={"inputs": pixels}).json()
    by_instances = requests.post(url + "/invocations", json={"instances": pixels}).json()

    assert by_instances == by_inputs and np.array(by_instances["predictions"]).shape == (2, 10)


def test_ping_names_the_model_and_its_version(url):
    response = requests.get(url + "/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": "serving-tests", "version": "1"}


def test_a_jpeg_gives_the_probabilities_of_its_pixels(url):
    jpeg = encoded(scene(2))
    # Decoded as the model's graph decodes: Pillow (the tutorial's preprocess_image) uses libjpeg's accurate
    # integer IDCT, TensorFlow the fast one, so their pixels differ by up to 3 of 255.
    pixels = tf.io.decode_jpeg(jpeg).numpy() / 255

    by_pixels = requests.post(url + "/invocations", json={"inputs": [pixels.tolist()]}).json()
    by_image = requests.post(url + "/invocations", json={"images": [base64_of(jpeg)]}).json()

    np.testing.assert_allclose(by_image["predictions"], by_pixels["predictions"], atol=1e-6)


def test_images_of_any_size_and_both_formats_are_answered_in_one_batch(url, model):
    images = [encoded(scene(3, (480, 640))), encoded(scene(4, (40, 30)), "PNG"),
              encoded(np.repeat(scene(5)[..., :1], 3, axis=2), "PNG")]

    response = requests.post(url + "/invocations", json={"images": [base64_of(image) for image in images]})

    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["predictions"], model.predict_images(images), atol=1e-6)


def test_params_add_class_names_and_the_top_classes(url):
    pixels = np.random.default_rng(6).random((2, 128, 128, 3))

    answer = requests.post(url + "/invocations", json={"inputs": pixels.tolist(),
                                                       "params": {"class_names": True, "top_k": 3}}).json()

    assert answer["class_names"] == list(TUTORIAL_CLASSES)
    for probabilities, top in zip(answer["predictions"], answer["top_classes"]):
        expected = np.argsort(probabilities)[::-1][:3]
        assert [item["class"] for item in top] == [TUTORIAL_CLASSES[index] for index in expected]
        assert [item["display_name"] for item in top] == [display_name(TUTORIAL_CLASSES[i]) for i in expected]
        assert [item["probability"] for item in top] == pytest.approx([probabilities[i] for i in expected])


PIXELS = np.random.default_rng(7).random((1, 128, 128, 3))


def with_pixel(value: float) -> list:
    pixels = PIXELS.copy()
    pixels[0, 5, 6, 1] = value
    return pixels.tolist()


JPEG = encoded(scene(8))

BAD_REQUESTS = {
    "malformed JSON": (b'{"inputs": [[0.1, 0.2', 400, "the body is not valid JSON"),
    "NaN from json.dumps": (json.dumps({"inputs": with_pixel(float("nan"))}).encode(), 400,
                            "the body holds NaN or Infinity"),
    "infinity from json.dumps": (json.dumps({"inputs": with_pixel(float("inf"))}).encode(), 400,
                                 "the body holds NaN or Infinity"),
    "a number beyond float32": ({"inputs": with_pixel(1e39)}, 400,
                                "inputs holds NaN or infinite values (at [0, 5, 6, 1])"),
    "not an object": ([1, 2, 3], 400, "the body is a JSON list, not an object"),
    "missing inputs": ({"params": {"top_k": 1}}, 400, "send exactly one of 'inputs'"),
    "an unknown field": ({"instance": PIXELS.tolist()}, 400, "unknown field 'instance'"),
    "inputs and instances": ({"inputs": PIXELS.tolist(), "instances": PIXELS.tolist()}, 400,
                             "send exactly one of 'inputs' (pixels [N, 128, 128, 3] in [0, 1], the tutorial's "
                             "format), 'instances'"),
    "instances of the wrong shape": ({"instances": np.zeros((1, 64, 64, 3)).tolist()}, 400,
                                     "instances has shape [1, 64, 64, 3]"),
    "wrong shape": ({"inputs": np.zeros((1, 64, 64, 3)).tolist()}, 400,
                    "inputs has shape [1, 64, 64, 3], but the model takes [N, 128, 128, 3]"),
    "no batch dimension": ({"inputs": PIXELS[0].tolist()}, 400, "one image without the batch dimension"),
    "ragged lists": ({"inputs": [[0.1, 0.2], [0.3]]}, 400, "inputs is ragged"),
    "strings": ({"inputs": [["0.1", "0.2"]]}, 400, "inputs holds strings"),
    "booleans": ({"inputs": [[True, False]]}, 400, "inputs holds true/false values"),
    "nulls": ({"inputs": [[None, 0.5]]}, 400, "inputs holds something other than numbers"),
    "0-255 pixels": ({"inputs": (PIXELS * 255).round().tolist()}, 400, "divide them by 255"),
    "negative pixels": ({"inputs": with_pixel(-0.5)}, 400, "inputs holds negative values, down to -0.5"),
    "empty batch": ({"inputs": []}, 400, "inputs is empty"),
    "no images": ({"images": []}, 400, "images is empty"),
    "bad base64": ({"images": ["not base64!"]}, 400, "images[0] is not valid base64"),
    "an image that is no string": ({"images": [[1, 2]]}, 400, "images[0] is a JSON list, not a base64 string"),
    "non-image bytes": ({"images": [base64_of(JPEG), base64_of(b"<html>Access denied</html>")]}, 400,
                        "images[1]: not a JPEG or PNG image"),
    "truncated JPEG": ({"images": [base64_of(JPEG), base64_of(JPEG[:-200])]}, 400,
                       "images[1] is a corrupt or truncated JPEG image"),
    "unknown params": ({"inputs": PIXELS.tolist(), "params": {"top": 3}}, 400, "unknown params 'top'"),
    "top_k too large": ({"inputs": PIXELS.tolist(), "params": {"top_k": 11}}, 400,
                        "params.top_k must be a whole number from 1 to 10"),
}


@pytest.mark.parametrize("body, status, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_gets_a_4xx_naming_the_problem_and_the_server_goes_on(url, body, status, message):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = requests.post(url + "/invocations", data=data, headers={"Content-Type": "application/json"})

    assert response.status_code == status
    assert message in response.json()["error"]
    assert requests.get(url + "/ping").status_code == 200


def raw_post(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    """POST /invocations with exactly these headers and no body."""
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        connection.putrequest("POST", "/invocations", skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_an_oversized_body_is_refused_from_its_content_length_before_it_is_sent(url, champion):
    status, answer = raw_post(url, {"Content-Length": str(champion.serving.max_request_bytes + 1)})
    assert status == 413
    assert "more than serving.max_request_bytes" in answer["error"]
    assert requests.get(url + "/ping").status_code == 200


def test_a_chunked_body_is_read(url):
    body = json.dumps({"inputs": PIXELS.tolist()}).encode()
    # A generator has no length: requests sends it chunked, 64 KB a chunk here.
    chunks = (body[start:start + 65536] for start in range(0, len(body), 65536))

    response = requests.post(url + "/invocations", data=chunks, headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.json() == requests.post(url + "/invocations", data=body).json()


def test_a_chunked_body_over_the_limit_is_refused_once_it_passes_it(url, champion):
    chunk = b" " * (1024 * 1024)
    chunks = (chunk for _ in range(champion.serving.max_request_bytes // len(chunk) + 2))
    # The server answers while the client is still sending; its lingering close lets the client read the answer.
    response = requests.post(url + "/invocations", data=chunks)
    assert response.status_code == 413 and "the chunked body is over" in response.json()["error"]
    assert requests.get(url + "/ping").status_code == 200


@pytest.mark.parametrize("headers, status, message", [
    ({}, 411, "no Content-Length header: send the JSON body with its length, or chunked"),
    ({"Transfer-Encoding": "gzip"}, 501, "Transfer-Encoding 'gzip' is not understood here"),
    ({"Transfer-Encoding": "chunked", "Content-Length": "10"}, 400, "both Content-Length and Transfer-Encoding"),
], ids=["no length", "gzip", "both"])
def test_a_body_without_a_length_it_can_be_read_by_is_refused(url, headers, status, message):
    answered, answer = raw_post(url, headers)
    assert answered == status and message in answer["error"]


def test_a_wrong_method_is_answered_405_with_the_allowed_one(url):
    response = requests.get(url + "/invocations")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert "/invocations answers POST only, not GET" in response.json()["error"]
    response = requests.post(url + "/ping", json={})
    assert response.status_code == 405 and response.headers["Allow"] == "GET"


def test_a_taken_port_is_named_with_the_setting_that_moves_the_server(model, champion, url):
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(UserError, match=rf"cannot listen on 127.0.0.1:{port} \(Address already in use\): stop the "
                                        "program using the port, or choose another with --port or serving.port"):
        ScoringServer(model, champion.serving, port)


def test_unknown_paths_say_which_exist(url):
    response = requests.post(url + "/predict", json={"inputs": PIXELS.tolist()})
    assert response.status_code == 404 and "use POST /invocations" in response.json()["error"]


def test_four_clients_of_two_hundred_requests_each_get_no_error(url):
    body = json.dumps({"inputs": PIXELS.tolist()}).encode()
    statuses: list[int] = []
    failures: list[BaseException] = []

    def client():
        try:
            with requests.Session() as session:
                for _ in range(200):
                    statuses.append(session.post(url + "/invocations", data=body, timeout=30,
                                                 headers={"Content-Type": "application/json"}).status_code)
        except BaseException as error:
            failures.append(error)

    started = time.monotonic()
    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in clients), "the load did not finish within 4 minutes"
    assert failures == [] and statuses == [200] * 800, f"after {time.monotonic() - started:.0f} s"


def test_each_request_is_logged_in_one_line_without_its_body(url, caplog):
    with caplog.at_level("INFO", logger="serving.server"):
        requests.post(url + "/invocations", json={"inputs": with_pixel(0.123456789)})
        requests.post(url + "/invocations", json={"inputs": []})
    lines = [record.getMessage() for record in caplog.records if record.name == "serving.server"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /invocations 200 ") and lines[0].endswith(" ms")
    assert lines[1].startswith("POST /invocations 400 ")
    assert not any("0.123456" in line for line in lines)


def test_demo_requests_answer_the_tutorial_format_and_a_jpeg(url, tmp_path):
    image_path = tmp_path / "scene.jpg"
    image_path.write_bytes(encoded(scene(9, (300, 400))))

    tutorial_answer, image_answer = demo_requests(url, image_path)

    assert np.array(tutorial_answer["predictions"]).shape == (1, 10)
    assert [item["class"] for item in image_answer["top_classes"][0]] == [
        TUTORIAL_CLASSES[index] for index in np.argsort(image_answer["predictions"][0])[::-1][:3]]


def test_the_registered_pyfunc_answers_pixels_as_the_endpoint_does(champion, model):
    import mlflow

    mlflow.set_tracking_uri(champion.mlflow_uri)
    pixels = np.random.default_rng(11).random((2, 128, 128, 3)).astype(np.float32)

    pyfunc = mlflow.pyfunc.load_model(f"models:/{model.reference}")

    np.testing.assert_allclose(pyfunc.predict(pixels), model.predict_pixels(pixels), atol=1e-6)


def test_an_unregistered_model_says_how_to_get_one(champion):
    with pytest.raises(ModelNotFound, match=r"has no model no-such-model@champion: register one with "
                                                          r"`./places run`"):
        serving_model.load(champion, "no-such-model@champion")
    with pytest.raises(ModelNotFound, match="no model serving-tests/7: its versions are 1"):
        serving_model.load(champion, "serving-tests/7")
    with pytest.raises(ModelNotFound, match="write NAME@ALIAS"):
        serving_model.load(champion, "serving-tests:latest")


def test_predict_prints_the_top_classes_of_local_files_and_blobs(champion, model, storage, container, tmp_path):
    local = tmp_path / "scene.png"
    local.write_bytes(encoded(scene(10), "PNG"))
    blob = join(container, "photos", "scene.jpg")
    storage.write_bytes(blob, JPEG)

    result = CliRunner().invoke(places, ["predict", str(local), blob, "--top-k", "2"], env=cli_environment(champion))

    assert result.exit_code == 0, result.output
    assert "model serving-tests/1" in result.stdout
    lines = result.stdout.splitlines()
    for image, data in ((str(local), local.read_bytes()), (blob, JPEG)):
        top = model.top_classes(model.predict_images([data]), 2)[0]
        row = next(index for index, line in enumerate(lines) if line.startswith(image))
        for line, expected in zip(lines[row:row + 2], top):
            assert line.split()[-1] == f"{expected.probability:.3f}" and expected.display_name in line


def test_predict_names_the_file_that_is_no_image(champion, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("taken in 2019")

    result = CliRunner().invoke(places, ["predict", str(notes)], env=cli_environment(champion))

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"places: error: {notes}: not a JPEG or PNG image (its first bytes are b'taken in'): send JPEG or PNG bytes")


def launcher_environment(config: Config) -> dict[str, str]:
    """What ./places sets up before it runs `python -m cli`."""
    return {**os.environ, **cli_environment(config), "PYTHONPATH": str(PROJECT_ROOT), "PLACES_ROOT": str(PROJECT_ROOT)}


def test_the_command_line_names_a_missing_model_in_one_line(champion):
    result = subprocess.run([sys.executable, "-m", "cli", "serve", "--model", "serving-tests/9"], cwd=PROJECT_ROOT,
                            env=launcher_environment(champion), capture_output=True, text=True, timeout=300)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"places: error: the MLflow registry at {champion.mlflow_uri} has no model serving-tests/9: its versions are 1")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "kill"])
def test_serve_answers_until_ctrl_c_or_kill_and_then_stops(champion, stop_signal):
    port = free_port()
    # Started as a script's background job would be: SIGINT ignored, which serve must not inherit.
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], cwd=PROJECT_ROOT,
                              env=launcher_environment(champion), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": PIXELS.tolist()})
        assert answer.status_code == 200
        server.send_signal(stop_signal)
        stdout, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, stderr
    assert f"serving serving-tests/1 at http://127.0.0.1:{port}" in stdout and "stopping" in stdout
    assert "batches of up to 16 images" in stdout
    assert "POST /invocations 200 " in stderr and "Traceback" not in stderr
