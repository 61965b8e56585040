"""MLflow tracking of pipeline runs: one MLflow run per pipeline run, its params, metrics, tags and artifacts.
The model registry (champion, versions) is registry/'s.

The runner talks to MLflow through MlflowClient only, never the fluent `mlflow.start_run` stack, so
components (the Pusher) can log into the same run from inside the pipeline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from core.config import PROJECT_ROOT, Config, flatten
from core.errors import UserError
from core.services import process_alive

PID_TAG = "places.pid"
HOST_TAG = "places.host"
# Tags that let `./places inspect RUN` find the TFX artifacts of a run: tfx.<node>.<output> = local URI.
ARTIFACT_TAG_PREFIX = "tfx."


class RunNotFound(UserError):
    """The MLflow run asked for does not exist; the message says how to get one or find its id."""


def git_commit() -> str:
    """HEAD of the project checkout, with "-dirty" when files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Tracking:
    def __init__(self, config: Config):
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(config.mlflow_uri)
        self.config = config
        self.client = MlflowClient(config.mlflow_uri)
        experiment = self.client.get_experiment_by_name(config.mlflow.experiment)
        self.experiment_id = (experiment.experiment_id if experiment
                              else self.client.create_experiment(config.mlflow.experiment))

    def run_url(self, run_id: str) -> str:
        return f"{self.config.mlflow_uri}/#/experiments/{self.experiment_id}/runs/{run_id}"

    def end_abandoned_runs(self) -> list[str]:
        """Mark KILLED the runs a killed `./places run` on this machine left RUNNING."""
        ended = []
        for run in self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'"):
            tags = run.data.tags
            if tags.get(HOST_TAG) == socket.gethostname() and not process_alive(int(tags.get(PID_TAG, "0") or 0)):
                self.client.set_terminated(run.info.run_id, status="KILLED")
                ended.append(run.info.run_id)
        return ended

    def start_run(self, manifest_json: str, content_hash: str) -> str:
        run = self.client.create_run(self.experiment_id, tags={
            "git_commit": git_commit(), "content_hash": content_hash, PID_TAG: str(os.getpid()),
            HOST_TAG: socket.gethostname(), "mlflow.source.name": "./places run"})
        run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(key, json.dumps(value) if isinstance(value, (list, tuple)) else str(value))
                  for key, value in flatten(self.config.to_dict()).items()]
        self._log_batch(run_id, params=params)
        self.log_text(run_id, manifest_json, "data/manifest.json")
        self.log_text(run_id, json.dumps(self.config.to_dict(), indent=2), "config.json")
        return run_id

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_files(self, run_id: str, paths: list[Path], artifact_dir: str) -> None:
        for path in paths:
            if path.exists():
                self.client.log_artifact(run_id, str(path), artifact_dir)

    def log_folder(self, run_id: str, folder: Path, artifact_dir: str) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_dir)

    def log_epochs(self, run_id: str, history: list[dict]) -> None:
        """Per-epoch training metrics, one MLflow step per epoch."""
        from mlflow.entities import Metric

        metrics = [Metric(name, float(value), 0, epoch)
                   for epoch, row in enumerate(history, start=1)
                   for name, value in row.items() if isinstance(value, (int, float)) and name != "epoch"]
        self._log_batch(run_id, metrics=metrics)

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        self._log_batch(run_id, metrics=[Metric(name, float(value), 0, 0) for name, value in metrics.items()])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def _log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        """One request per 100 of each, MLflow's limit for params and tags in one log_batch (metrics: 1,000)."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        for start in range(0, max(len(metrics), len(params), len(tags)), 100):
            self.client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100],
                                  tags=tags[start:start + 100])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def last_finished_run(self, content_hash: str):
        """This experiment's newest finished run on the data version `content_hash`, or None."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.content_hash = '{content_hash}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def run(self, run_id: str | None):
        """An MLflow run by id, or this experiment's newest when `run_id` is None."""
        from mlflow.exceptions import MlflowException

        if run_id:
            try:
                return self.client.get_run(run_id)
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                raise RunNotFound(f"MLflow at {self.config.mlflow_uri} has no run '{run_id}': give the id of a run "
                                  f"of experiment '{self.config.mlflow.experiment}' (its runs: "
                                  f"{self.config.mlflow_uri}/#/experiments/{self.experiment_id}), or no id for the "
                                  "newest") from None
        runs = self.client.search_runs([self.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise RunNotFound(f"experiment '{self.config.mlflow.experiment}' at {self.config.mlflow_uri} has no runs "
                              "yet: run `./places run` first")
        return runs[0]
