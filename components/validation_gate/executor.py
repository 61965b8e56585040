"""Stop the run when data validation found anomalies, with a message a person can act on.

TFX's ExampleValidator records anomalies but lets the pipeline go on; this gate turns them into a
failure before the Trainer, naming each anomaly, its split and feature. The drift check measures how far the
training data lies from the champion's (drift.py) and, with pipeline.on_drift "stop", stops the run the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.io import fileio

from components.validation_gate.drift import (
    DRIFT_FILE,
    DriftResult,
    compare,
    read_drift,
    read_split_statistics,
    unchecked,
    write_drift,
)
from data_schema import TRAIN_SPLIT

# ExampleValidator writes one of these per split folder (tfx.components.example_validator.executor).
ANOMALIES_FILE = "SchemaDiff.pb"
# ImportSchemaGen's file in a Schema artifact's folder, which the gate passes on unchanged.
SCHEMA_FILE = "schema.pbtxt"


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


def measure_drift(statistics_dir: str, champion_statistics_dir: str | None, schema_dir: str, baseline: str,
                  drift_dir: str) -> DriftResult:
    """Compare the train split's statistics with the champion's under the schema's drift comparators and write the
    result to `drift_dir`; without champion statistics, a result that says why (`baseline`)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    if champion_statistics_dir is None:
        result = unchecked(baseline)
    else:
        with fileio.open(os.path.join(schema_dir, SCHEMA_FILE), "r") as text:
            schema = text_format.Parse(text.read(), schema_pb2.Schema())
        result = compare(read_split_statistics(statistics_dir, TRAIN_SPLIT),
                         read_split_statistics(champion_statistics_dir, TRAIN_SPLIT), schema, baseline)
    write_drift(result, drift_dir)
    return result


def stop_on_drift(drift_dir: str, on_drift: str) -> None:
    """With on_drift "stop", raise DataValidationFailed naming each drifted feature; with "warn", let the run go on
    (the report says it drifted)."""
    result = read_drift(drift_dir)
    if on_drift != "stop" or not result.drifted:
        return
    lines = [f"  {item.feature}: {item.measure} {item.value:.3f}, past the threshold {item.threshold:g}"
             for item in result.drifted]
    raise DataValidationFailed(
        f"the training data drifted from {result.baseline} in {', '.join(item.feature for item in result.drifted)}, "
        "past the thresholds in data_schema/schema.pbtxt, so the run stops before training (pipeline.on_drift is "
        "stop)\n" + "\n".join(lines) +
        f"\ndrift: {os.path.join(drift_dir, DRIFT_FILE)}\nIf the change is meant, run again with "
        "`--set pipeline.on_drift=warn`; otherwise fix the data, ingest again and rerun. The report's drift section "
        "shows which classes moved.")
