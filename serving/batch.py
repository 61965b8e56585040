"""`./places batch-predict`: a registered model's predictions for every image under a prefix, with one Beam job.

  the input prefix -> list it recursively, any layout (one worker, streamed) -> Reshuffle (spreads the files)
    -> read and check each image (ingestion.images' rules; a bad one is rejected with its reason)
    -> RunInference: the SavedModel's predict_images signature, serving.batch_size images per call
    -> one record per image -> this worker's shard file in staging (JSON lines or Parquet)
  what became of every file (predicted, rejected, skipped) and every shard -> one Outcome -> staging

Then the driver commits (core.jobs): the shards move from <output>/.staging-<id>/ to <output>/predictions-<id>/,
rejected.jsonl beside them, and <output>/summary.json, written last, names that folder; the folder the previous
summary named goes. A failed job leaves the output as it was.

A record: {"source": URI, "class": key of the most probable class, "class_display_name": "Gas Station",
           "probability": its probability, "probabilities": [one per class, in summary.json's class_names order],
           "model_name": ..., "model_version": ...}

Files without an image extension (.txt lists, manifests) are skipped unread and counted; image files that are
not readable JPEG or PNG are rejected. Storage failing, or no image being readable at all, fails the job.
"""

from __future__ import annotations

import collections
import datetime
import io
import json
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from core import jobs
from core.commit_point import CommitPoint
from core.config import Config
from core.console import table
from core.errors import UserError
from core.jobs import LOCAL_PROGRESS
from core.storage import NotFound, Storage, canonical, join
from data_schema import display_name
from ingestion.images import RejectedImage, accepted_image, read_checked
from ingestion.layouts import IMAGE_EXTENSIONS
from ingestion.manifest import SUMMARY_ITEMS
from serving import inputs
from serving.model import SceneModel, load

FORMATS = ("jsonl", "parquet")
SUMMARY_FILE = "summary.json"
REJECTED_FILE = "rejected.jsonl"
OUTCOME_FILE = "outcome.json"
# A shard closes at this many records, or at the end of its bundle: some 40 MB of JSON lines with 365 classes.
RECORDS_PER_SHARD = 10_000
_OUTCOMES = "outcomes"


class BatchPredictError(UserError):
    """Batch prediction cannot go on; the message names the input or output and what to do."""


@dataclass
class Outcome:
    """What became of the files and where the shards are, summed over the job."""

    # class key -> images it is the most probable class of.
    predicted: collections.Counter = field(default_factory=collections.Counter)
    # (source, reason)
    rejected: list = field(default_factory=list)
    # Files without an image extension, not read.
    skipped: int = 0
    # Staged shard URIs.
    shards: list = field(default_factory=list)

    def merge(self, other: "Outcome") -> "Outcome":
        self.predicted.update(other.predicted)
        self.rejected.extend(other.rejected)
        self.skipped += other.skipped
        self.shards.extend(other.shards)
        return self

    def to_json(self) -> str:
        return json.dumps({"predicted": self.predicted, "rejected": self.rejected, "skipped": self.skipped,
                           "shards": self.shards})

    @classmethod
    def from_json(cls, text: str) -> "Outcome":
        fields = json.loads(text)
        return cls(collections.Counter(fields["predicted"]), [tuple(item) for item in fields["rejected"]],
                   fields["skipped"], fields["shards"])


@dataclass(frozen=True)
class Summary(CommitPoint):
    """summary.json: what one batch prediction wrote, and the commit point of its output."""

    # UTC, ISO 8601.
    created: str
    input_uri: str
    output_uri: str
    # "predictions-<job id>", relative to output_uri.
    folder: str
    # Shards, relative to the folder.
    files: list[str]
    # Relative to the folder.
    rejected_file: str
    model_name: str
    model_version: str
    # The order of each record's probabilities.
    class_names: list[str]
    format: str
    predicted: int
    # class key -> images it is the most probable class of.
    predicted_by_class: dict[str, int]
    rejected: int
    # The first few {"source": ..., "reason": ...}; `rejected_file` lists them all.
    rejected_first: list[dict[str, str]]
    skipped: int

    @property
    def folder_uri(self) -> str:
        return join(self.output_uri, self.folder)

    def text(self) -> str:
        rows = [{"class": display_name(key), "images": count}
                for key, count in sorted(self.predicted_by_class.items(), key=lambda item: -item[1])]
        lines = [f"predicted {self.predicted} images under {self.input_uri} with {self.model_name}/"
                 f"{self.model_version}; the most probable class of each:", "", table(rows, ["class", "images"]), ""]
        if self.skipped:
            lines.append(f"skipped: {self.skipped} files without an image extension")
        if self.rejected:
            lines.append(f"rejected: {self.rejected} files, all listed in {join(self.folder_uri, self.rejected_file)}; "
                         "the first:")
            lines += [f"  {item['source']}: {item['reason']}" for item in self.rejected_first]
        lines.append(f"predictions: {self.folder_uri} ({len(self.files)} {self.format} files)")
        lines.append(f"summary: {join(self.output_uri, SUMMARY_FILE)}")
        return "\n".join(lines)


def batch_predict(config: Config, input_uri: str, output_uri: str, output_format: str = "jsonl",
                  reference: str | None = None) -> Summary:
    """Predict every image under `input_uri` into `output_uri`; the Summary once it is committed."""
    if output_format not in FORMATS:
        raise BatchPredictError(f"unknown output format '{output_format}': use one of {', '.join(FORMATS)}")
    storage = Storage.from_config(config)
    input_uri, output_uri = canonical(input_uri), canonical(output_uri)
    if next(iter(storage.list(input_uri)), None) is None:
        raise BatchPredictError(f"there is nothing under {input_uri}: give the folder or prefix that holds the images")
    model = load(config, reference)
    storage.ensure_container(output_uri)
    with jobs.staged(storage, output_uri) as staging:
        with jobs.progress_bar(config, "batch-predict", staging.job_id, "image"):
            _run_job(config, model, input_uri, output_uri, output_format, staging)
        outcome = Outcome.from_json(storage.read_text(join(staging.uri, OUTCOME_FILE)))
        if not outcome.predicted:
            raise _nothing_predicted(outcome, input_uri)
        return _commit(storage, outcome, model, input_uri, output_uri, output_format, staging)


class _ListImages(beam.DoFn):
    """Every file under the input: image files go on, with their size; the others are counted."""

    def __init__(self, config: Config, job_id: str):
        self._config = config
        self._job_id = job_id

    def process(self, input_uri: str):
        outcome, images = Outcome(), 0
        for listed in Storage.from_config(self._config).list(input_uri):
            if PurePosixPath(listed.uri).suffix.lower() in IMAGE_EXTENSIONS:
                images += 1
                yield listed.uri, listed.size
            else:
                outcome.skipped += 1
        LOCAL_PROGRESS.listed(self._job_id, images)
        yield beam.pvalue.TaggedOutput(_OUTCOMES, outcome)


class _ReadImages(beam.DoFn):
    """Each image file's bytes, where they pass the checks every prediction's input gets; else its rejection."""

    def __init__(self, config: Config, job_id: str):
        self._config = config
        self._job_id = job_id

    def setup(self):
        self._storage = Storage.from_config(self._config)

    def process(self, listed: tuple[str, int]):
        source, size = listed
        try:
            image = read_checked(self._storage, source, size, self._config.ingest)
            accepted_image(image, self._config.ingest, inputs.SERVED_FORMATS)
        except RejectedImage as rejection:
            yield _rejected(self._job_id, source, str(rejection))
        else:
            yield source, image


def _rejected(job_id: str, source: str, reason: str) -> beam.pvalue.TaggedOutput:
    LOCAL_PROGRESS.processed(job_id)
    return beam.pvalue.TaggedOutput(_OUTCOMES, Outcome(rejected=[(source, reason)]))


class SceneModelHandler(ModelHandler[bytes, PredictionResult, SceneModel]):
    """RunInference's view of a registered model: batches of encoded images in, a probability row (or the reason
    an image cannot be decoded) for each out."""

    def __init__(self, config: Config, reference: str):
        super().__init__(min_batch_size=config.serving.batch_size, max_batch_size=config.serving.batch_size)
        self._config = config
        # NAME/VERSION: every worker loads the same version, even when the alias moves during the job.
        self._reference = reference

    def load_model(self) -> SceneModel:
        return load(self._config, self._reference)

    def run_inference(self, batch: typing.Sequence[bytes], model: SceneModel,
                      inference_args: dict | None = None) -> list[PredictionResult]:
        try:
            return [PredictionResult(image, row) for image, row in zip(batch, model.predict_images(batch))]
        except inputs.INPUT_ERRORS:
            return [_predict_one(model, image) for image in batch]

    def get_num_bytes(self, batch: typing.Sequence[bytes]) -> int:
        return sum(len(image) for image in batch)

    def get_metrics_namespace(self) -> str:
        return "batch_predict"


def _predict_one(model: SceneModel, image: bytes) -> PredictionResult:
    """The image's probabilities, or the reason it cannot be decoded, as text."""
    try:
        return PredictionResult(image, model.predict_images([image], ["the file"])[0])
    except inputs.INPUT_ERRORS as error:
        return PredictionResult(image, str(error))


class _WriteShards(beam.DoFn):
    """Turns each prediction into a record and appends it to this worker's shard, staged when full or at the end
    of the bundle. Its output is what became of each image and shard."""

    def __init__(self, config: Config, model: SceneModel, output_format: str, staging_uri: str, job_id: str):
        self._config = config
        self._model_name, self._model_version = model.name, model.version
        self._class_names = model.class_names
        self._output_format = output_format
        self._staging_uri = staging_uri
        self._job_id = job_id

    def setup(self):
        self._storage = Storage.from_config(self._config)

    def start_bundle(self):
        self._records: list[dict] = []

    def process(self, keyed: tuple[str, PredictionResult]):
        source, result = keyed
        LOCAL_PROGRESS.processed(self._job_id)
        if isinstance(result.inference, str):
            yield Outcome(rejected=[(source, result.inference)])
            return
        best = int(np.argmax(result.inference))
        key = self._class_names[best]
        self._records.append({"source": source, "class": key, "class_display_name": display_name(key),
                              "probability": result.inference[best], "probabilities": result.inference,
                              "model_name": self._model_name, "model_version": self._model_version})
        yield Outcome(predicted=collections.Counter({key: 1}))
        if len(self._records) >= RECORDS_PER_SHARD:
            yield self._stage()

    def finish_bundle(self):
        if self._records:
            yield WindowedValue(self._stage(), GlobalWindow().max_timestamp(), [GlobalWindow()])

    def _stage(self) -> Outcome:
        uri = join(self._staging_uri, "shards", f"{uuid.uuid4().hex}.{self._output_format}")
        self._storage.write_bytes(uri, encode(self._records, self._output_format))
        self._records = []
        return Outcome(shards=[uri])


def encode(records: list[dict], output_format: str) -> bytes:
    """`records` as a JSON lines or Parquet file."""
    if output_format == "jsonl":
        return _json_lines(records)
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [record[name] for record in records] for name in records[0]}
    columns["probability"] = pa.array(columns["probability"], pa.float32())
    columns["probabilities"] = pa.array(columns["probabilities"], pa.list_(pa.float32()))
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _json_lines(items: list[dict]) -> bytes:
    return b"".join(orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
                    for item in items)


def _run_job(config: Config, model: SceneModel, input_uri: str, output_uri: str, output_format: str,
             staging: jobs.Staging) -> None:
    pipeline = beam.Pipeline(options=jobs.pipeline_options(config, jobs.job_name("batch-predict", staging.job_id)))
    listed = (pipeline
              | "Input" >> beam.Create([input_uri])
              | "List files" >> beam.ParDo(_ListImages(config, staging.job_id)).with_outputs(_OUTCOMES, main="images"))
    read = (listed.images
            | "Spread over workers" >> beam.Reshuffle()
            | "Read and check" >> beam.ParDo(_ReadImages(config, staging.job_id))
            .with_outputs(_OUTCOMES, main="images"))
    written = (read.images
               | "Predict" >> RunInference(KeyedModelHandler(SceneModelHandler(config, model.reference)))
               | "Write" >> beam.ParDo(_WriteShards(config, model, output_format, staging.uri, staging.job_id)))
    _ = ((listed[_OUTCOMES], read[_OUTCOMES], written)
         | "All outcomes" >> beam.Flatten()
         | "Sum" >> beam.CombineGlobally(jobs.MergeAll(Outcome))
         | "Write outcome" >> beam.Map(jobs.save_outcome, config, join(staging.uri, OUTCOME_FILE)))
    jobs.run(config, pipeline, job="batch-predict", output_uri=output_uri, error=BatchPredictError)


def _nothing_predicted(outcome: Outcome, input_uri: str) -> BatchPredictError:
    if outcome.rejected:
        first = "; ".join(f"{source}: {reason}" for source, reason in sorted(outcome.rejected)[:3])
        return BatchPredictError(f"none of the {len(outcome.rejected)} image files under {input_uri} could be read, "
                                 f"e.g. {first}")
    return BatchPredictError(f"there are no image files under {input_uri}: none of its {outcome.skipped} files ends "
                             f"in {', '.join(IMAGE_EXTENSIONS)}")


def _commit(storage: Storage, outcome: Outcome, model: SceneModel, input_uri: str, output_uri: str,
            output_format: str, staging: jobs.Staging) -> Summary:
    shards = sorted(outcome.shards)
    copies = [(shard, f"part-{index:05d}-of-{len(shards):05d}.{output_format}") for index, shard in enumerate(shards)]
    rejected = [{"source": source, "reason": reason} for source, reason in sorted(outcome.rejected)]
    rejected_uri = join(staging.uri, REJECTED_FILE)
    storage.write_bytes(rejected_uri, _json_lines(rejected))
    folder = f"predictions-{staging.job_id}"
    jobs.publish(storage, [*copies, (rejected_uri, REJECTED_FILE)], join(output_uri, folder))
    summary = Summary(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        input_uri=input_uri, output_uri=output_uri, model_name=model.name, model_version=model.version,
        class_names=list(model.class_names), format=output_format, predicted=sum(outcome.predicted.values()),
        predicted_by_class=dict(sorted(outcome.predicted.items())), rejected=len(rejected),
        rejected_first=rejected[:SUMMARY_ITEMS], skipped=outcome.skipped, folder=folder,
        files=[name for _, name in copies], rejected_file=REJECTED_FILE)
    previous = _committed_folder(storage, output_uri)
    try:
        storage.write_text(join(output_uri, SUMMARY_FILE), summary.to_json())
    except BaseException:
        jobs.discard(storage, summary.folder_uri)
        raise
    if previous not in (None, folder):
        jobs.discard(storage, join(output_uri, previous))
    return summary


def _committed_folder(storage: Storage, output_uri: str) -> str | None:
    """The folder the summary at `output_uri` names, if there is one."""
    try:
        return json.loads(storage.read_text(join(output_uri, SUMMARY_FILE)))["folder"]
    except (NotFound, ValueError, KeyError, TypeError):
        return None
