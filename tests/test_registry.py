"""The model registry is one module: every call of MLflow's registry API is in registry/models.py. References,
the errors a user can fix, and the MLflow serving format of every registered version."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import numpy as np
import pytest

from core.config import PROJECT_ROOT, Config, apply
from core.errors import UserError
from data_schema import TUTORIAL_CLASSES
from pipeline.tracking import RunNotFound, Tracking
from registry import CHAMPION_ALIAS, ModelNotFound, Registry, parse_reference
from tests.test_layers import project_files

# MlflowClient's methods (and mlflow's functions) that push models to the registry or find them there.
REGISTRY_API = {
    "create_registered_model", "create_model_version", "register_model", "set_registered_model_alias",
    "delete_registered_model_alias", "get_model_version_by_alias", "get_model_version", "get_latest_versions",
    "search_model_versions", "search_registered_models", "get_registered_model", "transition_model_version_stage",
}
REGISTRY_MODULE = "registry/models.py"


def project_modules() -> list[Path]:
    """Every .py file of the project's own code (tests/ aside), absolute."""
    return [PROJECT_ROOT / path for path in project_files() if path.parts[0] != "tests"]


def registry_calls(path: Path) -> set[str]:
    """The registry API names that the module at `path` calls as attributes or imports from mlflow."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in REGISTRY_API:
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlflow"):
            names.update(alias.name for alias in node.names if alias.name in REGISTRY_API)
    return names


def test_exactly_one_module_pushes_and_finds_models_in_the_registry():
    callers = {str(path.relative_to(PROJECT_ROOT)): calls
               for path in project_modules() if (calls := registry_calls(path))}

    assert list(callers) == [REGISTRY_MODULE], (
        f"only {REGISTRY_MODULE} may call MLflow's model registry; move these calls there: {callers}")
    assert {"register_model", "set_registered_model_alias", "get_model_version_by_alias"} <= callers[REGISTRY_MODULE]


def test_the_scan_sees_a_registry_call_wherever_it_is_written(tmp_path):
    module = tmp_path / "pusher.py"
    module.write_text("from mlflow import register_model\n\ndef f(client):\n"
                      "    client.set_registered_model_alias('m', 'champion', 1)\n")
    assert registry_calls(module) == {"register_model", "set_registered_model_alias"}


def test_a_reference_names_an_alias_or_a_version():
    assert parse_reference("places365-scenes@champion") == ("places365-scenes", "champion", None)
    assert parse_reference(" places365-scenes/12 ") == ("places365-scenes", None, "12")


@pytest.mark.parametrize("reference", ["places365-scenes", "places365-scenes:latest", "places365-scenes/v2",
                                       "places365-scenes@", "a@b/3"])
def test_anything_else_is_a_user_error_that_shows_how_to_write_one(reference):
    with pytest.raises(ModelNotFound) as error:
        parse_reference(reference)
    assert isinstance(error.value, UserError)
    assert str(error.value) == (f"'{reference}' names no registered model: write NAME@ALIAS (e.g. "
                                "places365-scenes@champion) or NAME/VERSION (e.g. places365-scenes/3)")


@pytest.fixture(scope="module")
def champion(mlflow_server: Config, tmp_path_factory) -> Config:
    # Imported here: it imports Keras and the Pusher, which the fast tier's tests of this module do not need.
    from tests.champion import register_champion

    return register_champion(mlflow_server, tmp_path_factory.mktemp("champion"), "registry-tests")


def test_an_unknown_alias_names_the_versions_and_aliases_there_are(champion):
    registry = Registry.from_config(champion)

    with pytest.raises(ModelNotFound) as error:
        registry.find("registry-tests@best")

    assert str(error.value) == (f"the MLflow registry at {champion.mlflow_uri} has no model registry-tests@best: "
                                f"its versions are 1, its aliases {CHAMPION_ALIAS}")


def test_the_champion_is_found_downloaded_once_and_none_before_the_first_push(champion):
    registry = Registry.from_config(champion)
    version = registry.find()
    assert (version.name, version.version) == ("registry-tests", "1")
    assert registry.champion().version == "1"

    folder = Path(registry.download(version))
    assert (folder / "Format-Serving" / "saved_model.pb").exists()
    assert registry.download(version) == str(folder)
    assert Registry(champion.mlflow_uri, f"never-pushed-{uuid.uuid4().hex[:8]}").champion() is None


# Starlette's test client warns that it will move from httpx to httpx2, which this stack does not pin.
@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_a_version_answers_mlflows_serving_format_as_the_tutorials_endpoint_did(champion):
    import mlflow.pyfunc
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    mlflow.set_tracking_uri(champion.mlflow_uri)
    app = scoring_server.init(mlflow.pyfunc.load_model(f"models:/registry-tests@{CHAMPION_ALIAS}"))
    pixels = np.random.default_rng(3).random((1, 128, 128, 3))

    response = TestClient(app).post("/invocations", json={"inputs": pixels.tolist()})

    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    assert predictions.shape == (1, len(TUTORIAL_CLASSES))
    np.testing.assert_allclose(predictions.sum(), 1, atol=1e-5)


def test_an_experiment_without_runs_says_to_run_the_pipeline(mlflow_server):
    config = apply(mlflow_server, {"mlflow.experiment": f"empty-{uuid.uuid4().hex[:8]}"})
    tracking = Tracking(config)

    with pytest.raises(RunNotFound, match=r"has no runs yet: run `./places run` first") as error:
        tracking.run(None)
    assert isinstance(error.value, UserError)
    with pytest.raises(RunNotFound, match="has no run '0123456789abcdef': give the id of a run of experiment"):
        tracking.run("0123456789abcdef")
