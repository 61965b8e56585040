"""ValidationGate: the Trainer trains only on data that passed validation against the curated schema.
DriftCheck and DriftGate: how far that data lies from the champion's training data, and whether that stops the run.

The drift check and its gate are two nodes so the drift result is a published artifact even when the gate stops the
run (TFX removes a failed node's outputs), and neither feeds the Trainer data: a new champion changes their inputs,
and the Trainer's cache should not care (the pipeline orders the Trainer after DriftGate instead).
"""

# No `from __future__ import annotations`: TFX reads these type hints as objects to build the component.

from tfx import v1 as tfx
from tfx.types.artifact import Artifact
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics, Schema

from components.validation_gate.executor import check, measure_drift, stop_on_drift


class DataDrift(Artifact):
    """drift.json (components/validation_gate/drift.py): per feature the drift measure, value, threshold and whether
    it drifted, and each class's share now and in the champion's data."""
    TYPE_NAME = "DataDrift"


@tfx.dsl.components.component
def ValidationGate(anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies],
                   schema: tfx.dsl.components.InputArtifact[Schema],
                   validated_schema: tfx.dsl.components.OutputArtifact[Schema]) -> None:
    """Fails on any anomaly; otherwise outputs `schema` unchanged as the schema the Trainer uses."""
    check(anomalies.uri, schema.uri, validated_schema.uri)


@tfx.dsl.components.component
def DriftCheck(statistics: tfx.dsl.components.InputArtifact[ExampleStatistics],
               schema: tfx.dsl.components.InputArtifact[Schema],
               drift: tfx.dsl.components.OutputArtifact[DataDrift],
               baseline: tfx.dsl.components.Parameter[str],
               champion_statistics: tfx.dsl.components.InputArtifact[ExampleStatistics] = None) -> None:
    """Measures the drift of `statistics` from `champion_statistics` (`baseline` names them, or says why there are
    none) under `schema`'s drift comparators."""
    measure_drift(statistics.uri, champion_statistics.uri if champion_statistics else None, schema.uri, baseline,
                  drift.uri)


@tfx.dsl.components.component
def DriftGate(drift: tfx.dsl.components.InputArtifact[DataDrift],
              on_drift: tfx.dsl.components.Parameter[str]) -> None:
    """Fails when `drift` has a feature past its threshold and `on_drift` is "stop"."""
    stop_on_drift(drift.uri, on_drift)
