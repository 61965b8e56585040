"""manifest.json: what one ingestion wrote, and the commit point of its output.

  <output>/manifest.json                                          written last, in one piece
  <output>/data-<16 hex of content_hash>/Split-train/data-00000-of-00002.tfrecord.gz
  <output>/data-<16 hex of content_hash>/Split-eval/data-00000-of-00001.tfrecord.gz

A reader that finds the manifest finds complete data; the split folders are named as TFX's ExampleGen
names its own, so an ExampleGen can import them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.commit_point import CommitPoint
from core.console import table
from core.errors import UserError
from core.storage import NotFound, Storage, join
from data_schema import EVAL_SPLIT, SCHEMA_VERSION, TRAIN_SPLIT

MANIFEST_FILE = "manifest.json"
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
# How many rejected files and skipped classes the summary names; the manifest keeps them all.
SUMMARY_ITEMS = 5


class IngestError(UserError):
    """Ingestion cannot go on; the message names the input or output and what to do."""


def split_folder(split: str) -> str:
    return f"Split-{split}"


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

    @property
    def data_uri(self) -> str:
        return join(self.output_uri, self.data_folder)

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
        lines.append(f"data: {self.data_uri} ({len(self.shards)} shards)")
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
