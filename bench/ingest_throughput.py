"""Ingest throughput from Azurite to Azurite against this machine's limit, and peak memory, for several sizes.

    PYTHONPATH=. .venv/bin/python bench/ingest_throughput.py --images 2000 8000
    ... --set ingest.conversion_processes=1   (another setting)

For each size: sample images of the 10 tutorial classes (folders layout) are generated and uploaded with
ingestion.upload, then ingested in a fresh subprocess, so that the peak RSS (VmHWM) is that ingestion's
alone. Prints one JSON object per size. Runs its own Azurite (temporary state folder, free port) and stops it.

The limit is the work no ingester can skip, the job's own reads and conversions, done on the same images (up
to LIMIT_SAMPLE of them) in the same run by plain loops with nothing else around them: processes that each GET
an image with the job's own storage client (core/storage.py, _SasClient) and convert it (decode, resize, JPEG-
encode), one after the other, all started together; one per core and two per core (a second process can GET
while the first waits for Azurite, which shares the cores), the better of the two is the limit
(`limit_images_per_s`), and `ratio` is the ingestion's images/s over it. The job's fixed start-up (Beam,
listing, the conversion processes) is a second or two, so the ratio grows with the input. The job also writes
the TFRecord shards and the manifest, which the limit leaves out.

For information: each cost on its own, one loop at a time on an otherwise idle machine (`convert_cpu_ms`, CPU
time; `own_get_ms` and `sdk_get_ms`, the wall time of sequential GETs with the job's client and with the Azure
SDK, the client's CPU and Azurite's), and the limits they would give if cores / (convert + GET) held with every
core busy (`limit_sum_own_get_images_per_s`, `limit_sum_sdk_get_images_per_s`). It does not: Azurite spends
more per GET when its requests arrive together from busy cores, and the loops above measure what is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

from bench.cpu import children_cpu_seconds, group_cpu_seconds, process_cpu_seconds
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
PROFILE_SAMPLES_PER_S = 200


def ingest_once(settings: dict, input_uri: str, output_uri: str, profile_to: str = "", incremental: bool = False
                ) -> dict:
    """In the subprocess: one ingestion (`incremental`: `ingest --incremental`), timed, with this process's peak
    memory and CPU seconds, and its conversion processes'. profile_to: sample the ingestion (not the imports before
    it) with py-spy into this file, in py-spy's raw format."""
    from ingestion.job import ingest

    config = apply(Config(), settings)
    with _sampled(profile_to) as sampler:
        cpu_before = process_cpu_seconds(os.getpid())
        started = time.monotonic()
        manifest = ingest(config, input_uri, output_uri, "folders", incremental_ingest=incremental)
        seconds = time.monotonic() - started
        # The conversion processes start with the job, and are still alive here.
        cpu_s = {"beam_process": round(process_cpu_seconds(os.getpid()) - cpu_before, 2),
                 "conversion_processes": round(children_cpu_seconds(os.getpid(), leaving_out=sampler), 2)}
    return {"seconds": round(seconds, 2), "images_per_s": round(manifest.total / seconds, 1),
            "peak_rss_mb": round(resident_mb("VmHWM")), "manifest_total": manifest.total,
            "converted": manifest.incremental.get("converted", manifest.total),
            "content_hash": manifest.content_hash, "beam_args": beam_pipeline_args(config), "cpu_s": cpu_s}


@contextlib.contextmanager
def _sampled(profile_to: str) -> typing.Iterator[tuple[int, ...]]:
    """py-spy sampling this process and its children while the block runs; yields the sampler's pid (if any)."""
    if not profile_to:
        yield ()
        return
    sampler = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(os.getpid()), "--subprocesses",
         "--rate", str(PROFILE_SAMPLES_PER_S), "--idle", "--nonblocking", "--format", "raw", "--output", profile_to],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the job starts
    try:
        yield (sampler.pid,)
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
        sampler.wait(timeout=60)


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
    uris = [join(input_uri, path.relative_to(local).as_posix()) for path in paths]
    own_get_s = seconds_per_item(uris, storage.read_bytes)
    cores = os.cpu_count() or 1
    return {"cores": cores, "convert_cpu_ms": round(1000 * convert_s, 3), "sdk_get_ms": round(1000 * sdk_get_s, 3),
            "own_get_ms": round(1000 * own_get_s, 3),
            # One loop per core, and two: a second process can GET while the first waits for blob storage.
            "limit_images_per_s": round(max(loops_at_once(config, uris, processes)
                                            for processes in (cores, 2 * cores)), 1),
            "limit_sum_own_get_images_per_s": round(cores / (convert_s + own_get_s), 1),
            "limit_sum_sdk_get_images_per_s": round(cores / (convert_s + sdk_get_s), 1)}


def loops_at_once(config: Config, uris: list[str], processes: int) -> float:
    """Images/s of `processes` processes that each GET (the job's own client) and convert their share of `uris`
    in a plain loop, all at once, started together once warm."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start_together = context.Barrier(processes)
    with context.Pool(processes, initializer=_set_barrier, initargs=(start_together,)) as pool:
        spans = pool.map(_read_and_convert_loop, [(config, uris[index::processes]) for index in range(processes)])
    return len(uris) / (max(end for _, end in spans) - min(start for start, _ in spans))


_barrier = None


def _set_barrier(barrier) -> None:
    global _barrier
    _barrier = barrier


def _read_and_convert_loop(job: tuple[Config, list[str]]) -> tuple[float, float]:
    """In a limit process: (start, end) on the system's monotonic clock of its loop over its URIs."""
    from ingestion.images import convert

    config, uris = job
    storage = Storage.from_config(config)
    convert(storage.read_bytes(uris[0]), config.ingest)  # imports, connection and caches warm
    _barrier.wait()
    started = time.monotonic()
    for uri in uris:
        convert(storage.read_bytes(uri), config.ingest)
    return started, time.monotonic()


def sample_input(settings: dict, images: int, scratch: Path) -> tuple[Path, str]:
    """Sample images of the 10 tutorial classes, `images` in all, in the folders layout: generated under `scratch`
    and uploaded to the bench container. Returns the local folder and the input URI."""
    from ingestion.upload import upload
    from sample_data import generate

    config = apply(Config(), settings)
    local = scratch / f"images-{images}"
    generate(local, TUTORIAL_CLASSES, images // len(TUTORIAL_CLASSES), "folders", config.data.sample_seed)
    input_uri = join(CONTAINER_URI, f"raw-{images}")
    upload(Storage.from_config(config), local, input_uri)
    return local, input_uri


def ingest_in_child(settings: dict, input_uri: str, output_uri: str, profile_to: str = "", incremental: bool = False
                    ) -> dict:
    """ingest_once in a fresh interpreter, with the CPU seconds Azurite spent meanwhile beside the job's own."""
    azurite = services.recorded_pid(apply(Config(), settings), "azurite")
    azurite_before = group_cpu_seconds(azurite)
    # Started with -c, so that the job's conversion processes (spawned) do not import this file as their main
    # module, as they would a script's: `./places` runs `python -m cli`, whose main module they skip.
    child = subprocess.run(
        [sys.executable, "-c", "from bench.ingest_throughput import main; main()", "--ingest-once",
         json.dumps(settings), input_uri, output_uri, profile_to, str(incremental)],
        capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"ingesting {input_uri} failed:\n{child.stderr[-3000:]}")
    ingestion = json.loads(child.stdout.strip().splitlines()[-1])
    ingestion["cpu_s"]["azurite"] = round(group_cpu_seconds(azurite) - azurite_before, 2)
    return ingestion


def measure(settings: dict, images: int, scratch: Path) -> dict:
    config = apply(Config(), settings)
    local, input_uri = sample_input(settings, images, scratch)
    ingestion = ingest_in_child(settings, input_uri, join(CONTAINER_URI, f"out-{images}"))
    limit = machine_limit(config, local, input_uri)
    return {"images": ingestion["manifest_total"], **ingestion, **limit,
            "ratio": round(ingestion["images_per_s"] / limit["limit_images_per_s"], 3),
            "ratio_sum_own_get": round(ingestion["images_per_s"] / limit["limit_sum_own_get_images_per_s"], 3),
            "ratio_sum_sdk_get": round(ingestion["images_per_s"] / limit["limit_sum_sdk_get_images_per_s"], 3)}


@contextlib.contextmanager
def bench_azurite(overrides: list[str]) -> typing.Iterator[tuple[dict, Path]]:
    """Settings for a bench's ingestions (`overrides`, SECTION.FIELD=VALUE, on top) and a scratch folder, with an
    Azurite of its own on a free port for as long as the block runs."""
    with tempfile.TemporaryDirectory(prefix="places-bench-") as scratch:
        settings = {**{item.split("=", 1)[0]: item.split("=", 1)[1] for item in overrides},
                    "state_dir": str(Path(scratch) / "state"), "storage.emulator_port": str(free_port()),
                    "data.classes": "tutorial"}
        config = apply(Config(), settings)
        services.up(config, ["azurite"], report=lambda line: None)
        try:
            os.environ[CONNECTION_STRING_ENV] = emulator_connection_string(config)
            yield settings, Path(scratch)
        finally:
            services.down(config, report=lambda line: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[8000], help="input sizes (10 classes each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a setting for the ingestion, as for ./places --set")
    parser.add_argument("--ingest-once", nargs=5, metavar=("SETTINGS", "INPUT", "OUTPUT", "PROFILE_TO", "INCREMENTAL"),
                        help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.ingest_once:
        settings, input_uri, output_uri, profile_to, incremental = arguments.ingest_once
        print(json.dumps(ingest_once(json.loads(settings), input_uri, output_uri, profile_to, incremental == "True")))
        return

    with bench_azurite(arguments.overrides) as (settings, scratch):
        for images in arguments.images:
            print(json.dumps(measure(settings, images, scratch)), flush=True)

if __name__ == "__main__":
    main()
