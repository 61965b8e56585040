import json

import pytest

from components.trainer.custom_config import from_custom_config, to_custom_config
from core.config import TrainingConfig


def test_what_to_custom_config_writes_reads_back_through_json():
    training = TrainingConfig(model="seed_cnn", epochs=3, seed=7)
    # TFX keeps custom_config as JSON in ML Metadata and hands run_fn what it parses back.
    read = from_custom_config(json.loads(json.dumps(to_custom_config(training, ("glacier", "igloo"), "/logs"))))

    assert (read.training, read.class_names, read.worker_log_dir) == (training, ("glacier", "igloo"), "/logs")


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
        from_custom_config({**to_custom_config(TrainingConfig(), ("glacier",), "/logs"), **change})
