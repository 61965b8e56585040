"""Where an ingestion's CPU time goes: the job's processes sampled with py-spy, their CPU seconds and Azurite's
counted by the kernel.

    PYTHONPATH=. .venv/bin/python bench/ingest_profile.py --images 8000 [--raw prof.txt] [--set ...]

The same input as bench/ingest_throughput.py (sample images of the 10 tutorial classes uploaded to an Azurite of
its own), ingested once in a fresh interpreter that `py-spy record --subprocesses` samples from the job's start
to its end (not the imports before it): the Beam process (its worker threads) and the conversion processes
alike. Every sample falls into the first CATEGORIES rule its stack matches; a C extension's time counts for the
Python function that called it.

py-spy samples every thread, waiting or not (its own guess of which threads run counts threads that wait in C
code, such as gRPC's polling loops, as running); samples whose innermost frame waits (WAITING_FRAMES) are set
apart, and each process's other samples are scaled to the CPU seconds the kernel counted for it during the job.
Prints one JSON object: those CPU seconds per process and category, Azurite's, and the job's seconds. Sampling
slows the job (py-spy needs CPU too), so its seconds here are more than the throughput bench's; the shares are
what this bench is for.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
from pathlib import Path

from bench.ingest_throughput import CONTAINER_URI, PROFILE_SAMPLES_PER_S, bench_azurite, ingest_in_child, sample_input
from core.storage import join

# (category, the frame texts any of which puts a sample in it): first match wins, so the specific come first.
# A frame reads "function (file:line)".
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("start-up: imports", ("_find_and_load (",)),
    ("blob GET of each image", ("read_checked (ingestion/images.py", "read (core/storage.py")),
    ("decode, resize, JPEG-encode", ("convert (ingestion/images.py",)),
    ("listing the input", ("list_images (ingestion/layouts.py", "listing_tasks (", "detect_layout (")),
    ("TFRecord shard: upload", ("close (ingestion/job.py",)),
    ("TFRecord shard: write and compress", ("write (ingestion/job.py",)),
    ("tf.Example", ("_example (ingestion/job.py",)),
    ("content digest", ("record_digest (ingestion/job.py",)),
    ("progress bar", ("core/jobs.py", "tqdm/")),
    ("Beam counters", ("apache_beam/metrics/",)),
    ("commit: shards to the data folder, manifest", ("_commit (ingestion/job.py",)),
    ("moving images between processes", ("conversion_pool.py", "concurrent/futures/", "multiprocessing/")),
    ("Beam: Reshuffle", ("reshuffle", "Reshuffle")),
    ("Beam: coders", ("coders/", "coder_impl")),
    ("Beam: runner, per element and bundle", ("apache_beam/",)),
]
OTHER = "other"


WAITING = "waiting"
# process_kind's names, and the key of each one's CPU seconds in ingest_once's "cpu_s".
BEAM_PROCESS, CONVERSION_PROCESSES = "Beam process (driver and worker threads)", "conversion processes"
MEASURED = {BEAM_PROCESS: "beam_process", CONVERSION_PROCESSES: "conversion_processes"}


# py-spy samples every thread (--idle); a thread whose innermost frame is one of these is waiting, for work, a
# lock, the network or a timer, not using a core. A thread with no Python frame at all waits in native code.
WAITING_FRAMES = (
    "wait (threading.py", "_wait_for_tstate_lock (threading.py", "run (threading.py", "select (selectors.py",
    "_worker (concurrent/futures/thread.py", "wait_result_broken_or_wakeup (concurrent/futures/process.py",
    "_recv (multiprocessing/connection.py", "__enter__ (multiprocessing/synchronize.py",
    "main (multiprocessing/resource_tracker.py", "acquire (<frozen importlib._bootstrap>", "readinto (socket.py",
    "do_poll (urllib3/", "channel_spin (grpc/", "_serve (grpc/", "_poll_connectivity (grpc/", "_blocking (grpc/",
    "_exit_with_parent (ingestion/conversion_pool.py", "_sampled (bench/ingest_throughput.py",
)


# A Python frame reads "function (file:line)"; the rest of a stack names its processes, `process PID:"command"`,
# whose commands may hold ";" themselves.
_PYTHON_FRAME = re.compile(r"^\S.* \(.+:\d+\)$")


def _python_frames(stack: str) -> list[str]:
    return [frame for frame in stack.split(";") if _PYTHON_FRAME.match(frame)]


def categorize(stack: str) -> str:
    frames = _python_frames(stack)
    if not frames or frames[-1].startswith(WAITING_FRAMES):
        return WAITING
    return next((name for name, patterns in CATEGORIES if any(pattern in frame for frame in frames
                                                                 for pattern in patterns)), OTHER)


def process_kind(stack: str) -> str:
    """The process a sample is from, by the last `process PID:"command"` frame (py-spy names each one)."""
    python = set(_python_frames(stack))
    command = ";".join(frame for frame in stack.split(";") if frame not in python).rpartition("process ")[2]
    if "resource_tracker" in command:
        return "multiprocessing's resource tracker"
    if "multiprocessing" in command:
        return CONVERSION_PROCESSES
    return BEAM_PROCESS


def samples(raw: str) -> dict[str, collections.Counter]:
    """Samples per process kind and category from py-spy's raw ("stack count" per line) output."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[process_kind(stack)][categorize(stack)] += int(count)
    return counts


def breakdown(counts: dict[str, collections.Counter], cpu_s: dict[str, float]) -> dict[str, dict[str, float]]:
    """Each measured process's CPU seconds split over the categories as its samples are, waits left out."""
    result = {}
    for kind, key in MEASURED.items():
        working = {name: count for name, count in counts.get(kind, {}).items() if name != WAITING}
        total = sum(working.values()) or 1
        result[kind] = {name: round(cpu_s[key] * count / total, 2)
                        for name, count in sorted(working.items(), key=lambda item: -item[1])}
    return result


def profile(settings: dict, images: int, scratch: Path, raw_path: Path) -> dict:
    _, input_uri = sample_input(settings, images, scratch)
    ingestion = ingest_in_child(settings, input_uri, join(CONTAINER_URI, f"out-{images}"), str(raw_path))
    counts = samples(raw_path.read_text())
    return {"images": ingestion["manifest_total"], "seconds": ingestion["seconds"], "cores": os.cpu_count(),
            "cpu_s_measured": ingestion["cpu_s"], "cpu_s": breakdown(counts, ingestion["cpu_s"]),
            "samples_waiting_s": {kind: round(counter[WAITING] / PROFILE_SAMPLES_PER_S, 2)
                                  for kind, counter in counts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8000, help="input size (10 classes)")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples here (flamegraph.pl reads them)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a setting for the ingestion, as for ./places --set")
    arguments = parser.parse_args()
    with bench_azurite(arguments.overrides) as (settings, scratch):
        raw_path = arguments.raw or scratch / "py-spy.txt"
        print(json.dumps(profile(settings, arguments.images, scratch, raw_path), indent=2), flush=True)


if __name__ == "__main__":
    main()
