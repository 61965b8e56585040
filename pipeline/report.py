"""The run report a person reads: one HTML page with pictures, and a short table for the terminal.

Built from a run's TFX artifacts (statistics, anomalies, training history, TFMA evaluation, push result),
by the runner after every run and again by `./places inspect RUN`.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.evaluator.results import EvaluationSummary, read_evaluation
from components.mlflow_pusher.executor import PUSH_RESULT_FILE
from components.trainer import HISTORY_FILE
from components.validation_gate.drift import (
    DriftResult,
    class_counts,
    feature_key,
    read_drift,
    read_split_statistics,
)
from components.validation_gate.executor import Anomaly, read_anomalies
from core.console import table
from data_schema import HEIGHT_KEY, TRAIN_SPLIT, WIDTH_KEY, display_name

TEMPLATE = Path(__file__).with_name("report_template.html")
# The stylesheet of every HTML page the project writes (this run report, `./places monitor`'s), inlined so that a
# page is one file a person can mail or attach to an MLflow run.
STYLESHEET = Path(__file__).with_name("report_style.css")
# The pictures of the training history and of the Evaluator's confusion matrix, beside the page.
ACCURACY_PLOT, CONFUSION_PLOT = "accuracy_vs_epoch.png", "confusion_matrix.png"
# Up to this many classes a person reads every one: the terminal lists them all, the page shows the confusion
# matrix with a count in each cell and names each bar of the class-count plot. Beyond, the terminal shows the ends
# of the ranking, the page the most confused pairs and histograms of the counts; the page's table still lists every
# class.
READABLE_CLASSES = 30
TERMINAL_WORST, TERMINAL_BEST = 10, 5
CONFUSED_PAIRS = 20
# Beyond READABLE_CLASSES, the drift section lists this many classes whose share moved most (drift.json has all).
CLASS_MOVERS = 20


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
    # How far the training data lies from the champion's; None where the run stopped before the drift check.
    drift: DriftResult | None = None
    history: list[dict] = field(default_factory=list)
    evaluation: EvaluationSummary | None = None
    # The candidate's confusion matrix on the eval split (TFMA's): row true class, column predicted, in
    # class_names order.
    confusion: list[list[int]] | None = None
    push: dict | None = None


def read_statistics(statistics_uri: str) -> dict[str, SplitStatistics]:
    result = {}
    # Train first: the order people read (and stack) splits in.
    for split_dir in sorted(Path(statistics_uri).glob("Split-*"), key=lambda path: path.name != f"Split-{TRAIN_SPLIT}"):
        split = split_dir.name[len("Split-"):]
        statistics = read_split_statistics(statistics_uri, split)
        features = {feature_key(feature): feature for feature in statistics.datasets[0].features}
        sizes = {}
        for key in (HEIGHT_KEY, WIDTH_KEY):
            if key in features:
                numbers = features[key].num_stats
                sizes[key] = {"min": numbers.min, "median": numbers.median, "max": numbers.max}
        result[split] = SplitStatistics(int(statistics.datasets[0].num_examples), class_counts(statistics), sizes)
    return result


def collect(outputs: dict[str, dict[str, str]], record: RunRecord) -> RunRecord:
    """Fill `record` from a run's artifact URIs ({node: {output key: uri}}), skipping what is missing."""
    if "statistics" in outputs.get("StatisticsGen", {}):
        record.statistics = read_statistics(outputs["StatisticsGen"]["statistics"])
    if "anomalies" in outputs.get("ExampleValidator", {}):
        record.anomalies = read_anomalies(outputs["ExampleValidator"]["anomalies"])
    if "drift" in outputs.get("DriftCheck", {}):
        record.drift = read_drift(outputs["DriftCheck"]["drift"])
    model_run = outputs.get("Trainer", {}).get("model_run")
    if model_run and (Path(model_run) / HISTORY_FILE).exists():
        record.history = json.loads((Path(model_run) / HISTORY_FILE).read_text())
    if "evaluation" in outputs.get("Evaluator", {}):
        record.evaluation = read_evaluation(outputs["Evaluator"]["evaluation"])
        if record.evaluation.candidate.confusion_cells:  # none from an Evaluator that ran before it counted them
            record.confusion = confusion_matrix(record.evaluation.candidate.confusion_cells, len(record.class_names))
    pushed = outputs.get("MlflowPusher", {}).get("pushed_model")
    if pushed and (Path(pushed) / PUSH_RESULT_FILE).exists():
        record.push = json.loads((Path(pushed) / PUSH_RESULT_FILE).read_text())
    return record


def confusion_matrix(cells: list[list[int]], num_classes: int) -> list[list[int]]:
    """[true class][predicted class] counts from ModelEvaluation.confusion_cells."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    for true, predicted, images in cells:
        counts[true, predicted] = images
    return counts.tolist()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: reports are written where there may be no display
    import matplotlib.pyplot as plt

    return plt


def plot_class_counts(statistics: dict[str, SplitStatistics], class_names: list[str], path: Path) -> None:
    """Images per class and split: stacked bars, one per class by name, or at many classes one histogram per
    split of how many classes have how many images (the page's table has every class's counts)."""
    import matplotlib

    plt = _pyplot()
    counts = {split: np.array([stats.examples_by_class.get(name, 0) for name in class_names])
              for split, stats in statistics.items()}
    if len(class_names) <= READABLE_CLASSES:
        positions = np.arange(len(class_names))
        figure, axes = plt.subplots(figsize=(max(7, 0.5 * len(class_names)), 4))
        bottom = np.zeros(len(class_names))
        for split, split_counts in counts.items():
            axes.bar(positions, split_counts, bottom=bottom, label=split)
            bottom += split_counts
        axes.set_xticks(positions, [display_name(name) for name in class_names], rotation=60, ha="right",
                        fontsize=8)
        axes.set(ylabel="images", title="Images per class and split")
        # Beside the bars, not over them: the bars reach the top of the axes.
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        figure, all_axes = plt.subplots(1, len(counts), figsize=(11, 3.6), squeeze=False)
        for axes, (split, split_counts) in zip(all_axes[0], counts.items()):
            low, high = int(split_counts.min()), int(split_counts.max())
            # One bar per image count while that stays readable, else 30 bins.
            bins = np.arange(low, high + 2) - 0.5 if high - low < 40 else 30
            axes.hist(split_counts, bins=bins, color="C0" if split == TRAIN_SPLIT else "C1")
            fewest = class_names[int(np.argmin(split_counts))]
            axes.set(xlabel=f"{split} images per class", ylabel="classes",
                     title=f"{split}: {len(class_names)} classes, median {np.median(split_counts):.0f} images\n"
                           f"fewest {display_name(fewest)} ({low}), most {high}")
            axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_accuracy(history: list[dict], model_name: str, path: Path) -> None:
    """Train and validation accuracy per epoch."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    epochs = [row["epoch"] for row in history]
    axes.plot(epochs, [row["accuracy"] for row in history], marker="o", label="train")
    axes.plot(epochs, [row["val_accuracy"] for row in history], marker="o", label="validation")
    axes.set(title=f"{model_name}: accuracy per epoch", xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(confusion: list[list[int]], class_names: list[str], model_name: str, path: Path) -> None:
    """The eval split's confusion matrix: rows true class, columns predicted class, counts in the cells while
    they are readable."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    num_classes = len(class_names)
    # Big enough to read 10 classes, capped so 365 classes still give a PNG a viewer opens (tiny labels).
    side = min(max(7.0, 0.45 * num_classes + 3), 40.0)
    # Labels as tall as a row allows (the matrix takes about 80 % of the figure; 72 points an inch), 10 at most.
    label_size = min(10.0, 0.8 * side * 72 * 0.8 / num_classes)
    figure, axes = plt.subplots(figsize=(side, side))
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    names = [display_name(name) for name in class_names]
    axes.set_xticks(range(num_classes), names, rotation=90, fontsize=label_size)
    axes.set_yticks(range(num_classes), names, fontsize=label_size)
    accuracy = np.trace(confusion) / max(confusion.sum(), 1)
    axes.set(xlabel="predicted class", ylabel="true class",
             title=f"{model_name}: confusion matrix on the eval split ({confusion.sum()} images, "
                   f"accuracy {accuracy:.1%})")
    if num_classes <= READABLE_CLASSES:  # beyond, the colours alone carry the matrix
        dark = confusion.max() / 2
        for row in range(num_classes):
            for column in range(num_classes):
                axes.text(column, row, confusion[row, column], ha="center", va="center", fontsize=label_size,
                          color="white" if confusion[row, column] > dark else "black")
        figure.tight_layout()
    else:
        # tight_layout draws the whole figure once more to measure it, seconds at hundreds of labels: the margins
        # come from the longest label instead (a character is about 0.6 of the font size wide).
        label_inches = max(map(len, names)) * 0.6 * label_size / 72 + 0.6
        figure.subplots_adjust(left=label_inches / side, bottom=label_inches / side, right=1 - 0.9 / side,
                               top=1 - 0.6 / side)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def terminal_summary(record: RunRecord) -> str:
    """The short table `./places run` and `./places inspect` print: every class, worst top-1 first, or at many
    classes the worst and the best."""
    lines = [f"run {record.mlflow_run_id}: {record.outcome}", f"  {record.message}"]
    if record.drift is not None:
        lines.append(f"  {drift_line(record)}")
    evaluation = record.evaluation
    if evaluation is not None:
        class_rows = _class_rows(record)
        rows = [{"class": row["name"], "eval images": row["eval_images"], "top-1": _percent(row["accuracy"]),
                 "top-5": _percent(row["top5_accuracy"]), "champion top-1": _percent(row["champion"])}
                for row in class_rows]
        shown_note = []
        evaluated = rows[:sum(row["accuracy"] is not None for row in class_rows)]
        left_out = len(evaluated) - TERMINAL_WORST - TERMINAL_BEST
        if len(rows) > READABLE_CLASSES and left_out > 0:
            shown_note = [f"the worst {TERMINAL_WORST} and the best {TERMINAL_BEST} of {len(evaluated)} classes "
                          f"with eval images, by top-1 ({len(rows) - len(evaluated)} had none); the HTML report "
                          f"lists all {len(rows)}"]
            rows = evaluated[:TERMINAL_WORST] + [{"class": f"... {left_out} more"}] + evaluated[-TERMINAL_BEST:]
        champion = evaluation.champion
        rows.append({"class": "overall", "eval images": evaluation.candidate.examples,
                     "top-1": _percent(evaluation.candidate.accuracy),
                     "top-5": _percent(evaluation.candidate.top5_accuracy),
                     "champion top-1": _percent(champion.accuracy) if champion else "-"})
        lines += ["", *shown_note, table(rows, ["class", "eval images", "top-1", "top-5", "champion top-1"])]
    elif record.anomalies:
        lines += ["", table([{"split": item.split, "feature": item.feature, "anomaly": item.description[:90]}
                             for item in record.anomalies])]
    return "\n".join(lines)


def drift_line(record: RunRecord) -> str:
    """The drift check's verdict in one line."""
    drift = record.drift
    if drift.not_checked:
        return f"drift: {drift.not_checked}"
    if not drift.drifted:
        return f"drift from {drift.baseline}: none past the thresholds"
    # Stopped with a drift result that drifted: the drift gate stopped it (the anomaly gate runs before the check).
    then = ("; if the change is meant, run again with `--set pipeline.on_drift=warn`, otherwise fix the data"
            if record.outcome.startswith("stopped") else "; pipeline.on_drift is warn, so the run went on")
    return f"drift from {drift.baseline}: " + ", ".join(
        f"{item.feature} drifted ({item.measure} {item.value:.3f} > {item.threshold:g})" for item in drift.drifted
    ) + then


def _percent(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def write_report(record: RunRecord, folder: Path) -> Path:
    """Write <folder>/index.html and its pictures; returns the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    pictures = {}
    if record.statistics:
        plot_class_counts(record.statistics, record.class_names, folder / "class_counts.png")
        pictures["class_counts"] = "class_counts.png"
    model_name = record.settings.get("model", "model")
    if record.history:
        plot_accuracy(record.history, model_name, folder / ACCURACY_PLOT)
        pictures["accuracy_vs_epoch"] = ACCURACY_PLOT
    if record.confusion:
        plot_confusion(record.confusion, record.class_names, model_name, folder / CONFUSION_PLOT)
        pictures["confusion_matrix"] = CONFUSION_PLOT
    return write_page(
        folder, TEMPLATE, record=record, pictures=pictures, display_name=display_name, percent=_percent,
        class_rows=_class_rows(record), splits=list(record.statistics), escape=html.escape,
        many_classes=len(record.class_names) > READABLE_CLASSES,
        class_movers=_class_movers(record.drift, len(record.class_names)), drift_line=drift_line,
        confused_pairs=most_confused_pairs(record.confusion, record.class_names) if record.confusion else [],
        confusion_images=int(np.sum(record.confusion or 0)))


def write_page(folder: Path, template: Path, **values) -> Path:
    """`template` (Jinja, autoescaped) rendered with `values` and the house stylesheet as <folder>/index.html, written
    beside it and renamed, so a reader never sees half a page; returns its path."""
    from jinja2 import Template

    page = Template(template.read_text(), autoescape=True).render(house_style=STYLESHEET.read_text(), **values)
    index = folder / "index.html"
    temporary = index.with_suffix(".tmp")
    temporary.write_text(page)
    temporary.replace(index)
    return index


def _class_movers(drift: DriftResult | None, num_classes: int) -> list:
    """The classes the drift section lists: all of them up to READABLE_CLASSES, else those that moved most."""
    if drift is None:
        return []
    return list(drift.class_shares if num_classes <= READABLE_CLASSES else drift.class_shares[:CLASS_MOVERS])


def most_confused_pairs(confusion: list[list[int]], class_names: list[str], limit: int = CONFUSED_PAIRS) -> list[dict]:
    """The `limit` largest off-diagonal cells: true class, predicted as, how many images, and their share of
    that true class's images; most images first."""
    counts = np.asarray(confusion)
    off_diagonal = counts * (1 - np.eye(len(counts), dtype=counts.dtype))
    per_true_class = counts.sum(axis=1)
    cells = [(int(off_diagonal[true, predicted]), true, predicted) for true, predicted in zip(*off_diagonal.nonzero())]
    cells.sort(key=lambda cell: (-cell[0], class_names[cell[1]], class_names[cell[2]]))
    return [{"true": display_name(class_names[true]), "predicted": display_name(class_names[predicted]),
             "images": images, "share": images / per_true_class[true]}
            for images, true, predicted in cells[:limit]]


def _class_rows(record: RunRecord) -> list[dict]:
    """One row per class, worst top-1 accuracy first; classes without eval images last."""
    rows = []
    evaluation = record.evaluation
    for name in record.class_names:
        row = {"key": name, "name": display_name(name),
               "counts": {split: stats.examples_by_class.get(name, 0) for split, stats in record.statistics.items()},
               "accuracy": None, "top5_accuracy": None, "champion": None, "eval_images": 0}
        if evaluation is not None:
            row["accuracy"] = evaluation.candidate.accuracy_by_class.get(name)
            row["top5_accuracy"] = evaluation.candidate.top5_accuracy_by_class.get(name)
            row["eval_images"] = evaluation.candidate.examples_by_class.get(name, 0)
            row["champion"] = evaluation.champion.accuracy_by_class.get(name) if evaluation.champion else None
        rows.append(row)
    return sorted(rows, key=lambda row: (row["accuracy"] is None, row["accuracy"] or 0.0, row["name"]))
