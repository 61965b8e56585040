"""ValidationGate: the Trainer trains only on data that passed validation against the curated schema."""

# No `from __future__ import annotations`: TFX reads these type hints as objects to build the component.

from tfx import v1 as tfx
from tfx.types.standard_artifacts import ExampleAnomalies, Schema

from components.validation_gate.executor import check


@tfx.dsl.components.component
def ValidationGate(anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies],
                   schema: tfx.dsl.components.InputArtifact[Schema],
                   validated_schema: tfx.dsl.components.OutputArtifact[Schema]) -> None:
    """Fails on any anomaly; otherwise outputs `schema` unchanged as the schema the Trainer uses."""
    check(anomalies.uri, schema.uri, validated_schema.uri)
