"""core.commit_point: the manifest and the batch prediction summary are written as JSON and read back as they were,
and a document that is not one of them is refused with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.storage import Storage
from data_schema import SCHEMA_VERSION
from ingestion.manifest import MANIFEST_FILE, IngestError, Manifest, read_manifest
from serving.batch import Summary


def _manifest(output_uri: str) -> Manifest:
    return Manifest(schema_version=SCHEMA_VERSION, created="2026-12-02T12:00:00+00:00", input_uri="azfs://a/places/raw",
                    output_uri=output_uri, layout="folders", classes=["beach", "forest"],
                    counts={"beach": {"train": 8, "eval": 2}, "forest": {"train": 7, "eval": 3}}, total=20,
                    rejected=[{"source": "azfs://a/places/raw/beach/bad.jpg", "reason": "not an image"}],
                    skipped={"airfield": 4}, warnings=[], data_folder="data-0123456789abcdef",
                    shards=["Split-train/data-00000-of-00001.tfrecord.gz"], content_hash="ab" * 32)


def test_a_manifest_reads_back_equal_to_what_was_written(tmp_path: Path):
    manifest = _manifest(str(tmp_path))
    (tmp_path / MANIFEST_FILE).write_text(manifest.to_json())
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert read_manifest(Storage(), str(tmp_path)) == manifest


def test_a_summary_reads_back_equal_to_what_was_written():
    summary = Summary(created="2026-12-02T12:00:00+00:00", input_uri="azfs://a/places/new", output_uri="out",
                      folder="predictions-0123456789ab", files=["part-00000-of-00001.jsonl"],
                      rejected_file="rejected.jsonl", model_name="places365-scenes", model_version="3",
                      class_names=["beach", "forest"], format="jsonl", predicted=5,
                      predicted_by_class={"beach": 3, "forest": 2}, rejected=0, rejected_first=[], skipped=1)
    assert json.loads(summary.to_json())["folder"] == "predictions-0123456789ab"
    assert Summary.from_json(summary.to_json()) == summary


@pytest.mark.parametrize("text", ['{"created": "2026-12-02"}', "[1, 2]", "not json"])
def test_a_file_that_is_not_a_manifest_is_refused_naming_it_and_the_fix(tmp_path: Path, text: str):
    (tmp_path / MANIFEST_FILE).write_text(text)
    with pytest.raises(IngestError, match=rf"{tmp_path / MANIFEST_FILE} is not an ingestion manifest: .*"
                                          r"Run `./places ingest` again"):
        read_manifest(Storage(), str(tmp_path))
