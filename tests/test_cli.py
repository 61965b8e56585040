"""The command line's errors: what the user must fix is one line and exit code 1, anything else a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

from click.testing import CliRunner

from cli.main import main as places
from core.config import PROJECT_ROOT, Config

LAUNCHER_ENVIRONMENT = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PLACES_ROOT": str(PROJECT_ROOT)}


def run_python(*arguments: str) -> subprocess.CompletedProcess:
    """Python as `./places` runs it, in a fresh process, so what reaches the terminal is what a user sees."""
    return subprocess.run([sys.executable, *arguments], cwd=PROJECT_ROOT, env=LAUNCHER_ENVIRONMENT,
                          capture_output=True, text=True, timeout=120)


def test_a_user_error_is_one_line_and_exit_code_1():
    finished = run_python("-m", "cli", "--set", "beam.wrokers=2", "services", "status")
    assert finished.returncode == 1
    [message] = finished.stderr.strip().splitlines()
    assert message.startswith("places: error: unknown setting 'beam.wrokers'; known here: ") and "workers" in message
    assert finished.stdout == ""


# A command that fails the way a bug does, under the CLI's own group class.
_BUGGY_COMMAND = textwrap.dedent("""
    import click

    from cli.main import PlacesGroup

    @click.group(cls=PlacesGroup)
    def main():
        pass

    @main.command()
    def lookup():
        {}["champion"]

    main(prog_name="places")
""")


def test_any_other_exception_is_a_bug_and_shows_its_traceback():
    finished = run_python("-c", _BUGGY_COMMAND, "lookup")
    assert finished.returncode == 1
    assert "Traceback (most recent call last):" in finished.stderr
    assert finished.stderr.strip().splitlines()[-1] == "KeyError: 'champion'"
    assert "places: error" not in finished.stderr


def inspect(config: Config, *arguments: str):
    experiment = f"cli-tests-{uuid.uuid4().hex[:8]}"
    environment = {"PLACES_STATE_DIR": str(config.state_dir),
                   "PLACES_STORAGE__EMULATOR_PORT": str(config.storage.emulator_port),
                   "PLACES_MLFLOW__PORT": str(config.mlflow.port), "PLACES_MLFLOW__EXPERIMENT": experiment}
    return experiment, CliRunner().invoke(places, ["inspect", *arguments], env=environment)


def test_inspect_before_any_run_says_to_run_the_pipeline(mlflow_server):
    experiment, result = inspect(mlflow_server)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"places: error: experiment '{experiment}' at {mlflow_server.mlflow_uri} has no runs yet: "
        "run `./places run` first")


def test_inspect_of_an_unknown_run_names_it_and_where_the_runs_are(mlflow_server):
    experiment, result = inspect(mlflow_server, "0123456789abcdef0123456789abcdef")
    assert result.exit_code == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"places: error: MLflow at {mlflow_server.mlflow_uri} has no run "
                              f"'0123456789abcdef0123456789abcdef': give the id of a run of experiment '{experiment}'")
    assert "Traceback" not in result.output


def test_zero_sample_images_per_class_is_refused_naming_the_flag(tmp_path):
    result = CliRunner().invoke(places, ["sample-data", "--per-class", "0", str(tmp_path / "images")])
    assert result.exit_code == 2
    assert "Invalid value for '--per-class': 0 is not in the range x>=1" in result.output
    assert not (tmp_path / "images").exists()
