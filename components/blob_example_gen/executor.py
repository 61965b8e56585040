"""Bring one committed ingestion (manifest + TFRecord shards in blob storage) into a TFX Examples artifact.

tf.io.gfile cannot read azfs://, so TFX's stock ExampleGen cannot read the blobs; this copies the shards
the manifest names into the artifact's split folders, which every downstream component reads. The artifact is
written through tfx.dsl.io.fileio, so the pipeline root may be on any file system TFX can use.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from tfx.dsl.io import fileio

from core.errors import UserError
from core.storage import Storage
from ingestion.manifest import SPLITS, Manifest, read_manifest, split_folder


class DataChanged(UserError):
    """The ingested data changed between building the pipeline and running this component."""


def import_examples(storage: Storage, examples_uri: str, expected_content_hash: str, artifact_dir: str,
                    workers: int = 8) -> Manifest:
    """Copy the shards of the ingestion at `examples_uri` (its own and those it keeps from earlier versions)
    into `artifact_dir`/Split-<split>/."""
    manifest = read_manifest(storage, examples_uri)
    if manifest.content_hash != expected_content_hash:
        raise DataChanged(
            f"the data at {examples_uri} changed while the pipeline ran (content hash {manifest.content_hash[:16]}, "
            f"expected {expected_content_hash[:16]}): run `./places run` again to use the new data")
    for split in SPLITS:
        fileio.makedirs(os.path.join(artifact_dir, split_folder(split)))

    def copy(shard: tuple[str, str]) -> None:
        source_uri, path = shard
        target = os.path.join(artifact_dir, path)
        # Written beside its name, then renamed: a half-copied shard must never look like data.
        partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex[:8]}.partial")
        with fileio.open(partial, "wb") as output:
            output.write(storage.read_bytes(source_uri))
        fileio.rename(partial, target, overwrite=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(copy, manifest.shard_files()))
    for split in SPLITS:
        folder = os.path.join(artifact_dir, split_folder(split))
        if not fileio.listdir(folder):
            # An empty split stays visible to validation (zero examples is an anomaly there), not a crash here.
            _write_empty_tfrecord(os.path.join(folder, "data-00000-of-00001.tfrecord.gz"))
    return manifest


def _write_empty_tfrecord(path: str) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(path, options="GZIP"):
        pass
