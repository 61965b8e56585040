"""`./places inspect [RUN]`: the report of an earlier run, rebuilt from what MLflow recorded about it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from core.config import Config
from ingestion.manifest import Manifest
from pipeline.report import RunRecord, collect, write_report
from pipeline.tracking import ARTIFACT_TAG_PREFIX, Tracking


def inspect_run(config: Config, run_id: str | None = None) -> tuple[RunRecord, Path]:
    """(record, report page) of MLflow run `run_id`, or of the newest run."""
    tracking = Tracking(config)
    run = tracking.run(run_id)  # RunNotFound, a UserError, where there is no such run or none yet
    run_id, tags = run.info.run_id, run.data.tags
    outputs: dict[str, dict[str, str]] = {}
    for key, uri in tags.items():
        if key.startswith(ARTIFACT_TAG_PREFIX) and Path(uri).exists():
            node, output = key[len(ARTIFACT_TAG_PREFIX):].split(".", 1)
            outputs.setdefault(node, {})[output] = uri
    import mlflow.artifacts

    manifest = Manifest.from_json(mlflow.artifacts.load_text(f"runs:/{run_id}/data/manifest.json"))
    record = RunRecord(
        mlflow_run_id=run_id, run_url=tracking.run_url(run_id),
        started=datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).isoformat(timespec="seconds"),
        outcome=tags.get("outcome", run.info.status.lower()),
        message=tags.get("outcome_message", "the run did not finish; run `./places run` again"),
        class_names=list(manifest.classes), settings=json.loads(tags.get("settings", "{}")),
        component_states=json.loads(tags.get("component_states", "{}")))
    collect(outputs, record)
    return record, write_report(record, config.state_dir / "reports" / run_id)
