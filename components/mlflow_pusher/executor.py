"""The MlflowPusher's decision: a blessed model is registered as the new champion (registry); never an unblessed one."""

from __future__ import annotations

from dataclasses import dataclass

from registry import CHAMPION_ALIAS, Registry

# What the Pusher decided, as JSON in its PushedModel artifact folder (read by the runner and reports).
PUSH_RESULT_FILE = "push_result.json"


@dataclass(frozen=True)
class PushResult:
    pushed: bool
    # models:/<name>/<version> where pushed; otherwise why not.
    destination: str
    reason: str


def push(*, model_uri: str, serving_model_dir: str, blessed: bool, not_blessed_reason: str, tracking_uri: str,
         model_name: str, mlflow_run_id: str, tags: dict[str, str]) -> PushResult:
    """Register `serving_model_dir` under `model_name` with alias champion, logged as artifacts of the run, when
    `blessed`; a model artifact already registered keeps its version (Registry.push)."""
    if not blessed:
        return PushResult(False, "", f"not registered: the model was not blessed ({not_blessed_reason})")
    version = Registry(tracking_uri, model_name).push(model_uri=model_uri, serving_model_dir=serving_model_dir,
                                                      run_id=mlflow_run_id, tags=tags)
    return PushResult(True, f"models:/{model_name}/{version}", f"registered as version {version} of "
                      f"'{model_name}' with alias {CHAMPION_ALIAS}")
