"""create_pipeline's wiring, without running it: what the components are given."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from tfx.utils import json_utils

from components.trainer.custom_config import from_custom_config
from core.config import Config, TrainingConfig
from pipeline.pipeline import PipelineInputs, create_pipeline

# Building the pipeline imports every TFX component: that alone takes longer than the whole fast tier.
pytestmark = pytest.mark.slow


def _unlike_the_default(field: dataclasses.Field, hint):
    """A value of the field's type that its default is not, so a field dropped on the way shows."""
    if typing.get_origin(hint) is typing.Literal:
        return next(value for value in typing.get_args(hint) if value != field.default)
    if hint in (int, float):
        return field.default + 1
    if hint is str:
        return field.default + "-changed"
    raise AssertionError(f"TrainingConfig.{field.name} has a type this test cannot vary ({hint}): teach it one")


def test_every_training_setting_reaches_run_fn(tmp_path):
    hints = typing.get_type_hints(TrainingConfig)
    training = TrainingConfig(**{field.name: _unlike_the_default(field, hints[field.name])
                                 for field in dataclasses.fields(TrainingConfig)})
    config = dataclasses.replace(Config(state_dir=tmp_path), training=training)
    inputs = PipelineInputs(content_hash="0" * 64, class_names=("igloo", "lawn"),
                            curated_schema_file=str(tmp_path / "schema.pbtxt"), champion_model_dir=None,
                            mlflow_run_id="run")

    trainer = next(component for component in create_pipeline(config, inputs).components
                   if component.id == "Trainer")
    # As the Trainer's executor hands it to run_fn (tfx.components.trainer.fn_args_utils), from the JSON it stores.
    read = from_custom_config(json_utils.loads(trainer.exec_properties["custom_config"]))

    assert read.training == training
    assert read.class_names == ("igloo", "lawn")
