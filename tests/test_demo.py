"""`./places demo`, the README's first command, end to end in a subprocess: the user's first experience."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_demo_ends_with_a_served_champion_and_the_report_paths(mlflow_server, tmp_path):
    environment = {**os.environ,
                   "PLACES_STATE_DIR": str(tmp_path / "state"),
                   "PLACES_STORAGE__EMULATOR_PORT": str(mlflow_server.storage.emulator_port),
                   "PLACES_STORAGE__CONTAINER": "demo-test",
                   "PLACES_MLFLOW__PORT": str(mlflow_server.mlflow.port),
                   "PLACES_MLFLOW__EXPERIMENT": "demo-test", "PLACES_MLFLOW__MODEL_NAME": "demo-test",
                   "PLACES_EVALUATION__ACCURACY_FLOOR": "0"}
    finished = subprocess.run([str(PROJECT_ROOT / "places"), "demo", "--per-class", "6", "--epochs", "1",
                               "--model", "seed_cnn"], env=environment, capture_output=True, text=True, timeout=1200)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output

    assert "ingested 60 images of 10 classes" in output
    assert "registered as version 1 of 'demo-test' with alias champion" in output
    predictions = re.search(r'\{"predictions": \[\[([^\]]+)\]\]\} \(sum ([\d.]+)\)', output)
    assert predictions and len(predictions.group(1).split(",")) == 10 and predictions.group(2) == "1.000"
    assert re.search(r"JPEG request .* ->  \w.* \d+\.\d%, ", output)
    report = Path(re.search(r"^report: +(\S+)$", output, re.MULTILINE).group(1))
    assert report.is_file() and report.is_relative_to(tmp_path / "state")
    assert "Evaluation by category" in report.read_text()
