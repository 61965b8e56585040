"""The run report a person reads: one HTML page with pictures, and a short table for the terminal.

Built from a run's TFX artifacts (statistics, anomalies, training history, TFMA evaluation, push result),
by the runner after every run and again by `./places inspect RUN`.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.evaluator.results import EvaluationSummary, read_evaluation
from components.mlflow_pusher.executor import PUSH_RESULT_FILE
from components.trainer import HISTORY_FILE
from components.validation_gate.executor import Anomaly, read_anomalies
from core.console import table
from data_schema import HEIGHT_KEY, LABEL_NAME_KEY, TRAIN_SPLIT, WIDTH_KEY, display_name

TEMPLATE = Path(__file__).with_name("report_template.html")
# Trainer outputs in its model_run folder (components/trainer/run_fn.py).
# The confusion matrix is the Trainer's, on the eval split: the same images and model TFMA evaluates.
TRAINING_PLOTS = ("accuracy_vs_epoch.png", "confusion_matrix.png")


@dataclass
class SplitStatistics:
    examples: int
    examples_by_class: dict[str, int]
    # feature -> {"min", "median", "max"} of the original image sizes.
    image_sizes: dict[str, dict[str, float]]


@dataclass
class RunRecord:
    """Everything a report shows about one run; any part may be missing when the run stopped early."""
    mlflow_run_id: str
    run_url: str
    started: str
    outcome: str
    message: str
    class_names: list[str]
    settings: dict[str, str] = field(default_factory=dict)
    component_states: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, SplitStatistics] = field(default_factory=dict)
    anomalies: list[Anomaly] | None = None
    history: list[dict] = field(default_factory=list)
    evaluation: EvaluationSummary | None = None
    push: dict | None = None


def read_statistics(statistics_uri: str) -> dict[str, SplitStatistics]:
    import tensorflow_data_validation as tfdv

    result = {}
    # Train first: the order people read (and stack) splits in.
    for split_dir in sorted(Path(statistics_uri).glob("Split-*"), key=lambda path: path.name != f"Split-{TRAIN_SPLIT}"):
        stats = tfdv.load_stats_binary(str(split_dir / "FeatureStats.pb")).datasets[0]
        features = {feature.path.step[0]: feature for feature in stats.features}
        by_class: dict[str, int] = {}
        if LABEL_NAME_KEY in features:
            for bucket in features[LABEL_NAME_KEY].string_stats.rank_histogram.buckets:
                by_class[bucket.label] = int(bucket.sample_count)
        sizes = {}
        for key in (HEIGHT_KEY, WIDTH_KEY):
            if key in features:
                numbers = features[key].num_stats
                sizes[key] = {"min": numbers.min, "median": numbers.median, "max": numbers.max}
        result[split_dir.name[len("Split-"):]] = SplitStatistics(int(stats.num_examples), by_class, sizes)
    return result


def collect(outputs: dict[str, dict[str, str]], record: RunRecord) -> RunRecord:
    """Fill `record` from a run's artifact URIs ({node: {output key: uri}}), skipping what is missing."""
    if "statistics" in outputs.get("StatisticsGen", {}):
        record.statistics = read_statistics(outputs["StatisticsGen"]["statistics"])
    if "anomalies" in outputs.get("ExampleValidator", {}):
        record.anomalies = read_anomalies(outputs["ExampleValidator"]["anomalies"])
    model_run = outputs.get("Trainer", {}).get("model_run")
    if model_run and (Path(model_run) / HISTORY_FILE).exists():
        record.history = json.loads((Path(model_run) / HISTORY_FILE).read_text())
    if "evaluation" in outputs.get("Evaluator", {}):
        record.evaluation = read_evaluation(outputs["Evaluator"]["evaluation"])
    pushed = outputs.get("MlflowPusher", {}).get("pushed_model")
    if pushed and (Path(pushed) / PUSH_RESULT_FILE).exists():
        record.push = json.loads((Path(pushed) / PUSH_RESULT_FILE).read_text())
    return record


def plot_class_counts(statistics: dict[str, SplitStatistics], class_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.arange(len(class_names))
    figure, axes = plt.subplots(figsize=(max(6, 0.5 * len(class_names)), 4))
    bottom = np.zeros(len(class_names))
    for split, stats in statistics.items():
        counts = np.array([stats.examples_by_class.get(name, 0) for name in class_names])
        axes.bar(positions, counts, bottom=bottom, label=split)
        bottom += counts
    axes.set_xticks(positions, [display_name(name) for name in class_names], rotation=60, ha="right", fontsize=8)
    axes.set_ylabel("images")
    axes.set_title("Images per class and split")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def terminal_summary(record: RunRecord) -> str:
    """The short table `./places run` and `./places inspect` print."""
    lines = [f"run {record.mlflow_run_id}: {record.outcome}", f"  {record.message}"]
    evaluation = record.evaluation
    if evaluation is not None:
        champion = evaluation.champion
        rows = [{"class": display_name(name),
                 "eval images": evaluation.candidate.examples_by_class.get(name, 0),
                 "accuracy": _percent(evaluation.candidate.accuracy_by_class.get(name)),
                 "champion": _percent(champion.accuracy_by_class.get(name)) if champion else "-"}
                for name in record.class_names]
        rows.append({"class": "overall", "eval images": evaluation.candidate.examples,
                     "accuracy": _percent(evaluation.candidate.accuracy),
                     "champion": _percent(champion.accuracy) if champion else "-"})
        lines += ["", table(rows, ["class", "eval images", "accuracy", "champion"])]
    elif record.anomalies:
        lines += ["", table([{"split": item.split, "feature": item.feature, "anomaly": item.description[:90]}
                             for item in record.anomalies])]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def write_report(record: RunRecord, outputs: dict[str, dict[str, str]], folder: Path) -> Path:
    """Write <folder>/index.html and its pictures; returns the page's path."""
    from jinja2 import Template

    folder.mkdir(parents=True, exist_ok=True)
    pictures = {}
    if record.statistics:
        plot_class_counts(record.statistics, record.class_names, folder / "class_counts.png")
        pictures["class_counts"] = "class_counts.png"
    model_run = outputs.get("Trainer", {}).get("model_run")
    for name in TRAINING_PLOTS:
        if model_run and (Path(model_run) / name).exists():
            shutil.copy(Path(model_run) / name, folder / name)
            pictures[name.removesuffix(".png")] = name
    page = Template(TEMPLATE.read_text(), autoescape=True).render(
        record=record, pictures=pictures, display_name=display_name, percent=_percent,
        class_rows=_class_rows(record), splits=list(record.statistics), escape=html.escape)
    index = folder / "index.html"
    temporary = index.with_suffix(".tmp")
    temporary.write_text(page)
    temporary.replace(index)
    return index


def _class_rows(record: RunRecord) -> list[dict]:
    rows = []
    evaluation = record.evaluation
    for name in record.class_names:
        row = {"name": display_name(name),
               "counts": {split: stats.examples_by_class.get(name, 0) for split, stats in record.statistics.items()}}
        if evaluation is not None:
            row["accuracy"] = evaluation.candidate.accuracy_by_class.get(name)
            row["champion"] = evaluation.champion.accuracy_by_class.get(name) if evaluation.champion else None
        rows.append(row)
    return rows
