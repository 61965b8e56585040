"""A full ingest against an incremental one that adds a tenth more images, on the same data, Azurite to Azurite.

    PYTHONPATH=. .venv/bin/python bench/ingest_incremental.py --images 2000 --added-percent 10 --rounds 3

Sample images of the 10 tutorial classes (folders layout) are generated, `--images` of them uploaded and ingested
(the committed version), then `--added-percent` more are uploaded beside them. Each round then times, in turns and
each in a fresh interpreter (so that none finds the conversion processes of another warm):

  incremental      `ingest --incremental` into the committed version: lists all, converts the new ones
  full             a full ingest of the same, grown, input into another output
  new_alone        a full ingest of only the new images (their own input): the cheapest way to convert them, the
                   baseline that an incremental ingest's time should stay near

Prints one JSON object: the seconds of every round, their medians, the ratios, and whether the incremental and the
full ingest committed the same content hash. `checks` says whether the incremental ingest took under half the full
one and gave the same hash. Runs its own Azurite (temporary state folder, free port) and stops it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from bench.ingest_throughput import bench_azurite, ingest_in_child
from core.config import Config, apply
from core.storage import Storage, join
from data_schema import TUTORIAL_CLASSES

CONTAINER_URI = "azfs://devstoreaccount1/bench-incremental"


def split_sample(settings: dict, images: int, added: int, scratch: Path) -> tuple[Path, Path]:
    """`images` + `added` sample images, as two folders: those ingested first and those that arrive later."""
    from sample_data import generate

    config = apply(Config(), settings)
    generated = scratch / "generated"
    generate(generated, TUTORIAL_CLASSES, (images + added) // len(TUTORIAL_CLASSES), "folders",
             config.data.sample_seed)
    first, later = scratch / "first", scratch / "later"
    files = sorted(path for path in generated.rglob("*") if path.is_file())
    arriving = set(files[::len(files) // added][:added])
    for path in files:
        target = (later if path in arriving else first) / path.relative_to(generated)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    return first, later


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="images ingested first (10 classes)")
    parser.add_argument("--added-percent", type=int, default=10, help="how many more arrive, in percent")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a setting for the ingestions, as for ./places --set")
    arguments = parser.parse_args()

    from ingestion.upload import upload

    added = arguments.images * arguments.added_percent // 100
    with bench_azurite(arguments.overrides) as (settings, scratch):
        storage = Storage.from_config(apply(Config(), settings))
        first, later = split_sample(settings, arguments.images, added, scratch)
        new_alone_input = join(CONTAINER_URI, "new-alone")
        upload(storage, later, new_alone_input)
        times: dict[str, list[float]] = {"incremental": [], "full": [], "new_alone": []}
        hashes = []
        for round_number in range(arguments.rounds):
            grown_input = join(CONTAINER_URI, f"raw-{round_number}")
            committed = join(CONTAINER_URI, f"out-{round_number}")
            upload(storage, first, grown_input)
            ingest_in_child(settings, grown_input, committed)
            upload(storage, later, grown_input)
            incremental = ingest_in_child(settings, grown_input, committed, incremental=True)
            full = ingest_in_child(settings, grown_input, join(CONTAINER_URI, f"full-{round_number}"))
            new_alone = ingest_in_child(settings, new_alone_input, join(CONTAINER_URI, f"new-alone-{round_number}"))
            assert incremental["converted"] == added == new_alone["manifest_total"], (incremental, new_alone)
            for name, result in (("incremental", incremental), ("full", full), ("new_alone", new_alone)):
                times[name].append(round(result["seconds"], 2))
            hashes.append(incremental["content_hash"] == full["content_hash"])
        result = {"images_before": arguments.images, "images_added": added, "images_after": full["manifest_total"],
                  "rounds": arguments.rounds, "seconds": times,
                  "median_s": {name: median(values) for name, values in times.items()},
                  "same_content_hash": all(hashes)}
        result["incremental_over_full"] = round(result["median_s"]["incremental"] / result["median_s"]["full"], 3)
        result["incremental_over_new_alone"] = round(
            result["median_s"]["incremental"] / result["median_s"]["new_alone"], 3)
        result["checks"] = {"incremental_under_half_of_full": result["incremental_over_full"] < 0.5,
                            "same_content_hash": result["same_content_hash"]}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
