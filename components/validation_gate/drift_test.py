"""Drift from the champion's training data, measured by TFDV on real statistics of small generated tf.Examples,
and the gate that stops a run on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics.stats_impl import generate_statistics_in_memory
from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

from components.validation_gate.drift import DRIFT_FILE, compare, read_drift
from components.validation_gate.executor import DataValidationFailed, measure_drift, stop_on_drift
from data_schema import (
    BRIGHTNESS_KEY,
    HEIGHT_KEY,
    LABEL_KEY,
    LABEL_NAME_KEY,
    TRAIN_SPLIT,
    TUTORIAL_CLASSES,
    WIDTH_KEY,
    curated_schema,
)

SCHEMA = curated_schema(TUTORIAL_CLASSES)
BASELINE = "champion version 1's training data"


def statistics(images_per_class: dict[str, int], seed: int, brightness: float = 0.45):
    """TFDV statistics of examples with these class counts, a few image sizes and brightness around `brightness`:
    the same statistics as StatisticsGen's Beam job, without a job."""
    rng = np.random.default_rng(seed)
    records = []
    for name, count in images_per_class.items():
        for _ in range(count):
            features = {LABEL_KEY: [TUTORIAL_CLASSES.index(name)], LABEL_NAME_KEY: [name.encode()],
                        HEIGHT_KEY: [int(rng.choice([256, 300, 480]))], WIDTH_KEY: [int(rng.choice([256, 400, 640]))],
                        BRIGHTNESS_KEY: [float(np.clip(rng.normal(brightness, 0.12), 0, 1))]}
            records.append(tf.train.Example(features=tf.train.Features(feature={
                key: tf.train.Feature(float_list=tf.train.FloatList(value=values)) if isinstance(values[0], float)
                else tf.train.Feature(int64_list=tf.train.Int64List(value=values)) if isinstance(values[0], int)
                else tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
                for key, values in features.items()})).SerializeToString())
    return generate_statistics_in_memory(ExamplesToRecordBatchDecoder().DecodeBatch(records), tfdv.StatsOptions())


BALANCED = {name: 40 for name in TUTORIAL_CLASSES}
# Two classes four times as often: 25 % of the images each instead of 10 %.
TWO_CLASSES_MORE = {**BALANCED, "fountain": 160, "gas_station": 160}
# Two classes gone: the other eight go from 10 % to 12.5 %.
TWO_CLASSES_GONE = {name: count for name, count in BALANCED.items() if name not in ("fountain", "gas_station")}


@pytest.fixture(scope="module")
def champion():
    return statistics(BALANCED, seed=1)


def by_feature(result):
    return {item.feature: item for item in result.features}


def test_the_same_mix_drawn_again_has_not_drifted(champion):
    result = compare(statistics(BALANCED, seed=2), champion, SCHEMA, BASELINE)

    features = by_feature(result)
    assert set(features) == {LABEL_NAME_KEY, HEIGHT_KEY, WIDTH_KEY, BRIGHTNESS_KEY}
    assert result.drifted == [] and result.not_checked == "" and result.baseline == BASELINE
    assert (features[LABEL_NAME_KEY].measure, features[LABEL_NAME_KEY].threshold) == ("L-infinity distance", 0.08)
    assert features[LABEL_NAME_KEY].value == pytest.approx(0.0)  # the same class counts
    assert (features[BRIGHTNESS_KEY].measure, features[BRIGHTNESS_KEY].threshold) == ("Jensen-Shannon divergence",
                                                                                      pytest.approx(0.1))
    assert 0 < features[BRIGHTNESS_KEY].value < 0.05  # sampling noise only
    assert all(share.share == pytest.approx(0.1) == share.champion_share for share in result.class_shares)


def test_two_classes_four_times_as_often_drift_and_lead_the_class_mix(champion):
    result = compare(statistics(TWO_CLASSES_MORE, seed=2), champion, SCHEMA, BASELINE)

    assert [(item.feature, item.measure) for item in result.drifted] == [(LABEL_NAME_KEY, "L-infinity distance")]
    assert by_feature(result)[LABEL_NAME_KEY].value == pytest.approx(0.25 - 0.1)
    assert [(share.name, round(share.share, 3), share.champion_share) for share in result.class_shares[:2]] == [
        ("fountain", 0.25, pytest.approx(0.1)), ("gas_station", 0.25, pytest.approx(0.1))]
    assert len(result.class_shares) == 10 and result.class_shares[-1].moved == pytest.approx(0.0625 - 0.1)


def test_two_classes_gone_drift(champion):
    """The case that set the threshold below 0.1: each gone class's share falls by exactly 0.1."""
    result = compare(statistics(TWO_CLASSES_GONE, seed=2), champion, SCHEMA, BASELINE)

    assert by_feature(result)[LABEL_NAME_KEY].value == pytest.approx(0.1)
    assert [item.feature for item in result.drifted] == [LABEL_NAME_KEY]
    assert {share.name: share.share for share in result.class_shares[:2]} == {"fountain": 0, "gas_station": 0}


def test_brighter_images_drift_in_brightness_only(champion):
    result = compare(statistics(BALANCED, seed=2, brightness=0.6), champion, SCHEMA, BASELINE)

    assert [item.feature for item in result.drifted] == [BRIGHTNESS_KEY]
    assert by_feature(result)[BRIGHTNESS_KEY].value > 0.1


def test_a_champion_from_before_brightness_existed_is_compared_on_the_rest(champion):
    older = type(champion)()
    older.CopyFrom(champion)
    kept = [feature for feature in older.datasets[0].features if feature.path.step != [BRIGHTNESS_KEY]]
    del older.datasets[0].features[:]
    older.datasets[0].features.extend(kept)

    result = compare(statistics(BALANCED, seed=2), older, SCHEMA, BASELINE)

    assert BRIGHTNESS_KEY not in by_feature(result) and LABEL_NAME_KEY in by_feature(result)
    assert result.not_compared == {BRIGHTNESS_KEY: "previous data missing"}


def artifact_folders(tmp_path, new, champion):
    """An ExampleStatistics folder for each, a Schema folder, as StatisticsGen and ImportSchemaGen write them."""
    folders = {}
    for name, found in (("statistics", new), ("champion", champion)):
        split = tmp_path / name / f"Split-{TRAIN_SPLIT}"
        split.mkdir(parents=True)
        (split / "FeatureStats.pb").write_bytes(found.SerializeToString())
        folders[name] = str(split.parent)
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "schema.pbtxt").write_text(str(SCHEMA))
    folders["schema"] = str(tmp_path / "schema")
    return folders


def test_the_gate_stops_a_drifted_run_only_when_told_to(champion, tmp_path):
    folders = artifact_folders(tmp_path, statistics(TWO_CLASSES_MORE, seed=2), champion)
    drift_dir = str(tmp_path / "drift")
    measure_drift(folders["statistics"], folders["champion"], folders["schema"], BASELINE, drift_dir)

    written = json.loads((tmp_path / "drift" / DRIFT_FILE).read_text())
    assert [item["feature"] for item in written["features"] if item["drifted"]] == [LABEL_NAME_KEY]
    assert read_drift(drift_dir).drifted[0].value == pytest.approx(0.15)

    stop_on_drift(drift_dir, "warn")
    with pytest.raises(DataValidationFailed) as stopped:
        stop_on_drift(drift_dir, "stop")
    message = str(stopped.value)
    assert f"drifted from {BASELINE}" in message and "stops before training" in message
    assert "category_name: L-infinity distance 0.150, past the threshold 0.08" in message
    assert "--set pipeline.on_drift=warn" in message and DRIFT_FILE in message


def test_without_champion_statistics_there_is_no_drift_check_and_nothing_stops(champion, tmp_path):
    folders = artifact_folders(tmp_path, champion, champion)
    drift_dir = str(tmp_path / "drift")

    result = measure_drift(folders["statistics"], None, folders["schema"], "there is no champion yet", drift_dir)

    assert result.not_checked == "no drift check: there is no champion yet"
    assert read_drift(drift_dir) == result and result.features == ()
    stop_on_drift(drift_dir, "stop")
