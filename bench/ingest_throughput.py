"""Ingest throughput from Azurite to Azurite, and peak memory, for inputs of several sizes.

    PYTHONPATH=. .venv/bin/python bench/ingest_throughput.py --images 2000 8000
    ... --set beam.workers=1 --set beam.extra_args=--direct_running_mode=in_memory   (another runner mode)

For each size: sample images of the 10 tutorial classes (folders layout) are generated and uploaded with
ingestion.upload, then ingested in a fresh subprocess, so that the peak RSS (VmHWM) is that ingestion's
alone. Prints one JSON object per size. Runs its own Azurite (temporary state folder, free port) and stops it.
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

from core import services
from core.beam import beam_pipeline_args
from core.config import Config, apply
from core.storage import CONNECTION_STRING_ENV, Storage, emulator_connection_string, join
from data_schema import TUTORIAL_CLASSES
from tests.fixtures import free_port

CONTAINER_URI = "azfs://devstoreaccount1/bench"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (this measures on Linux only)")


def ingest_once(settings: dict, input_uri: str, output_uri: str) -> dict:
    """In the subprocess: one ingestion, timed, with this process's peak memory."""
    from ingestion.job import ingest

    config = apply(Config(), settings)
    started = time.monotonic()
    manifest = ingest(config, input_uri, output_uri, "folders")
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 2), "images_per_s": round(manifest.total / seconds, 1),
            "peak_rss_mb": round(peak_rss_mb()), "manifest_total": manifest.total,
            "beam_args": beam_pipeline_args(config)}


def measure(settings: dict, images: int, scratch: Path) -> dict:
    from ingestion.sample_data import generate
    from ingestion.upload import upload

    config = apply(Config(), settings)
    per_class = images // len(TUTORIAL_CLASSES)
    local = scratch / f"images-{images}"
    generate(local, TUTORIAL_CLASSES, per_class, "folders", config.data.sample_seed)
    input_uri = join(CONTAINER_URI, f"raw-{images}")
    upload(Storage.from_config(config), local, input_uri)
    child = subprocess.run(
        [sys.executable, __file__, "--ingest-once", json.dumps(settings), input_uri, join(CONTAINER_URI, f"out-{images}")],
        capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"ingesting {images} images failed:\n{child.stderr[-3000:]}")
    return {"images": per_class * len(TUTORIAL_CLASSES), **json.loads(child.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[2000], help="input sizes (10 classes each)")
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
