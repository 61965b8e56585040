"""`./places ingest --incremental` against a real Azurite: after images are added (one changed, one deleted), only
those are converted, the earlier shards are kept, and the version equals a full ingest of the same images."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import tensorflow as tf
from click.testing import CliRunner

import data_schema
from cli.main import main as places
from core.config import Config, apply
from core.storage import Storage, join
from ingestion.job import ingest
from ingestion.manifest import IngestError, read_manifest
from ingestion.upload import upload
from sample_data import generate
from tests.champion import cli_environment

pytestmark = pytest.mark.slow

CLASSES = ("fountain", "gas_station", "igloo")
PER_CLASS = 10


def records(storage: Storage, manifest, scratch: Path) -> dict[str, tuple[str, bytes]]:
    """source -> (split, image bytes) of every record the manifest's shards hold, its own and the kept ones."""
    scratch.mkdir(parents=True, exist_ok=True)
    found = {}
    for index, (uri, path) in enumerate(manifest.shard_files()):
        local = scratch / f"{index}.tfrecord.gz"
        local.write_bytes(storage.read_bytes(uri))
        for record in tf.data.TFRecordDataset(str(local), compression_type="GZIP"):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            source = feature[data_schema.SOURCE_KEY].bytes_list.value[0].decode()
            assert source not in found, f"{source} is in two shards"
            found[source] = (path.split("/")[0], feature[data_schema.IMAGE_KEY].bytes_list.value[0])
    return found


@pytest.fixture(scope="module")
def grown(azurite: Config, tmp_path_factory):
    """A full ingest of 27 images, then the input grows by 3 new images, one image changes and one is deleted,
    and an incremental ingest follows."""
    config = apply(azurite, {"data.classes": ",".join(CLASSES), "data.eval_percent": "30",
                             "ingest.images_per_shard": "4", "beam.workers": "2"})
    storage = Storage.from_config(config)
    local = tmp_path_factory.mktemp("images")
    generate(local, CLASSES, PER_CLASS, "folders", 11)
    images = sorted(local.rglob("*.jpg"))
    held_back = local.parent / f"{local.name}-later"
    for path in images[::10]:  # one of every ten: the images that arrive later
        (held_back / path.relative_to(local)).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, held_back / path.relative_to(local))
    container = f"azfs://{storage.account}/t{uuid.uuid4().hex[:12]}"
    raw, output = join(container, "raw"), join(container, "examples")
    upload(storage, local, raw)
    first = ingest(config, raw, output)

    arrived = sorted(held_back.rglob("*.jpg"))
    shutil.copytree(held_back, local, dirs_exist_ok=True)
    changed, deleted = images[1], images[2]
    shutil.copy(images[5], changed)  # another picture under the same name
    deleted.unlink()
    upload(storage, local, raw, mirror=True)
    second = ingest(config, raw, output, incremental_ingest=True)
    return config, storage, raw, output, first, second, {
        "arrived": [join(raw, path.relative_to(held_back).as_posix()) for path in arrived],
        "changed": join(raw, changed.relative_to(local).as_posix()),
        "deleted": join(raw, deleted.relative_to(local).as_posix())}


def test_only_new_and_changed_images_are_converted(grown):
    _, _, _, _, first, second, files = grown
    assert first.total == 3 * PER_CLASS - len(files["arrived"])
    assert second.incremental == {"previous_content_hash": first.content_hash,
                                  "converted": len(files["arrived"]) + 1, "kept": first.total - 2, "dropped": 2}
    assert second.total == 3 * PER_CLASS - 1
    assert "incremental: converted 4 new or changed images" in second.summary()


def test_earlier_shards_are_kept_where_they_are_and_the_rest_is_new(grown, tmp_path):
    _, storage, _, output, first, second, files = grown
    assert second.kept_shards, "no shard of the first version was kept"
    assert set(second.kept_shards) < set(first.shard_paths())
    # Shards that held the changed or the deleted image are written again without it, in the new data folder.
    held = records(storage, first, tmp_path / "first")
    now = records(storage, second, tmp_path / "second")
    assert files["deleted"] in held and files["deleted"] not in now
    assert now[files["changed"]][1] != held[files["changed"]][1]
    assert set(now) - set(held) == set(files["arrived"])
    for source in set(now) & set(held) - {files["changed"]}:
        assert now[source] == held[source]


def test_the_content_hash_equals_a_full_ingest_of_the_same_images(grown, tmp_path):
    config, storage, raw, output, _, second, _ = grown
    full = ingest(config, raw, join(output.rsplit("/", 1)[0], "examples-full"))
    assert full.content_hash == second.content_hash
    assert full.counts == second.counts and full.total == second.total
    assert records(storage, full, tmp_path / "full") == records(storage, second, tmp_path / "second")


def test_nothing_new_keeps_the_version_and_converts_nothing(grown):
    config, storage, raw, output, _, second, _ = grown
    again = ingest(config, raw, output, incremental_ingest=True)
    assert again.content_hash == second.content_hash and again.data_folder == second.data_folder
    assert read_manifest(storage, output).content_hash == second.content_hash


def test_other_conversion_settings_refuse_to_grow_the_version(grown):
    config, _, raw, output, _, _, _ = grown
    with pytest.raises(IngestError, match=r"ingested with data.eval_percent=30, this ingest has 10.*without "
                                          r"--incremental"):
        ingest(apply(config, {"data.eval_percent": "10"}), raw, output, incremental_ingest=True)


def test_the_command_line_flag(grown):
    config, _, raw, output, _, second, _ = grown
    result = CliRunner().invoke(places, ["--set", "data.classes=" + ",".join(CLASSES), "--set", "data.eval_percent=30",
                                         "ingest", "--input", raw, "--output", output, "--incremental"],
                                env=cli_environment(config))
    assert result.exit_code == 0, result.output
    assert f"content hash {second.content_hash[:16]}" in result.output
    assert "incremental: converted 0 new or changed images" in result.output
