"""Serving/training skew (issue 26, item 3): `./places serve` logs a sample of what it is sent (serving.request_log)
and `./places monitor` compares it with the champion's training statistics. Against the test Azurite and MLflow, a
real server and a champion whose run holds TFDV statistics of the scenes it was "trained" on."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest
import requests
import tensorflow as tf
from click.testing import CliRunner

from cli.main import main as places
from core.config import Config, apply
from core.errors import UserError
from data_schema import BRIGHTNESS_KEY, HEIGHT_KEY, IMAGE_KEY, TUTORIAL_CLASSES, WIDTH_KEY
from serving import model as serving_model
from serving import monitor
from serving import request_log as log
from serving.request_log import RequestLog
from serving.server import running
from tests.champion import cli_environment, log_training_statistics, register_champion
from tests.serving_support import base64_of, encoded, metric_samples, scene

pytestmark = pytest.mark.slow

# The scenes the champion was "trained" on: two original sizes, one label each, in turn.
SIZES = [(96, 128), (120, 160)]
SCENES = [scene(seed, SIZES[seed % 2]) for seed in range(16)]
LABELS = [TUTORIAL_CLASSES[seed % len(TUTORIAL_CLASSES)] for seed in range(16)]
DARKER = 0.3  # the shifted kind of request: the same scenes at 30 % of their brightness


@pytest.fixture(scope="module")
def champion(mlflow_server: Config, tmp_path_factory) -> Config:
    config = register_champion(mlflow_server, tmp_path_factory.mktemp("champion"), "monitor-tests")
    log_training_statistics(config, [encoded(pixels) for pixels in SCENES], LABELS)
    # Every image logged, a file every 5 of them (the last one at shutdown).
    return apply(config, {"serving.request_log_percent": "100", "serving.request_log_images_per_file": "5"})


@pytest.fixture(scope="module")
def model(champion: Config) -> serving_model.SceneModel:
    return serving_model.load(champion)


def serve_and_send(config: Config, model, prefix: str, scenes: list[np.ndarray]) -> dict:
    """Run a server logging to `prefix`, send each scene as a JPEG (two per request), close it; its /metrics."""
    config = apply(config, {"serving.request_log": prefix})
    with running(model, config.serving, request_log=RequestLog.from_config(config)) as server:
        with requests.Session() as session:
            for first in range(0, len(scenes), 2):
                images = [base64_of(encoded(pixels)) for pixels in scenes[first:first + 2]]
                response = session.post(f"{server.url}/invocations", json={"images": images}, timeout=30)
                assert response.status_code == 200, response.text
            metrics = session.get(f"{server.url}/metrics", timeout=30).text
    return metric_samples(metrics)


def skew_of(record: monitor.MonitorRecord) -> dict[str, monitor.FeatureSkew]:
    return {row.feature: row for row in record.skew}


def test_darker_requests_show_as_brightness_skew_and_requests_like_the_training_images_do_not(champion, model,
                                                                                            container):
    like, darker = f"{container}/like", f"{container}/darker"
    serve_and_send(champion, model, like, SCENES)
    serve_and_send(champion, model, darker, [pixels * DARKER for pixels in SCENES])

    like_record, like_page = monitor.monitor(apply(champion, {"serving.request_log": like}), since="1")
    record, page = monitor.monitor(apply(champion, {"serving.request_log": darker}), since="1")

    # Every image was logged, across files of 5 and the one written at shutdown.
    assert (like_record.images, like_record.files) == (16, 4) and record.images == 16
    assert like_record.model == f"monitor-tests/{model.version}"
    assert like_record.models_answering == {model.reference: 16}
    like_skew, skew = skew_of(like_record), skew_of(record)
    print({feature: (row.value, row.threshold) for feature, row in like_skew.items()},
          {feature: (row.value, row.threshold) for feature, row in skew.items()})
    assert set(skew) == {HEIGHT_KEY, WIDTH_KEY, BRIGHTNESS_KEY}
    # The same scenes as the training images, measured by the same conversion: nothing skews.
    assert not like_record.skewed and all(row.value is not None for row in like_skew.values())
    assert like_skew[BRIGHTNESS_KEY].logged["mean"] == pytest.approx(like_skew[BRIGHTNESS_KEY].training["mean"],
                                                                      abs=1e-3)
    # The darker ones: brightness, and only brightness, past its threshold, its mean down to about 30 %.
    brightness = skew[BRIGHTNESS_KEY]
    assert [row.feature for row in record.skewed] == [BRIGHTNESS_KEY]
    assert brightness.measure == "Jensen-Shannon divergence" and brightness.value > brightness.threshold
    assert brightness.logged["mean"] == pytest.approx(DARKER * brightness.training["mean"], rel=0.1)
    assert brightness.change < 0
    # The page says the same to a person: the brightness row marked, with both means and the change.
    html = page.read_text()
    row = re.search(r'<tr class="skewed" data-feature="brightness">(.*?)</tr>', html, re.S)
    assert row is not None and "&#9888; skewed" in row.group(1)
    cells = re.findall(r'<td class="number">([^<]*)</td>', row.group(1))
    assert cells[:4] == [f"{brightness.value:.3f}", f"{brightness.threshold:g}",
                         f"{brightness.training['mean']:.3f}", f"{brightness.logged['mean']:.3f}"]
    assert re.fullmatch(r"-0\.\d{3} \(-(6[5-9]|7[0-5]) %\)", cells[4]), cells[4]
    assert '<tr class="" data-feature="height">' in html and "Skew:</strong> brightness differs" in html
    assert '<div class="outcome ok"><strong>No skew' in like_page.read_text()
    assert (page.parent / "requests_over_time.png").stat().st_size > 0
    assert (page.parent / "class_shares.png").stat().st_size > 0
    # Each logged class's share beside its training share (1/10 each: 16 images, labels in turn).
    shares = {share.key: share for share in record.classes}
    assert set(shares) >= set(TUTORIAL_CLASSES)
    assert sum(share.logged_images for share in record.classes) == 16
    assert shares[TUTORIAL_CLASSES[0]].training == pytest.approx(2 / 16)

    # The command: the same comparison, a table and the page's path.
    result = CliRunner().invoke(places, ["monitor", "--since", "1"],
                                env={**cli_environment(champion), "PLACES_SERVING__REQUEST_LOG": darker})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("brightness"))
    assert "Jensen-Shannon divergence" in line and "SKEWED" in line and f"{brightness.value:.3f}" in line
    assert re.search(r"^report: .*/reports/monitor-\d{8}T\d{6}Z(-\d+)?/index\.html$", result.stdout, re.M)


def test_a_record_holds_the_measurements_the_answer_and_the_128_pixel_jpeg(champion, model, tmp_path):
    """Pixels (the tutorial's format) are measured as they are: 128 x 128, their mean; images by ingestion's
    conversion. A local folder works as the log's prefix."""
    pixels = np.random.default_rng(3).random((1, 128, 128, 3))
    config = apply(champion, {"serving.request_log": str(tmp_path / "log")})
    with running(model, config.serving, request_log=RequestLog.from_config(config)) as server:
        answered = requests.post(f"{server.url}/invocations", json={"inputs": pixels.tolist()}, timeout=30).json()

    (path,) = (tmp_path / "log").rglob(f"*{log.FILE_SUFFIX}")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}/requests-\d{6}-[0-9a-f]{8}\.tfrecord\.gz",
                        path.relative_to(tmp_path / "log").as_posix())
    (serialized,) = tf.data.TFRecordDataset(str(path), compression_type="GZIP").as_numpy_iterator()
    features = tf.train.Example.FromString(serialized).features.feature
    predicted = int(np.argmax(answered["predictions"][0]))
    assert features[HEIGHT_KEY].int64_list.value == [128] == features[WIDTH_KEY].int64_list.value
    assert features[BRIGHTNESS_KEY].float_list.value[0] == pytest.approx(pixels.mean(), abs=1e-5)
    assert features[log.PREDICTED_CLASS_KEY].int64_list.value == [predicted]
    assert features[log.PREDICTED_CLASS_NAME_KEY].bytes_list.value == [TUTORIAL_CLASSES[predicted].encode()]
    assert features[log.PROBABILITY_KEY].float_list.value[0] == pytest.approx(max(answered["predictions"][0]))
    assert features[log.MODEL_KEY].bytes_list.value == [model.reference.encode()]
    assert abs(features[log.REQUESTED_AT_KEY].int64_list.value[0] / 1000 - time.time()) < 120
    assert tf.io.decode_jpeg(features[IMAGE_KEY].bytes_list.value[0]).shape == (128, 128, 3)


@pytest.mark.parametrize("unusable", ["a container name Azure refuses", "a local path that is a file"])
def test_an_unusable_request_log_never_fails_a_request_and_counts_what_it_loses(champion, model, tmp_path, caplog,
                                                                                 unusable):
    if unusable.startswith("a container"):
        prefix = "azfs://devstoreaccount1/Not_A_Container!/requests"
    else:
        (tmp_path / "taken").write_text("a file, not a folder")
        prefix = str(tmp_path / "taken")
    config = apply(champion, {"serving.request_log": prefix, "serving.request_log_images_per_file": "1"})
    with caplog.at_level(logging.WARNING, logger="serving.request_log"):
        with running(model, config.serving, request_log=RequestLog.from_config(config)) as server:
            for seed in range(3):
                response = requests.post(f"{server.url}/invocations",
                                         json={"images": [base64_of(encoded(SCENES[seed]))]}, timeout=30)
                assert response.status_code == 200, response.text
            deadline = time.monotonic() + 60
            while True:
                metrics = metric_samples(requests.get(f"{server.url}/metrics", timeout=30).text)
                if metrics[("places_serving_request_log_errors_total", ())] == 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)

    assert metrics[("places_serving_request_log_errors_total", ())] == 3
    assert metrics[("places_serving_requests_logged_total", ())] == 0
    assert metrics[("places_serving_requests_total", (("route", "/invocations"), ("status", "200")))] == 3
    warnings = [record.getMessage() for record in caplog.records if record.name == "serving.request_log"]
    assert len(warnings) == 1, warnings  # one warning for the cause, not one per image
    assert f"the request log at {prefix} could not write a file" in warnings[0]


def test_the_monitor_says_what_is_missing(champion, mlflow_server, container, tmp_path):
    with pytest.raises(UserError, match=r"no request log is configured: set serving.request_log"):
        monitor.monitor(champion)
    with pytest.raises(UserError, match=rf"nothing was logged under {container}/empty \(serving.request_log\)"):
        monitor.monitor(apply(champion, {"serving.request_log": f"{container}/empty"}))
    bare = register_champion(mlflow_server, tmp_path / "bare", "monitor-tests-bare")
    with pytest.raises(UserError, match=r"monitor-tests-bare/1 has no training statistics .* Run `./places run` "
                                        r"first"):
        monitor.monitor(apply(bare, {"serving.request_log": f"{container}/empty"}))
