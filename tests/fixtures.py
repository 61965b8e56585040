"""Shared fixtures: a real Azurite and a real MLflow server for the whole test session, on free ports, with
their own state folder."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from core import services
from core import storage as storage_module
from core.config import Config, apply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def session_config(tmp_path_factory) -> Config:
    """The defaults, moved to a temporary state folder and free ports so tests never touch ./.state."""
    state_dir = tmp_path_factory.mktemp("state")
    return apply(Config(), {"state_dir": str(state_dir), "storage.emulator_port": str(free_port())})


@pytest.fixture(scope="session")
def azurite(session_config: Config):
    """A running Azurite; AZURE_STORAGE_CONNECTION_STRING points at it for the whole session."""
    services.up(session_config, ["azurite"], report=lambda line: None)
    previous = os.environ.get(storage_module.CONNECTION_STRING_ENV)
    os.environ[storage_module.CONNECTION_STRING_ENV] = storage_module.emulator_connection_string(session_config)
    yield session_config
    services.down(session_config, report=lambda line: None)
    if previous is None:
        os.environ.pop(storage_module.CONNECTION_STRING_ENV, None)
    else:
        os.environ[storage_module.CONNECTION_STRING_ENV] = previous


@pytest.fixture(scope="session")
def storage(azurite: Config) -> storage_module.Storage:
    return storage_module.Storage.from_config(azurite)


@pytest.fixture
def container(storage: storage_module.Storage) -> str:
    """A fresh, empty container for one test, as azfs://devstoreaccount1/<name>."""
    uri = f"azfs://{storage.account}/t{uuid.uuid4().hex[:12]}"
    storage.ensure_container(f"{uri}/x")
    return uri


@pytest.fixture(scope="session")
def mlflow_server(azurite: Config) -> Config:
    """A running MLflow tracking server (sqlite, artifacts in the test Azurite); returns its Config."""
    config = apply(azurite, {"mlflow.port": str(free_port())})
    services.up(config, ["mlflow"], report=lambda line: None)
    yield config
    services.down(config, ["mlflow"], report=lambda line: None)


def small_pipeline_config(mlflow_server: Config, storage: storage_module.Storage, root, name: str,
                          images_per_class: int, settings: dict[str, str] | None = None) -> Config:
    """Small, fast pipeline settings (seed_cnn, no accuracy floor) with their own state folder under `root`, container,
    experiment and model `name`, over sample images of the tutorial's 10 classes uploaded to the raw prefix and not
    yet ingested; `settings` on top."""
    from data_schema import TUTORIAL_CLASSES
    from ingestion.upload import upload
    from sample_data import generate

    container = f"azfs://devstoreaccount1/{name}"
    config = apply(mlflow_server, {
        "state_dir": str(root / "state"),
        "data.raw_images_uri": f"{container}/raw", "data.examples_uri": f"{container}/examples",
        "training.model": "seed_cnn", "training.epochs": "2", "training.batch_size": "16",
        "evaluation.accuracy_floor": "0.0", "mlflow.experiment": name, "mlflow.model_name": f"{name}-scenes",
        **(settings or {})})
    generate(root / "images", TUTORIAL_CLASSES, images_per_class, "folders", seed=5)
    upload(storage, root / "images", config.uri(config.data.raw_images_uri))
    return config

