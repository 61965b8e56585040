"""Blessing rules: an accuracy floor and no regression against the champion, on the overall slice only."""

import tensorflow_model_analysis as tfma

from components.evaluator.eval_config import ACCURACY, CANDIDATE, CHAMPION, build_eval_config
from core.config import EvaluationConfig
from data_schema import LABEL_NAME_KEY


def accuracy_config(eval_config):
    return next(metric for metric in eval_config.metrics_specs[0].metrics
                if metric.class_name == "SparseCategoricalAccuracy")


def test_first_model_needs_only_the_floor():
    config = build_eval_config(EvaluationConfig(accuracy_floor=0.55), with_champion=False)
    assert [spec.name for spec in config.model_specs] == [CANDIDATE]
    [per_slice] = accuracy_config(config).per_slice_thresholds
    assert [spec.feature_keys for spec in per_slice.slicing_specs] == [[]]  # the overall slice only
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.55
    assert not per_slice.threshold.HasField("change_threshold")
    assert not accuracy_config(config).HasField("threshold")  # a plain threshold would apply to every category


def test_with_a_champion_the_candidate_must_not_regress():
    config = build_eval_config(EvaluationConfig(accuracy_floor=0.5, max_regression=0.02), with_champion=True)
    assert [(spec.name, spec.is_baseline) for spec in config.model_specs] == [(CANDIDATE, False), (CHAMPION, True)]
    change = accuracy_config(config).per_slice_thresholds[0].threshold.change_threshold
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert -0.0201 < change.absolute.value < -0.02


def test_accuracy_is_reported_overall_and_by_category():
    config = build_eval_config(EvaluationConfig(), with_champion=False)
    assert [list(spec.feature_keys) for spec in config.slicing_specs] == [[], [LABEL_NAME_KEY]]
    assert ACCURACY == "sparse_categorical_accuracy"
    assert {metric.class_name for metric in config.metrics_specs[0].metrics} >= {
        "SparseCategoricalAccuracy", "ExampleCount"}
