"""Ingestion on the Flink cluster with 1 and with 2 TaskManagers, against the local runner, in the same run.

    PYTHONPATH=. .venv/bin/python bench/cluster_throughput.py --images 4000

Runs its own Azurite and its own cluster (temporary state folder, free ports) and stops both. Sample images of the
10 tutorial classes are generated and uploaded once; the same input is then ingested with the local runner, on the
cluster with one TaskManager (parallelism 1), and with a second TaskManager added (parallelism 2). The job's fixed
start-up time is the wall time of ingesting 10 images on the cluster (submission, scheduling, SDK workers).
Every run must give the same manifest content hash. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from core import cluster, services
from core.config import Config, apply
from core.storage import CONNECTION_STRING_ENV, Storage, emulator_connection_string, join
from data_schema import TUTORIAL_CLASSES
from tests.fixtures import free_port

CONTAINER_URI = "azfs://devstoreaccount1/bench-cluster"


def timed_ingest(config: Config, input_uri: str, output_uri: str) -> dict:
    from ingestion.job import ingest

    started = time.monotonic()
    manifest = ingest(config, input_uri, output_uri, "folders")
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "images_per_s": round(manifest.total / seconds, 1),
            "images": manifest.total, "content_hash": manifest.content_hash[:16]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000, help="input size (10 classes)")
    arguments = parser.parse_args()
    from ingestion.upload import upload
    from sample_data import generate

    with tempfile.TemporaryDirectory(prefix="places-bench-") as scratch:
        ports = {f"cluster.{name}": str(free_port()) for name in
                 ("rest_port", "jobmanager_rpc_port", "job_port", "artifact_port", "worker_pool_port")}
        config = apply(Config(), {"state_dir": str(Path(scratch) / "state"), "storage.emulator_port": str(free_port()),
                                  "data.classes": "tutorial", **ports})
        services.up(config, ["azurite"], report=lambda line: None)
        os.environ[CONNECTION_STRING_ENV] = emulator_connection_string(config)
        try:
            storage = Storage.from_config(config)
            images = Path(scratch) / "images"
            generate(images, TUTORIAL_CLASSES, arguments.images // len(TUTORIAL_CLASSES), "folders", 365)
            input_uri = join(CONTAINER_URI, "raw")
            upload(storage, images, input_uri)
            tiny = Path(scratch) / "tiny"
            generate(tiny, TUTORIAL_CLASSES, 1, "folders", 7)
            upload(storage, tiny, join(CONTAINER_URI, "tiny"))

            result = {"images": arguments.images,
                      "local": timed_ingest(config, input_uri, join(CONTAINER_URI, "local"))}
            one = apply(config, {"beam.runner": "flink", "cluster.taskmanagers": "1"})
            started = time.monotonic()
            cluster.up(one, report=lambda line: None)
            result["cluster_up_s"] = round(time.monotonic() - started, 1)
            tiny_job = timed_ingest(one, join(CONTAINER_URI, "tiny"), join(CONTAINER_URI, "tiny-out"))
            result["job_startup_s"] = tiny_job["seconds"]
            result["flink_1_taskmanager"] = timed_ingest(one, input_uri, join(CONTAINER_URI, "flink-1"))
            two = apply(one, {"cluster.taskmanagers": "2"})
            cluster.up(two, report=lambda line: None)
            result["flink_2_taskmanagers"] = timed_ingest(two, input_uri, join(CONTAINER_URI, "flink-2"))
            result["same_content_hash"] = len({result[key]["content_hash"] for key in
                                               ("local", "flink_1_taskmanager", "flink_2_taskmanagers")}) == 1
            result["speedup_2_vs_1_taskmanager"] = round(
                result["flink_2_taskmanagers"]["images_per_s"] / result["flink_1_taskmanager"]["images_per_s"], 2)
            result["flink_2_vs_local"] = round(
                result["flink_2_taskmanagers"]["images_per_s"] / result["local"]["images_per_s"], 2)
            result["cpu_cores"] = os.cpu_count()
            print(json.dumps(result), flush=True)
        finally:
            cluster.down(apply(config, {"cluster.taskmanagers": "2"}), report=lambda line: None)
            services.down(config, report=lambda line: None)


if __name__ == "__main__":
    main()
