"""`./places run`: resolve this run's inputs, run the pipeline with TFX's LocalDagRunner, track it in MLflow.

Components run one after another in this process; their Beam work goes where config.beam.runner says
(Beam's in-process runner by default, a cluster's job service otherwise). ML Metadata lives in sqlite
under the state folder, so unchanged inputs reuse cached component outputs and a killed run, run again,
picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import time
import typing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from components.trainer import HISTORY_FILE
from components.validation_gate.executor import DataValidationFailed
from core import cluster
from core.beam import FLINK
from core.config import Config
from core.errors import UserError
from core.storage import Storage
from data_schema import curated_schema, resolve_classes
from ingestion.manifest import read_manifest
from pipeline.pipeline import PipelineInputs, create_pipeline, local_pipeline_folder, metadata_connection
from pipeline.report import ACCURACY_PLOT, CONFUSION_PLOT, RunRecord, collect, write_report
from pipeline.run_outputs import latest_run
from pipeline.tracking import ARTIFACT_TAG_PREFIX, Tracking
from registry import Registry


class PipelineError(UserError):
    """The pipeline cannot start; the message says what to do."""


@dataclass(frozen=True)
class RunResult:
    record: RunRecord
    report: Path

    @property
    def registered(self) -> bool:
        return self.record.outcome == "registered"


def write_curated_schema(config: Config, classes: tuple[str, ...]) -> str:
    """The curated schema for `classes` as a file whose name changes with its content (so caching sees it)."""
    from google.protobuf import text_format

    text = text_format.MessageToString(curated_schema(classes))
    folder = local_pipeline_folder(config) / "curated-schemas" / hashlib.sha256(text.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "schema.pbtxt"
    if not path.exists():
        path.with_suffix(".tmp").write_text(text)
        path.with_suffix(".tmp").replace(path)
    return str(path)


@contextlib.contextmanager
def exclusive_run(config: Config):
    """One pipeline run at a time per state folder: two would interleave their ML Metadata."""
    local_pipeline_folder(config).mkdir(parents=True, exist_ok=True)
    with open(local_pipeline_folder(config) / ".run.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(f"another `./places run` is using {local_pipeline_folder(config)}; "
                                "wait for it to finish") from None
        yield


class _ComponentProgress(logging.Handler):
    """Turns TFX's launcher log lines into one line per component: ran, cached, or failed."""

    def __init__(self, echo: typing.Callable[[str], None]):
        super().__init__(logging.INFO)
        self.echo = echo
        self.started: dict[str, float] = {}
        self.cached = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Component ") and message.endswith(" is running."):
            node = message[len("Component "):-len(" is running.")]
            self.started[node], self.cached = time.monotonic(), False
            self.echo(f"  {node} ...")
        elif message.startswith("A cached execution"):
            self.cached = True
        elif message.startswith("Component ") and message.endswith(" is finished."):
            node = message[len("Component "):-len(" is finished.")]
            took = time.monotonic() - self.started.get(node, time.monotonic())
            self.echo(f"  {node} {'cached' if self.cached else f'done in {took:.1f} s'}")


@contextlib.contextmanager
def component_progress(echo: typing.Callable[[str], None]):
    from absl import logging as absl_logging

    handler = _ComponentProgress(echo)
    tfx_logger = absl_logging.get_absl_logger()
    previous_verbosity = absl_logging.get_verbosity()
    tfx_logger.addHandler(handler)
    # Through absl's verbosity flag, not Logger.setLevel: saving a SavedModel (the Trainer) sets the level
    # back to that flag's value, which would silence every component after the Trainer.
    absl_logging.set_verbosity(absl_logging.INFO)
    # Only our handler should see TFX's INFO lines; the root handler keeps showing warnings and errors.
    quiet = _AtLeast(logging.WARNING)
    for root_handler in logging.getLogger().handlers:
        root_handler.addFilter(quiet)
    try:
        yield
    finally:
        tfx_logger.removeHandler(handler)
        absl_logging.set_verbosity(previous_verbosity)
        for root_handler in logging.getLogger().handlers:
            root_handler.removeFilter(quiet)


class _AtLeast(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def run_pipeline(config: Config, echo: typing.Callable[[str], None] = print) -> RunResult:
    """Run the whole pipeline once; returns what happened and where the report is."""
    from tfx import v1 as tfx

    with exclusive_run(config):
        if config.beam.runner == FLINK:
            cluster.require_running(config)
        examples_uri = config.uri(config.data.examples_uri)
        manifest = read_manifest(Storage.from_config(config), examples_uri)
        configured = resolve_classes(config.data.classes)
        if tuple(manifest.classes) != configured:
            raise PipelineError(
                f"the examples at {examples_uri} were ingested for {len(manifest.classes)} classes "
                f"({', '.join(manifest.classes[:5])}...), but data.classes names {len(configured)} "
                f"({', '.join(configured[:5])}...): ingest again with the configured classes, or set data.classes")
        tracking = Tracking(config)
        for run_id in tracking.end_abandoned_runs():
            echo(f"marked MLflow run {run_id} KILLED: the `./places run` that started it is gone")
        run_id = tracking.start_run(manifest.to_json(), manifest.content_hash)
        echo(f"MLflow run {run_id}: {tracking.run_url(run_id)}")
        registry = Registry.from_config(config)
        champion = registry.champion()
        champion_statistics = registry.training_statistics(champion) if champion else None
        inputs = PipelineInputs(
            content_hash=manifest.content_hash,
            class_names=tuple(manifest.classes),
            curated_schema_file=write_curated_schema(config, tuple(manifest.classes)),
            champion_model_dir=registry.download(champion) if champion else None,
            mlflow_run_id=run_id,
            champion_statistics_dir=champion_statistics,
            drift_baseline=_drift_baseline(champion, champion_statistics))
        champion_line = f"version {champion.version}" if champion else "none yet (the first blessed model becomes it)"
        echo(f"champion: {champion_line}")
        started, started_at = time.monotonic(), datetime.now(timezone.utc)
        stopped_by: DataValidationFailed | None = None
        try:
            with component_progress(echo):
                tfx.orchestration.LocalDagRunner().run(create_pipeline(config, inputs))
        except DataValidationFailed as failure:
            stopped_by = failure
        except KeyboardInterrupt:
            tracking.finish(run_id, "KILLED")
            raise
        except Exception as failure:
            tracking.finish(run_id, "FAILED")
            if config.beam.runner == FLINK and "failed in state" in str(failure):
                what = cluster.job_failed(config, "a component's Beam job", failure)
                raise PipelineError(f"{what}. Run again when the cause is fixed: finished components are "
                                    "reused") from None
            raise
        tfx_run_id, states, outputs = latest_run(metadata_connection(config))
        record = RunRecord(
            mlflow_run_id=run_id, run_url=tracking.run_url(run_id),
            started=started_at.isoformat(timespec="seconds"), outcome="", message="",
            class_names=list(manifest.classes), component_states=states,
            settings=_settings(config, manifest, champion, tfx_run_id, time.monotonic() - started))
        collect(outputs, record)
        _decide_outcome(record, stopped_by)
        report = write_report(record, config.state_dir / "reports" / run_id)
        _track(tracking, run_id, record, outputs, report.parent, tfx_run_id)
        tracking.finish(run_id, "FAILED" if stopped_by else "FINISHED")
        return RunResult(record, report)


def _drift_baseline(champion, champion_statistics: str | None) -> str:
    """What the drift check compares with, or why it has nothing."""
    if champion is None:
        return "there is no champion yet"
    if champion_statistics is None:
        return f"champion version {champion.version}'s MLflow run logged no training statistics"
    return f"champion version {champion.version}'s training data"


def _settings(config: Config, manifest, champion, tfx_run_id: str, seconds: float) -> dict[str, str]:
    from pipeline.tracking import git_commit

    return {"model": config.training.model, "epochs": str(config.training.epochs),
            "batch size": f"{config.training.batch_size} per replica",
            "trainer workers": str(config.training.workers), "examples": manifest.data_uri,
            "content hash": manifest.content_hash[:16], "classes": str(len(manifest.classes)),
            "accuracy floor": str(config.evaluation.accuracy_floor),
            "blessing metric": config.evaluation.blessing_metric, "on drift": config.pipeline.on_drift,
            "champion before this run": f"version {champion.version}" if champion else "none",
            "TFX run": tfx_run_id, "git commit": git_commit(), "wall time": f"{seconds:.1f} s"}


def _decide_outcome(record: RunRecord, stopped_by: DataValidationFailed | None) -> None:
    if stopped_by is not None:
        record.outcome = "stopped by data validation"
        record.message = str(stopped_by).splitlines()[0]
    elif record.push and record.push["pushed"]:
        record.outcome = "registered"
        record.message = record.push["reason"]
    else:
        record.outcome = "not blessed"
        record.message = record.push["reason"] if record.push else "the model was not pushed"


def _track(tracking: Tracking, run_id: str, record: RunRecord, outputs: dict, report_folder: Path,
           tfx_run_id: str) -> None:
    """Everything a person wants in the MLflow run: epochs, plots, evaluation, reports, artifact locations."""
    if record.history:
        tracking.log_epochs(run_id, record.history)
    if record.evaluation:
        candidate, champion = record.evaluation.candidate, record.evaluation.champion
        metrics = {"eval_accuracy": candidate.accuracy, "eval_top5_accuracy": candidate.top5_accuracy,
                   "eval_examples": candidate.examples,
                   "champion_eval_accuracy": champion.accuracy if champion else None,
                   "champion_eval_top5_accuracy": champion.top5_accuracy if champion else None}
        for prefix, by_class in (("eval_accuracy", candidate.accuracy_by_class),
                                 ("eval_top5_accuracy", candidate.top5_accuracy_by_class)):
            # MLflow metric names take no "/": "bakery/shop" is logged as eval_accuracy_bakery_shop.
            metrics.update({f"{prefix}_{name.replace('/', '_')}": value for name, value in by_class.items()})
        # None: top-5 with 5 classes or fewer, or no champion.
        tracking.log_metrics(run_id, {name: value for name, value in metrics.items() if value is not None})
    if record.drift and record.drift.features:
        # drift_category_name, drift_brightness, ...: the measured value, whose threshold the report shows.
        tracking.log_metrics(run_id, {f"drift_{item.feature}": item.value for item in record.drift.features})
    model_run = outputs.get("Trainer", {}).get("model_run")
    if model_run:
        tracking.log_files(run_id, [Path(model_run) / HISTORY_FILE], "training")
    tracking.log_files(run_id, [report_folder / name for name in (ACCURACY_PLOT, CONFUSION_PLOT)
                                if (report_folder / name).exists()], "plots")
    tracking.log_folder(run_id, report_folder, "report")
    for node, artifacts in outputs.items():
        for key in ("anomalies", "drift", "evaluation", "statistics"):
            if key in artifacts:
                tracking.log_folder(run_id, Path(artifacts[key]), f"tfx/{node}/{key}")
    tracking.set_tags(run_id, {"outcome": record.outcome, "outcome_message": record.message[:4000],
                               "tfx_run_id": tfx_run_id, "settings": json.dumps(record.settings),
                               "component_states": json.dumps(record.component_states),
                               **{f"{ARTIFACT_TAG_PREFIX}{node}.{key}": uri
                                  for node, artifacts in outputs.items() for key, uri in artifacts.items()}})
