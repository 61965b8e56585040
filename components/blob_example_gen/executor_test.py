"""BlobExampleGen's import: an ingestion committed to blob storage becomes TFX split folders, unchanged."""

from __future__ import annotations

import dataclasses
import gzip

import pytest

from components.blob_example_gen.executor import DataChanged, import_examples
from core.config import apply
from core.storage import join
from ingestion.job import ingest
from ingestion.manifest import MANIFEST_FILE, read_manifest

# Every test imports a real ingestion from the test Azurite.
pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def ingested(azurite, storage, tmp_path_factory) -> str:
    """A real ingestion of 3 classes x 6 images, in the test Azurite."""
    from sample_data import generate

    images = tmp_path_factory.mktemp("images")
    generate(images, ("igloo", "lawn", "runway"), 6, "folders", seed=3)
    output = "azfs://devstoreaccount1/example-gen/examples"
    ingest(apply(azurite, {"data.classes": "igloo,lawn,runway"}), str(images), output)
    return output


def test_the_shards_arrive_in_tfx_split_folders_byte_for_byte(storage, ingested, tmp_path):
    manifest = import_examples(storage, ingested, read_manifest(storage, ingested).content_hash, str(tmp_path))
    for shard in manifest.shards:
        assert (tmp_path / shard).read_bytes() == storage.read_bytes(join(manifest.data_uri, shard))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Split-eval", "Split-train"]
    assert not list(tmp_path.rglob(".*")), "no temporary files left behind"


def test_data_that_changed_since_the_pipeline_was_built_is_refused(storage, ingested, tmp_path):
    with pytest.raises(DataChanged, match="changed while the pipeline ran .* run `./places run` again"):
        import_examples(storage, ingested, "0" * 64, str(tmp_path))
    assert not (tmp_path / "Split-train").exists() or not any((tmp_path / "Split-train").iterdir())


def test_an_empty_split_becomes_an_empty_file_for_validation_to_flag(storage, ingested, tmp_path):
    manifest = read_manifest(storage, ingested)
    copy = "azfs://devstoreaccount1/example-gen/train-only"
    train_only = dataclasses.replace(manifest, output_uri=copy,
                                     shards=[shard for shard in manifest.shards if shard.startswith("Split-train")])
    for shard in train_only.shards:
        storage.copy(join(manifest.data_uri, shard), join(train_only.data_uri, shard))
    storage.write_text(join(copy, MANIFEST_FILE), train_only.to_json())

    import_examples(storage, copy, manifest.content_hash, str(tmp_path))
    [empty] = list((tmp_path / "Split-eval").iterdir())
    assert gzip.decompress(empty.read_bytes()) == b""
