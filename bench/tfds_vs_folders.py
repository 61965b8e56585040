"""Ingest images/s through the tfds layout against the folders layout, on the same images, local to local.

    PYTHONPATH=. .venv/bin/python bench/tfds_vs_folders.py --per-class 200 --rounds 2

Writes a prepared places365_small data dir (sample_data.tfds_prepared, the offline stand-in for TFDS's download)
of the 10 tutorial classes, then copies every record's JPEG, byte for byte, into a folders-layout tree, so both
ingestions read the same images. Both run in this process on the local runner after one small warm-up job
(Beam's and the conversion processes' start-up then costs every timed job the same), alternating, `--rounds`
times each. Prints one JSON object: images, and per layout the seconds of each round and the best images/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from core.config import Config, apply
from data_schema import TUTORIAL_CLASSES, folder_name
from ingestion import tfds_source
from ingestion.job import ingest
from sample_data.tfds_prepared import write_prepared_places365_small


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200, help="train images per class (validation: a fifth)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tfds-") as scratch:
        root = Path(scratch)
        per_split = {"train": args.per_class, "validation": max(1, args.per_class // 5)}
        written = write_prepared_places365_small(root / "tfds", TUTORIAL_CLASSES, per_split, seed=365)
        images = sum(written.values())
        _copy_to_folders(root / "tfds", root / "folders")
        config = apply(Config(), {"data.tfds_data_dir": str(root / "tfds"), "state_dir": str(root / "state")})
        inputs = {"tfds": "tfds:places365_small", "folders": str(root / "folders")}
        ingest(config, "tfds:places365_small:validation", str(root / "warm-up"))
        seconds: dict[str, list[float]] = {layout: [] for layout in inputs}
        for round_number in range(args.rounds):
            for layout, input_uri in inputs.items():
                start = time.perf_counter()
                manifest = ingest(config, input_uri, str(root / f"out-{layout}-{round_number}"))
                seconds[layout].append(round(time.perf_counter() - start, 2))
                assert manifest.total == images, (layout, manifest.total, images)
        print(json.dumps({"images": images, **{layout: {"seconds": times, "images_per_s": round(images / min(times), 1)}
                                               for layout, times in seconds.items()}}))


def _copy_to_folders(data_dir: Path, out: Path) -> None:
    """Every record's image bytes as <out>/<class folder>/<n>.jpg: the folders layout of the same images."""
    for split in tfds_source.SPLITS:
        for task in tfds_source.listing_tasks(f"tfds:places365_small:{split}", str(data_dir)):
            for listed in tfds_source.read_shard(task):
                path = out / folder_name(listed.category) / listed.relative_path.replace("/", "_")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(listed.image)


if __name__ == "__main__":
    main()
