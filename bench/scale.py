"""Wall time and peak memory of each stage against the number of images, from 1,000 images to all 365 classes.

    PYTHONPATH=. .venv/bin/python bench/scale.py                       # 1k, 4k, 16k x 10 classes; 365 x 40
    PYTHONPATH=. .venv/bin/python bench/scale.py --cases 10x100 365x4 --plot /tmp/scale.png

Each case is CLASSESxIMAGES_PER_CLASS of sample data (folders layout), generated, uploaded to this run's own
Azurite and then taken through the stages a user runs, each in a fresh process of its own:
  ingest         ingestion.job.ingest, the images to TFRecords
  pipeline       pipeline.runner.run_pipeline with one epoch: StatisticsGen, Trainer and Evaluator are timed by
                 the runner's own per-component lines; the Trainer's epoch from its history.json
  batch-predict  serving.batch.batch_predict over the raw images, with the model the pipeline registered
Peak memory is the process's peak resident set (VmHWM) for ingest and batch-predict. Within the pipeline's
one process it is the highest resident set sampled while each component ran, which includes whatever the
components before it left allocated. The Trainer runs with the default training.image_cache_mb.

Prints one JSON object, and writes a PNG of time and memory against images (--plot).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.memory import resident_mb
from core import services
from core.config import Config, apply
from core.storage import CONNECTION_STRING_ENV, Storage, emulator_connection_string
from tests.fixtures import free_port

CONTAINER_URI = "azfs://devstoreaccount1/scale"
DEFAULT_CASES = ("10x100", "10x400", "10x1600", "365x40")
COMPONENTS = ("StatisticsGen", "Trainer", "Evaluator")


class ResidentSampler:
    """The resident set of this process every 0.2 s, and the highest value seen since `mark()`."""

    def __init__(self):
        self._peak = 0.0
        self._lock = threading.Lock()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            resident = resident_mb()
            with self._lock:
                self._peak = max(self._peak, resident)
            time.sleep(0.2)

    def mark(self) -> float:
        """The peak since the last mark; starts a new window at the current resident set."""
        with self._lock:
            peak, self._peak = max(self._peak, resident_mb()), resident_mb()
        return peak


def stage_ingest(config: Config, raw_uri: str, examples_uri: str) -> dict:
    from ingestion.job import ingest

    started = time.monotonic()
    manifest = ingest(config, raw_uri, examples_uri, "folders")
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "images_per_s": round(manifest.total / seconds, 1),
            "peak_rss_mb": round(resident_mb("VmHWM"))}


def stage_pipeline(config: Config) -> dict:
    from pipeline.runner import run_pipeline

    sampler = ResidentSampler()
    stages, started = {}, {}

    def echo(line: str) -> None:
        match = re.match(r"\s+(\w+) (\.\.\.|done in ([\d.]+) s)$", line)
        if not match or match.group(1) not in COMPONENTS:
            return
        if match.group(2) == "...":
            sampler.mark()
            started[match.group(1)] = time.monotonic()
        else:
            stages[match.group(1)] = {"seconds": round(time.monotonic() - started[match.group(1)], 1),
                                      "peak_rss_mb": round(sampler.mark())}

    result = run_pipeline(config, echo=echo)
    history = result.record.history
    stages["Trainer"]["epoch_seconds"] = history[0]["seconds"] if history else None
    stages["Trainer"]["train_images_per_s"] = history[0]["train_images_per_s"] if history else None
    evaluation = result.record.evaluation
    return {"stages": stages, "outcome": result.record.outcome,
            "top1": round(evaluation.candidate.accuracy, 4) if evaluation else None,
            "pipeline_peak_rss_mb": round(resident_mb("VmHWM"))}


def stage_batch_predict(config: Config, raw_uri: str, output_uri: str) -> dict:
    from serving.batch import batch_predict

    started = time.monotonic()
    summary = batch_predict(config, raw_uri, output_uri)
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "images_per_s": round(summary.predicted / seconds, 1),
            "peak_rss_mb": round(resident_mb("VmHWM"))}


STAGES = {"ingest": stage_ingest, "pipeline": stage_pipeline, "batch-predict": stage_batch_predict}


def in_fresh_process(stage: str, settings: dict, *arguments: str) -> dict:
    child = subprocess.run([sys.executable, __file__, "--stage", stage, json.dumps(settings), *arguments],
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure_case(base: dict, case: str, scratch: Path) -> dict:
    from data_schema import TUTORIAL_CLASSES, resolve_classes
    from ingestion.upload import upload
    from sample_data import generate

    class_count, per_class = (int(number) for number in case.split("x"))
    classes = TUTORIAL_CLASSES if class_count == len(TUTORIAL_CLASSES) else resolve_classes("all")[:class_count]
    prefix = f"{CONTAINER_URI}/{case}"
    settings = {**base, "data.classes": ",".join(classes), "data.raw_images_uri": f"{prefix}/raw",
                "data.examples_uri": f"{prefix}/examples", "mlflow.model_name": f"scale-{case}",
                "mlflow.experiment": f"scale-{case}"}
    config = apply(Config(), settings)
    started = time.monotonic()
    images = generate(scratch / case, classes, per_class, "folders", config.data.sample_seed)
    upload(Storage.from_config(config), scratch / case, config.uri(config.data.raw_images_uri))
    prepared_s = time.monotonic() - started
    print(f"{case}: {images} images generated and uploaded in {prepared_s:.0f} s", file=sys.stderr, flush=True)
    result = {"case": case, "classes": class_count, "images": images}
    result["ingest"] = in_fresh_process("ingest", settings, config.uri(config.data.raw_images_uri),
                                        config.uri(config.data.examples_uri))
    print(f"{case}: ingest {result['ingest']}", file=sys.stderr, flush=True)
    result["pipeline"] = in_fresh_process("pipeline", settings)
    print(f"{case}: pipeline {result['pipeline']}", file=sys.stderr, flush=True)
    result["batch-predict"] = in_fresh_process("batch-predict", settings, config.uri(config.data.raw_images_uri),
                                               f"{prefix}/predictions")
    print(f"{case}: batch-predict {result['batch-predict']}", file=sys.stderr, flush=True)
    return result


def stage_rows(result: dict) -> dict[str, dict]:
    """{stage: {"seconds", "peak_rss_mb"}} of one case, flat, in the order a user runs them."""
    stages = dict(result["pipeline"]["stages"])
    if stages.get("Trainer", {}).get("epoch_seconds"):
        # The Trainer's row is its one epoch, without the model's build and export.
        stages["Trainer"] = {**stages["Trainer"], "seconds": stages["Trainer"]["epoch_seconds"]}
    return {"ingest": result["ingest"], **{name: stages[name] for name in COMPONENTS if name in stages},
            "batch-predict": result["batch-predict"]}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axes, memory_axes) = plt.subplots(1, 2, figsize=(12, 4.5))
    # One line per stage through the 10-class cases; a case with other classes is a lone star of the same colour,
    # since joining it to the line would read as a trend in the number of images.
    for stage in stage_rows(results[0]):
        colour = None
        for on_line in (True, False):
            points = sorted((result["images"], stage_rows(result)[stage]) for result in results
                            if (result["classes"] == 10) == on_line)
            if not points:
                continue
            images = [point[0] for point in points]
            style = {"marker": "o", "label": stage} if on_line else {"marker": "*", "markersize": 12, "linestyle": ""}
            for axes, field in ((time_axes, "seconds"), (memory_axes, "peak_rss_mb")):
                line, = axes.plot(images, [point[1][field] for point in points], color=colour, **style)
            colour = line.get_color()
    for axes, label in ((time_axes, "wall time (s)"), (memory_axes, "peak resident memory (MB)")):
        axes.set_xlabel("images (lines: 10 classes; stars: 365 classes)")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    time_axes.set_title("Wall time per stage (Trainer: one epoch)")
    memory_axes.set_title("Peak memory per stage")
    time_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), metavar="CLASSESxPER_CLASS",
                        help="data sets to measure, e.g. 10x100 (10 tutorial classes, 100 images each) or 365x40")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a setting for every stage, as for ./places --set (e.g. training.image_cache_mb=0)")
    parser.add_argument("--plot", type=Path, default=Path("scale.png"), help="where the PNG goes")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.stage:
        stage, settings, *rest = arguments.stage
        config = apply(Config(), json.loads(settings))
        print(json.dumps(STAGES[stage](config, *rest)))
        return

    with tempfile.TemporaryDirectory(prefix="places-scale-") as scratch:
        base = {"state_dir": str(Path(scratch) / "state"), "storage.emulator_port": str(free_port()),
                "mlflow.port": str(free_port()), "training.epochs": "1", "evaluation.accuracy_floor": "0.0",
                **dict(item.split("=", 1) for item in arguments.overrides)}
        config = apply(Config(), base)
        services.up(config, ["azurite", "mlflow"], report=lambda line: None)
        try:
            os.environ[CONNECTION_STRING_ENV] = emulator_connection_string(config)
            results = [measure_case(base, case, Path(scratch)) for case in arguments.cases]
        finally:
            services.down(config, report=lambda line: None)
    plot(results, arguments.plot)
    print(json.dumps({"cpu_cores": os.cpu_count(), "epochs": 1, "settings": arguments.overrides,
                      "plot": str(arguments.plot), "cases": results},
                     indent=2))


if __name__ == "__main__":
    main()
