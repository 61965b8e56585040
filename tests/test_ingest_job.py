"""ingestion.job end to end against a real Azurite: the three layouts, bad files among good ones, the commit,
and the failures a user meets (missing container or prefix, wrong key, storage going away mid-job)."""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

import data_schema
from cli.main import main as places
from core import services
from core.config import Config, apply
from core.storage import (
    CONNECTION_STRING_ENV,
    EMULATOR_KEY,
    Storage,
    StorageAuthError,
    StorageError,
    emulator_connection_string,
    join,
)
from ingestion.job import LOCAL_PROGRESS, IngestError, ingest, split_of
from ingestion.manifest import MANIFEST_FILE, read_manifest
from ingestion.upload import upload
from sample_data import generate
from tests.fixtures import free_port

pytestmark = pytest.mark.slow

CLASSES = ("fountain", "gas_station", "igloo")
PER_CLASS = 6


def job_config(base: Config) -> Config:
    # Small shards so that every split spans several files.
    return apply(base, {"data.classes": ",".join(CLASSES), "data.eval_percent": "30", "ingest.images_per_shard": "4",
                        "beam.workers": "2"})


@pytest.fixture
def config(azurite: Config) -> Config:
    return job_config(azurite)


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def write_bad_files(folder: Path) -> dict[str, str]:
    """A file of each kind that ingestion must reject, by path below `folder`, with a word of its reason."""
    bad = {"Fountain/empty.jpg": (b"", "empty file"),
           "Fountain/half.jpg": (jpeg((9, 9, 9))[:300], "truncated or corrupt"),
           "Gas Station/error-page.jpg": (b"<html>Access denied</html>", "not an image"),
           "Gas Station/notes.txt": (b"taken in 2019", "not an image file extension"),
           "Zebra Land/zebra.jpg": (jpeg((0, 0, 0)), "'Zebra Land' is not a Places365 category")}
    for path, (content, _) in bad.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    return {path: reason for path, (_, reason) in bad.items()}


def examples_of(storage: Storage, manifest, scratch: Path) -> list[tuple[str, dict]]:
    """(shard, tf.Example as {feature key: value}) for every record of the manifest, parsed by TensorFlow."""
    scratch.mkdir(parents=True, exist_ok=True)
    examples = []
    for index, shard in enumerate(manifest.shards):
        path = scratch / f"{index}.tfrecord.gz"
        path.write_bytes(storage.read_bytes(join(manifest.data_uri, shard)))
        for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
            features = tf.train.Example.FromString(record.numpy()).features.feature
            examples.append((shard, {key: (list(feature.bytes_list.value) or list(feature.int64_list.value)
                                           or list(feature.float_list.value))[0]
                                     for key, feature in features.items()}))
    return examples


def output_listing(storage: Storage, output_uri: str) -> list[str]:
    return [item.uri[len(output_uri) + 1:] for item in storage.list(output_uri)]


@pytest.fixture(scope="module")
def folders_job(azurite: Config, tmp_path_factory):
    """One ingestion of the folders layout from blob storage to blob storage: sample images, bad files, a class
    that is not configured; shared by the tests that only read its result."""
    storage = Storage.from_config(azurite)
    config = job_config(azurite)
    local = tmp_path_factory.mktemp("folders")
    generate(local, (*CLASSES, "lawn"), PER_CLASS, "folders", 7)
    bad = write_bad_files(local)
    container = f"azfs://{storage.account}/t{uuid.uuid4().hex[:12]}"
    upload(storage, local, join(container, "raw"))
    manifest = ingest(config, join(container, "raw"), join(container, "examples"))
    return config, storage, container, bad, manifest


def test_folders_layout_counts_what_was_uploaded(folders_job):
    _, _, container, bad, manifest = folders_job
    assert manifest.layout == "folders" and manifest.classes == list(CLASSES)
    assert manifest.total == len(CLASSES) * PER_CLASS
    assert all(sum(manifest.counts[key].values()) == PER_CLASS for key in CLASSES)
    assert all(manifest.counts[key][data_schema.EVAL_SPLIT] < PER_CLASS for key in CLASSES)
    assert manifest.skipped == {"lawn": PER_CLASS}
    rejected = {item["source"]: item["reason"] for item in manifest.rejected}
    assert sorted(rejected) == sorted(join(container, "raw", path) for path in bad)
    for path, reason in bad.items():
        assert reason in rejected[join(container, "raw", path)]
    assert manifest.warnings == []


def test_records_parse_as_tf_examples_with_the_schema_keys(folders_job, tmp_path):
    _, storage, container, _, manifest = folders_job
    examples = examples_of(storage, manifest, tmp_path)
    assert len(examples) == manifest.total
    for _, example in examples:
        assert set(example) == {data_schema.IMAGE_KEY, data_schema.LABEL_KEY, data_schema.LABEL_NAME_KEY,
                                data_schema.SOURCE_KEY, data_schema.HEIGHT_KEY, data_schema.WIDTH_KEY,
                                data_schema.BRIGHTNESS_KEY}
        image = tf.io.decode_jpeg(example[data_schema.IMAGE_KEY])
        assert image.shape == (data_schema.IMAGE_SIZE, data_schema.IMAGE_SIZE, 3)
        name = example[data_schema.LABEL_NAME_KEY].decode()
        assert CLASSES[example[data_schema.LABEL_KEY]] == name
        source = example[data_schema.SOURCE_KEY].decode()
        assert source.startswith(join(container, "raw", data_schema.folder_name(name)) + "/")
        original = Image.open(io.BytesIO(storage.read_bytes(source)))
        assert (example[data_schema.WIDTH_KEY], example[data_schema.HEIGHT_KEY]) == original.size
        pixels = np.asarray(original.convert("RGB").resize((data_schema.IMAGE_SIZE,) * 2, Image.Resampling.BICUBIC))
        # Within half a grey level: ingestion decodes a large JPEG at a reduced size first (Image.draft).
        assert example[data_schema.BRIGHTNESS_KEY] == pytest.approx(pixels.mean() / 255, abs=0.002)


def test_shards_sit_in_tfx_split_folders_and_nothing_else_is_left(folders_job):
    _, storage, container, _, manifest = folders_job
    output = join(container, "examples")
    assert manifest.data_folder == f"data-{manifest.content_hash[:16]}"
    for split in (data_schema.TRAIN_SPLIT, data_schema.EVAL_SPLIT):
        names = [shard for shard in manifest.shards if shard.startswith(f"Split-{split}/")]
        assert names == [f"Split-{split}/data-{index:05d}-of-{len(names):05d}.tfrecord.gz"
                         for index in range(len(names))]
    assert len([shard for shard in manifest.shards if shard.startswith("Split-train/")]) > 1
    assert sorted(output_listing(storage, output)) == sorted(
        [MANIFEST_FILE, f"{manifest.data_folder}/shards.json",
         *(f"{manifest.data_folder}/{shard}" for shard in manifest.shards),
         *(f"{manifest.data_folder}/{shard[:-len('.tfrecord.gz')]}.sources.json" for shard in manifest.shards)])
    assert read_manifest(storage, output) == manifest


def test_each_record_is_in_the_split_its_path_hashes_to(folders_job, tmp_path):
    config, storage, container, _, manifest = folders_job
    in_split = {data_schema.TRAIN_SPLIT: 0, data_schema.EVAL_SPLIT: 0}
    for shard, example in examples_of(storage, manifest, tmp_path):
        relative = example[data_schema.SOURCE_KEY].decode()[len(join(container, "raw")) + 1:]
        split = split_of(relative, config.data.eval_percent)
        assert shard.startswith(f"Split-{split}/")
        in_split[split] += 1
    assert in_split == {split: sum(manifest.counts[key][split] for key in CLASSES) for split in in_split}


def test_summary_shows_the_table_rejections_and_where_the_output_is(folders_job):
    _, _, container, _, manifest = folders_job
    summary = manifest.summary()
    assert f"ingested {manifest.total} images of 3 classes" in summary
    assert "gas_station" in summary and "total" in summary
    assert f"rejected: {len(manifest.rejected)} files" in summary
    assert "skipped, not in data.classes: 6 images (lawn 6)" in summary
    assert join(container, "examples", manifest.data_folder) in summary


def test_rerunning_unchanged_input_keeps_the_hash_and_the_data_folder(folders_job):
    config, storage, container, _, first = folders_job
    output = join(container, "examples")
    shard_bytes = {shard: storage.read_bytes(join(first.data_uri, shard)) for shard in first.shards}
    second = ingest(config, join(container, "raw"), output)
    assert second.content_hash == first.content_hash and second.data_folder == first.data_folder
    assert second.shards == first.shards
    assert {shard: storage.read_bytes(join(second.data_uri, shard)) for shard in second.shards} == shard_bytes
    assert not any(name.startswith(".staging-") for name in output_listing(storage, output))


def test_places365_lists_layout_rejects_an_unknown_class_index(storage, container, config, tmp_path):
    local = tmp_path / "lists"
    generate(local, CLASSES, PER_CLASS, "places365-lists", 7)
    train_list = local / "places365_train_standard.txt"
    lines = train_list.read_text().splitlines()
    train_list.write_text("\n".join([*lines, "/z/zebra_land/00000001.jpg 400", "/f/fountain/09999999.jpg 154"]) + "\n")
    upload(storage, local, join(container, "raw"))

    manifest = ingest(config, join(container, "raw"), join(container, "examples"))

    assert manifest.layout == "places365-lists"
    assert manifest.total == len(CLASSES) * PER_CLASS
    reasons = [item["reason"] for item in manifest.rejected]
    assert (f"places365_train_standard.txt line {len(lines) + 1} gives class index 400, which "
            "categories_places365.txt does not name as a Places365 category") in reasons
    assert "listed, but the file does not exist" in reasons


def test_places365_small_layout_from_a_local_folder(tmp_path):
    config = job_config(Config())
    generate(tmp_path / "small", (*CLASSES, "arena/hockey"), PER_CLASS, "places365-small", 7)

    manifest = ingest(config, str(tmp_path / "small"), str(tmp_path / "examples"))

    assert manifest.layout == "places365-small"
    assert {key: sum(counts.values()) for key, counts in manifest.counts.items()} == dict.fromkeys(CLASSES, PER_CLASS)
    assert manifest.skipped == {"arena/hockey": PER_CLASS} and manifest.rejected == []
    assert (tmp_path / "examples" / manifest.data_folder / manifest.shards[0]).is_file()


def test_an_empty_class_folder_is_a_warning(tmp_path):
    config = job_config(Config())
    generate(tmp_path / "raw", CLASSES[:2], PER_CLASS, "folders", 7)
    (tmp_path / "raw" / "Igloo").mkdir()

    manifest = ingest(config, str(tmp_path / "raw"), str(tmp_path / "examples"))

    assert manifest.warnings == [f"class igloo has no images: expected a folder {tmp_path / 'raw' / 'Igloo'}"]
    assert manifest.counts["igloo"] == {"train": 0, "eval": 0}
    assert manifest.warnings[0] in manifest.summary()


def test_a_blob_folder_marker_without_images_is_a_warning(storage, container, config, tmp_path):
    generate(tmp_path / "raw", CLASSES[:2], PER_CLASS, "folders", 7)
    raw = join(container, "raw")
    upload(storage, tmp_path / "raw", raw)
    storage.write_bytes(raw + "/", b"")  # the Azure portal's markers, for the prefix and for an empty folder
    storage.write_bytes(join(raw, "Igloo") + "/", b"")

    manifest = ingest(config, raw, join(container, "examples"))

    assert manifest.warnings == [f"class igloo has no images: expected a folder {join(raw, 'Igloo')}"]
    assert manifest.rejected == [] and manifest.total == 2 * PER_CLASS


def test_a_missing_container_is_named(config):
    with pytest.raises(StorageError, match="container 'no-such-container' does not exist .* create it, or check"):
        ingest(config, "azfs://devstoreaccount1/no-such-container/raw", "azfs://devstoreaccount1/no-such-container/x")


def test_a_missing_prefix_says_what_the_layout_expects(config, container):
    with pytest.raises(IngestError, match=rf"no images under {container}/raw \(layout folders expects "
                                          r"<prefix>/<class>/<image>\)"):
        ingest(config, join(container, "raw"), join(container, "examples"))


def test_wrong_credentials_name_the_account_and_the_variable_but_not_the_key(config, container, monkeypatch):
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="
    monkeypatch.setenv(CONNECTION_STRING_ENV, emulator_connection_string(config).replace(EMULATOR_KEY, wrong_key))
    with pytest.raises(StorageAuthError) as raised:
        ingest(config, join(container, "raw"), join(container, "examples"))
    message = str(raised.value)
    assert "account 'devstoreaccount1'" in message and CONNECTION_STRING_ENV in message
    assert wrong_key not in message and EMULATOR_KEY not in message


def test_the_cli_prints_one_line_for_a_whole_input_failure(azurite, container):
    result = CliRunner().invoke(places, ["ingest", "--input", join(container, "raw"), "--output",
                                         join(container, "examples")],
                                env={"PLACES_STATE_DIR": str(azurite.state_dir),
                                     "PLACES_STORAGE__EMULATOR_PORT": str(azurite.storage.emulator_port)})
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"places: error: no images under {container}/raw (layout folders expects <prefix>/<class>/<image>)")
    assert "Traceback" not in result.output


def test_a_failed_job_leaves_no_output_and_the_previous_output_untouched(storage, container, config, tmp_path):
    unreadable = tmp_path / "unreadable"
    for key in CLASSES:
        (unreadable / data_schema.folder_name(key)).mkdir(parents=True)
        (unreadable / data_schema.folder_name(key) / "zero.jpg").write_bytes(b"")
    upload(storage, unreadable, join(container, "unreadable"))
    generate(tmp_path / "good", CLASSES, 2, "folders", 7)
    upload(storage, tmp_path / "good", join(container, "good"))
    output = join(container, "examples")

    with pytest.raises(IngestError, match=f"none of the 3 images of the configured classes under "
                                          f"{join(container, 'unreadable')} could be read, e.g. .*empty file"):
        ingest(config, join(container, "unreadable"), output)
    assert output_listing(storage, output) == []

    ingest(config, join(container, "good"), output)
    before = {name: storage.read_bytes(join(output, name)) for name in output_listing(storage, output)}
    with pytest.raises(IngestError):
        ingest(config, join(container, "unreadable"), output)
    assert {name: storage.read_bytes(join(output, name)) for name in output_listing(storage, output)} == before


def varied_jpegs(folder: Path, count: int) -> None:
    """`count` small images per class, quick to make (the sample generator paints real scenes, slowly)."""
    colours = np.random.default_rng(0).integers(0, 256, (count, 3))
    for key in CLASSES:
        (folder / data_schema.folder_name(key)).mkdir(parents=True)
        for number, colour in enumerate(colours):
            (folder / data_schema.folder_name(key) / f"{number}.jpg").write_bytes(jpeg(tuple(int(c) for c in colour)))


def test_blob_storage_going_down_mid_job_fails_it_and_commits_nothing(tmp_path, monkeypatch):
    # A second Azurite of its own, to stop while the job reads from it.
    down = job_config(apply(Config(), {"state_dir": str(tmp_path / "state"), "storage.emulator_port": str(free_port()),
                                       "storage.retries": "1", "storage.timeout_s": "5"}))
    services.up(down, ["azurite"], report=lambda line: None)
    try:
        monkeypatch.setenv(CONNECTION_STRING_ENV, emulator_connection_string(down))
        storage = Storage.from_config(down)
        varied_jpegs(tmp_path / "raw", 150)
        raw, output = "azfs://devstoreaccount1/down/raw", "azfs://devstoreaccount1/down/examples"
        upload(storage, tmp_path / "raw", raw)

        def stop_azurite_once_images_flow():
            deadline = time.monotonic() + 120
            while LOCAL_PROGRESS.images_processed() < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            services.stop(down, "azurite")

        stopper = threading.Thread(target=stop_azurite_once_images_flow)
        stopper.start()
        with pytest.raises(IngestError, match=rf"blob storage stopped answering during the ingest job \(.*\)\. "
                                              rf"Nothing was written to {output}; rerun when it is back"):
            ingest(down, raw, output)
        stopper.join()

        services.up(down, ["azurite"], report=lambda line: None)  # the same data folder
        assert storage.exists(join(raw, "Igloo/0.jpg"))
        assert not storage.exists(join(output, MANIFEST_FILE))
        assert not [folder for folder in storage.list_folders(output) if "/data-" in folder]
    finally:
        services.down(down, report=lambda line: None)
