"""The MlflowPusher's executor against the real MLflow server of tests/fixtures.py: a blessed model is registered
and becomes the champion, one that is not blessed is not registered and the champion stays."""

from __future__ import annotations

import shutil
import uuid

import mlflow.pyfunc
import numpy as np
import pytest
from tfx.utils.path_constants import SERVING_MODEL_DIR

from components.mlflow_pusher.executor import PushResult, push
from components.trainer.export import export
from core.config import Config
from data_schema import TUTORIAL_CLASSES
from pipeline.tracking import Tracking
from registry import CHAMPION_ALIAS, SOURCE_TAG, ModelNotFound, Registry
from registry.flavour import PlacesSceneModel
from tests.champion import small_model

# Every test pushes to the test MLflow server.
pytestmark = pytest.mark.services

NOT_BLESSED_REASON = "top1 0.412 is below the accuracy floor 0.5"


@pytest.fixture(scope="module")
def model_artifacts(tmp_path_factory) -> tuple[str, str]:
    """Two TFX model artifact folders, each holding the same small SavedModel in Format-Serving, as the Trainer
    writes them."""
    first, second = tmp_path_factory.mktemp("model-1"), tmp_path_factory.mktemp("model-2")
    export(small_model(), list(TUTORIAL_CLASSES), str(first / SERVING_MODEL_DIR))
    shutil.copytree(first / SERVING_MODEL_DIR, second / SERVING_MODEL_DIR)
    return str(first), str(second)


@pytest.fixture
def registry(mlflow_server: Config) -> Registry:
    """The test MLflow server's registry, for a model name no other test pushes to."""
    return Registry(mlflow_server.mlflow_uri, f"pusher-tests-{uuid.uuid4().hex[:8]}")


def pushed(config: Config, registry: Registry, model_uri: str, blessed: bool) -> PushResult:
    """The executor's push of the model artifact at `model_uri` into `registry`, from an MLflow run of its own, as
    in a pipeline run."""
    tracking = Tracking(config)
    run_id = tracking.client.create_run(tracking.experiment_id).info.run_id
    result = push(model_uri=model_uri, serving_model_dir=f"{model_uri}/{SERVING_MODEL_DIR}", blessed=blessed,
                  not_blessed_reason=NOT_BLESSED_REASON, tracking_uri=registry.tracking_uri,
                  model_name=registry.model_name, mlflow_run_id=run_id, tags={"pipeline_run": run_id})
    tracking.finish(run_id)
    return result


def test_a_blessed_model_is_registered_and_becomes_the_champion(mlflow_server, registry, model_artifacts):
    assert registry.champion() is None

    result = pushed(mlflow_server, registry, model_artifacts[0], blessed=True)

    assert result == PushResult(True, f"models:/{registry.model_name}/1",
                                f"registered as version 1 of '{registry.model_name}' with alias {CHAMPION_ALIAS}")
    champion = registry.champion()
    assert champion.version == "1" and registry.versions() == ["1"]
    assert champion.tags[SOURCE_TAG] == model_artifacts[0] and champion.tags["pipeline_run"] == champion.run_id
    # MLflow loads the flavour by its module name: no file of code travels with the version.
    loaded = mlflow.pyfunc.load_model(f"models:/{registry.model_name}@{CHAMPION_ALIAS}")
    assert type(loaded.unwrap_python_model()) is PlacesSceneModel
    probabilities = loaded.predict(np.random.default_rng(0).random((2, 128, 128, 3), dtype=np.float32))
    assert probabilities.shape == (2, len(TUTORIAL_CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_model_that_is_not_blessed_is_not_registered_and_the_champion_stays(mlflow_server, registry,
                                                                              model_artifacts):
    pushed(mlflow_server, registry, model_artifacts[0], blessed=True)

    result = pushed(mlflow_server, registry, model_artifacts[1], blessed=False)

    assert result == PushResult(False, "", f"not registered: the model was not blessed ({NOT_BLESSED_REASON})")
    assert registry.versions() == ["1"] and registry.champion().version == "1"
    with pytest.raises(ModelNotFound, match=f"has no model {registry.model_name}/2: its versions are 1$"):
        registry.find(f"{registry.model_name}/2")


def test_a_model_pushed_again_keeps_its_version_and_gets_the_alias_back(mlflow_server, registry, model_artifacts):
    pushed(mlflow_server, registry, model_artifacts[0], blessed=True)
    assert pushed(mlflow_server, registry, model_artifacts[1], blessed=True).destination.endswith("/2")
    assert registry.champion().version == "2"

    again = pushed(mlflow_server, registry, model_artifacts[0], blessed=True)

    assert again.destination == f"models:/{registry.model_name}/1"
    assert registry.versions() == ["1", "2"] and registry.champion().version == "1"
