"""`./places retrain-if-needed` against a real Azurite, MLflow server and TFX pipeline, as a scheduler would call it:
the first call ingests and trains the first champion, the next finds nothing new, a few new images are not worth a
model, and new images of another class mix are, because they drifted."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from cli.main import main as places
from core.config import apply
from core.storage import Storage
from ingestion.job import ingest
from ingestion.upload import upload
from pipeline.retraining import DRIFT_MIN_IMAGES, decide, retrain_if_needed
from registry import Registry
from sample_data import generate
from tests.champion import cli_environment
from tests.fixtures import small_pipeline_config

pytestmark = pytest.mark.slow

IMAGES_PER_CLASS = 16
ARRIVING_LATER = 5


@pytest.fixture(scope="module")
def scheduled(mlflow_server, storage, tmp_path_factory):
    """Raw images in blob storage, nothing ingested or trained yet; ARRIVING_LATER of them held back."""
    root = tmp_path_factory.mktemp("retrain")
    config = small_pipeline_config(mlflow_server, storage, root, "retrain", IMAGES_PER_CLASS, {
        "training.epochs": "1", "pipeline.retrain_min_new_images": "20"})
    images, later = root / "images", root / "later"
    for path in sorted(path for path in images.rglob("*") if path.is_file())[::31][:ARRIVING_LATER]:
        (later / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.move(path, later / path.parent.name / path.name)
    upload(storage, images, config.uri(config.data.raw_images_uri), mirror=True)
    return config, storage, images, later


def test_the_first_call_ingests_and_trains_the_first_champion(scheduled):
    config, _, _, _ = scheduled
    lines = []
    outcome = retrain_if_needed(config, echo=lines.append)
    assert outcome.decision.retrain
    assert "there is no champion of retrain-scenes yet" in outcome.decision.reason
    assert outcome.run is not None and outcome.run.registered
    champion = Registry.from_config(config).champion()
    assert champion.version == "1" and champion.tags["content_hash"] == outcome.manifest.content_hash
    assert any(line.startswith("\nretraining: there is no champion") for line in lines)


def test_the_next_call_says_there_is_nothing_new(scheduled):
    config, _, _, _ = scheduled
    result = CliRunner().invoke(places, [
        "--set", f"data.raw_images_uri={config.data.raw_images_uri}",
        "--set", f"data.examples_uri={config.data.examples_uri}", "--set", "mlflow.experiment=retrain",
        "retrain-if-needed"], env=cli_environment(config))
    assert result.exit_code == 0, result.output
    assert "not retraining: nothing new: champion version 1 was trained on this data" in result.output
    assert Registry.from_config(config).versions() == ["1"]


def test_a_few_new_images_are_ingested_but_not_worth_a_model(scheduled):
    config, storage, images, later = scheduled
    shutil.copytree(later, images, dirs_exist_ok=True)
    upload(storage, images, config.uri(config.data.raw_images_uri))
    outcome = retrain_if_needed(config, echo=lambda line: None)
    assert outcome.manifest.incremental["converted"] == ARRIVING_LATER
    assert not outcome.decision.retrain and outcome.run is None
    assert outcome.decision.reason.startswith(f"{ARRIVING_LATER} new or changed images since champion version 1's "
                                              "data, fewer than pipeline.retrain_min_new_images (20)")


def test_new_images_of_another_class_mix_drift_and_call_for_a_model(scheduled, tmp_path):
    config, storage, images, _ = scheduled
    generate(tmp_path, ("fountain", "glacier"), DRIFT_MIN_IMAGES // 2 + 10, "folders", seed=6)
    arriving = [path for path in tmp_path.rglob("*") if path.is_file()]
    for path in arriving:
        (images / path.parent.name / f"later_{path.name}").write_bytes(path.read_bytes())
    upload(storage, images, config.uri(config.data.raw_images_uri))
    manifest = ingest(config, config.uri(config.data.raw_images_uri), config.uri(config.data.examples_uri),
                      incremental_ingest=True)
    decision = decide(apply(config, {"pipeline.retrain_min_new_images": "1000"}), Storage.from_config(config),
                      manifest)
    # The images of the call before are new since the champion's data too.
    assert decision.retrain and decision.new_images == len(arriving) + ARRIVING_LATER
    assert "but they drifted from champion version 1's training data: category_name" in decision.reason
    moved = {share.name: share for share in decision.drift.class_shares}
    assert moved["fountain"].share > 0.4 and moved["fountain"].champion_share == pytest.approx(0.1, abs=0.02)
    assert moved["igloo"].share < 0.05


def test_data_whose_model_was_not_blessed_is_not_trained_on_again(scheduled):
    config, _, _, _ = scheduled
    unreachable = apply(config, {"evaluation.accuracy_floor": "1.0"})
    first = retrain_if_needed(unreachable, echo=lambda line: None)
    assert first.decision.retrain and first.run is not None and not first.run.registered
    again = retrain_if_needed(unreachable, echo=lambda line: None)
    assert not again.decision.retrain and again.run is None
    assert again.decision.reason.startswith(f"nothing new since MLflow run {first.run.record.mlflow_run_id} trained "
                                            "on this data")
    assert "was not blessed" in again.decision.reason and again.decision.reason.endswith(
        "champion version 1 stays. `./places run` trains on it again")
    assert Registry.from_config(config).versions() == ["1"]
