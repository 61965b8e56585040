"""The registry itself: every call of MLflow's model registry API in the project is in this module.

A version is named by a reference: NAME@ALIAS (the champion is NAME@champion) or NAME/VERSION. Versions are
downloaded once into the state folder, so serving, batch prediction and the Evaluator's baseline read them from
disk after the first time.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import typing
from pathlib import Path

from core.config import Config
from core.errors import UserError

CHAMPION_ALIAS = "champion"
# The model version tag that ties a registry entry to the TFX model artifact it came from.
SOURCE_TAG = "tfx_model_uri"
# Under the state folder: one folder per downloaded version, NAME-vVERSION.
DOWNLOAD_FOLDER = "champions"
# Where `./places run` logs StatisticsGen's output among its MLflow run's artifacts (pipeline/runner.py): the
# statistics of the data a registered version was trained on, which drift and skew compare against.
TRAINING_STATISTICS_ARTIFACTS = "tfx/StatisticsGen/statistics"
_REFERENCE = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))$")


class ModelNotFound(UserError):
    """A reference names no registered model version, or is not a reference at all; the message says which
    versions there are, or how to register one, or how to write a reference."""


def parse_reference(reference: str) -> tuple[str, str | None, str | None]:
    """"NAME@alias" or "NAME/version" -> (name, alias, version), one of the last two None."""
    match = _REFERENCE.match(reference.strip())
    if match is None:
        raise ModelNotFound(f"'{reference}' names no registered model: write NAME@ALIAS (e.g. "
                            f"places365-scenes@{CHAMPION_ALIAS}) or NAME/VERSION (e.g. places365-scenes/3)")
    return match["name"], match["alias"], match["version"]


class Registry:
    """The MLflow Model Registry at `tracking_uri`. `model_name` is the model the pipeline pushes and whose
    champion it compares against (mlflow.model_name); `download_dir` is where download() puts versions (from_config:
    the state folder's champions/)."""

    def __init__(self, tracking_uri: str, model_name: str, download_dir: Path | None = None):
        import mlflow
        from mlflow import MlflowClient

        # mlflow.register_model and the artifact downloads read the process-wide tracking URI.
        mlflow.set_tracking_uri(tracking_uri)
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.download_dir = download_dir
        self._client = MlflowClient(tracking_uri)

    @classmethod
    def from_config(cls, config: Config) -> Registry:
        return cls(config.mlflow_uri, config.mlflow.model_name, config.state_dir / DOWNLOAD_FOLDER)

    def push(self, *, model_uri: str, serving_model_dir: str, run_id: str, tags: dict[str, str]) -> str:
        """Register the SavedModel in `serving_model_dir` (of the TFX model artifact at `model_uri`) as a version of
        model_name, logged with the pyfunc flavour as artifacts of MLflow run `run_id`, and move the champion alias
        to it; returns the version.

        Idempotent: a model artifact that is already registered (a rerun after a crash, or a cached run) is not
        registered twice; the alias is moved to its existing version.
        """
        import mlflow

        from registry import flavour

        existing = self._client.search_model_versions(
            f"name = '{self.model_name}' and tag.{SOURCE_TAG} = '{model_uri}'")
        if existing:
            version = existing[0].version
        else:
            with tempfile.TemporaryDirectory() as folder:
                flavour.save(f"{folder}/model", serving_model_dir)
                self._client.log_artifacts(run_id, f"{folder}/model", "model")
            version = mlflow.register_model(f"runs:/{run_id}/model", self.model_name,
                                            tags={**tags, SOURCE_TAG: model_uri}).version
        self._client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, version)
        return str(version)

    def champion(self):
        """model_name's champion (an MLflow ModelVersion), or None before the first push."""
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_model_version_by_alias(self.model_name, CHAMPION_ALIAS)
        except MlflowException as error:
            if not _is_missing(error):
                raise
            return None

    def reference(self, reference: str | None = None) -> str:
        """`reference`, or model_name@champion where it is None."""
        return reference or f"{self.model_name}@{CHAMPION_ALIAS}"

    def find(self, reference: str | None = None):
        """The MLflow ModelVersion that `reference` (default: model_name@champion) names; ModelNotFound says which
        versions and aliases there are instead, or how to register one."""
        from mlflow.exceptions import MlflowException

        reference = self.reference(reference)
        name, alias, version = parse_reference(reference)
        try:
            if alias:
                return self._client.get_model_version_by_alias(name, alias)
            return self._client.get_model_version(name, version)
        except MlflowException as error:
            if not _is_missing(error):
                raise
        known = self.versions(name)
        if not known:
            hint = "register one with `./places run` (a blessed model becomes the champion)"
        else:
            hint = f"its versions are {', '.join(known)}"
            aliases = sorted(self._client.get_registered_model(name).aliases) if alias else []
            if aliases:
                hint += f", its aliases {', '.join(aliases)}"
        raise ModelNotFound(f"the MLflow registry at {self.tracking_uri} has no model {reference}: {hint}")

    def versions(self, name: str | None = None) -> list[str]:
        """The registered versions of `name` (default: model_name), oldest first; none for an unknown model."""
        found = self._client.search_model_versions(f"name = '{name or self.model_name}'")
        return sorted((version.version for version in found), key=int)

    def download(self, version) -> str:
        """The folder of ModelVersion `version` that holds its SavedModel in SERVING_MODEL_DIR, as a TFX model
        artifact does (the flavour's artifacts/), downloaded once into download_dir."""
        import mlflow.artifacts
        from tfx.utils.path_constants import SERVING_MODEL_DIR

        target = self.download_dir / f"{version.name}-v{version.version}"
        if not (target / "artifacts" / SERVING_MODEL_DIR / "saved_model.pb").exists():
            _download_beside(target, lambda staging: mlflow.artifacts.download_artifacts(
                f"models:/{version.name}/{version.version}", dst_path=staging))
        return str(target / "artifacts")

    def training_statistics(self, version) -> str | None:
        """The folder of ModelVersion `version`'s training statistics (StatisticsGen's artifact, Split-train/
        FeatureStats.pb and Split-eval/), downloaded once into download_dir; None where its run logged none."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        target = self.download_dir / f"{version.name}-v{version.version}-statistics"
        if not target.exists():
            try:
                _download_beside(target, lambda staging: mlflow.artifacts.download_artifacts(
                    run_id=version.run_id, artifact_path=TRAINING_STATISTICS_ARTIFACTS, dst_path=staging))
            except (MlflowException, OSError):
                return None
        found = list(target.rglob("Split-train"))
        return str(found[0].parent) if found else None


def _download_beside(target: Path, download: typing.Callable[[str], object]) -> None:
    """`download` into a folder beside `target`, then renamed to it: a broken download never looks like a finished
    one, and leaves nothing behind."""
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        download(str(staging))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def _is_missing(error) -> bool:
    """Whether an MlflowException says the model, version or alias asked for does not exist."""
    return error.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(error).lower()
