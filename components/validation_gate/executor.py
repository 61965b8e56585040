"""Stop the run when data validation found anomalies, with a message a person can act on.

TFX's ExampleValidator records anomalies but lets the pipeline go on; this gate turns them into a
failure before the Trainer, naming each anomaly, its split and feature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.io import fileio

# ExampleValidator writes one of these per split folder (tfx.components.example_validator.executor).
ANOMALIES_FILE = "SchemaDiff.pb"


class DataValidationFailed(RuntimeError):
    """The data does not match the curated schema; the run stops before training."""


@dataclass(frozen=True)
class Anomaly:
    split: str
    feature: str
    description: str


def read_anomalies(anomalies_dir: str) -> list[Anomaly]:
    """Every anomaly under an ExampleAnomalies artifact folder, split by split."""
    found = []
    for split_dir in sorted(fileio.glob(os.path.join(anomalies_dir, "Split-*"))):
        split = os.path.basename(split_dir.rstrip("/"))[len("Split-"):]
        with fileio.open(os.path.join(split_dir, ANOMALIES_FILE), "rb") as serialized:
            anomalies = anomalies_pb2.Anomalies.FromString(serialized.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            found.append(Anomaly(split, feature, _describe(info)))
        if anomalies.HasField("dataset_anomaly_info"):
            found.append(Anomaly(split, "(whole split)", _describe(anomalies.dataset_anomaly_info)))
        if anomalies.data_missing:
            # TFDV reports an empty split this way, not as an anomaly, and ExampleValidator lets it pass.
            found.append(Anomaly(split, "(whole split)", "no examples: the split is empty"))
    return found


def _describe(info: anomalies_pb2.AnomalyInfo) -> str:
    reasons = "; ".join(f"{reason.short_description}: {reason.description}" for reason in info.reason)
    return reasons or info.description


def check(anomalies_dir: str, schema_dir: str, validated_schema_dir: str) -> None:
    """Raise DataValidationFailed listing the anomalies; otherwise pass the schema on to the Trainer."""
    anomalies = read_anomalies(anomalies_dir)
    if anomalies:
        lines = [f"  {item.split} split, {item.feature}: {item.description}" for item in anomalies]
        raise DataValidationFailed(
            f"data validation found {len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'}, so the run stops "
            "before training:\n" + "\n".join(lines) +
            f"\nanomalies: {anomalies_dir}\nFix the data (or data_schema/schema.pbtxt if the data is right), "
            "ingest again and rerun; `./places inspect` renders the validation report.")
    fileio.makedirs(validated_schema_dir)
    for name in fileio.listdir(schema_dir):
        fileio.copy(os.path.join(schema_dir, name), os.path.join(validated_schema_dir, name), overwrite=True)
