"""Which artifacts a pipeline run produced or reused, read from ML Metadata (MLMD)."""

from __future__ import annotations

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

# MLMD execution states (metadata_store_pb2.Execution.State) a person would name.
STATES = {metadata_store_pb2.Execution.COMPLETE: "ran", metadata_store_pb2.Execution.CACHED: "cached",
          metadata_store_pb2.Execution.FAILED: "failed", metadata_store_pb2.Execution.RUNNING: "running"}


def _store(connection: metadata_store_pb2.ConnectionConfig) -> metadata_store.MetadataStore:
    read_only = metadata_store_pb2.ConnectionConfig()
    read_only.CopyFrom(connection)
    if read_only.HasField("sqlite"):
        read_only.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(read_only)


def latest_run(
        connection: metadata_store_pb2.ConnectionConfig) -> tuple[str, dict[str, str], dict[str, dict[str, str]]]:
    """(TFX run id, {node: "ran"|"cached"|...}, {node: {output key: artifact URI}}) of the newest run."""
    store = _store(connection)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise LookupError("ML Metadata records no pipeline run yet")
    run = max(runs, key=lambda context: (context.create_time_since_epoch, context.id))
    node_type = store.get_context_type("node").id
    states: dict[str, str] = {}
    outputs: dict[str, dict[str, str]] = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda item: item.id):
        node = next((context.name.split(".", 1)[-1] for context in store.get_contexts_by_execution(execution.id)
                     if context.type_id == node_type), f"execution-{execution.id}")
        states[node] = STATES.get(execution.last_known_state, "unknown")
        events = [event for event in store.get_events_by_execution_ids([execution.id])
                  if event.type == metadata_store_pb2.Event.OUTPUT]
        uris = {artifact.id: artifact.uri for artifact in store.get_artifacts_by_id([e.artifact_id for e in events])}
        outputs[node] = {event.path.steps[0].key: uris[event.artifact_id] for event in events if event.path.steps}
    return run.name, states, outputs
