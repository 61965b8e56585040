"""Copy a local folder of images into blob storage, in parallel, skipping what is already there."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from core import storage as storage_module
from core.console import progress
from core.storage import NotFound, Storage, StorageError


@dataclass(frozen=True)
class UploadSummary:
    uploaded: int
    skipped: int
    bytes_uploaded: int
    seconds: float
    # Blobs under the target that the source no longer has, removed by a mirroring upload.
    deleted: int = 0


def _md5(path: Path) -> bytes:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.digest()


def upload(storage: Storage, source_dir: Path, target_uri: str, workers: int = 8,
           mirror: bool = False) -> UploadSummary:
    """Upload every file under `source_dir` to `target_uri`/<relative path>.

    A blob that already exists with the same size and MD5 is skipped, so an interrupted upload resumes.
    With `mirror`, blobs under `target_uri` that `source_dir` does not have are deleted afterwards, so the
    target ends up holding exactly the source.
    """
    started = time.monotonic()
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise StorageError(f"{source_dir} is not a folder: give the folder that holds the images")
    files = sorted(path for path in source_dir.rglob("*") if path.is_file())
    if not files:
        raise StorageError(f"{source_dir} holds no files to upload")
    storage.ensure_container(target_uri)
    # One listing instead of one request per file: blob listings carry size and MD5.
    try:
        existing = {item.uri: item for item in storage.list(target_uri)}
    except NotFound:
        existing = {}

    def target_of(path: Path) -> str:
        return storage_module.join(target_uri, path.relative_to(source_dir).as_posix())

    def upload_one(path: Path) -> int:
        uri = target_of(path)
        size = path.stat().st_size
        md5 = _md5(path)
        there = existing.get(uri)
        if there is not None and there.size == size and (there.md5 == md5 or (there.md5 is None and size == 0)):
            return -1
        storage.upload_file(path, uri, md5)
        return size

    uploaded = skipped = total_bytes = 0
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            progress(total=len(files), desc=f"upload to {target_uri}", unit="file") as bar:
        for result in pool.map(upload_one, files):
            if result < 0:
                skipped += 1
            else:
                uploaded += 1
                total_bytes += result
            bar.update(1)
    deleted = 0
    if mirror:
        for uri in sorted(set(existing) - {target_of(path) for path in files}):
            storage.delete(uri)
            deleted += 1
    return UploadSummary(uploaded, skipped, total_bytes, time.monotonic() - started, deleted)
