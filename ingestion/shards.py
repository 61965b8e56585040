"""One TFRecord shard of ingested tf.Examples and its list of sources: what ingestion writes and an incremental ingest
reads back.

  Split-train/data-00000-of-00002.tfrecord.gz    the records, GZIP
  Split-train/data-00000-of-00002.sources.json   one entry per record, in the same order: its source file, what
                                                 told that file's content apart when it was listed, its class and
                                                 the record's digest

The sources list is what lets a later `./places ingest --incremental` keep this shard without opening it: the files
it was made from are listed again, and only those that are new or changed are converted.
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
import typing
import uuid
from pathlib import Path

import tensorflow as tf

from core.storage import Storage, join

SHARD_SUFFIX = ".tfrecord.gz"
SOURCES_SUFFIX = ".sources.json"


class SourceEntry(typing.NamedTuple):
    source_uri: str
    # ingestion.layouts.ListedFile.fingerprint when it was listed; None where the listing sees paths only.
    fingerprint: str | None
    # The class key.
    category: str
    # ingestion.job.record_digest, as 64 hex digits.
    digest: str


def digest_sum(digests: typing.Iterable[int]) -> int:
    """Record digests summed modulo 2**256: the same whatever order the records were written or kept in, which is what
    makes the content hash independent of sharding (ingestion.job.content_hash)."""
    return sum(digests) % 2**256


def serialized_example(values: typing.Mapping[str, bytes | int | float]) -> bytes:
    """A serialized tf.Example of one value per feature, each stored as its Python type says: bytes, int64 or float."""
    def feature(value: bytes | int | float) -> tf.train.Feature:
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        if isinstance(value, numbers.Integral):  # numpy's integers too
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))

    return tf.train.Example(features=tf.train.Features(
        feature={key: feature(value) for key, value in values.items()})).SerializeToString()


def sources_of(shard: str) -> str:
    """The sources list's name (or URI) beside a shard's."""
    return shard[:-len(SHARD_SUFFIX)] + SOURCES_SUFFIX


def read_sources(storage: Storage, shard_uri: str) -> list[SourceEntry]:
    return [SourceEntry(*entry) for entry in json.loads(storage.read_text(sources_of(shard_uri)))]


def read_records(storage: Storage, shard_uri: str, scratch: str) -> typing.Iterator[bytes]:
    """The serialized tf.Examples of one shard, in order (the shard is copied to `scratch` first: TensorFlow cannot
    read azfs://)."""
    path = os.path.join(scratch, f"{uuid.uuid4().hex}{SHARD_SUFFIX}")
    Path(path).write_bytes(storage.read_bytes(shard_uri))
    try:
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            yield record.numpy()
    finally:
        os.remove(path)


class ShardWriter:
    """One worker's shard of one split: a GZIP TFRecord file on local disk until it is full or the bundle ends, then
    uploaded to the staging folder with its sources list."""

    def __init__(self, storage: Storage, scratch: str, staging_uri: str, images_per_shard: int):
        self._storage = storage
        self._scratch = scratch
        self._staging_uri = staging_uri
        self._images_per_shard = images_per_shard
        self._writer = None
        self._path = ""
        self._sources: list[SourceEntry] = []

    def write(self, example: bytes, source: SourceEntry) -> str | None:
        """Append `example`; returns the staged URI of the shard where this filled it."""
        if self._writer is None:
            self._path = os.path.join(self._scratch, f"{uuid.uuid4().hex}{SHARD_SUFFIX}")
            self._writer = tf.io.TFRecordWriter(self._path, options="GZIP")
            self._sources = []
        self._writer.write(example)
        self._sources.append(source)
        return self.close() if len(self._sources) >= self._images_per_shard else None

    def close(self) -> str | None:
        """Upload the open shard and its sources list to staging; returns its URI, or None where none is open."""
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        staged = join(self._staging_uri, os.path.basename(self._path))
        self._storage.write_text(sources_of(staged), json.dumps(self._sources))
        self._storage.write_bytes(staged, Path(self._path).read_bytes())
        os.remove(self._path)
        return staged


def scratch_folder() -> str:
    return tempfile.mkdtemp(prefix="places-ingest-")
