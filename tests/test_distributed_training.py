"""`./places run --workers 2`: the whole pipeline with the Trainer on two worker processes of this machine
(MultiWorkerMirroredStrategy), against a real Azurite and a real MLflow server."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from cli.main import main as places
from components.trainer.launcher import WORKER_TAG
from core.config import apply
from data_schema import TUTORIAL_CLASSES
from ingestion.job import ingest
from ingestion.upload import upload
from sample_data import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ingested(mlflow_server, storage, tmp_path_factory):
    """The tutorial's 10 classes, 16 sample images each, ingested into shards of at most 40 images, so that the
    train split has more shard files than there are workers."""
    root = tmp_path_factory.mktemp("workers")
    container = "azfs://devstoreaccount1/workers-e2e"
    config = apply(mlflow_server, {
        "state_dir": str(root / "state"), "ingest.images_per_shard": "40",
        "data.raw_images_uri": f"{container}/raw", "data.examples_uri": f"{container}/examples",
        "mlflow.experiment": "workers-e2e", "mlflow.model_name": "workers-e2e-scenes"})
    generate(root / "images", TUTORIAL_CLASSES, 16, "folders", seed=9)
    upload(storage, root / "images", config.uri(config.data.raw_images_uri))
    ingest(config, config.uri(config.data.raw_images_uri), config.uri(config.data.examples_uri))
    return config


def test_run_with_two_workers_trains_on_disjoint_shards_and_registers_the_chiefs_model(ingested):
    environment = {"PLACES_STATE_DIR": str(ingested.state_dir),
                   "PLACES_STORAGE__EMULATOR_PORT": str(ingested.storage.emulator_port),
                   "PLACES_MLFLOW__PORT": str(ingested.mlflow.port),
                   "PLACES_MLFLOW__EXPERIMENT": ingested.mlflow.experiment,
                   "PLACES_MLFLOW__MODEL_NAME": ingested.mlflow.model_name,
                   "PLACES_DATA__RAW_IMAGES_URI": ingested.data.raw_images_uri,
                   "PLACES_DATA__EXAMPLES_URI": ingested.data.examples_uri}
    result = CliRunner().invoke(places, ["--set", "training.batch_size=8", "run", "--workers", "2", "--model",
                                         "seed_cnn", "--epochs", "2", "--accuracy-floor", "0"], env=environment)

    assert result.exit_code == 0, result.output
    assert "registered" in result.output
    [log_dir] = (ingested.state_dir / "logs" / "trainer").iterdir()
    chief_log, worker_log = ((log_dir / f"worker-{index}.log").read_text() for index in range(2))
    assert f"{WORKER_TAG} 0 of 2" in chief_log and f"{WORKER_TAG} 1 of 2" in worker_log
    read = [re.search(r"reads train (\d+) of (\d+) shards: (.*)", log).groups() for log in (chief_log, worker_log)]
    files = [set(names.split(", ")) for _, _, names in read]
    all_shards = int(read[0][1])
    assert all_shards >= 2 and not files[0] & files[1] and len(files[0] | files[1]) == all_shards
    # The user saw the chief's epochs as they ended.
    assert "epoch 2/2: " in result.output and "MultiWorkerMirroredStrategy cluster, 2 replicas" in result.output

    client = MlflowClient(ingested.mlflow_uri)
    champion = client.get_model_version_by_alias(ingested.mlflow.model_name, "champion")
    run = client.get_run(champion.tags["pipeline_run"])
    assert run.data.params["training.workers"] == "2"
    # The run's training curve is the chief's: its epoch lines and the history MLflow was given agree.
    chief_val_accuracy = [float(value) for value in re.findall(r"trainer: epoch \d+/2: \d+ steps in .* "
                                                               r"val_accuracy ([\d.]+)", chief_log)]
    logged = [metric.value for metric in sorted(client.get_metric_history(run.info.run_id, "val_accuracy"),
                                                key=lambda metric: metric.step)]
    assert [round(value, 4) for value in logged] == chief_val_accuracy
    assert "the chief's are the result" in worker_log
    assert json.loads((log_dir / "job.json").read_text())["custom_config"]["workers"] == 2
