"""A registered champion for the serving tests without running the pipeline: a small Keras model, fitted one step
on random pixels, exported by the Trainer's export and registered by the Pusher's push, as the pipeline does; and,
where a test needs them, training statistics logged to its run as `./places run` logs StatisticsGen's."""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
from keras import layers
from mlflow import MlflowClient
from tfx.utils.path_constants import SERVING_MODEL_DIR

from components.mlflow_pusher.executor import push
from components.trainer.export import export
from core.config import Config, apply
from data_schema import CHANNELS, IMAGE_MEASUREMENTS, IMAGE_SIZE, LABEL_NAME_KEY, TRAIN_SPLIT, TUTORIAL_CLASSES
from ingestion.images import convert
from pipeline.tracking import Tracking
from registry import TRAINING_STATISTICS_ARTIFACTS, Registry


def small_model() -> keras.Model:
    """The tutorial's input and output with a fraction of the seed CNN's weights: quick to export and upload."""
    model = keras.Sequential([
        keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)),
        layers.Conv2D(8, 3, strides=4, activation="relu"),
        layers.Flatten(),
        layers.Dense(len(TUTORIAL_CLASSES), activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    random = np.random.default_rng(0)
    model.fit(random.random((8, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), np.float32),
              random.integers(0, len(TUTORIAL_CLASSES), 8), epochs=1, verbose=0)
    return model


def register_champion(config: Config, folder: Path, model_name: str, model: keras.Model | None = None) -> Config:
    """Register `model` (default: small_model()) as `model_name`@champion; `config` with that model name."""
    model_uri = str(folder)
    export(model or small_model(), list(TUTORIAL_CLASSES), f"{model_uri}/{SERVING_MODEL_DIR}")
    client = MlflowClient(config.mlflow_uri)
    run_id = client.create_run(Tracking(config).experiment_id).info.run_id
    push(model_uri=model_uri, serving_model_dir=f"{model_uri}/{SERVING_MODEL_DIR}", blessed=True,
         not_blessed_reason="", tracking_uri=config.mlflow_uri, model_name=model_name, mlflow_run_id=run_id, tags={})
    client.set_terminated(run_id)
    return apply(config, {"mlflow.model_name": model_name})


def log_training_statistics(config: Config, images: list[bytes], labels: list[str]) -> None:
    """Log TFDV statistics of `images` (encoded, measured by ingestion's convert) labelled `labels` to the run of
    mlflow.model_name@champion, where the pipeline logs its StatisticsGen output (Split-train/FeatureStats.pb)."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    converted = [convert(image, config.ingest) for image in images]
    frame = pd.DataFrame({**{key: [getattr(image, key) for image in converted] for key in IMAGE_MEASUREMENTS},
                          LABEL_NAME_KEY: labels})
    statistics = tfdv.generate_statistics_from_dataframe(frame)
    run_id = Registry.from_config(config).find().run_id
    with tempfile.TemporaryDirectory() as folder:
        split = Path(folder, f"Split-{TRAIN_SPLIT}")
        split.mkdir()
        (split / "FeatureStats.pb").write_bytes(statistics.SerializeToString())
        MlflowClient(config.mlflow_uri).log_artifacts(run_id, folder, TRAINING_STATISTICS_ARTIFACTS)


def cli_environment(config: Config) -> dict[str, str]:
    """The environment under which `./places` commands find this test session's services and champion."""
    return {"PLACES_STATE_DIR": str(config.state_dir),
            "PLACES_STORAGE__EMULATOR_PORT": str(config.storage.emulator_port),
            "PLACES_MLFLOW__PORT": str(config.mlflow.port), "PLACES_MLFLOW__MODEL_NAME": config.mlflow.model_name}
