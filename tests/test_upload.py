"""`./places upload`: parallel upload that resumes by skipping blobs with the same size and MD5."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.storage import join
from ingestion.upload import upload

# Every test uploads to the test Azurite.
pytestmark = pytest.mark.services


def make_folder(root: Path) -> Path:
    for index in range(12):
        path = root / f"class{index % 3}" / f"image{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([index]) * (100 + index))
    return root


def test_upload_copies_every_file_then_skips_unchanged_ones(storage, container, tmp_path):
    source = make_folder(tmp_path / "images")
    target = join(container, "raw")

    first = upload(storage, source, target, workers=4)
    assert (first.uploaded, first.skipped) == (12, 0)
    assert storage.read_bytes(join(target, "class1/image4.jpg")) == bytes([4]) * 104
    assert len(list(storage.list(target))) == 12

    (source / "class2" / "image5.jpg").write_bytes(b"changed, same folder")
    second = upload(storage, source, target, workers=4)
    assert (second.uploaded, second.skipped) == (1, 11)
    assert storage.read_bytes(join(target, "class2/image5.jpg")) == b"changed, same folder"


def test_upload_creates_a_missing_container(storage, tmp_path):
    source = make_folder(tmp_path / "images")
    target = "azfs://devstoreaccount1/fresh-container/raw"
    assert upload(storage, source, target).uploaded == 12
    assert storage.exists(join(target, "class0/image0.jpg"))


def test_a_mirroring_upload_removes_what_the_source_no_longer_has(storage, container, tmp_path):
    source = make_folder(tmp_path / "images")
    target = join(container, "raw")
    upload(storage, source, target)
    (source / "class0" / "image0.jpg").unlink()

    kept = upload(storage, source, target)
    assert kept.deleted == 0 and storage.exists(join(target, "class0/image0.jpg"))
    mirrored = upload(storage, source, target, mirror=True)
    assert (mirrored.deleted, mirrored.skipped) == (1, 11)
    assert not storage.exists(join(target, "class0/image0.jpg"))
    assert len(list(storage.list(target))) == 11
