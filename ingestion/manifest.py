"""manifest.json: what one ingestion wrote, and the commit point of its output.

  <output>/manifest.json                                          written last, in one piece
  <output>/data-<16 hex of content_hash>/Split-train/data-00000-of-00002.tfrecord.gz
  <output>/data-<16 hex of content_hash>/Split-eval/data-00000-of-00001.tfrecord.gz

A reader that finds the manifest finds complete data; the split folders are named as TFX's ExampleGen
names its own, so an ExampleGen can import them as they are.

A version that `./places ingest --incremental` wrote holds only its new shards in its data folder; the manifest's
kept_shards names those it keeps from earlier versions, in their own data folders (ingestion/incremental.py). Each
shard has its sources list beside it (ingestion/shards.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from core.commit_point import CommitPoint
from core.console import table
from core.errors import UserError
from core.storage import NotFound, Storage, join
from data_schema import EVAL_SPLIT, SCHEMA_VERSION, TRAIN_SPLIT

MANIFEST_FILE = "manifest.json"
# In a data folder, written after its shards: {"shards": [its own], "kept_shards": [of earlier versions]}, as in the
# manifest. A data folder without it is what an interrupted commit left.
SHARDS_FILE = "shards.json"
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
# How many rejected files and skipped classes the summary names; the manifest keeps them all.
SUMMARY_ITEMS = 5


class IngestError(UserError):
    """Ingestion cannot go on; the message names the input or output and what to do."""


def split_folder(split: str) -> str:
    return f"Split-{split}"


def read_shard_list(storage: Storage, data_uri: str) -> tuple[list[str], list[str]] | None:
    """A data folder's SHARDS_FILE: (its own shards, relative to it; the kept ones, relative to the output), or None
    where the folder holds none (never committed, or deleted). Folders written before versions kept shards list
    their own only."""
    try:
        listed = json.loads(storage.read_text(join(data_uri, SHARDS_FILE)))
    except NotFound:
        return None
    if isinstance(listed, list):
        return listed, []
    return listed["shards"], listed["kept_shards"]


def split_of_shard(shard: str) -> str:
    """The split of a shard path ("data-<16 hex>/Split-train/..." or "Split-train/...")."""
    folder = next(part for part in shard.split("/") if part.startswith("Split-"))
    return folder[len("Split-"):]


@dataclass(frozen=True)
class Manifest(CommitPoint):
    schema_version: int
    # UTC, ISO 8601.
    created: str
    input_uri: str
    # Where this manifest and its data folder were written.
    output_uri: str
    layout: str
    # Class keys; a class's position is its int `category`.
    classes: list[str]
    # class -> split -> images.
    counts: dict[str, dict[str, int]]
    total: int
    # {"source": ..., "reason": ...} for every file that was not ingested.
    rejected: list[dict[str, str]]
    # Images of Places365 classes that are not configured, by class.
    skipped: dict[str, int]
    warnings: list[str]
    # "data-<16 hex>", relative to output_uri.
    data_folder: str
    # Relative to the data folder: "Split-train/data-00000-of-00002.tfrecord.gz".
    shards: list[str]
    # sha256 over the records (source, split, category, image bytes), whatever their order or sharding.
    content_hash: str
    # Shards of earlier versions that this one holds too, relative to output_uri:
    # "data-<16 hex>/Split-train/data-00000-of-00002.tfrecord.gz". Empty after a full ingest.
    kept_shards: list[str] = field(default_factory=list)
    # The settings that decide which records a file gives (ingestion.incremental.conversion_settings).
    conversion: dict[str, int] = field(default_factory=dict)
    # After --incremental: the version it grew ("previous_content_hash"), the images it converted ("converted"),
    # kept ("kept") and dropped because their file was deleted or changed ("dropped"). Empty after a full ingest.
    incremental: dict[str, str | int] = field(default_factory=dict)

    @property
    def data_uri(self) -> str:
        return join(self.output_uri, self.data_folder)

    def shard_paths(self) -> list[str]:
        """Every shard of this version, relative to output_uri: its own, then those it keeps."""
        return [f"{self.data_folder}/{shard}" for shard in self.shards] + self.kept_shards

    def shard_files(self) -> list[tuple[str, str]]:
        """(URI, path in a TFX Examples artifact) of every shard: "Split-train/data-00000-of-00002.tfrecord.gz" for
        its own, the data folder put before the name of a kept one, as shards of two versions share names."""
        own = [(join(self.data_uri, shard), shard) for shard in self.shards]
        kept = []
        for shard in self.kept_shards:
            folder, split, name = shard.split("/", 2)
            kept.append((join(self.output_uri, shard), f"{split}/{folder}-{name}"))
        return own + kept

    def summary(self) -> str:
        rows = [{"class": key, **{split: self.counts[key].get(split, 0) for split in SPLITS},
                 "total": sum(self.counts[key].values())} for key in self.classes]
        rows.append({"class": "total", **{split: sum(row[split] for row in rows) for split in SPLITS},
                     "total": self.total})
        lines = [f"ingested {self.total} images of {len(self.classes)} classes from {self.input_uri} "
                 f"(layout {self.layout})", "", table(rows, ["class", *SPLITS, "total"]), ""]
        if self.skipped:
            named = ", ".join(f"{key} {count}" for key, count in list(self.skipped.items())[:SUMMARY_ITEMS])
            more = f" and {len(self.skipped) - SUMMARY_ITEMS} more classes" if len(self.skipped) > SUMMARY_ITEMS else ""
            lines.append(f"skipped, not in data.classes: {sum(self.skipped.values())} images ({named}{more})")
        if self.rejected:
            lines.append(f"rejected: {len(self.rejected)} files, listed in the manifest; the first:")
            lines += [f"  {item['source']}: {item['reason']}" for item in self.rejected[:SUMMARY_ITEMS]]
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  {warning}" for warning in self.warnings]
        if self.incremental:
            lines.append(f"incremental: converted {self.incremental['converted']} new or changed images, kept "
                         f"{self.incremental['kept']} of version {str(self.incremental['previous_content_hash'])[:16]}"
                         f", dropped {self.incremental['dropped']} whose file was deleted or changed")
        kept = f", and {len(self.kept_shards)} kept from earlier versions" if self.kept_shards else ""
        lines.append(f"data: {self.data_uri} ({len(self.shards)} shards{kept})")
        lines.append(f"manifest: {join(self.output_uri, MANIFEST_FILE)} (content hash {self.content_hash[:16]})")
        return "\n".join(lines)


def read_manifest(storage: Storage, output_uri: str) -> Manifest:
    """The manifest of the ingestion at `output_uri`; IngestError where there is none this code can read."""
    uri = join(output_uri, MANIFEST_FILE)
    try:
        text = storage.read_text(uri)
    except NotFound:
        raise IngestError(f"no ingested data at {output_uri} ({uri} does not exist): "
                          f"run `./places ingest --output {output_uri}` first") from None
    try:
        manifest = Manifest.from_json(text)
    except ValueError as error:
        raise IngestError(f"{uri} is not an ingestion manifest: {error}. Run `./places ingest` again") from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise IngestError(f"{uri} describes tf.Examples of schema version {manifest.schema_version}, but this code "
                          f"reads version {SCHEMA_VERSION}: run `./places ingest --output {output_uri}` again")
    return manifest
