"""Drift: how far the data a run trains on lies from the data the champion was trained on.

TFDV measures it: tfdv.validate_statistics with previous_statistics applies each drift_comparator of the curated
schema (data_schema/schema.pbtxt) and records, per compared feature, the measured value and the threshold in the
Anomalies proto's drift_skew_info. This module turns that into what a person reads and the gate decides on: per
feature the measure, its value, the threshold and whether it drifted, and for the class each class's share of the
images in both data sets, so a person sees which classes moved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.dsl.io import fileio

from data_schema import LABEL_NAME_KEY

# In the DataDrift artifact's folder.
DRIFT_FILE = "drift.json"
# TFDV's names for its measures (DriftSkewInfo.Measurement.Type), as a person would say them.
MEASURES = {"L_INFTY": "L-infinity distance", "JENSEN_SHANNON_DIVERGENCE": "Jensen-Shannon divergence",
            "NORMALIZED_ABSOLUTE_DIFFERENCE": "normalized absolute difference"}


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    measure: str
    value: float
    threshold: float
    drifted: bool  # value past threshold, as TFDV decides it (strictly greater)


@dataclass(frozen=True)
class ClassShare:
    name: str
    share: float  # of the train split's images now
    champion_share: float  # of the champion's train split's images

    @property
    def moved(self) -> float:
        return self.share - self.champion_share


@dataclass(frozen=True)
class DriftResult:
    # What the data was compared with, e.g. "champion version 3's training data".
    baseline: str
    features: tuple[FeatureDrift, ...] = ()
    # Every class in either data set, the largest move first.
    class_shares: tuple[ClassShare, ...] = ()
    # Features the schema compares that TFDV could not (feature -> its reason, e.g. "previous data missing" for a
    # champion ingested before the feature existed).
    not_compared: dict[str, str] = dataclasses.field(default_factory=dict)
    # Empty when compared; otherwise "no drift check: <why>".
    not_checked: str = ""

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [feature for feature in self.features if feature.drifted]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> DriftResult:
        fields = json.loads(text)
        return cls(baseline=fields["baseline"],
                   features=tuple(FeatureDrift(**feature) for feature in fields["features"]),
                   class_shares=tuple(ClassShare(**share) for share in fields["class_shares"]),
                   not_compared=fields["not_compared"], not_checked=fields["not_checked"])


def unchecked(baseline: str) -> DriftResult:
    """The result when there is nothing to compare with; `baseline` says why."""
    return DriftResult(baseline=baseline, not_checked=f"no drift check: {baseline}")


def compare(statistics: statistics_pb2.DatasetFeatureStatisticsList,
            champion_statistics: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema,
            baseline: str) -> DriftResult:
    """Drift of one split's `statistics` from the champion's same split under `schema`'s drift comparators."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(statistics, schema, previous_statistics=champion_statistics)
    features = []
    for info in found.drift_skew_info:
        for measurement in info.drift_measurements:
            kind = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(measurement.type)
            features.append(FeatureDrift(".".join(info.path.step), MEASURES.get(kind, kind.lower()),
                                         measurement.value, measurement.threshold,
                                         measurement.value > measurement.threshold))
    measured = {feature.feature for feature in features}
    not_compared = {}
    for feature in schema.feature:
        if feature.HasField("drift_comparator") and feature.name not in measured:
            reasons = found.anomaly_info[feature.name].reason if feature.name in found.anomaly_info else []
            not_compared[feature.name] = "; ".join(reason.short_description for reason in reasons) or "not measured"
    return DriftResult(baseline=baseline, features=tuple(sorted(features, key=lambda item: item.feature)),
                       class_shares=class_shares(statistics, champion_statistics), not_compared=not_compared)


def class_shares(statistics: statistics_pb2.DatasetFeatureStatisticsList,
                 champion_statistics: statistics_pb2.DatasetFeatureStatisticsList) -> tuple[ClassShare, ...]:
    """Each class's share of the images in both, from the class name's rank histogram; the largest move first."""
    now, before = shares_of(class_counts(statistics)), shares_of(class_counts(champion_statistics))
    shares = [ClassShare(name, now.get(name, 0.0), before.get(name, 0.0)) for name in set(now) | set(before)]
    return tuple(sorted(shares, key=lambda share: (-abs(share.moved), share.name)))


def feature_key(feature: statistics_pb2.FeatureNameStatistics) -> str:
    """A feature's name in statistics: StatisticsGen writes it as a path, TFDV's in-memory generators as a name."""
    return feature.path.step[0] if feature.path.step else feature.name


def class_counts(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, int]:
    """Images per class, from the class name's rank histogram (not top_values: StatisticsGen keeps 20 top values but
    up to 1,000 ranks)."""
    for feature in statistics.datasets[0].features:
        if feature_key(feature) == LABEL_NAME_KEY:
            return {bucket.label: int(bucket.sample_count) for bucket in feature.string_stats.rank_histogram.buckets}
    return {}


def shares_of(counts: typing.Mapping[str, int]) -> dict[str, float]:
    """Each key's share of the total; empty where there is nothing."""
    total = sum(counts.values())
    return {key: count / total for key, count in counts.items()} if total else {}


def read_split_statistics(statistics_dir: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One split of an ExampleStatistics artifact folder (Split-<split>/FeatureStats.pb, as StatisticsGen writes)."""
    with fileio.open(os.path.join(statistics_dir, f"Split-{split}", "FeatureStats.pb"), "rb") as serialized:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(serialized.read())


def write_drift(result: DriftResult, drift_dir: str) -> None:
    fileio.makedirs(drift_dir)
    with fileio.open(os.path.join(drift_dir, DRIFT_FILE), "w") as written:
        written.write(result.to_json())


def read_drift(drift_dir: str) -> DriftResult:
    with fileio.open(os.path.join(drift_dir, DRIFT_FILE), "r") as serialized:
        return DriftResult.from_json(serialized.read())
