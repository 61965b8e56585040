"""`./places ingest`: images in blob storage (or a local folder) become sharded GZIP TFRecords of tf.Example
plus a manifest, with one Beam job.

  listing tasks (driver: class folders or list files, a few hundred at most)
    -> list each task's files (workers, streamed) in batches of IMAGES_PER_ELEMENT
    -> Reshuffle (spreads the batches over the workers)
    -> read, check, convert (child processes) -> tf.Example
    -> append to this worker's shard of the image's split (staging)
  what became of every file (accepted, rejected, skipped) and every shard -> one Tally per batch -> staging

Batches, not single images, are Beam's elements: Beam's cost per element (coding, the data channel, the
Reshuffle) and the Tally, counters and progress of each one then fall on a few hundred images at once.

Then the driver commits: the shards move from <output>/.staging-<random>/ to <output>/data-<content hash>/,
and <output>/manifest.json is written last, in one piece. A failed job leaves the output as it was.

With --incremental the listing skips the files that the committed version holds unchanged, and the new version
keeps that version's shards (ingestion/incremental.py).

Each worker closes a shard after ingest.images_per_shard images and at the end of its bundle, so only the
shard being written is held, on local disk. Beam's WriteToTFRecord cannot do that: it takes a fixed shard
count, which would need every image counted before the job starts, and then groups all encoded images by
shard in one place (the local runner holds that group in memory).
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import shutil
import typing
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

import data_schema
from core import jobs
from core.beam import runs_locally
from core.config import Config
from core.jobs import LOCAL_PROGRESS
from core.storage import Storage, canonical, join
from ingestion import conversion_pool, images, incremental, layouts, shards
from ingestion.manifest import (
    MANIFEST_FILE,
    SHARDS_FILE,
    SPLITS,
    IngestError,
    Manifest,
    read_shard_list,
    split_folder,
)

TALLY_FILE = "tally.json"
_OUTCOMES = "outcomes"
# Images per Beam element: a few hundred make Beam's cost per element small beside theirs, and still give every
# worker batches to take (the full Places365 is thousands of them).
IMAGES_PER_ELEMENT = 256

_ACCEPTED = beam.metrics.Metrics.counter("ingest", "images_accepted")
_REJECTED = beam.metrics.Metrics.counter("ingest", "files_rejected")
_SKIPPED = beam.metrics.Metrics.counter("ingest", "images_skipped")


def ingest(config: Config, input_uri: str, output_uri: str, layout: str = layouts.AUTO,
           incremental_ingest: bool = False) -> Manifest:
    """Ingest the images at `input_uri` into `output_uri` and return the manifest, once it is committed.

    `incremental_ingest`: convert only the files that the version committed at `output_uri` does not hold unchanged,
    and keep its shards; the result is the version a full ingest gives.

    IngestError where the input as a whole cannot be ingested; single bad files are rejected and listed in the
    manifest instead.
    """
    try:
        classes = data_schema.resolve_classes(config.data.classes)
    except ValueError as error:
        raise IngestError(f"data.classes: {error}") from None
    if runs_locally(config):
        # The workers' conversion processes take a second to start: they start while the job is planned and
        # Beam starts (workers elsewhere start theirs as they list, _ListImages.setup).
        conversion_pool.start(config)
    storage = Storage.from_config(config)
    # A tfds: input names a dataset, not a place: it stays as the user wrote it.
    input_uri = input_uri if layouts.is_tfds_input(input_uri) else canonical(input_uri)
    output_uri = canonical(output_uri)
    layout = layouts.detect_layout(storage, input_uri) if layout == layouts.AUTO else layout
    if incremental_ingest and layout == layouts.TFDS:
        raise IngestError(f"--incremental reads new files, and {input_uri} is a TensorFlow Datasets dataset, which "
                          "does not grow: ingest it without --incremental")
    tasks = layouts.listing_tasks(storage, input_uri, layout, config.data.tfds_data_dir)
    storage.ensure_container(output_uri)
    held = incremental.held_version(storage, config, classes, input_uri, output_uri, layout) \
        if incremental_ingest else None
    with jobs.staged(storage, output_uri) as staging:
        held_index = held.write_index(storage, staging.uri) if held else ""
        with jobs.progress_bar(config, "ingest", staging.job_id, "image"):
            _run_job(config, tasks, classes, staging.uri, staging.job_id, output_uri, held_index)
        tally = Tally.from_json(storage.read_text(join(staging.uri, TALLY_FILE)))
        carried = None
        if held:
            carried = held.carry_over(storage, tally.unchanged, {source for _, source in tally.replaced},
                                      staging.uri, config.ingest.images_per_shard)
            converted = sum(tally.accepted.values())
            tally.accepted.update(carried.accepted)
            tally.add_digest(carried.digest_sum)
            tally.shards.extend(carried.rewritten)
        if not tally.accepted:
            raise _nothing_ingested(tally, classes, input_uri, layout)
        changes = {} if held is None else {"previous_content_hash": held.manifest.content_hash,
                                           "converted": converted, "kept": carried.images, "dropped": carried.dropped}
        return _commit(storage, config, tally, classes, input_uri, output_uri, layout, staging.uri,
                       carried.kept_shards if carried else [], changes)


def split_of(relative_path: str, eval_percent: int) -> str:
    """The split of an image, from a hash of its path below the input: the same on every run and machine."""
    number = int.from_bytes(hashlib.sha256(relative_path.encode()).digest()[:8], "big")
    return data_schema.EVAL_SPLIT if number % 100 < eval_percent else data_schema.TRAIN_SPLIT


@dataclass
class Tally:
    """What became of the files and where the shards are, summed over the job: one per task, image, shard."""

    # (class, split) -> images written.
    accepted: collections.Counter = field(default_factory=collections.Counter)
    # class -> images listed, of configured classes.
    found: collections.Counter = field(default_factory=collections.Counter)
    # class -> images of Places365 classes that are not configured.
    skipped: collections.Counter = field(default_factory=collections.Counter)
    # (source, reason)
    rejected: list = field(default_factory=list)
    # (split, staged shard URI)
    shards: list = field(default_factory=list)
    # The records' digests summed modulo 2**256: the same whatever order the workers wrote them in.
    digest_sum: int = 0
    # --incremental: committed shard -> its files that were listed unchanged (and so not converted).
    unchanged: collections.Counter = field(default_factory=collections.Counter)
    # --incremental: (committed shard, source) of the files it holds that changed since (converted again).
    replaced: list = field(default_factory=list)

    def merge(self, other: "Tally") -> "Tally":
        self.accepted.update(other.accepted)
        self.found.update(other.found)
        self.skipped.update(other.skipped)
        self.rejected.extend(other.rejected)
        self.shards.extend(other.shards)
        self.add_digest(other.digest_sum)
        self.unchanged.update(other.unchanged)
        self.replaced.extend(other.replaced)
        return self

    def add_digest(self, digest: int) -> None:
        self.digest_sum = shards.digest_sum((self.digest_sum, digest))

    def to_json(self) -> str:
        return json.dumps({"accepted": [[*key, count] for key, count in self.accepted.items()],
                           "found": self.found, "skipped": self.skipped, "rejected": self.rejected,
                           "shards": self.shards, "digest_sum": f"{self.digest_sum:064x}",
                           "unchanged": self.unchanged, "replaced": self.replaced})

    @classmethod
    def from_json(cls, text: str) -> "Tally":
        fields = json.loads(text)
        return cls(collections.Counter({(key, split): count for key, split, count in fields["accepted"]}),
                   collections.Counter(fields["found"]), collections.Counter(fields["skipped"]),
                   [tuple(item) for item in fields["rejected"]], [tuple(item) for item in fields["shards"]],
                   int(fields["digest_sum"], 16), collections.Counter(fields["unchanged"]),
                   [tuple(item) for item in fields["replaced"]])


def record_digest(source_uri: str, split: str, category: int, image_jpeg: bytes) -> int:
    """One record's part of the content hash."""
    text = "\n".join([source_uri, split, str(category), hashlib.sha256(image_jpeg).hexdigest()])
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def content_hash(classes: tuple[str, ...], tally: Tally) -> str:
    # The class list says what each `category` number means, the schema version how records are laid out.
    content = {"schema_version": data_schema.SCHEMA_VERSION, "classes": list(classes),
               "images": sum(tally.accepted.values()), "records": f"{tally.digest_sum:064x}"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class _ListImages(beam.DoFn):
    """One listing task's files: images of configured classes go on with their split, the rest is tallied. With
    --incremental, files that the committed version holds unchanged are only counted."""

    def __init__(self, config: Config, classes: tuple[str, ...], job_id: str, held_index_uri: str):
        self._config = config
        self._classes = frozenset(classes)
        self._job_id = job_id
        self._held_index_uri = held_index_uri

    def setup(self):
        self._storage = Storage.from_config(self._config)
        # {source: [fingerprint, shard]} of the committed version (ingestion/incremental.py).
        self._held = json.loads(self._storage.read_text(self._held_index_uri)) if self._held_index_uri else {}
        # The next stage converts the images in these processes: they start while this one lists.
        conversion_pool.start(self._config)

    def process(self, task: layouts.ListingTask):
        tally = Tally()
        batch, to_convert = [], 0
        for listed in layouts.list_images(self._storage, task):
            if listed.rejection is not None:
                tally.rejected.append((listed.source_uri, listed.rejection))
            elif listed.category in self._classes:
                tally.found[listed.category] += 1
                held = self._held.get(listed.source_uri)
                if held is not None and held[0] == listed.fingerprint:
                    tally.unchanged[held[1]] += 1
                    continue
                if held is not None:
                    tally.replaced.append((held[1], listed.source_uri))
                to_convert += 1
                batch.append((listed.split or split_of(listed.relative_path, self._config.data.eval_percent), listed))
                if len(batch) == IMAGES_PER_ELEMENT:
                    yield batch
                    batch = []
            else:
                tally.skipped[listed.category] += 1
        if batch:
            yield batch
        _REJECTED.inc(len(tally.rejected))
        _SKIPPED.inc(sum(tally.skipped.values()))
        LOCAL_PROGRESS.listed(self._job_id, to_convert)
        yield beam.pvalue.TaggedOutput(_OUTCOMES, tally)


class _WriteExamples(beam.DoFn):
    """Reads, checks and converts each image, and appends its tf.Example to this worker's shard of its split."""

    def __init__(self, config: Config, classes: tuple[str, ...], staging_uri: str, job_id: str):
        self._config = config
        self._category = {key: index for index, key in enumerate(classes)}
        self._staging_uri = staging_uri
        self._job_id = job_id

    def setup(self):
        self._storage = Storage.from_config(self._config)
        self._scratch = shards.scratch_folder()

    def start_bundle(self):
        self._shards = {split: shards.ShardWriter(self._storage, self._scratch,
                                                  join(self._staging_uri, split_folder(split)),
                                                  self._config.ingest.images_per_shard) for split in SPLITS}
        self._conversions = conversion_pool.OrderedConversions(self._config)

    def process(self, batch: list[tuple[str, layouts.ListedFile]]):
        work = [((split, listed), listed.source_uri, listed.size, listed.image) for split, listed in batch]
        tally = self._write(self._conversions.submit(work))
        if tally is not None:
            yield tally

    def finish_bundle(self):
        tally = self._write(self._conversions.drain()) or Tally()
        for split, shard in self._shards.items():
            staged = shard.close()
            if staged:
                tally.shards.append((split, staged))
        yield WindowedValue(tally, GlobalWindow().max_timestamp(), [GlobalWindow()])

    def teardown(self):
        shutil.rmtree(self._scratch, ignore_errors=True)

    def _write(self, converted: typing.Iterable[tuple[tuple[str, layouts.ListedFile],
                                                      images.TrainingImage | images.RejectedImage]]) -> Tally | None:
        """Writes each converted image to its split's shard; what became of them, None where there were none."""
        tally, count = Tally(), 0
        for (split, listed), image in converted:
            count += 1
            if isinstance(image, images.RejectedImage):
                tally.rejected.append((listed.source_uri, str(image)))
                continue
            category = self._category[listed.category]
            digest = record_digest(listed.source_uri, split, category, image.image_jpeg)
            staged = self._shards[split].write(_example(image, category, listed), shards.SourceEntry(
                listed.source_uri, listed.fingerprint, listed.category, f"{digest:064x}"))
            tally.accepted[listed.category, split] += 1
            if staged:
                tally.shards.append((split, staged))
            tally.add_digest(digest)
        if not count:
            return None
        _REJECTED.inc(len(tally.rejected))
        _ACCEPTED.inc(count - len(tally.rejected))
        LOCAL_PROGRESS.processed(self._job_id, count)
        return tally


def _example(image: images.TrainingImage, category: int, listed: layouts.ListedFile) -> bytes:
    return shards.serialized_example({
        data_schema.IMAGE_KEY: image.image_jpeg,
        data_schema.LABEL_KEY: category,
        data_schema.LABEL_NAME_KEY: listed.category.encode(),
        data_schema.SOURCE_KEY: listed.source_uri.encode(),
        data_schema.HEIGHT_KEY: image.height,
        data_schema.WIDTH_KEY: image.width,
        data_schema.BRIGHTNESS_KEY: image.brightness,
    })


def _run_job(config: Config, tasks: list[layouts.ListingTask], classes: tuple[str, ...], staging_uri: str,
             job_id: str, output_uri: str, held_index_uri: str) -> None:
    pipeline = beam.Pipeline(options=jobs.pipeline_options(config, jobs.job_name("ingest", job_id)))
    task_list = pipeline | "Listing tasks" >> beam.Create(tasks)
    # A tfds task lists images with their bytes: the tasks are spread instead, and each worker converts the
    # images of its own shards, so that no image crosses a shuffle (the local runner holds one in memory).
    carries_images = any(task.layout == layouts.TFDS for task in tasks)
    if carries_images:
        task_list = task_list | "Spread shards over workers" >> beam.Reshuffle()
    listed = task_list | "List files" >> beam.ParDo(_ListImages(config, classes, job_id, held_index_uri)).with_outputs(
        _OUTCOMES, main="images")
    images_to_write = listed.images
    if not carries_images:
        # Conversion starts once every image is listed (a second or two with the signed listing, core/storage.py),
        # so the progress bar knows its total from the first image converted, and no worker waits for another's
        # share: the batches spread over all of them.
        images_to_write = images_to_write | "Spread over workers" >> beam.Reshuffle()
    written = images_to_write | "Convert and write" >> beam.ParDo(_WriteExamples(config, classes, staging_uri,
                                                                                 job_id))
    _ = ((listed[_OUTCOMES], written)
         | "All outcomes" >> beam.Flatten()
         | "Sum" >> beam.CombineGlobally(jobs.MergeAll(Tally))
         | "Write tally" >> beam.Map(jobs.save_outcome, config, join(staging_uri, TALLY_FILE)))
    jobs.run(config, pipeline, job="ingest", output_uri=output_uri, error=IngestError)


def _nothing_ingested(tally: Tally, classes: tuple[str, ...], input_uri: str, layout: str) -> IngestError:
    found = sum(tally.found.values())
    first = "; ".join(f"{source}: {reason}" for source, reason in sorted(tally.rejected)[:3])
    if found:
        return IngestError(f"none of the {found} images of the configured classes under {input_uri} could be read, "
                           f"e.g. {first}")
    if tally.skipped:
        return IngestError(f"no image under {input_uri} is of the configured classes ({', '.join(classes)}); it holds "
                           f"{', '.join(sorted(tally.skipped))}: choose classes with --classes or data.classes")
    if tally.rejected:
        return IngestError(f"nothing under {input_uri} could be ingested: all {len(tally.rejected)} files were "
                           f"rejected, e.g. {first}")
    return layouts.no_images_error(input_uri, layout)


def _warnings(tally: Tally, config: Config, classes: tuple[str, ...], input_uri: str, layout: str) -> list[str]:
    warnings = []
    for key in classes:
        if not tally.found[key]:
            warnings.append(f"class {key} has no images: expected {layouts.where_class_goes(layout, input_uri, key)}")
        elif not any(tally.accepted[key, split] for split in SPLITS):
            warnings.append(f"class {key}: all {tally.found[key]} images were rejected")
    # The tfds layout takes its splits from TFDS, so data.eval_percent plays no part there.
    eval_empty = not any(tally.accepted[key, data_schema.EVAL_SPLIT] for key in classes)
    if layout != layouts.TFDS and config.data.eval_percent and eval_empty:
        warnings.append(f"the {data_schema.EVAL_SPLIT} split is empty: too few images for "
                        f"data.eval_percent={config.data.eval_percent}")
    return warnings


def _commit(storage: Storage, config: Config, tally: Tally, classes: tuple[str, ...], input_uri: str,
            output_uri: str, layout: str, staging_uri: str, kept_shards: list[str],
            changes: dict[str, str | int]) -> Manifest:
    digest = content_hash(classes, tally)
    data_folder = f"data-{digest[:16]}"
    data_uri = join(output_uri, data_folder)
    committed = read_shard_list(storage, data_uri)
    if committed:
        own_shards, kept_shards = committed  # the same content, committed before (in full or incrementally): keep it
    else:
        own_shards = _publish_shards(storage, tally.shards, kept_shards, data_uri, staging_uri)
    manifest = Manifest(
        schema_version=data_schema.SCHEMA_VERSION,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        input_uri=input_uri, output_uri=output_uri, layout=layout, classes=list(classes),
        counts={key: {split: tally.accepted[key, split] for split in SPLITS} for key in classes},
        total=sum(tally.accepted.values()),
        rejected=[{"source": source, "reason": reason} for source, reason in sorted(tally.rejected)],
        skipped=dict(sorted(tally.skipped.items())),
        warnings=_warnings(tally, config, classes, input_uri, layout),
        data_folder=data_folder, shards=own_shards, content_hash=digest, kept_shards=kept_shards,
        conversion=incremental.conversion_settings(config), incremental=changes)
    storage.write_text(join(output_uri, MANIFEST_FILE), manifest.to_json())
    return manifest


def _publish_shards(storage: Storage, staged: list[tuple[str, str]], kept_shards: list[str], data_uri: str,
                    staging_uri: str) -> list[str]:
    """Copy the staged shards and their sources lists to their names in the data folder, then its shard list."""
    copies = []
    for split in SPLITS:
        sources = sorted(uri for shard_split, uri in staged if shard_split == split)
        copies += [(source, f"{split_folder(split)}/data-{index:05d}-of-{len(sources):05d}{shards.SHARD_SUFFIX}")
                   for index, source in enumerate(sources)]
    names = [name for _, name in copies]
    shard_list_uri = join(staging_uri, SHARDS_FILE)
    storage.write_text(shard_list_uri, json.dumps({"shards": names, "kept_shards": kept_shards}))
    sources_lists = [(shards.sources_of(source), shards.sources_of(name)) for source, name in copies]
    jobs.publish(storage, [*copies, *sources_lists, (shard_list_uri, SHARDS_FILE)], data_uri)
    return names

