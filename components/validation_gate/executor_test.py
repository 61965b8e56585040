"""The curated schema and the gate: anomalies a user would cause stop the run with a readable message."""

from __future__ import annotations

import io

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from components.validation_gate.executor import ANOMALIES_FILE, DataValidationFailed, check, read_anomalies
from data_schema import (
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
                SOURCE_KEY: [f"azfs://a/c/{name}/{category}.jpg".encode()], HEIGHT_KEY: [300], WIDTH_KEY: [400]}
    feature_map = {}
    for key, values in features.items():
        if key == drop:
            continue
        if isinstance(values[0], int):
            feature_map[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature_map[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature_map)).SerializeToString()


def validate(tmp_path, splits: dict[str, list[bytes]]) -> str:
    """Statistics and anomalies for `splits`, written the way ExampleValidator writes them."""
    anomalies_dir = tmp_path / "anomalies"
    for split, records in splits.items():
        data = tmp_path / f"{split}.tfrecord"
        with tf.io.TFRecordWriter(str(data)) as writer:
            for record in records:
                writer.write(record)
        statistics = tfdv.generate_statistics_from_tfrecord(
            str(data), pipeline_options=PipelineOptions(["--runner=FnApiRunner"]))
        anomalies = tfdv.validate_statistics(statistics, curated_schema(TUTORIAL_CLASSES))
        (anomalies_dir / f"Split-{split}").mkdir(parents=True)
        (anomalies_dir / f"Split-{split}" / ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())
    return str(anomalies_dir)


def schema_dir(tmp_path):
    folder = tmp_path / "schema"
    folder.mkdir()
    (folder / "schema.pbtxt").write_text(str(curated_schema(TUTORIAL_CLASSES)))
    return str(folder)


def good_examples() -> list[bytes]:
    return [example(index, name) for index, name in enumerate(TUTORIAL_CLASSES)]


def test_clean_data_passes_and_the_schema_goes_on_to_the_trainer(tmp_path):
    anomalies = validate(tmp_path, {"train": good_examples(), "eval": good_examples()})
    assert read_anomalies(anomalies) == []
    check(anomalies, schema_dir(tmp_path), str(tmp_path / "validated"))
    assert (tmp_path / "validated" / "schema.pbtxt").read_text() == (tmp_path / "schema" / "schema.pbtxt").read_text()


def test_an_unknown_class_stops_the_run_naming_the_class(tmp_path):
    anomalies = validate(tmp_path, {"train": good_examples() + [example(3, "volcano")], "eval": good_examples()})
    with pytest.raises(DataValidationFailed) as stopped:
        check(anomalies, schema_dir(tmp_path), str(tmp_path / "validated"))
    message = str(stopped.value)
    assert "train split, category_name" in message and "volcano" in message
    assert "stops before training" in message and anomalies in message
    assert not (tmp_path / "validated").exists()


def test_a_label_outside_the_class_range_is_an_anomaly(tmp_path):
    anomalies = validate(tmp_path, {"train": good_examples() + [example(12, "igloo")], "eval": good_examples()})
    assert [(item.split, item.feature) for item in read_anomalies(anomalies)] == [("train", "category")]


def test_a_missing_feature_is_named(tmp_path):
    records = good_examples()
    records[4] = example(4, TUTORIAL_CLASSES[4], drop=IMAGE_KEY)
    anomalies = validate(tmp_path, {"train": records, "eval": good_examples()})
    found = read_anomalies(anomalies)
    assert [(item.split, item.feature) for item in found] == [("train", IMAGE_KEY)]
    with pytest.raises(DataValidationFailed, match="image_jpeg"):
        check(anomalies, schema_dir(tmp_path), str(tmp_path / "validated"))


def test_an_empty_split_is_an_anomaly(tmp_path):
    anomalies = validate(tmp_path, {"train": good_examples(), "eval": []})
    assert [(item.split, item.description) for item in read_anomalies(anomalies)] == [
        ("eval", "no examples: the split is empty")]
    with pytest.raises(DataValidationFailed, match="eval split"):
        check(anomalies, schema_dir(tmp_path), str(tmp_path / "validated"))
