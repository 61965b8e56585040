"""The Flink cluster of `./places cluster up`, for real: a JobManager, two TaskManagers, Beam's job server and the
SDK worker pool on free ports, with ingestion, the TFX pipeline and batch prediction sent to it as Flink jobs.

The tests run in order like a user's session: the cluster comes up (everything on 127.0.0.1), an ingestion on
it equals the local runner's, the pipeline runs on it and evaluates as the local runner does, batch prediction
runs on it, a TaskManager killed mid-job is survived or cleanly failed, a stopped cluster is a clear error, and
`cluster down` leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from core import cluster, services
from core import storage as storage_module
from core.config import Config, apply
from data_schema import TUTORIAL_CLASSES
from ingestion.job import ingest
from ingestion.manifest import read_manifest
from ingestion.upload import upload
from sample_data import generate
from tests.fixtures import free_port

pytestmark = pytest.mark.slow

PER_CLASS = 20
CONTAINER = "azfs://devstoreaccount1/on-flink"


def cluster_ports() -> dict[str, str]:
    return {f"cluster.{name}": str(free_port()) for name in
            ("rest_port", "jobmanager_rpc_port", "job_port", "artifact_port", "worker_pool_port")}


@pytest.fixture(scope="module")
def flink(mlflow_server: Config, tmp_path_factory) -> Config:
    """A running cluster with its own state folder; stopped at the end of the module (the last test checks that)."""
    state = tmp_path_factory.mktemp("flink-state")
    config = apply(mlflow_server, {"state_dir": str(state), **cluster_ports(),
                                   "mlflow.experiment": "on-flink", "mlflow.model_name": "on-flink-scenes"})
    cluster.up(config, report=lambda line: None)
    yield config
    cluster.down(config, report=lambda line: None)


@pytest.fixture(scope="module")
def raw_images(flink: Config, storage, tmp_path_factory) -> str:
    """The tutorial's 10 classes x 20 sample images, uploaded."""
    folder = tmp_path_factory.mktemp("images")
    generate(folder, TUTORIAL_CLASSES, PER_CLASS, "folders", seed=11)
    upload(storage, folder, f"{CONTAINER}/raw")
    return f"{CONTAINER}/raw"


def on_flink(config: Config) -> Config:
    return apply(config, {"beam.runner": "flink"})


def flink_job(config: Config, prefix: str) -> dict:
    [job] = [job for job in cluster.jobs(config) if job["name"].startswith(prefix)][:1]
    return job


def cluster_processes(config: Config) -> list[psutil.Process]:
    """Every process `cluster up` started, and their children (the SDK workers and their forkserver)."""
    found = []
    for name in services.recorded(config):
        pid = services.recorded_pid(config, name)
        try:
            process = psutil.Process(pid)
            found += [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def test_cluster_up_registers_every_taskmanager_and_listens_on_loopback_only(flink):
    state = cluster.status(flink)
    assert state["answers"]
    assert state["taskmanagers"] == ["flink-taskmanager-1", "flink-taskmanager-2"]
    assert state["overview"]["slots-total"] == 4
    assert {row["name"]: row["state"] for row in state["processes"]} == {
        "flink-jobmanager": "running", "flink-taskmanager-1": "running", "flink-taskmanager-2": "running",
        "sdk-worker-pool": "running", "beam-job-server": "running"}
    listening = [connection.laddr for process in cluster_processes(flink)
                 for connection in process.net_connections("inet") if connection.status == psutil.CONN_LISTEN]
    assert listening, "the cluster listens somewhere"
    assert {address.ip for address in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


def test_only_the_sdk_workers_get_the_storage_secret(flink):
    """The JVMs never read blob storage: neither their environment nor their command line holds the key."""
    key = storage_module.EMULATOR_KEY
    jvms = [process for process in cluster_processes(flink) if process.name() == "java"]
    # The JobManager, every TaskManager and the job server.
    assert len(jvms) == flink.cluster.taskmanagers + 2
    for process in jvms:
        assert storage_module.CONNECTION_STRING_ENV not in process.environ(), process.cmdline()
        assert not any(key in value for value in process.environ().values()), process.cmdline()
        assert not any(key in argument for argument in process.cmdline())
    pool = psutil.Process(services.recorded_pid(flink, cluster.WORKER_POOL))
    assert key in pool.environ()[storage_module.CONNECTION_STRING_ENV]


def test_cluster_up_again_starts_nothing(flink):
    before = {name: services.recorded_pid(flink, name) for name in services.recorded(flink)}
    lines = []
    cluster.up(flink, report=lines.append)
    assert {name: services.recorded_pid(flink, name) for name in services.recorded(flink)} == before
    assert not any(" started " in line for line in lines), lines


def test_a_port_already_taken_is_an_error_that_names_it(flink):
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        config = apply(flink, {**cluster_ports(), "cluster.rest_port": str(taken),
                               "state_dir": str(flink.state_dir / "other")})
        with pytest.raises(services.ServiceError, match=f"port {taken} .* in use .* cluster.rest_port"):
            cluster.up(config, report=lambda line: None)
    assert not services.recorded(config)


def test_ingestion_on_flink_equals_the_local_runner(flink, raw_images, storage, capfd, monkeypatch):
    local = ingest(flink, raw_images, f"{CONTAINER}/examples-local")
    monkeypatch.setenv("PLACES_PROGRESS", "1")
    remote = ingest(on_flink(flink), raw_images, f"{CONTAINER}/examples")
    assert remote.content_hash == local.content_hash
    assert remote.counts == local.counts and remote.total == len(TUTORIAL_CLASSES) * PER_CLASS
    assert read_manifest(storage, f"{CONTAINER}/examples").content_hash == local.content_hash
    job = flink_job(flink, "places-ingest-")
    assert job["state"] == "FINISHED"
    # The progress bar counted the cluster's images, from the counters Flink collected.
    assert f"{remote.total}/{remote.total}" in capfd.readouterr().err


def evaluate_locally(config: Config, examples_uri: str, model_uri: str, output: Path):
    """TFX's own Evaluator executor on `model_uri`, with the pipeline's eval config, on the local runner."""
    from tfx.components.evaluator.executor import Executor
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import proto_utils

    from components.evaluator.eval_config import build_eval_config
    from components.evaluator.results import read_evaluation
    from core.beam import beam_pipeline_args

    examples, model = standard_artifacts.Examples(), standard_artifacts.Model()
    examples.uri, model.uri = examples_uri, model_uri
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(output / "evaluation"), str(output / "blessing")
    local = apply(config, {"beam.runner": "local"})
    context = Executor.Context(beam_pipeline_args=beam_pipeline_args(local), tmp_dir=str(output / "tmp"),
                               unique_id="evaluate-locally")
    Executor(context).Do({"examples": [examples], "model": [model]},
                         {"evaluation": [evaluation], "blessing": [blessing]},
                         {"eval_config": proto_utils.proto_to_json(build_eval_config(
                             config.evaluation, False, num_classes=len(TUTORIAL_CLASSES))),
                          "example_splits": "null", "fairness_indicator_thresholds": "null"})
    return read_evaluation(evaluation.uri).candidate


def test_the_pipeline_runs_its_beam_components_on_flink_and_evaluates_as_locally(flink, raw_images, tmp_path):
    from pipeline.pipeline import metadata_connection
    from pipeline.run_outputs import latest_run
    from pipeline.runner import run_pipeline

    config = apply(on_flink(flink), {
        "data.examples_uri": f"{CONTAINER}/examples", "training.model": "seed_cnn", "training.epochs": "1",
        "training.batch_size": "16", "evaluation.accuracy_floor": "0.0"})
    started = time.time() * 1000
    on_cluster = run_pipeline(config, echo=lambda line: None)
    assert on_cluster.registered, on_cluster.record.message
    states = on_cluster.record.component_states
    assert states["StatisticsGen"] == states["Evaluator"] == "ran"
    finished = [job for job in cluster.jobs(flink) if job["start-time"] >= started]
    # StatisticsGen's job and the Evaluator's.
    assert len(finished) == 2 and {job["state"] for job in finished} == {"FINISHED"}, finished

    # The same model, evaluated again by TFX's Evaluator on the local runner, scores exactly the same.
    _, _, outputs = latest_run(metadata_connection(config))
    local = evaluate_locally(config, outputs["BlobExampleGen"]["examples"], outputs["Trainer"]["model"], tmp_path)
    remote = on_cluster.record.evaluation.candidate
    assert remote.examples == local.examples > 0
    assert remote.accuracy == pytest.approx(local.accuracy, abs=1e-6)
    assert remote.accuracy_by_class == pytest.approx(local.accuracy_by_class, abs=1e-6)


def test_batch_prediction_on_flink_equals_the_local_runner(flink, raw_images):
    from serving.batch import batch_predict

    model = f"{flink.mlflow.model_name}@champion"
    local = batch_predict(flink, raw_images, f"{CONTAINER}/predictions-local", reference=model)
    remote = batch_predict(on_flink(flink), raw_images, f"{CONTAINER}/predictions", reference=model)
    assert remote.predicted == local.predicted == len(TUTORIAL_CLASSES) * PER_CLASS
    assert remote.predicted_by_class == local.predicted_by_class
    assert flink_job(flink, "places-batch-predict-")["state"] == "FINISHED"


def test_a_taskmanager_killed_mid_job_is_survived_or_fails_cleanly_and_a_rerun_gives_the_same_data(
        flink, raw_images, storage):
    from ingestion.manifest import IngestError

    output = f"{CONTAINER}/examples-fault"
    expected = read_manifest(storage, f"{CONTAINER}/examples").content_hash
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["manifest"] = ingest(on_flink(flink), raw_images, output)
        except IngestError as error:
            outcome["error"] = error

    job = threading.Thread(target=run)
    job.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(
            item["name"].startswith("places-ingest-") and item["state"] == "RUNNING" for item in cluster.jobs(flink)):
        time.sleep(0.5)
    time.sleep(3)
    os.kill(services.recorded_pid(flink, "flink-taskmanager-1"), signal.SIGKILL)
    job.join(600)
    assert not job.is_alive()
    if "manifest" in outcome:
        assert outcome["manifest"].content_hash == expected
    else:
        assert "nothing was written" in str(outcome["error"]) or "Nothing was written" in str(outcome["error"])
        assert not [uri for uri in storage.list(output)], "a failed job writes nothing"
        cluster.up(flink, report=lambda line: None)
        assert ingest(on_flink(flink), raw_images, output).content_hash == expected
    cluster.up(flink, report=lambda line: None)
    assert cluster.taskmanager_ids(flink) == ["flink-taskmanager-1", "flink-taskmanager-2"]


def test_a_stopped_cluster_is_a_clear_error_that_names_cluster_up(flink, raw_images):
    gone = apply(on_flink(flink), cluster_ports())
    with pytest.raises(cluster.ClusterError, match=r"does not answer .* `\./places cluster up`"):
        ingest(gone, raw_images, f"{CONTAINER}/never")


def test_cluster_down_leaves_no_java_or_worker_process_behind(flink):
    processes = cluster_processes(flink)
    assert any("java" in process.name() for process in processes)
    cluster.down(flink, report=lambda line: None)
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, [process.cmdline()[:3] for process in alive]
    assert not services.recorded(flink)
    assert not cluster.status(flink)["answers"]
