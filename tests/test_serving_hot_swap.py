"""`./places serve` on NAME@champion follows the alias: a newly registered champion takes over without a request
failing (issue 13, item 5). Against the test MLflow server, with two small registered models."""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.config import Config, apply
from serving import model as serving_model
from serving.server import running
from tests.champion import register_champion, small_model
from tests.fixtures import free_port
from tests.serving_support import base64_of, encoded, scene

pytestmark = pytest.mark.slow

PIXELS = np.random.default_rng(5).random((1, 128, 128, 3)).tolist()
NEW_CLASS = 3  # the second champion answers this class with probability ~1, the first does not


SMALL_PNGS = [encoded(scene(seed, (64, 64)), "PNG") for seed in (7, 8)]


def sure_of(class_index: int):
    """small_model() with its output layer replaced: whatever the pixels, `class_index` wins by far."""
    model = small_model()
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    bias = np.zeros_like(bias)
    bias[class_index] = 12.0
    dense.set_weights([np.zeros_like(kernel), bias])
    return model


@pytest.fixture(scope="module")
def first_champion(mlflow_server: Config, tmp_path_factory) -> tuple[Config, serving_model.SceneModel]:
    """The test config (reload_s 1) and the first champion of "hot-swap-tests", loaded."""
    config = register_champion(mlflow_server, tmp_path_factory.mktemp("first"), "hot-swap-tests")
    config = dataclasses.replace(config, serving=dataclasses.replace(config.serving, reload_s=1))
    return config, serving_model.load(config)


def test_a_registry_out_of_reach_is_logged_and_the_current_version_goes_on(first_champion, monkeypatch, caplog):
    config, first = first_champion
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a refused connection fails at once
    unreachable = apply(config, {"mlflow.port": str(free_port()), "serving.reload_s": "0.2"})
    switched: list[serving_model.SceneModel] = []
    stop = threading.Event()
    follower = threading.Thread(target=serving_model.follow, args=(unreachable, None, first, switched.append, stop))
    with caplog.at_level(logging.WARNING, logger="serving.model"):
        follower.start()
        time.sleep(3)
        stop.set()
        follower.join(timeout=60)
    assert not follower.is_alive() and switched == []
    assert f"cannot reload hot-swap-tests@champion, still serving {first.reference}" in caplog.text


def test_a_moved_champion_is_switched_to_while_every_request_is_answered(first_champion, tmp_path):
    """With batching on and four clients (one sending the tutorial's pixels, three the Open Inference Protocol's
    images): each answer comes wholly from one version, the one it names."""
    config, first = first_champion
    assert config.serving.max_batch_size > 1
    answers: list[tuple[float, int, np.ndarray | None]] = []
    versioned: list[tuple[str, np.ndarray]] = []  # (the version an infer answer names, its probabilities)
    infer_statuses: list[int] = []
    stop = threading.Event()

    def keep_asking(url: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                # When the request was sent: one sent before the switch may rightly be answered by the old model.
                sent = time.monotonic()
                response = session.post(f"{url}/invocations", json={"inputs": PIXELS}, timeout=30)
                answers.append((sent, response.status_code,
                                np.array(response.json()["predictions"][0]) if response.ok else None))

    def keep_inferring(url: str) -> None:
        tensor = {"name": "images", "datatype": "BYTES", "shape": [2], "data": [base64_of(png) for png in SMALL_PNGS]}
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(f"{url}/v2/models/hot-swap-tests/infer", json={"inputs": [tensor]},
                                        timeout=30)
                infer_statuses.append(response.status_code)
                if response.ok:
                    output = response.json()["outputs"][0]
                    versioned.append((response.json()["model_version"],
                                      np.array(output["data"]).reshape(output["shape"])))

    with running(first, config.serving, follow=functools.partial(serving_model.follow, config, None)) as server:
        askers = [threading.Thread(target=target, args=(server.url,))
                  for target in (keep_asking, keep_inferring, keep_inferring, keep_inferring)]
        for asker in askers:
            asker.start()
        try:
            registering = time.monotonic()
            register_champion(config, tmp_path / "second", "hot-swap-tests", sure_of(NEW_CLASS))
            moved = time.monotonic()
            deadline = moved + 60
            while requests.get(f"{server.url}/ping", timeout=5).json()["version"] == first.version:
                assert time.monotonic() < deadline, "the server never switched to the new champion"
                time.sleep(0.1)
            switched = time.monotonic()
            print(f"switched {switched - moved:.1f} s after the alias moved")
            time.sleep(1)  # answers after the switch
        finally:
            stop.set()
            for asker in askers:
                asker.join()
        ping = requests.get(f"{server.url}/ping", timeout=5).json()
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text

    new_version = str(int(first.version) + 1)
    assert ping == {"status": "ok", "model": "hot-swap-tests", "version": new_version}
    info = [sample.labels for family in text_string_to_metric_families(metrics) for sample in family.samples
            if sample.name == "places_serving_model_info"]
    assert info == [{"name": "hot-swap-tests", "version": new_version}]
    assert answers and all(status == 200 for _, status, _ in answers)
    assert infer_statuses and all(status == 200 for status in infer_statuses)
    before = [probabilities for at, _, probabilities in answers if at < registering]
    after = [probabilities for at, _, probabilities in answers if at > switched]
    assert before, "no request was answered before the new champion was registered"
    assert after, "no request was answered after the switch"
    assert all(probabilities.argmax() == NEW_CLASS and probabilities.max() > 0.99 for probabilities in after)
    assert all(probabilities.max() < 0.99 for probabilities in before)
    new_version_answers = [probabilities for version, probabilities in versioned if version == new_version]
    old_version_answers = [probabilities for version, probabilities in versioned if version == first.version]
    assert new_version_answers and old_version_answers
    assert len(new_version_answers) + len(old_version_answers) == len(versioned)
    assert all((probabilities.argmax(axis=1) == NEW_CLASS).all() and (probabilities.max(axis=1) > 0.99).all()
               for probabilities in new_version_answers)
    assert all((probabilities.max(axis=1) < 0.99).all() for probabilities in old_version_answers)
