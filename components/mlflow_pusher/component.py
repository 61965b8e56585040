"""MlflowPusher: TFX's Pusher for the MLflow Model Registry."""

# No `from __future__ import annotations`: TFX reads these type hints as objects to build the component.

import dataclasses
import json
import os

from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types.standard_artifacts import Model, ModelBlessing, ModelEvaluation, PushedModel
from tfx.utils import path_utils

from components.evaluator.results import read_evaluation
from components.mlflow_pusher.executor import PUSH_RESULT_FILE, push


@tfx.dsl.components.component
def MlflowPusher(model: tfx.dsl.components.InputArtifact[Model],
                 model_blessing: tfx.dsl.components.InputArtifact[ModelBlessing],
                 evaluation: tfx.dsl.components.InputArtifact[ModelEvaluation],
                 pushed_model: tfx.dsl.components.OutputArtifact[PushedModel],
                 tracking_uri: tfx.dsl.components.Parameter[str],
                 model_name: tfx.dsl.components.Parameter[str],
                 mlflow_run_id: tfx.dsl.components.Parameter[str],
                 class_names: tfx.dsl.components.Parameter[str],
                 content_hash: tfx.dsl.components.Parameter[str]) -> None:
    """Registers `model` when `model_blessing` says blessed; records on `pushed_model` what happened and why."""
    summary = read_evaluation(evaluation.uri)
    tags = {"pipeline_run": mlflow_run_id, "content_hash": content_hash,
            "eval_accuracy": f"{summary.candidate.accuracy:.4f}", "eval_examples": str(summary.candidate.examples),
            "classes": class_names}
    result = push(model_uri=model.uri, serving_model_dir=path_utils.serving_model_path(model.uri),
                  blessed=bool(model_blessing.get_int_custom_property("blessed")),
                  not_blessed_reason="; ".join(summary.failures) or "see the evaluation", tracking_uri=tracking_uri,
                  model_name=model_name, mlflow_run_id=mlflow_run_id, tags=tags)
    fileio.makedirs(pushed_model.uri)
    with fileio.open(os.path.join(pushed_model.uri, PUSH_RESULT_FILE), "w") as written:
        written.write(json.dumps(dataclasses.asdict(result)))
    pushed_model.set_int_custom_property("pushed", int(result.pushed))
    pushed_model.set_string_custom_property("pushed_destination", result.destination)
    pushed_model.set_string_custom_property("reason", result.reason)
