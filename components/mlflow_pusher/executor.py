"""Register a blessed model in the MLflow Model Registry as the new `champion`; never an unblessed one."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from data_schema import CHANNELS, IMAGE_SIZE

CHAMPION_ALIAS = "champion"
# The model version tag that ties a registry entry to the TFX model artifact it came from.
SOURCE_TAG = "tfx_model_uri"
# What the Pusher decided, as JSON in its PushedModel artifact folder (read by the runner and reports).
PUSH_RESULT_FILE = "push_result.json"
MODEL_CODE = Path(__file__).resolve().parents[2] / "serving" / "mlflow_model.py"


@dataclass(frozen=True)
class PushResult:
    pushed: bool
    # models:/<name>/<version> where pushed; otherwise why not.
    destination: str
    reason: str


def push(*, model_uri: str, serving_model_dir: str, blessed: bool, not_blessed_reason: str, tracking_uri: str,
         model_name: str, mlflow_run_id: str, tags: dict[str, str]) -> PushResult:
    """Register `serving_model_dir` under `model_name` with alias champion, logged as artifacts of the run.

    Idempotent: a model artifact that is already registered (a rerun after a crash, or a cached run) is not
    registered twice; the alias is moved to its existing version.
    """
    if not blessed:
        return PushResult(False, "", f"not registered: the model was not blessed ({not_blessed_reason})")
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    existing = client.search_model_versions(f"name = '{model_name}' and tag.{SOURCE_TAG} = '{model_uri}'")
    if existing:
        version = existing[0].version
    else:
        _log_pyfunc(client, mlflow_run_id, serving_model_dir)
        version = mlflow.register_model(f"runs:/{mlflow_run_id}/model", model_name,
                                        tags={**tags, SOURCE_TAG: model_uri}).version
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
    return PushResult(True, f"models:/{model_name}/{version}", f"registered as version {version} of "
                      f"'{model_name}' with alias {CHAMPION_ALIAS}")


def _log_pyfunc(client, run_id: str, serving_model_dir: str) -> None:
    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from serving.mlflow_model import SAVED_MODEL_ARTIFACT

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, IMAGE_SIZE, IMAGE_SIZE, CHANNELS))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]))
    with tempfile.TemporaryDirectory() as folder:
        mlflow.pyfunc.save_model(path=f"{folder}/model", python_model=str(MODEL_CODE),
                                 artifacts={SAVED_MODEL_ARTIFACT: serving_model_dir}, signature=signature,
                                 pip_requirements=["tensorflow==2.16.2", "mlflow==3.17.2"])
        client.log_artifacts(run_id, f"{folder}/model", "model")
