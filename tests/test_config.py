"""The typed configuration: defaults, file, environment and flags, in that order of precedence."""

from pathlib import Path

import pytest

from core.config import Config, ConfigError, load_config
from core.storage import emulator_connection_string


def test_defaults_run_against_the_local_emulator():
    config = load_config(environ={})
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;" in emulator_connection_string(config)
    assert config.uri(config.data.raw_images_uri) == "azfs://devstoreaccount1/places/raw"
    assert config.beam.runner == "local"


def test_the_emulator_is_reached_where_the_services_listen():
    config = load_config(overrides=["services.host=127.0.0.2", "storage.emulator_port=10100"], environ={})
    assert "BlobEndpoint=http://127.0.0.2:10100/devstoreaccount1;" in emulator_connection_string(config)


def test_file_then_environment_then_flags_override_in_that_order(tmp_path: Path):
    settings = tmp_path / "places.toml"
    settings.write_text('[data]\nclasses = "igloo,lawn"\neval_percent = 30\n[beam]\nworkers = 1\n')
    config = load_config(settings, overrides=["beam.workers=4"],
                         environ={"PLACES_DATA__EVAL_PERCENT": "25", "PLACES_STATE_DIR": str(tmp_path / "s")})
    assert config.data.classes == "igloo,lawn"
    assert config.data.eval_percent == 25
    assert config.beam.workers == 4
    assert config.state_dir == tmp_path / "s"


def test_launcher_variables_are_not_settings():
    config = load_config(environ={"PLACES_ROOT": "/x", "PLACES_PYTHON": "/y", "PLACES_CONFIG_UNUSED": "1"})
    assert config == Config()


@pytest.mark.parametrize("override, message", [
    ("beam.wrokers=2", "unknown setting 'beam.wrokers'"),
    ("beam.workers=many", "'beam.workers' needs a whole number, got 'many'"),
    ("beam.workers=-1", "'beam.workers' takes a whole number of at least 0, got '-1'"),
    ("training.epochs=0", "'training.epochs' takes a whole number of at least 1, got '0'"),
    ("training.learning_rate=0", "'training.learning_rate' takes a number above 0, got '0'"),
    ("serving.port=80800", "'serving.port' takes a whole number from 1 to 65535, got '80800'"),
    ("evaluation.accuracy_floor=64", "'evaluation.accuracy_floor' takes a number from 0 to 1, got '64'"),
    ("data.eval_percent=120", "'data.eval_percent' takes a whole number from 0 to 100, got '120'"),
    ("beam=local", "is a section"),
    ("beam.workers", "section.field=value"),
    ("training.model=resnet", "'training.model' takes one of seed_cnn, better_cnn, got 'resnet'"),
    ("beam.runner=direct", "'beam.runner' takes one of local, flink, portable, dataflow, spark, got 'direct'"),
    ("beam.environment_type=docker", "'beam.environment_type' takes one of LOOPBACK, EXTERNAL, DOCKER, PROCESS"),
    ("data.layout=flat", "'data.layout' takes one of folders, places365-lists, places365-small, got 'flat'"),
])
def test_bad_settings_name_the_setting(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override], environ={})


def test_invalid_toml_names_the_file(tmp_path: Path):
    settings = tmp_path / "broken.toml"
    settings.write_text("[data\n")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        load_config(settings, environ={})


def test_config_holds_no_secret(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=a;AccountKey=c2VjcmV0;")
    assert "c2VjcmV0" not in repr(load_config().to_dict())
