"""The curated schema and the gate: anomalies a user would cause stop the run with a readable message."""

from __future__ import annotations

import io

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from PIL import Image
from tensorflow_data_validation.statistics.stats_impl import generate_statistics_in_memory
from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

from components.validation_gate.executor import ANOMALIES_FILE, DataValidationFailed, check, read_anomalies
from data_schema import (
    BRIGHTNESS_KEY,
    HEIGHT_KEY,
    IMAGE_KEY,
    LABEL_KEY,
    LABEL_NAME_KEY,
    SOURCE_KEY,
    TUTORIAL_CLASSES,
    WIDTH_KEY,
    curated_schema,
)


def example(category: int, name: str, drop: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (128, 128), (category * 20, 90, 30)).save(buffer, "JPEG")
    features = {IMAGE_KEY: [buffer.getvalue()], LABEL_KEY: [category], LABEL_NAME_KEY: [name.encode()],
                SOURCE_KEY: [f"azfs://a/c/{name}/{category}.jpg".encode()], HEIGHT_KEY: [300], WIDTH_KEY: [400],
                BRIGHTNESS_KEY: [0.4]}
    feature_map = {}
    for key, values in features.items():
        if key == drop:
            continue
        if isinstance(values[0], float):
            feature_map[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        elif isinstance(values[0], int):
            feature_map[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature_map[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature_map)).SerializeToString()


def good_examples() -> list[bytes]:
    return [example(index, name) for index, name in enumerate(TUTORIAL_CLASSES)]


def _with_image_dropped(records: list[bytes], index: int) -> list[bytes]:
    return records[:index] + [example(index, TUTORIAL_CLASSES[index], drop=IMAGE_KEY)] + records[index + 1:]


# Each test's data set: its splits' records.
DATA_SETS = {
    "clean": {"train": good_examples(), "eval": good_examples()},
    "unknown class": {"train": good_examples() + [example(3, "volcano")], "eval": good_examples()},
    "label out of range": {"train": good_examples() + [example(12, "igloo")], "eval": good_examples()},
    "missing image": {"train": _with_image_dropped(good_examples(), 4), "eval": good_examples()},
    "empty eval": {"train": good_examples(), "eval": []},
}


@pytest.fixture(scope="module")
def anomalies(tmp_path_factory) -> dict[str, str]:
    """For each data set, the anomalies of its splits, written where ExampleValidator writes them. The statistics
    come from TFDV's in-memory generator: the same statistics as StatisticsGen's Beam job, without a job per
    split."""
    root = tmp_path_factory.mktemp("validation")
    decoder = ExamplesToRecordBatchDecoder()
    folders = {}
    for name, splits in DATA_SETS.items():
        for split, records in splits.items():
            statistics = generate_statistics_in_memory(decoder.DecodeBatch(records), tfdv.StatsOptions())
            found = tfdv.validate_statistics(statistics, curated_schema(TUTORIAL_CLASSES))
            folder = root / name / "anomalies" / f"Split-{split}"
            folder.mkdir(parents=True)
            (folder / ANOMALIES_FILE).write_bytes(found.SerializeToString())
        folders[name] = str(folder.parent)
    return folders


def schema_dir(tmp_path):
    folder = tmp_path / "schema"
    folder.mkdir()
    (folder / "schema.pbtxt").write_text(str(curated_schema(TUTORIAL_CLASSES)))
    return str(folder)


def test_clean_data_passes_and_the_schema_goes_on_to_the_trainer(anomalies, tmp_path):
    assert read_anomalies(anomalies["clean"]) == []
    check(anomalies["clean"], schema_dir(tmp_path), str(tmp_path / "validated"))
    assert (tmp_path / "validated" / "schema.pbtxt").read_text() == (tmp_path / "schema" / "schema.pbtxt").read_text()


def test_an_unknown_class_stops_the_run_naming_the_class(anomalies, tmp_path):
    with pytest.raises(DataValidationFailed) as stopped:
        check(anomalies["unknown class"], schema_dir(tmp_path), str(tmp_path / "validated"))
    message = str(stopped.value)
    assert "train split, category_name" in message and "volcano" in message
    assert "stops before training" in message and anomalies["unknown class"] in message
    assert not (tmp_path / "validated").exists()


def test_a_label_outside_the_class_range_is_an_anomaly(anomalies):
    assert [(item.split, item.feature) for item in read_anomalies(anomalies["label out of range"])] == [
        ("train", "category")]


def test_a_missing_feature_is_named(anomalies, tmp_path):
    found = read_anomalies(anomalies["missing image"])
    assert [(item.split, item.feature) for item in found] == [("train", IMAGE_KEY)]
    with pytest.raises(DataValidationFailed, match="image_jpeg"):
        check(anomalies["missing image"], schema_dir(tmp_path), str(tmp_path / "validated"))


def test_an_empty_split_is_an_anomaly(anomalies, tmp_path):
    assert [(item.split, item.description) for item in read_anomalies(anomalies["empty eval"])] == [
        ("eval", "no examples: the split is empty")]
    with pytest.raises(DataValidationFailed, match="eval split"):
        check(anomalies["empty eval"], schema_dir(tmp_path), str(tmp_path / "validated"))
