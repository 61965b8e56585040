import dataclasses
import json
import typing

import pytest

from components.trainer.custom_config import from_custom_config, to_custom_config
from core.config import TrainingConfig


def _unlike_the_default(field: dataclasses.Field, hint):
    """A value of the field's type that its default is not, so a field that is dropped on the way shows."""
    if typing.get_origin(hint) is typing.Literal:
        return next(value for value in typing.get_args(hint) if value != field.default)
    if hint in (int, float):
        return field.default + 1
    if hint is str:
        return field.default + "-changed"
    raise AssertionError(f"TrainingConfig.{field.name} has a type this test cannot vary ({hint}): teach it one")


def test_every_training_field_reaches_run_fn_through_the_json_tfx_stores():
    hints = typing.get_type_hints(TrainingConfig)
    changed = TrainingConfig(**{field.name: _unlike_the_default(field, hints[field.name])
                                for field in dataclasses.fields(TrainingConfig)})

    # TFX keeps custom_config as JSON in ML Metadata and hands run_fn what it parses back.
    stored = json.loads(json.dumps(to_custom_config(changed, ("glacier", "igloo"))))
    read = from_custom_config(stored)

    assert read.training == changed
    assert read.class_names == ("glacier", "igloo")


def test_custom_config_names_unknown_and_missing_keys():
    with pytest.raises(ValueError, match="has unknown keys epoch and lacks epochs, batch_size, .*: give exactly"):
        from_custom_config({"class_names": ["glacier"], "model": "seed_cnn", "epoch": 3})


@pytest.mark.parametrize("change, message", [
    ({"class_names": []}, "class_names is empty"),
    ({"epochs": 0}, "epochs is 0: give 1 or more"),
    ({"batch_size": 0}, "batch_size is 0: give 1 or more"),
])
def test_custom_config_values_the_trainer_cannot_use_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        from_custom_config({**to_custom_config(TrainingConfig(), ("glacier",)), **change})
