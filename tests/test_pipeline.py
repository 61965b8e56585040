"""The whole TFX pipeline on small data, against a real Azurite and a real MLflow server.

One module-wide state folder and registry, so the tests run in order like a user's session: the first run
registers a champion, an unchanged rerun is cached and has not drifted from it, an unblessed model is not registered,
an anomaly stops a run before training, so does data of another class mix (drift) when told to, and a run killed
mid-way finishes when run again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import mlflow
import pytest
from mlflow import MlflowClient

from core.config import PROJECT_ROOT, apply
from data_schema import TUTORIAL_CLASSES, display_name, folder_name
from ingestion.job import ingest
from ingestion.upload import upload
from pipeline.inspect_run import inspect_run
from pipeline.report import terminal_summary
from pipeline.runner import run_pipeline
from tests.fixtures import small_pipeline_config

pytestmark = pytest.mark.slow

IMAGES_PER_CLASS = 16


@pytest.fixture(scope="module")
def pipeline_config(mlflow_server, storage, tmp_path_factory):
    """Small, fast settings over a freshly ingested sample of the tutorial's 10 classes."""
    config = small_pipeline_config(mlflow_server, storage, tmp_path_factory.mktemp("pipeline"), "pipeline-e2e",
                                   IMAGES_PER_CLASS)
    ingest(config, config.uri(config.data.raw_images_uri), config.uri(config.data.examples_uri))
    return config


def registry(config):
    client = MlflowClient(config.mlflow_uri)
    versions = client.search_model_versions(f"name = '{config.mlflow.model_name}'")
    champion = client.get_model_version_by_alias(config.mlflow.model_name, "champion") if versions else None
    return client, sorted(int(version.version) for version in versions), champion


def test_first_run_registers_a_champion_and_tracks_everything(pipeline_config):
    printed = []
    result = run_pipeline(pipeline_config, echo=printed.append)

    # The user sees each component finish, those after the Trainer too (saving a model resets absl logging).
    for node in ("StatisticsGen", "Trainer", "Evaluator", "MlflowPusher"):
        assert any(line.strip().startswith(f"{node} done in") for line in printed), printed

    record = result.record
    assert record.outcome == "registered", record.message
    client, versions, champion = registry(pipeline_config)
    assert versions == [1] and champion.version == "1"
    assert champion.tags["pipeline_run"] == record.mlflow_run_id
    assert float(champion.tags["eval_accuracy"]) == pytest.approx(record.evaluation.candidate.accuracy, abs=1e-3)
    assert len(champion.tags["content_hash"]) == 64

    run = client.get_run(record.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["training.epochs"] == "2" and run.data.params["training.model"] == "seed_cnn"
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
    assert set(record.evaluation.candidate.accuracy_by_class) == set(TUTORIAL_CLASSES)
    assert run.data.metrics["eval_accuracy"] == pytest.approx(record.evaluation.candidate.accuracy)
    candidate = record.evaluation.candidate
    assert candidate.accuracy <= candidate.top5_accuracy <= 1.0
    assert run.data.metrics["eval_top5_accuracy"] == pytest.approx(candidate.top5_accuracy)
    assert run.data.metrics["eval_top5_accuracy_gas_station"] == pytest.approx(
        candidate.top5_accuracy_by_class["gas_station"])
    artifacts = {item.path for folder in ("plots", "report", "data")
                 for item in client.list_artifacts(run.info.run_id, folder)}
    assert {"plots/accuracy_vs_epoch.png", "plots/confusion_matrix.png", "report/index.html",
            "data/manifest.json"} <= artifacts
    assert run.data.tags["git_commit"]

    page = result.report.read_text()
    assert "Evaluation by category" in page and "Gas Station" in page and "registered" in page
    assert f"top-5 accuracy <strong>{100 * candidate.top5_accuracy:.1f}%</strong>" in page
    assert (result.report.parent / "confusion_matrix.png").stat().st_size > 5000
    assert "Drift from the champion's data" in page and "No drift check: there is no champion yet." in page

    served = mlflow.pyfunc.load_model(f"models:/{pipeline_config.mlflow.model_name}@champion")
    import numpy as np

    probabilities = served.predict(np.random.default_rng(0).random((2, 128, 128, 3), dtype=np.float32))
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


def test_unchanged_rerun_reuses_cached_components_and_registers_nothing_new(pipeline_config):
    result = run_pipeline(pipeline_config, echo=lambda line: None)

    states = result.record.component_states
    for node in ("BlobExampleGen", "StatisticsGen", "ExampleValidator", "ValidationGate", "Trainer"):
        assert states[node] == "cached", states
    assert result.record.outcome == "registered"
    _, versions, champion = registry(pipeline_config)
    assert versions == [1] and champion.version == "1"
    # The champion was the baseline this time: its accuracy on the same examples is the candidate's.
    assert result.record.evaluation.champion.accuracy == pytest.approx(result.record.evaluation.candidate.accuracy)
    # And its training data, logged in MLflow by the first run, the drift check's: the same data has not drifted.
    page = result.report.read_text()
    assert "No drift past the thresholds from champion version 1&#39;s training data." in page
    drift = {item.feature: item for item in result.record.drift.features}
    assert set(drift) == {"category_name", "height", "width", "brightness"}
    assert drift["category_name"].value == 0 and not any(item.drifted for item in drift.values())
    run = MlflowClient(pipeline_config.mlflow_uri).get_run(result.record.mlflow_run_id)
    assert run.data.metrics["drift_category_name"] == 0


def test_an_unblessed_model_is_not_registered_and_the_run_says_why(pipeline_config):
    config = apply(pipeline_config, {"training.seed": "7", "evaluation.accuracy_floor": "0.999"})
    result = run_pipeline(config, echo=lambda line: None)

    assert result.record.outcome == "not blessed"
    assert "below the floor 0.999" in result.record.message
    _, versions, champion = registry(config)
    assert versions == [1] and champion.version == "1"
    record, _ = inspect_run(config, result.record.mlflow_run_id)
    assert record.outcome == "not blessed" and record.evaluation is not None


def test_an_empty_eval_split_stops_the_run_before_training(pipeline_config, storage):
    config = apply(pipeline_config, {"data.eval_percent": "0", "data.examples_uri":
                                     "azfs://devstoreaccount1/pipeline-e2e/examples-no-eval"})
    ingest(config, config.uri(config.data.raw_images_uri), config.uri(config.data.examples_uri))
    result = run_pipeline(config, echo=lambda line: None)

    assert result.record.outcome == "stopped by data validation"
    assert "anomal" in result.record.message
    assert "Trainer" not in result.record.component_states
    assert [(item.split, item.description) for item in result.record.anomalies] == [
        ("eval", "no examples: the split is empty")]
    client, versions, _ = registry(config)
    assert versions == [1]
    assert client.get_run(result.record.mlflow_run_id).info.status == "FAILED"
    assert "no examples: the split is empty" in result.report.read_text()


def test_data_of_another_class_mix_is_drift_and_stops_the_run_when_told_to(pipeline_config, storage):
    """Every image of two classes but only 4 of each other: two classes are 25 % of the images, not 10 %."""
    images = pipeline_config.state_dir.parent / "images"
    shifted = pipeline_config.state_dir.parent / "images-shifted"
    for index, folder in enumerate(sorted(images.iterdir())):
        (shifted / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:None if index < 2 else 4]:
            shutil.copy(image, shifted / folder.name / image.name)
    container = "azfs://devstoreaccount1/pipeline-e2e"
    config = apply(pipeline_config, {"data.raw_images_uri": f"{container}/raw-shifted",
                                     "data.examples_uri": f"{container}/examples-shifted", "pipeline.on_drift": "stop"})
    upload(storage, shifted, config.uri(config.data.raw_images_uri))
    ingest(config, config.uri(config.data.raw_images_uri), config.uri(config.data.examples_uri))
    printed = []
    result = run_pipeline(config, echo=printed.append)

    record = result.record
    assert record.outcome == "stopped by data validation"
    assert record.message.startswith("the training data drifted from champion version 1's training data in "
                                     "category_name, past the thresholds")
    assert "Trainer" not in record.component_states and record.anomalies == []
    drifted = {item.feature: item for item in record.drift.drifted}
    assert set(drifted) == {"category_name"}
    assert drifted["category_name"].value > drifted["category_name"].threshold == 0.08
    moved_most = {display_name(share.name) for share in record.drift.class_shares[:2]}
    assert moved_most == {display_name(name) for name in sorted(TUTORIAL_CLASSES, key=folder_name)[:2]}
    page = result.report.read_text()
    drift_section = page[page.index("Drift from the champion's data"):page.index("<h2>Training")]
    assert (f'<tr class="drifted"><td>category_name</td><td>L-infinity distance</td>'
            f'<td class="number">{drifted["category_name"].value:.3f}</td>') in drift_section
    assert "the run stopped before training" in drift_section
    assert all(name in drift_section for name in moved_most)
    summary = terminal_summary(record)
    assert f"category_name drifted (L-infinity distance {drifted['category_name'].value:.3f} > 0.08)" in summary
    assert "run again with `--set pipeline.on_drift=warn`" in summary
    client, versions, _ = registry(config)
    assert versions == [1]
    run = client.get_run(record.mlflow_run_id)
    assert run.info.status == "FAILED" and run.data.metrics["drift_category_name"] > 0.08
    assert [item.path for item in client.list_artifacts(run.info.run_id, "tfx/DriftCheck/drift")] == [
        "tfx/DriftCheck/drift/drift.json"]


def test_a_run_killed_during_training_finishes_when_run_again(pipeline_config, tmp_path):
    settings = tmp_path / "places.toml"
    settings.write_text(f'state_dir = "{pipeline_config.state_dir}"\n' + _toml_sections(pipeline_config, seed=11))
    command = [str(PROJECT_ROOT / "places"), "--config", str(settings), "run"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 600
    for line in process.stdout:
        seen.append(line)
        if line.strip().startswith("Trainer ..."):
            time.sleep(3)
            os.killpg(process.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    killed_run = next(line.split()[2].rstrip(":") for line in seen if line.startswith("MLflow run "))

    config = apply(pipeline_config, {"training.seed": "11"})
    result = run_pipeline(config, echo=lambda line: None)

    states = result.record.component_states
    assert states["BlobExampleGen"] == "cached" and states["StatisticsGen"] == "cached"
    assert states["Trainer"] == "ran"
    assert result.record.outcome in ("registered", "not blessed")
    client = MlflowClient(config.mlflow_uri)
    assert client.get_run(killed_run).info.status == "KILLED"


def _toml_sections(config, seed: int) -> str:
    sections = {"storage": {"emulator_port": config.storage.emulator_port},
                "mlflow": {"port": config.mlflow.port, "experiment": config.mlflow.experiment,
                           "model_name": config.mlflow.model_name},
                "data": {"raw_images_uri": config.data.raw_images_uri, "examples_uri": config.data.examples_uri},
                "training": {"model": config.training.model, "epochs": config.training.epochs,
                             "batch_size": config.training.batch_size, "seed": seed},
                "evaluation": {"accuracy_floor": config.evaluation.accuracy_floor}}
    return "\n".join(f"[{name}]\n" + "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())
                     for name, values in sections.items()) + "\n"
