"""Server-side batching (serving/batcher.py) as clients meet it: concurrent requests of every format and size get
their own answers, the same as the model called on each alone; a corrupt image fails only its own request, also
when it shares a model call with good ones; a request larger than serving.max_batch_size is answered in calls of
that size; /metrics shows the batches. A real exported model and the real HTTP server, batching on and off."""

from __future__ import annotations

import base64
import dataclasses
import struct
import threading

import numpy as np
import orjson
import pytest
import requests

from components.trainer.export import export
from core.config import Config
from data_schema import TUTORIAL_CLASSES
from serving.batcher import Batcher, ShuttingDown
from serving.inputs import InvalidInput
from serving.model import SceneModel, checked_pixels
from serving.server import running
from tests.champion import small_model
from tests.serving_support import base64_of, encoded, metric_samples, scene

MODEL_NAME = "batching-tests"
# Long enough that requests sent together are joined even on a busy machine; only the tests wait this long.
TIMEOUT_MS = 200.0


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> SceneModel:
    folder = str(tmp_path_factory.mktemp("model") / "serving_model")
    export(small_model(), list(TUTORIAL_CLASSES), folder)
    return SceneModel(folder, MODEL_NAME, "1", Config().ingest.max_image_pixels)


def serving(**settings):
    return dataclasses.replace(Config().serving, **settings)


def picture(seed: int, size: tuple[int, int], image_format: str) -> bytes:
    return encoded(scene(seed, size), image_format)


GOOD_JPEG = picture(0, (128, 128), "JPEG")
CORRUPT_JPEG = GOOD_JPEG[:-200]  # its header is whole: only the model's own decoding finds it cut short


def pixels(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 128, 128, 3)).astype(np.float32)


class Asked:
    """One request in one of the formats the server takes, and the probabilities the model gives it alone."""

    def __init__(self, name: str, model: SceneModel, seed: int):
        self.name = name
        images = [picture(seed + index, size, image_format) for index, (size, image_format)
                  in enumerate([((128, 128), "JPEG"), ((300, 200), "PNG"), ((64, 96), "JPEG")][:1 + seed % 3])]
        array = pixels(seed, 1 + seed % 4)
        self.path = "/invocations"
        self.headers: dict[str, str] = {}
        if name in ("inputs", "instances"):
            self.body = orjson.dumps({name: array.tolist()})
            self.expected = model.predict_pixels(array)
        elif name == "images":
            self.body = orjson.dumps({"images": [base64_of(image) for image in images], "params": {"top_k": 2}})
            self.expected = model.predict_images(images)
        else:  # the Open Inference Protocol: pixels as JSON, or images with the binary extension
            self.path = f"/v2/models/{MODEL_NAME}/infer"
            if name == "v2 pixels":
                tensor = {"name": "pixels", "datatype": "FP32", "shape": list(array.shape),
                          "data": array.reshape(-1).tolist()}
                self.body = orjson.dumps({"inputs": [tensor]})
                self.expected = model.predict_pixels(array)
            else:
                raw = b"".join(struct.pack("<I", len(image)) + image for image in images)
                header = orjson.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [len(images)],
                                                   "parameters": {"binary_data_size": len(raw)}}]})
                self.body = header + raw
                self.headers = {"Inference-Header-Content-Length": str(len(header))}
                self.expected = model.predict_images(images)

    def probabilities(self, response: requests.Response) -> np.ndarray:
        assert response.status_code == 200, response.text
        if self.path == "/invocations":
            answer = response.json()
            predictions = np.array(answer["predictions"])
            if "top_classes" in answer:  # each request's own top classes, from its own probabilities
                np.testing.assert_allclose([[top["probability"] for top in row] for row in answer["top_classes"]],
                                           np.sort(predictions, axis=1)[:, ::-1][:, :2], atol=1e-6)
            return predictions
        output = response.json()["outputs"][0]
        return np.array(output["data"]).reshape(output["shape"])


FORMATS = ("inputs", "instances", "images", "v2 pixels", "v2 images")


def metric(url: str, name: str) -> float:
    samples = metric_samples(requests.get(f"{url}/metrics", timeout=10).text)
    return sum(value for (sample, _), value in samples.items() if sample == name)


def ask_together(url: str, asks: list[tuple[str, bytes, dict[str, str]]]) -> list[requests.Response]:
    """Every request (path, body, headers) from its own client and connection, all sent at once."""
    start = threading.Barrier(len(asks))
    responses: list[requests.Response | None] = [None] * len(asks)

    def ask(index: int) -> None:
        path, body, headers = asks[index]
        with requests.Session() as session:
            start.wait()
            responses[index] = session.post(url + path, data=body, headers=headers, timeout=120)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(asks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.parametrize("batching", [serving(batch_timeout_ms=TIMEOUT_MS, model_calls_at_once=1),
                                      serving(max_batch_size=0)], ids=["batching", "batching off"])
def test_concurrent_requests_of_every_format_and_size_get_their_own_answers(model, batching):
    asks = [Asked(FORMATS[seed % len(FORMATS)], model, seed) for seed in range(32)]
    with running(model, batching) as server:
        responses = ask_together(server.url, [(asked.path, asked.body, asked.headers) for asked in asks])
        for asked, response in zip(asks, responses):
            np.testing.assert_allclose(asked.probabilities(response), asked.expected, atol=1e-5,
                                       err_msg=f"{asked.name} got another request's answer")
        calls = metric(server.url, "places_serving_batch_size_count")
        images = metric(server.url, "places_serving_batch_size_sum")
    assert images == sum(len(asked.expected) for asked in asks)
    if batching.max_batch_size:
        assert calls < len(asks), "no two requests shared a model call"
    else:
        assert calls == len(asks)


def test_a_corrupt_image_fails_its_own_request_and_no_other_in_its_batch(model):
    good = [orjson.dumps({"images": [base64_of(picture(seed, (128, 128), "JPEG"))]}) for seed in range(5)]
    bad = orjson.dumps({"images": [base64_of(GOOD_JPEG), base64_of(CORRUPT_JPEG)]})
    with running(model, serving(batch_timeout_ms=TIMEOUT_MS, model_calls_at_once=1)) as server:
        responses = ask_together(server.url, [("/invocations", body, {}) for body in [*good, bad]])
        # and the server goes on
        assert requests.post(f"{server.url}/invocations", data=good[0], timeout=30).status_code == 200
    assert [response.status_code for response in responses] == [200] * 5 + [400]
    assert "images[1] is a corrupt or truncated JPEG image" in responses[-1].json()["error"]
    for body, response in zip(good, responses):
        image = base64.b64decode(orjson.loads(body)["images"][0])
        np.testing.assert_allclose(response.json()["predictions"], model.predict_images([image]), atol=1e-5)


def test_requests_read_together_share_one_call_and_a_corrupt_image_fails_only_its_own(model):
    """The batcher alone, where it is certain which requests share a call: they are all being read (inside
    request()) when the first is handed over, so the batch waits for the rest."""
    calls: list[int] = []
    batcher = Batcher(lambda: model, serving(batch_timeout_ms=30_000, model_calls_at_once=1), calls.append)
    requests_ = [model.checked_images([GOOD_JPEG]), model.checked_images([GOOD_JPEG, CORRUPT_JPEG]),
                 checked_pixels(pixels(1, 2)), model.checked_images([picture(3, (200, 300), "PNG")])]
    answers: list[object] = [None] * len(requests_)
    contexts = [batcher.request() for _ in requests_]
    predicts = [context.__enter__() for context in contexts]

    def ask(index: int) -> None:
        try:
            answers[index] = predicts[index](requests_[index])
        except InvalidInput as error:
            answers[index] = error
        finally:
            contexts[index].__exit__(None, None, None)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(requests_))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        batcher.close()
    # One batch: the pixels in one call, the five images in another (which fails, so each request is retried alone).
    assert sorted(calls) == [2, 4]
    assert "images[1] is a corrupt or truncated JPEG image" in str(answers[1])
    np.testing.assert_allclose(answers[0][0], model.predict_images([GOOD_JPEG]), atol=1e-5)
    np.testing.assert_allclose(answers[2][0], model.predict_pixels(pixels(1, 2)), atol=1e-5)
    np.testing.assert_allclose(answers[3][0], model.predict_images([picture(3, (200, 300), "PNG")]), atol=1e-5)
    assert all(answer[1] is model for index, answer in enumerate(answers) if index != 1)


def test_a_request_larger_than_the_batch_is_answered_in_calls_of_max_batch_size(model):
    calls: list[int] = []
    batcher = Batcher(lambda: model, serving(max_batch_size=4), calls.append)
    images = [picture(seed, (128, 128), "JPEG") for seed in range(10)]
    try:
        with batcher.request() as predict:
            probabilities, answered_by = predict(model.checked_images(images))
    finally:
        batcher.close()
    assert calls == [4, 4, 2] and answered_by is model
    np.testing.assert_allclose(probabilities, model.predict_images(images), atol=1e-5)


def test_metrics_show_the_batch_sizes_and_the_wait_for_a_batch(model):
    with running(model, serving()) as server:
        answer = requests.post(f"{server.url}/invocations", json={"images": [base64_of(GOOD_JPEG)] * 3}, timeout=30)
        answer.raise_for_status()
        samples = metric_samples(requests.get(f"{server.url}/metrics", timeout=10).text)
    assert samples[("places_serving_batch_size_bucket", (("le", "2.0"),))] == 0
    assert samples[("places_serving_batch_size_bucket", (("le", "4.0"),))] == 1
    assert samples[("places_serving_batch_wait_seconds_count", ())] == 1
    assert samples[("places_serving_batch_wait_seconds_bucket", (("le", "+Inf"),))] == 1


def test_a_request_handed_over_after_the_batcher_closed_is_refused_not_left_waiting(model):
    batcher = Batcher(lambda: model, serving())
    batcher.close()
    with pytest.raises(ShuttingDown, match="shutting down"), batcher.request() as predict:
        predict(model.checked_images([GOOD_JPEG]))
