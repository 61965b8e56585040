"""The TFX pipeline: wiring only. Each component's logic lives in components/<name>/ or in TFX itself.

create_pipeline returns a pipeline object and nothing else, so the same definition runs under
LocalDagRunner with Beam's local runner, or with its Beam work sent to a cluster (config.beam.runner).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tfx import v1 as tfx
from tfx.types import artifact_utils

from components.blob_example_gen.component import BlobExampleGen
from components.evaluator.eval_config import build_eval_config
from components.mlflow_pusher.component import MlflowPusher
from components.trainer.custom_config import to_custom_config
from components.validation_gate.component import DriftCheck, DriftGate, ValidationGate
from core.beam import beam_pipeline_args
from core.config import Config
from data_schema import EVAL_SPLIT, TRAIN_SPLIT

PIPELINE_NAME = "places365-scenes"
TRAINER_RUN_FN = "components.trainer.run_fn.run_fn"


@dataclass(frozen=True)
class PipelineInputs:
    """Facts of this run that the runner resolves before building the pipeline."""
    # The ingestion manifest's content hash: BlobExampleGen's input fingerprint.
    content_hash: str
    # The ingested classes, in label order.
    class_names: tuple[str, ...]
    # data_schema/schema.pbtxt with this class list's domain, written for this run.
    curated_schema_file: str
    # The current champion's SavedModel folder, downloaded from the registry; None before the first push.
    champion_model_dir: str | None
    mlflow_run_id: str
    # The champion's training statistics (StatisticsGen's folder, downloaded from its MLflow run), which the drift
    # check compares this run's with; None without a champion or where its run logged none.
    champion_statistics_dir: str | None = None
    # What those statistics are, e.g. "champion version 3's training data", or why there are none.
    drift_baseline: str = "there is no champion yet"


MYSQL_PASSWORD_ENV = "MLMD_MYSQL_PASSWORD"


def pipeline_root(config: Config) -> str:
    """Where the artifacts go: config.pipeline.root, or the state folder's pipeline/."""
    return config.pipeline.root or str(local_pipeline_folder(config))


def local_pipeline_folder(config: Config) -> Path:
    """This machine's own files of the pipeline: the run lock, curated schemas, the default ML Metadata file."""
    return config.state_dir / "pipeline"


def metadata_connection(config: Config):
    """ML Metadata's connection for config.pipeline.metadata: a sqlite file here, or a MySQL server."""
    from urllib.parse import urlparse

    from ml_metadata.proto import metadata_store_pb2

    from core.config import ConfigError

    if not config.pipeline.metadata:
        return tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(local_pipeline_folder(config) / "metadata.sqlite"))
    address = urlparse(config.pipeline.metadata)
    if address.scheme != "mysql" or not address.hostname or not address.path.strip("/"):
        raise ConfigError(f"pipeline.metadata is '{config.pipeline.metadata}'; leave it empty for sqlite or use "
                          "mysql://USER@HOST:PORT/DATABASE (password in $MLMD_MYSQL_PASSWORD)")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.mysql.host = address.hostname
    connection.mysql.port = address.port or 3306
    connection.mysql.database = address.path.strip("/")
    connection.mysql.user = address.username or ""
    connection.mysql.password = os.environ.get(MYSQL_PASSWORD_ENV, "")
    return connection


def create_pipeline(config: Config, inputs: PipelineInputs) -> tfx.dsl.Pipeline:
    example_gen = BlobExampleGen(examples_uri=config.uri(config.data.examples_uri), content_hash=inputs.content_hash)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    inferred_schema = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    curated_schema = tfx.components.ImportSchemaGen(schema_file=inputs.curated_schema_file)
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=curated_schema.outputs["schema"])
    validation_gate = ValidationGate(anomalies=example_validator.outputs["anomalies"],
                                     schema=curated_schema.outputs["schema"])
    champion_statistics = None
    if inputs.champion_statistics_dir:
        champion_statistics = tfx.dsl.Importer(
            source_uri=inputs.champion_statistics_dir, artifact_type=tfx.types.standard_artifacts.ExampleStatistics,
            properties={"split_names": artifact_utils.encode_split_names([TRAIN_SPLIT, EVAL_SPLIT])},
        ).with_id("champion_statistics")
    drift_check = DriftCheck(statistics=statistics_gen.outputs["statistics"],
                             schema=validation_gate.outputs["validated_schema"], baseline=inputs.drift_baseline,
                             champion_statistics=champion_statistics.outputs["result"] if champion_statistics else None)
    drift_gate = DriftGate(drift=drift_check.outputs["drift"], on_drift=config.pipeline.on_drift)
    trainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        examples=example_gen.outputs["examples"],
        schema=validation_gate.outputs["validated_schema"],
        train_args=tfx.proto.TrainArgs(),
        eval_args=tfx.proto.EvalArgs(),
        custom_config=to_custom_config(config.training, inputs.class_names,
                                       str(config.state_dir / "logs" / "trainer")))
    # An order, not an input: a new champion reruns the drift check, and should not retrain an unchanged model.
    trainer.add_upstream_node(drift_gate)
    components = [example_gen, statistics_gen, inferred_schema, curated_schema, example_validator, validation_gate,
                  *([champion_statistics] if champion_statistics else []), drift_check, drift_gate, trainer]

    champion = None
    if inputs.champion_model_dir:
        champion = tfx.dsl.Importer(source_uri=inputs.champion_model_dir,
                                    artifact_type=tfx.types.standard_artifacts.Model).with_id("champion_model")
        components.append(champion)
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=champion.outputs["result"] if champion else None,
        eval_config=build_eval_config(config.evaluation, with_champion=champion is not None,
                                      num_classes=len(inputs.class_names)))
    pusher = MlflowPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"],
        tracking_uri=config.mlflow_uri,
        model_name=config.mlflow.model_name,
        mlflow_run_id=inputs.mlflow_run_id,
        class_names=json.dumps(list(inputs.class_names)),
        content_hash=inputs.content_hash)
    components += [evaluator, pusher]

    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=pipeline_root(config),
        components=components,
        metadata_connection_config=metadata_connection(config),
        enable_cache=True,
        beam_pipeline_args=beam_pipeline_args(config))
