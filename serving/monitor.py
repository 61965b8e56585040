"""`./places monitor`: the images the endpoint was sent (its request log, serving/request_log.py) against the data the
champion was trained on, as an HTML page and a short table in the terminal.

Three questions, one section each:
- skew: TFDV statistics of the logged images' measurements (data_schema.IMAGE_MEASUREMENTS), compared with the
  champion's training statistics (Registry.training_statistics) by the skew comparators of the curated schema
  (data_schema/schema.pbtxt), each with the training and logged mean and median to show which way it moved;
- the predicted classes' shares against the training labels' shares, every class or, at many, the largest movers;
- requests per class over time, per hour (per day over windows longer than three days).
"""

from __future__ import annotations

import datetime
import re
import tempfile
import typing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.validation_gate.drift import class_counts, feature_key, read_split_statistics, shares_of
from core.config import Config
from core.console import table
from core.errors import UserError
from core.storage import NotFound, Storage, is_blob_uri, join
from data_schema import IMAGE_MEASUREMENTS, TRAIN_SPLIT, curated_schema, display_name
from ingestion.shards import read_records
from pipeline import report as run_report
from registry import TRAINING_STATISTICS_ARTIFACTS, Registry
from serving import request_log as log

TEMPLATE = Path(__file__).with_name("monitor_template.html")
# Below this many logged images, images like the training ones can read as skewed: the Jensen-Shannon divergence of
# two samples of one brightness distribution (10-bucket histograms, as TFDV's) measured a mean of 0.18 (up to 0.39)
# at 20 images, 0.055 (up to 0.084) at 50, 0.04 (up to 0.063) at 100 and 0.011 at 500. The page says so.
FEW_IMAGES = 100
# At many classes, the page lists the classes whose share moved most, and the time plot stacks the most requested.
CLASS_MOVERS = 20
CLASSES_OVER_TIME = 9
# Windows up to this long are counted per hour, longer ones per day.
HOURLY_UP_TO = datetime.timedelta(days=3)
# The schema's comparators, by the names a person reads.
_MEASURES = {"infinity_norm": "L-infinity distance", "jensen_shannon_divergence": "Jensen-Shannon divergence",
             "normalized_abs_difference": "normalized absolute difference"}
_HOURS = re.compile(r"^\d+(\.\d+)?$")


@dataclass
class FeatureSkew:
    """One compared measurement: the schema's measure of how far the logged images lie from the training images,
    and the numbers that show which way."""
    feature: str
    measure: str
    threshold: float
    value: float | None  # None: TFDV could not compare (no values on one side)
    # {"mean", "median"} of the training images and of the logged ones.
    training: dict[str, float]
    logged: dict[str, float]

    @property
    def skewed(self) -> bool:
        return self.value is not None and self.value > self.threshold

    @property
    def change(self) -> float | None:
        """The logged mean less the training mean."""
        if "mean" not in self.training or "mean" not in self.logged:
            return None
        return self.logged["mean"] - self.training["mean"]


@dataclass
class ClassShare:
    key: str
    training: float  # share of the training images with this label
    logged: float  # share of the logged images predicted as this class
    logged_images: int

    @property
    def name(self) -> str:
        return display_name(self.key)

    @property
    def change(self) -> float:
        return self.logged - self.training


@dataclass
class MonitorRecord:
    """Everything the page and the terminal table show."""
    model: str  # NAME/VERSION whose training data the logged images are compared with
    request_log: str
    since: datetime.datetime
    until: datetime.datetime
    images: int
    files: int
    models_answering: dict[str, int]  # NAME/VERSION -> logged images it answered
    skew: list[FeatureSkew]
    classes: list[ClassShare]  # the largest move first
    # Hour (or day) starts, and per bucket the logged images by predicted class key.
    time_buckets: list[datetime.datetime] = field(default_factory=list)
    per_bucket: list[Counter] = field(default_factory=list)
    bucket: str = "hour"

    @property
    def skewed(self) -> list[FeatureSkew]:
        return [row for row in self.skew if row.skewed]

    @property
    def class_distance(self) -> float:
        """The largest difference in one class's share (the L-infinity distance the schema's drift comparator on
        the class uses)."""
        return max((abs(row.change) for row in self.classes), default=0.0)


def parse_since(text: str, now: datetime.datetime) -> datetime.datetime:
    """--since: hours before `now` ("24", "1.5"), or a UTC date or time ("2026-12-01", "2026-12-01T08:00")."""
    text = text.strip()
    if _HOURS.match(text):
        return now - datetime.timedelta(hours=float(text))
    try:
        since = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--since {text!r} is neither hours nor a date: give hours (24) or a UTC date or time "
                        "(2026-12-01, 2026-12-01T08:00)") from None
    return since.replace(tzinfo=datetime.timezone.utc) if since.tzinfo is None else since


def read_log(storage: Storage, prefix: str, since: datetime.datetime, until: datetime.datetime
             ) -> tuple[list[dict[str, typing.Any]], int]:
    """(one dict per image logged under `prefix` from `since` to `until`, the files read): only the day folders of
    the window are listed."""
    import tensorflow as tf

    rows, files = [], 0
    day, last = since.date(), until.date()
    while day <= last:
        try:
            found = [item.uri for item in storage.list(join(prefix, day.strftime(log.DATE_FOLDER)))
                     if item.uri.endswith(log.FILE_SUFFIX)]
        except NotFound:
            if is_blob_uri(prefix):  # a missing container: a prefix that was never written, or mistyped
                raise
            found = []  # a local day without a folder
        for uri in found:
            files += 1
            with tempfile.TemporaryDirectory(prefix="request-log-") as scratch:
                for serialized in read_records(storage, uri, scratch):
                    row = _row(tf.train.Example.FromString(serialized))
                    if since <= row["requested_at"] <= until:
                        rows.append(row)
        day += datetime.timedelta(days=1)
    return rows, files


def _row(example) -> dict[str, typing.Any]:
    features = example.features.feature

    def one(key: str):
        feature = features[key]
        kind = feature.WhichOneof("kind")
        value = getattr(feature, kind).value[0]
        return value.decode() if isinstance(value, bytes) else value

    row = {key: one(key) for key in (*IMAGE_MEASUREMENTS, log.PREDICTED_CLASS_NAME_KEY, log.PROBABILITY_KEY,
                                     log.MODEL_KEY)}
    row["requested_at"] = datetime.datetime.fromtimestamp(one(log.REQUESTED_AT_KEY) / 1000, datetime.timezone.utc)
    return row


def logged_statistics(rows: list[dict]):
    """TFDV statistics (DatasetFeatureStatisticsList) of the measurements of the logged images; in this process,
    no Beam job: a day's sample is thousands of rows, not millions."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    frame = pd.DataFrame({key: [row[key] for row in rows] for key in IMAGE_MEASUREMENTS})
    return tfdv.generate_statistics_from_dataframe(frame)


def _numbers(statistics) -> dict[str, dict[str, float]]:
    """feature -> {"mean", "median"} of a DatasetFeatureStatisticsList's first dataset."""
    found = {}
    for feature in statistics.datasets[0].features:
        if feature.HasField("num_stats"):
            numbers = feature.num_stats
            found[feature_key(feature)] = {"mean": numbers.mean, "median": numbers.median}
    return found


def compare(training, logged, classes: typing.Sequence[str]) -> list[FeatureSkew]:
    """Each feature with a skew comparator in the curated schema: TFDV's measure of `logged` against `training`
    (DatasetFeatureStatisticsLists), its threshold, and both sides' summary numbers."""
    import tensorflow_data_validation as tfdv

    schema = curated_schema(tuple(classes))
    anomalies = tfdv.validate_statistics(training, schema, serving_statistics=logged)
    measured = {info.path.step[0]: info.skew_measurements[0] for info in anomalies.drift_skew_info
                if info.skew_measurements}
    training_numbers, logged_numbers = _numbers(training), _numbers(logged)
    rows = []
    for feature in schema.feature:
        if not feature.HasField("skew_comparator"):
            continue
        (kind, comparator), = feature.skew_comparator.ListFields()
        measurement = measured.get(feature.name)
        rows.append(FeatureSkew(feature.name, _MEASURES.get(kind.name, kind.name), comparator.threshold,
                                measurement.value if measurement else None,
                                training_numbers.get(feature.name, {}), logged_numbers.get(feature.name, {})))
    return rows


def class_shares(labels: dict[str, int], rows: list[dict]) -> list[ClassShare]:
    """Every class that was trained on or predicted: its training share beside its predicted share, largest move
    first."""
    predicted = Counter(row[log.PREDICTED_CLASS_NAME_KEY] for row in rows)
    trained, logged = shares_of(labels), shares_of(predicted)
    keys = list(labels) + sorted(set(predicted) - set(labels))
    shares = [ClassShare(key, trained.get(key, 0.0), logged.get(key, 0.0), predicted[key]) for key in keys]
    return sorted(shares, key=lambda share: (-abs(share.change), share.key))


def over_time(rows: list[dict], since: datetime.datetime, until: datetime.datetime
              ) -> tuple[str, list[datetime.datetime], list[Counter]]:
    """("hour" or "day", every bucket's start from `since` to `until`, each bucket's images by predicted class)."""
    unit = "hour" if until - since <= HOURLY_UP_TO else "day"
    step = datetime.timedelta(hours=1) if unit == "hour" else datetime.timedelta(days=1)

    def start(moment: datetime.datetime) -> datetime.datetime:
        return moment.replace(minute=0, second=0, microsecond=0, **({} if unit == "hour" else {"hour": 0}))

    buckets = [start(since)]
    while buckets[-1] + step <= until:
        buckets.append(buckets[-1] + step)
    index = {bucket: position for position, bucket in enumerate(buckets)}
    counts = [Counter() for _ in buckets]
    for row in rows:
        counts[index[start(row["requested_at"])]][row[log.PREDICTED_CLASS_NAME_KEY]] += 1
    return unit, buckets, counts


def monitor(config: Config, since: str = "24", reference: str | None = None,
            now: datetime.datetime | None = None) -> tuple[MonitorRecord, Path]:
    """(the record, the page written under <state_dir>/reports/monitor-<UTC time>/) of the images logged since
    `since` (parse_since) against the training data of `reference` (default: the champion)."""

    prefix = config.serving.request_log
    if not prefix:
        raise UserError("no request log is configured: set serving.request_log to a blob or folder prefix (e.g. "
                        "--set serving.request_log=azfs://devstoreaccount1/places/requests, or "
                        "PLACES_SERVING__REQUEST_LOG) for `./places serve` to keep a sample of its requests, then "
                        "run `./places monitor` with the same setting")
    until = now or datetime.datetime.now(datetime.timezone.utc)
    start = parse_since(since, until)
    registry = Registry.from_config(config)
    version = registry.find(reference)
    model = f"{version.name}/{version.version}"
    statistics_dir = registry.training_statistics(version)
    if statistics_dir is None or not (Path(statistics_dir) / f"Split-{TRAIN_SPLIT}" / "FeatureStats.pb").exists():
        raise UserError(f"{model} has no training statistics in its MLflow run (artifact "
                        f"{TRAINING_STATISTICS_ARTIFACTS}/Split-{TRAIN_SPLIT}): it was not registered by a pipeline "
                        "run. Run `./places run` first, which logs them with the model it registers")
    rows, files = read_log(Storage.from_config(config), prefix, start, until)
    if not rows:
        raise UserError(f"nothing was logged under {prefix} (serving.request_log) from "
                        f"{start.isoformat(timespec='minutes')} to {until.isoformat(timespec='minutes')}: send "
                        "requests to `./places serve` with serving.request_log set and serving.request_log_percent "
                        "above 0 (the log is written every serving.request_log_flush_s seconds and when the server "
                        "stops), or widen --since")
    training = read_split_statistics(statistics_dir, TRAIN_SPLIT)
    logged = logged_statistics(rows)
    labels = class_counts(training)
    predicted = {row[log.PREDICTED_CLASS_NAME_KEY] for row in rows}
    unit, buckets, per_bucket = over_time(rows, start, until)
    record = MonitorRecord(model=model, request_log=prefix, since=start, until=until, images=len(rows), files=files,
                           models_answering=dict(Counter(row[log.MODEL_KEY] for row in rows).most_common()),
                           skew=compare(training, logged, sorted(set(labels) | predicted)),
                           classes=class_shares(labels, rows), time_buckets=buckets, per_bucket=per_bucket,
                           bucket=unit)
    folder = _new_folder(config.state_dir / "reports", f"monitor-{until.strftime('%Y%m%dT%H%M%SZ')}")
    # TFDV's own viewers (tfdv.visualize_statistics, Facets) open it beside the training statistics.
    (folder / "logged_statistics.pb").write_bytes(logged.SerializeToString())
    return record, write_report(record, folder)


def _new_folder(parent: Path, name: str) -> Path:
    """A folder `name` created under `parent`, or `name-2`, `name-3`... where one was made in the same second."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise UserError(f"{parent} holds a thousand reports named {name}: remove some")


# --- what a person reads ------------------------------------------------------------------------------------
# Pictures are drawn on matplotlib Figures of their own, without pyplot: no display, no global state.
def plot_class_shares(record: MonitorRecord, path: Path) -> None:
    """Each class's training share beside its predicted share, horizontal bars (for a few classes: the run report's
    READABLE_CLASSES at most)."""
    from matplotlib.figure import Figure

    shares = sorted(record.classes, key=lambda share: share.name, reverse=True)
    positions = np.arange(len(shares))
    figure = Figure(figsize=(8, 1.2 + 0.32 * len(shares)))
    axes = figure.subplots()
    axes.barh(positions + 0.2, [100 * share.training for share in shares], height=0.4, label="training labels")
    axes.barh(positions - 0.2, [100 * share.logged for share in shares], height=0.4, label="predicted, logged")
    axes.set_yticks(positions, [share.name for share in shares], fontsize=8)
    axes.set(xlabel="% of images", title="Class shares: training labels and logged predictions")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_over_time(record: MonitorRecord, path: Path) -> None:
    """Logged images per hour (or day), stacked by predicted class: the rest of the classes in grey at the bottom,
    the most requested in colour above."""
    from matplotlib.figure import Figure

    totals = sum(record.per_bucket, Counter())
    top = [key for key, _ in totals.most_common(CLASSES_OVER_TIME)]
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots()
    positions = np.arange(len(record.time_buckets))
    bottom = np.zeros(len(positions))
    series = [(display_name(key), f"C{index}", [counts[key] for counts in record.per_bucket])
              for index, key in enumerate(top)]
    if len(totals) > len(top):
        series.insert(0, (f"{len(totals) - len(top)} other classes", "lightgrey",
                          [sum(counts.values()) - sum(counts[key] for key in top) for counts in record.per_bucket]))
    for label, colour, counts in series:
        axes.bar(positions, counts, bottom=bottom, label=label, color=colour, width=0.9)
        bottom += counts
    tick_every = max(1, len(positions) // 12)
    form = "%m-%d %H:00" if record.bucket == "hour" else "%Y-%m-%d"
    axes.set_xticks(positions[::tick_every], [bucket.strftime(form) for bucket in record.time_buckets[::tick_every]],
                    rotation=30, ha="right", fontsize=8)
    axes.set(ylabel="logged images", title=f"Logged images per {record.bucket} (UTC) and predicted class")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_report(record: MonitorRecord, folder: Path) -> Path:
    """Write <folder>/index.html and its pictures; returns the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    many_classes = len(record.classes) > run_report.READABLE_CLASSES
    pictures = {"over_time": "requests_over_time.png"}
    plot_over_time(record, folder / pictures["over_time"])
    if not many_classes:
        pictures["class_shares"] = "class_shares.png"
        plot_class_shares(record, folder / pictures["class_shares"])
    return run_report.write_page(
        folder, TEMPLATE, record=record, pictures=pictures,
        many_classes=many_classes, few_images=record.images < FEW_IMAGES, few_images_limit=FEW_IMAGES,
        shown_classes=record.classes[:CLASS_MOVERS] if many_classes else record.classes, number=_number,
        change=_change)


def _number(value: float | None) -> str:
    """A summary number as a person reads it: sizes whole, brightness to three places."""
    if value is None or np.isnan(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3f}"


def _change(row: FeatureSkew) -> str:
    """The move of a feature's mean, in its own unit and as a share of the training mean: "-0.363 (-70 %)"."""
    if row.change is None:
        return "-"
    training = row.training["mean"]
    moved = f"{row.change:+.0f}" if abs(training) >= 10 else f"{row.change:+.3f}"
    return f"{moved} ({100 * row.change / training:+.0f} %)" if training else moved


def terminal_summary(record: MonitorRecord) -> str:
    """The short table `./places monitor` prints: each compared feature, then the classes that moved most."""
    lines = [f"{record.images} logged image{'' if record.images == 1 else 's'} ({record.files} "
             f"file{'' if record.files == 1 else 's'} under {record.request_log}) from "
             f"{record.since.isoformat(timespec='minutes')} to {record.until.isoformat(timespec='minutes')}, "
             f"against the training data of {record.model}"]
    if record.images < FEW_IMAGES:
        lines.append(f"  fewer than {FEW_IMAGES} images: a skew measure this small a sample gives is rough")
    rows = [{"feature": row.feature, "measure": row.measure,
             "value": "-" if row.value is None else f"{row.value:.3f}", "threshold": f"{row.threshold:g}",
             "skew": "SKEWED" if row.skewed else "ok", "training mean": _number(row.training.get("mean")),
             "logged mean": _number(row.logged.get("mean"))} for row in record.skew]
    lines += ["", table(rows)]
    movers = [{"class": share.name, "training": f"{100 * share.training:.1f}%",
               "predicted": f"{100 * share.logged:.1f}%", "change": f"{100 * share.change:+.1f} pt"}
              for share in record.classes[:5]]
    lines += ["", "classes whose share moved most (training labels against logged predictions):", table(movers)]
    return "\n".join(lines)
