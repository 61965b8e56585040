"""`./places retrain-if-needed`: for cron or any scheduler, one step of keeping the model fresh.

  1. ingest what is new at data.raw_images_uri, incrementally (a full ingest where nothing is ingested yet)
  2. compare the ingested version with the data the champion was trained on (its model version's content_hash):
       no champion                                          -> train the first one
       the same version                                     -> nothing new
       a version the last run trained on, not blessed       -> nothing new (the same data gives the same model)
       at least pipeline.retrain_min_new_images new images  -> retrain
       fewer, but they drifted from the champion's data     -> retrain
       fewer, and no drift                                  -> wait for more
  3. retrain: `./places run`; a blessed model becomes the champion, and a `./places serve` that serves the champion
     alias loads it at its next look at the registry (serving.reload_s).

The drift of a few new images is measured on those images alone, against the champion's training statistics and
with the curated schema's drift thresholds, as the validation gate measures a whole run's data.
"""

from __future__ import annotations

import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path

from components.validation_gate.drift import DriftResult, compare, read_split_statistics
from core.config import Config, apply
from core.storage import Storage, join
from data_schema import TRAIN_SPLIT, curated_schema
from ingestion import incremental
from ingestion.job import ingest
from ingestion.manifest import MANIFEST_FILE, Manifest
from pipeline.runner import RunResult, run_pipeline
from pipeline.tracking import Tracking
from registry import Registry

# Below this many new images a drift measure says more about chance than about the data: with 10 equally common
# classes, some class's share moves past the class mix's threshold (0.08, data_schema/schema.pbtxt) by chance alone
# one time in four among 50 images, one time in twenty among 100, one time in five hundred among 200.
DRIFT_MIN_IMAGES = 200


@dataclass(frozen=True)
class Decision:
    retrain: bool
    # One line for the person or the scheduler's log.
    reason: str
    new_images: int = 0
    drift: DriftResult | None = None


@dataclass(frozen=True)
class RetrainOutcome:
    manifest: Manifest
    decision: Decision
    # None where it did not retrain.
    run: RunResult | None = None


def retrain_if_needed(config: Config, echo: typing.Callable[[str], None] = print) -> RetrainOutcome:
    storage = Storage.from_config(config)
    raw_images, examples = config.uri(config.data.raw_images_uri), config.uri(config.data.examples_uri)
    grows = storage.exists(join(examples, MANIFEST_FILE))
    echo(f"ingesting {'what is new at' if grows else 'everything at'} {raw_images} into {examples}")
    manifest = ingest(config, raw_images, examples, incremental_ingest=grows)
    echo(manifest.summary())
    decision = decide(config, storage, manifest)
    echo(f"\n{'retraining' if decision.retrain else 'not retraining'}: {decision.reason}")
    if not decision.retrain:
        return RetrainOutcome(manifest, decision)
    return RetrainOutcome(manifest, decision, run_pipeline(config, echo))


def decide(config: Config, storage: Storage, manifest: Manifest) -> Decision:
    """Whether the data at `manifest` is worth a new model, and why."""
    registry = Registry.from_config(config)
    champion = registry.champion()
    if champion is None:
        return Decision(True, f"there is no champion of {config.mlflow.model_name} yet: training the first one on "
                              f"{manifest.total} images", manifest.total)
    name = f"champion version {champion.version}"
    trained_on = champion.tags.get("content_hash", "")
    if trained_on == manifest.content_hash:
        return Decision(False, f"nothing new: {name} was trained on this data (content hash {trained_on[:16]})")
    last_run = Tracking(config).last_finished_run(manifest.content_hash)
    if last_run is not None:
        return Decision(False, f"nothing new since MLflow run {last_run.info.run_id} trained on this data "
                               f"(content hash {manifest.content_hash[:16]}): "
                               f"{last_run.data.tags.get('outcome_message') or last_run.data.tags.get('outcome')}; "
                               f"{name} stays. `./places run` trains on it again")
    before_shards = incremental.version_shards(storage, manifest.output_uri, trained_on) if trained_on else None
    before = incremental.version_sources(storage, manifest.output_uri, before_shards) if before_shards else None
    if before is None:
        return Decision(True, f"the data {name} was trained on (content hash {trained_on[:16] or 'unknown'}) is not "
                              f"at {manifest.output_uri} to compare with: retraining on all {manifest.total} images",
                        manifest.total)
    now = incremental.version_sources(storage, manifest.output_uri, manifest.shard_paths()) or set()
    new_images = len(now - before)
    threshold = config.pipeline.retrain_min_new_images
    if new_images >= threshold:
        return Decision(True, f"{new_images} new or changed images since {name}'s data, at least "
                              f"pipeline.retrain_min_new_images ({threshold})", new_images)
    if not new_images:
        return Decision(False, f"no new or changed images since {name}'s data ({len(before - now)} removed)")
    fewer = f"{new_images} new or changed images since {name}'s data, fewer than pipeline.retrain_min_new_images " \
            f"({threshold})"
    if new_images < DRIFT_MIN_IMAGES:
        return Decision(False, f"{fewer}; too few to measure drift on (at least {DRIFT_MIN_IMAGES})", new_images)
    statistics_dir = registry.training_statistics(champion)
    if statistics_dir is None:
        return Decision(False, f"{fewer}; {name}'s run logged no training statistics to measure drift against",
                        new_images)
    new_shards = sorted(set(manifest.shard_paths()) - set(before_shards))
    drift = compare(_statistics(config, storage, manifest.output_uri, new_shards),
                    read_split_statistics(statistics_dir, TRAIN_SPLIT), curated_schema(tuple(manifest.classes)),
                    f"{name}'s training data")
    if drift.drifted:
        moved = "; ".join(f"{item.feature} {item.measure} {item.value:.3f} > {item.threshold:g}"
                          for item in drift.drifted)
        return Decision(True, f"{fewer}, but they drifted from {name}'s training data: {moved}", new_images, drift)
    largest = max(drift.features, key=lambda item: item.value / item.threshold, default=None)
    closest = f" (closest: {largest.feature} {largest.value:.3f} of {largest.threshold:g})" if largest else ""
    return Decision(False, f"{fewer}, and they have not drifted from {name}'s training data{closest}", new_images,
                    drift)


def _statistics(config: Config, storage: Storage, output_uri: str, shards: list[str]):
    """TFDV statistics of the records in `shards`, computed here with Beam's local runner: they are few."""
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    from core.beam import beam_pipeline_args

    with tempfile.TemporaryDirectory(prefix="places-new-images-") as folder:
        for index, shard in enumerate(shards):
            Path(folder, f"{index:05d}.tfrecord.gz").write_bytes(storage.read_bytes(join(output_uri, shard)))
        options = PipelineOptions(beam_pipeline_args(apply(config, {"beam.runner": "local"})))
        return tfdv.generate_statistics_from_tfrecord(f"{folder}/*.tfrecord.gz", pipeline_options=options)
