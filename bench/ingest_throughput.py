"""Ingest throughput from Azurite to Azurite against this machine's limit, and peak memory, for several sizes.

    PYTHONPATH=. .venv/bin/python bench/ingest_throughput.py --images 2000 8000
    ... --set ingest.conversion_processes=1   (another setting)

For each size: sample images of the 10 tutorial classes (folders layout) are generated and uploaded with
ingestion.upload, then ingested in a fresh subprocess, so that the peak RSS (VmHWM) is that ingestion's
alone. Prints one JSON object per size. Runs its own Azurite (temporary state folder, free port) and stops it.

The limit is the work no ingester can skip, measured on the same images (up to LIMIT_SAMPLE of them) in the same
run: one plain loop that reads each image's bytes, decodes, resizes and JPEG-encodes it (CPU time per image), and
one plain loop of sequential GETs of the same blobs with the Azure SDK (wall time per blob: the client's CPU and
Azurite's, on the same cores). With every core busy, a machine ingests at most cores / (convert + GET) images per
second; `ratio` is the ingestion's images/s over that. The project's storage client GETs blobs with less CPU than
the SDK (core/storage.py, _SasReader), so the same limit computed with its GET is printed too (`ratio_own_get`). A
job's fixed start-up (Beam, listing, the conversion processes) is seconds, so the ratio grows with the input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.memory import resident_mb
from core import services
from core.beam import beam_pipeline_args
from core.config import Config, apply
from core.storage import CONNECTION_STRING_ENV, Storage, emulator_connection_string, join
from data_schema import TUTORIAL_CLASSES
from tests.fixtures import free_port

CONTAINER_URI = "azfs://devstoreaccount1/bench"
# Images of the input that the limit's loops go over, evenly spread.
LIMIT_SAMPLE = 2000


def ingest_once(settings: dict, input_uri: str, output_uri: str) -> dict:
    """In the subprocess: one ingestion, timed, with this process's peak memory."""
    from ingestion.job import ingest

    config = apply(Config(), settings)
    started = time.monotonic()
    manifest = ingest(config, input_uri, output_uri, "folders")
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 2), "images_per_s": round(manifest.total / seconds, 1),
            "peak_rss_mb": round(resident_mb("VmHWM")), "manifest_total": manifest.total,
            "beam_args": beam_pipeline_args(config)}


def seconds_per_item(items: list, work, clock=time.monotonic) -> float:
    work(items[0])  # connections and caches warm, as in a long ingestion
    started = clock()
    for item in items:
        work(item)
    return (clock() - started) / len(items)


def machine_limit(config: Config, local: Path, input_uri: str) -> dict:
    """The limit (images/s) from plain convert and GET loops over the same images; see the module docstring."""
    from azure.storage.blob import ContainerClient

    from core.storage import connection_string, parse_blob_uri
    from ingestion.images import convert

    paths = sorted(path for path in local.rglob("*") if path.is_file())
    paths = paths[::max(1, len(paths) // LIMIT_SAMPLE)]
    _, container, prefix = parse_blob_uri(input_uri)
    names = [f"{prefix}/{path.relative_to(local).as_posix()}" for path in paths]
    convert_s = seconds_per_item(paths, lambda path: convert(path.read_bytes(), config.ingest), time.process_time)
    sdk = ContainerClient.from_connection_string(connection_string(config), container)
    sdk_get_s = seconds_per_item(names, lambda name: sdk.download_blob(name, max_concurrency=1).readall())
    storage = Storage.from_config(config)
    own_get_s = seconds_per_item(names, lambda name: storage.read_bytes(join(input_uri, name[len(prefix) + 1:])))
    cores = os.cpu_count() or 1
    return {"cores": cores, "convert_cpu_ms": round(1000 * convert_s, 3), "sdk_get_ms": round(1000 * sdk_get_s, 3),
            "own_get_ms": round(1000 * own_get_s, 3),
            "limit_images_per_s": round(cores / (convert_s + sdk_get_s), 1),
            "limit_own_get_images_per_s": round(cores / (convert_s + own_get_s), 1)}


def measure(settings: dict, images: int, scratch: Path) -> dict:
    from ingestion.upload import upload
    from sample_data import generate

    config = apply(Config(), settings)
    per_class = images // len(TUTORIAL_CLASSES)
    local = scratch / f"images-{images}"
    generate(local, TUTORIAL_CLASSES, per_class, "folders", config.data.sample_seed)
    input_uri = join(CONTAINER_URI, f"raw-{images}")
    upload(Storage.from_config(config), local, input_uri)
    child = subprocess.run(
        [sys.executable, __file__, "--ingest-once", json.dumps(settings), input_uri,
         join(CONTAINER_URI, f"out-{images}")],
        capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"ingesting {images} images failed:\n{child.stderr[-3000:]}")
    ingestion = json.loads(child.stdout.strip().splitlines()[-1])
    limit = machine_limit(config, local, input_uri)
    return {"images": per_class * len(TUTORIAL_CLASSES), **ingestion, **limit,
            "ratio": round(ingestion["images_per_s"] / limit["limit_images_per_s"], 3),
            "ratio_own_get": round(ingestion["images_per_s"] / limit["limit_own_get_images_per_s"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[8000], help="input sizes (10 classes each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a setting for the ingestion, as for ./places --set")
    parser.add_argument("--ingest-once", nargs=3, metavar=("SETTINGS", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.ingest_once:
        settings, input_uri, output_uri = arguments.ingest_once
        print(json.dumps(ingest_once(json.loads(settings), input_uri, output_uri)))
        return

    with tempfile.TemporaryDirectory(prefix="places-bench-") as scratch:
        settings = {**{item.split("=", 1)[0]: item.split("=", 1)[1] for item in arguments.overrides},
                    "state_dir": str(Path(scratch) / "state"), "storage.emulator_port": str(free_port()),
                    "data.classes": "tutorial"}
        config = apply(Config(), settings)
        services.up(config, ["azurite"], report=lambda line: None)
        try:
            os.environ[CONNECTION_STRING_ENV] = emulator_connection_string(config)
            for images in arguments.images:
                print(json.dumps(measure(settings, images, Path(scratch))), flush=True)
        finally:
            services.down(config, report=lambda line: None)


if __name__ == "__main__":
    main()
