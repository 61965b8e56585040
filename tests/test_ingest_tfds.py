"""The tfds layout: `./places ingest --input tfds:places365_small` over a prepared TFDS data dir.

This machine has no internet, so `tfds build places365_small` (30 GB from MIT) cannot run here. Its stand-in is
sample_data.tfds_prepared: a data dir written with TFDS's own features, shard naming and DatasetInfo writer,
with sample scenes for photos, which TFDS itself reports as prepared. Everything from there on is the real
code: the CLI, the layout, the Beam job (FnApiRunner), TFDS's file adapter and example parser.
"""

from __future__ import annotations

import json

import pytest
import tensorflow as tf
from click.testing import CliRunner

import data_schema
from cli.main import main as places
from core.config import Config, apply
from ingestion import tfds_source
from ingestion.job import ingest
from ingestion.manifest import MANIFEST_FILE, IngestError
from sample_data.tfds_prepared import write_prepared_places365_small

# A nested key ("arena/hockey" is TFDS's label name as well as ours) among plain ones; "lawn" is not configured.
CLASSES = ("igloo", "arena/hockey", "bedroom")
PER_SPLIT = {"train": 4, "validation": 2}


def job_config(tfds_data_dir: str = "") -> Config:
    return apply(Config(), {"data.classes": ",".join(CLASSES), "data.tfds_data_dir": tfds_data_dir,
                            "ingest.images_per_shard": "4", "beam.workers": "2"})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The stand-in for the download: a prepared places365_small data dir, and its examples per (class, split)."""
    data_dir = tmp_path_factory.mktemp("tensorflow_datasets")
    written = write_prepared_places365_small(data_dir, (*CLASSES, "lawn"), PER_SPLIT, seed=7)
    return data_dir, written


@pytest.fixture(scope="module")
def both_splits(prepared, tmp_path_factory):
    """One ingestion of both splits through the CLI, as a user runs it."""
    data_dir, _ = prepared
    output = tmp_path_factory.mktemp("examples")
    result = CliRunner().invoke(places, ["ingest", "--input", "tfds:places365_small", "--tfds-data-dir",
                                         str(data_dir), "--output", str(output), "--classes", ",".join(CLASSES)],
                                env={"PLACES_STATE_DIR": str(tmp_path_factory.mktemp("state")),
                                     "PLACES_BEAM__WORKERS": "2", "PLACES_INGEST__IMAGES_PER_SHARD": "4"})
    assert result.exit_code == 0, result.output
    return result, json.loads((output / MANIFEST_FILE).read_text()), output


def records_of_shard(output, manifest: dict, shard: str) -> list[dict]:
    """Each tf.Example of one shard as {feature key: value}, parsed by TensorFlow."""
    found = []
    for record in tf.data.TFRecordDataset(str(output / manifest["data_folder"] / shard), compression_type="GZIP"):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        found.append({key: (list(feature.bytes_list.value) or list(feature.int64_list.value)
                            or list(feature.float_list.value))[0] for key, feature in features.items()})
    return found


def test_the_stand_in_is_what_tfds_reads_as_prepared(prepared):
    import tensorflow_datasets as tfds

    data_dir, _ = prepared
    builder = tfds.builder("places365_small", data_dir=str(data_dir))
    assert builder.is_prepared()
    assert {split: builder.info.splits[split].num_examples for split in PER_SPLIT} == {
        split: 4 * count for split, count in PER_SPLIT.items()}
    labels = [builder.info.features["label"].int2str(int(example["label"]))
              for example in builder.as_dataset(split="validation").as_numpy_iterator()]
    assert sorted(labels) == sorted([*CLASSES, "lawn"] * PER_SPLIT["validation"])


@pytest.mark.slow
def test_counts_per_class_and_split_match_the_dataset(prepared, both_splits):
    _, written = prepared
    result, manifest, _ = both_splits
    assert manifest["layout"] == "tfds" and manifest["input_uri"] == "tfds:places365_small"
    assert manifest["counts"] == {key: {"train": written[key, "train"], "eval": written[key, "validation"]}
                                  for key in CLASSES}
    assert manifest["skipped"] == {"lawn": sum(PER_SPLIT.values())}
    assert manifest["rejected"] == [] and manifest["warnings"] == []
    assert "tfds:places365_small" in result.output


@pytest.mark.slow
def test_records_carry_our_label_and_split_of_each_tfds_example(prepared, both_splits):
    import tensorflow_datasets as tfds

    data_dir, _ = prepared
    _, manifest, output = both_splits
    builder = tfds.builder("places365_small", data_dir=str(data_dir))
    label_names = builder.info.features["label"].names
    expected = {}
    for tfds_split, ours in tfds_source.SPLITS.items():
        for example in builder.as_dataset(split=tfds_split).as_numpy_iterator():
            expected[f"tfds:places365_small/{example['filename'].decode()}"] = (label_names[example["label"]], ours)
    found = {}
    for shard in manifest["shards"]:
        split = data_schema.TRAIN_SPLIT if shard.startswith("Split-train/") else data_schema.EVAL_SPLIT
        for record in records_of_shard(output, manifest, shard):
            found[record[data_schema.SOURCE_KEY].decode()] = (record[data_schema.LABEL_NAME_KEY].decode(), split)
            assert manifest["classes"][record[data_schema.LABEL_KEY]] == record[data_schema.LABEL_NAME_KEY].decode()
            assert record[data_schema.HEIGHT_KEY] == record[data_schema.WIDTH_KEY] == 256
    assert found == {source: label for source, label in expected.items() if label[0] in CLASSES}


@pytest.mark.slow
def test_one_split_and_a_class_filter(prepared, tmp_path):
    data_dir, written = prepared
    config = apply(job_config(str(data_dir)), {"data.classes": "bedroom,igloo"})

    manifest = ingest(config, "tfds:places365_small:validation", str(tmp_path / "examples"))

    assert manifest.classes == ["bedroom", "igloo"]
    assert manifest.counts == {key: {"train": 0, "eval": written[key, "validation"]} for key in ("bedroom", "igloo")}
    assert manifest.skipped == {"arena/hockey": PER_SPLIT["validation"], "lawn": PER_SPLIT["validation"]}
    assert manifest.warnings == []
    rerun = ingest(config, "tfds:places365_small:validation", str(tmp_path / "examples"))
    assert rerun.content_hash == manifest.content_hash


def test_a_data_dir_without_the_dataset_shows_the_command_that_prepares_it(tmp_path):
    output = tmp_path / "examples"
    result = CliRunner().invoke(places, ["ingest", "--input", "tfds:places365_small", "--tfds-data-dir",
                                         str(tmp_path / "empty"), "--output", str(output)],
                                env={"PLACES_STATE_DIR": str(tmp_path / "state")})
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"places: error: TFDS's places365_small is not prepared in {tmp_path / 'empty'}: download and prepare it "
        f"once with `tfds build places365_small --data_dir={tmp_path / 'empty'}` (see README, 'The real Places365 "
        "from TensorFlow Datasets'), then ingest again")
    assert not output.exists()


def test_a_tfds_label_that_is_no_places365_category_is_named():
    assert tfds_source.places365_keys(["airfield", "arena/hockey"], "d") == ("airfield", "arena/hockey")
    with pytest.raises(IngestError, match="places365_small in d has a label that is no Places365 category: "
                                          "'moon_base' is not a Places365 category"):
        tfds_source.places365_keys(["airfield", "moon_base"], "d")


@pytest.mark.parametrize(("input_uri", "message"), [
    ("tfds:places365_small:test", "'test' is not a split to ingest \\(TFDS's test split has no labels\\); use "
                                  "tfds:places365_small:train or tfds:places365_small:validation"),
    ("tfds:mnist", "the tfds layout reads TFDS's places365_small only"),
])
def test_inputs_the_layout_cannot_read_are_refused_before_any_job(input_uri, message, tmp_path):
    with pytest.raises(IngestError, match=message):
        ingest(job_config(str(tmp_path)), input_uri, str(tmp_path / "examples"))
    assert not (tmp_path / "examples").exists()


def test_the_data_dir_must_be_a_folder_tfds_can_read(tmp_path):
    with pytest.raises(IngestError, match="TensorFlow Datasets reads local or mounted folders only"):
        ingest(job_config("azfs://devstoreaccount1/data/tfds"), "tfds:places365_small", str(tmp_path / "examples"))


def test_a_folder_input_with_the_tfds_layout_is_refused(tmp_path):
    with pytest.raises(IngestError, match="does not go with layout tfds"):
        ingest(job_config(), str(tmp_path), str(tmp_path / "examples"), layout="tfds")
