"""`./places ingest --incremental`: what the committed data version already holds, and what of it the next version
keeps.

The committed version's shards list their sources (ingestion/shards.py). The job's listing workers skip every file
that a shard already holds with the same fingerprint and count it against its shard; only new and changed files are
converted. Then, on the driver:

  a shard whose every source is still listed unchanged     is kept where it is (the manifest's kept_shards)
  a shard that lost some (a file deleted or changed)        is written again, without them, into the new version
  a shard that lost all of them                             is left out

so the new version holds exactly the records a full ingest of the same files would write, and its content hash, a
sum over the records, is the same.
"""

from __future__ import annotations

import collections
import json
import shutil
from dataclasses import dataclass

from core.config import Config
from core.storage import NotFound, Storage, join
from ingestion import shards as shard_files
from ingestion.manifest import IngestError, Manifest, read_manifest, read_shard_list, split_folder, split_of_shard

# In the staging folder: {source URI: [fingerprint, shard]} of the committed version, for the listing workers.
HELD_INDEX_FILE = "held.json"


def conversion_settings(config: Config) -> dict[str, int]:
    """The settings that decide which records a file gives: a version can only grow under the same ones."""
    return {"data.eval_percent": config.data.eval_percent, "ingest.jpeg_quality": config.ingest.jpeg_quality,
            "ingest.max_image_pixels": config.ingest.max_image_pixels,
            "ingest.max_image_bytes": config.ingest.max_image_bytes}


@dataclass
class CarriedOver:
    """What the new version takes from the committed one."""
    # Relative to the output: "data-<16 hex>/Split-train/data-00000-of-00002.tfrecord.gz".
    kept_shards: list[str]
    # (split, staged URI) of the shards written again without their deleted or changed sources.
    rewritten: list[tuple[str, str]]
    # (class, split) -> records carried over, kept or rewritten.
    accepted: collections.Counter
    # Their record digests summed modulo 2**256 (ingestion.job.Tally.digest_sum).
    digest_sum: int
    # Records of the committed version that the new one drops: their file was deleted or changed.
    dropped: int

    @property
    def images(self) -> int:
        return sum(self.accepted.values())


class HeldVersion:
    """The committed data version at an output, with the sources of every one of its shards."""

    def __init__(self, manifest: Manifest, sources: dict[str, list[shard_files.SourceEntry]]):
        self.manifest = manifest
        # Shard, relative to the output -> its sources in record order.
        self.sources = sources

    def index(self) -> dict[str, list]:
        return {entry.source_uri: [entry.fingerprint, shard]
                for shard, entries in self.sources.items() for entry in entries}

    def write_index(self, storage: Storage, staging_uri: str) -> str:
        uri = join(staging_uri, HELD_INDEX_FILE)
        storage.write_text(uri, json.dumps(self.index()))
        return uri

    def carry_over(self, storage: Storage, unchanged: collections.Counter, replaced: set[str], staging_uri: str,
                   images_per_shard: int) -> CarriedOver:
        """Keep the shards whose sources were all listed unchanged (`unchanged`: shard -> sources listed so);
        write the others again without the sources that are gone or `replaced`."""
        result = CarriedOver([], [], collections.Counter(), 0, 0)
        carried = []
        scratch = shard_files.scratch_folder()
        try:
            for shard, entries in sorted(self.sources.items()):
                split = split_of_shard(shard)
                if unchanged[shard] == len(entries):
                    result.kept_shards.append(shard)
                    kept = entries
                else:
                    kept = self._still_there(storage, entries, replaced) if unchanged[shard] else []
                    result.rewritten += self._write_again(storage, shard, kept, split, staging_uri, scratch,
                                                          images_per_shard)
                result.dropped += len(entries) - len(kept)
                result.accepted.update((entry.category, split) for entry in kept)
                carried += kept
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result.digest_sum = shard_files.digest_sum(int(entry.digest, 16) for entry in carried)
        return result

    @staticmethod
    def _still_there(storage: Storage, entries: list[shard_files.SourceEntry],
                     replaced: set[str]) -> list[shard_files.SourceEntry]:
        # Only shards that lost a source get here, a few at most: each of their files is looked up once.
        kept = []
        for entry in entries:
            if entry.source_uri in replaced:
                continue
            info = storage.info(entry.source_uri)
            if info is not None and (entry.fingerprint is None or info.fingerprint == entry.fingerprint):
                kept.append(entry)
        return kept

    def _write_again(self, storage: Storage, shard: str, kept: list[shard_files.SourceEntry], split: str,
                     staging_uri: str, scratch: str, images_per_shard: int) -> list[tuple[str, str]]:
        if not kept:
            return []
        wanted = {entry.source_uri: entry for entry in kept}
        writer = shard_files.ShardWriter(storage, scratch, join(staging_uri, split_folder(split)), images_per_shard)
        staged = []
        for record, entry in zip(shard_files.read_records(storage, join(self.manifest.output_uri, shard), scratch),
                                 self.sources[shard]):
            if entry.source_uri in wanted:
                filled = writer.write(record, entry)
                if filled:
                    staged.append((split, filled))
        last = writer.close()
        return staged + ([(split, last)] if last else [])


def held_version(storage: Storage, config: Config, classes: tuple[str, ...], input_uri: str, output_uri: str,
                 layout: str) -> HeldVersion:
    """The committed version at `output_uri`, where an incremental ingest of `input_uri` can grow it; IngestError
    naming the difference and the fix otherwise."""
    manifest = read_manifest(storage, output_uri)
    full = f"run `./places ingest --input {input_uri} --output {output_uri}` without --incremental"
    differences = []
    if manifest.input_uri != input_uri:
        differences.append(f"its input was {manifest.input_uri}, not {input_uri}")
    if manifest.layout != layout:
        differences.append(f"its layout was {manifest.layout}, not {layout}")
    if tuple(manifest.classes) != classes:
        differences.append(f"it holds {len(manifest.classes)} classes ({', '.join(manifest.classes[:3])}...), "
                           f"data.classes names {len(classes)} ({', '.join(classes[:3])}...)")
    settings = conversion_settings(config)
    differences += [f"it was ingested with {name}={manifest.conversion.get(name)}, this ingest has {value}"
                    for name, value in settings.items() if manifest.conversion.get(name) != value]
    if differences:
        raise IngestError(f"--incremental adds to the data at {output_uri} only what was ingested the same way, but "
                          f"{'; '.join(differences)}: {full}")
    sources = {}
    for shard in manifest.shard_paths():
        try:
            sources[shard] = shard_files.read_sources(storage, join(output_uri, shard))
        except Exception as error:  # missing or unreadable: the version cannot be grown, only replaced
            raise IngestError(f"--incremental needs the sources list of every shard, and "
                              f"{shard_files.sources_of(join(output_uri, shard))} cannot be read ({error}): "
                              f"{full}") from None
    return HeldVersion(manifest, sources)


def version_shards(storage: Storage, output_uri: str, content_hash: str) -> list[str] | None:
    """Every shard of the data version with `content_hash` at `output_uri`, relative to the output: its own, then the
    kept ones; None where that version's data folder is gone (or was never committed there)."""
    data_folder = f"data-{content_hash[:16]}"
    listed = read_shard_list(storage, join(output_uri, data_folder))
    if listed is None:
        return None
    own, kept = listed
    return [f"{data_folder}/{shard}" for shard in own] + kept


def version_sources(storage: Storage, output_uri: str, shards: list[str]) -> set[tuple[str, str | None]] | None:
    """(source, fingerprint) of every record in `shards` (relative to `output_uri`); None where a shard has no
    sources list (written before ingestion kept them)."""
    try:
        return {(entry.source_uri, entry.fingerprint)
                for shard in shards for entry in shard_files.read_sources(storage, join(output_uri, shard))}
    except NotFound:
        return None
