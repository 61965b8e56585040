"""Blessing rules: an accuracy floor and no regression against the champion, on the overall slice only, for top-1
accuracy unless evaluation.blessing_metric says top-5."""

import json

import pytest
import tensorflow_model_analysis as tfma

from components.evaluator.eval_config import ACCURACY, CANDIDATE, CHAMPION, TOP5_ACCURACY, build_eval_config
from core.config import ConfigError, EvaluationConfig, load_config
from data_schema import LABEL_NAME_KEY

# Left out of the fast tier as a file: importing TFMA alone takes seconds (a tenth of the tier's minute); the
# evaluator's tests run in the full suite.
pytestmark = pytest.mark.slow

CLASSES = 10


def metric_config(eval_config, class_name: str = "SparseCategoricalAccuracy"):
    return next(metric for metric in eval_config.metrics_specs[0].metrics if metric.class_name == class_name)


def accuracy_config(eval_config):
    return metric_config(eval_config)


def top5_config(eval_config):
    return metric_config(eval_config, "SparseTopKCategoricalAccuracy")


def test_first_model_needs_only_the_floor():
    config = build_eval_config(EvaluationConfig(accuracy_floor=0.55), with_champion=False, num_classes=CLASSES)
    assert [spec.name for spec in config.model_specs] == [CANDIDATE]
    [per_slice] = accuracy_config(config).per_slice_thresholds
    assert [spec.feature_keys for spec in per_slice.slicing_specs] == [[]]  # the overall slice only
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.55
    assert not per_slice.threshold.HasField("change_threshold")
    assert not accuracy_config(config).HasField("threshold")  # a plain threshold would apply to every category


def test_with_a_champion_the_candidate_must_not_regress():
    config = build_eval_config(EvaluationConfig(accuracy_floor=0.5, max_regression=0.02), with_champion=True,
                               num_classes=CLASSES)
    assert [(spec.name, spec.is_baseline) for spec in config.model_specs] == [(CANDIDATE, False), (CHAMPION, True)]
    change = accuracy_config(config).per_slice_thresholds[0].threshold.change_threshold
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert -0.0201 < change.absolute.value < -0.02


def test_accuracy_is_reported_overall_and_by_category():
    config = build_eval_config(EvaluationConfig(), with_champion=False, num_classes=CLASSES)
    assert [list(spec.feature_keys) for spec in config.slicing_specs] == [[], [LABEL_NAME_KEY]]
    assert ACCURACY == "sparse_categorical_accuracy"
    assert {metric.class_name for metric in config.metrics_specs[0].metrics} >= {
        "SparseCategoricalAccuracy", "ExampleCount"}


def test_top5_accuracy_is_reported_but_does_not_bless_by_default():
    config = build_eval_config(EvaluationConfig(), with_champion=True, num_classes=CLASSES)
    assert json.loads(top5_config(config).config) == {"k": 5, "name": TOP5_ACCURACY}
    assert not top5_config(config).per_slice_thresholds
    assert accuracy_config(config).per_slice_thresholds


def test_blessing_metric_top5_moves_both_checks_to_top5():
    evaluation = load_config(overrides=["evaluation.blessing_metric=top5", "evaluation.accuracy_floor=0.8"],
                             environ={}).evaluation
    config = build_eval_config(evaluation, with_champion=True, num_classes=CLASSES)
    assert not accuracy_config(config).per_slice_thresholds
    [per_slice] = top5_config(config).per_slice_thresholds
    assert [spec.feature_keys for spec in per_slice.slicing_specs] == [[]]
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.8
    assert per_slice.threshold.HasField("change_threshold")


def test_an_unknown_blessing_metric_names_the_setting_and_the_choices():
    with pytest.raises(ConfigError, match="evaluation.blessing_metric' takes one of top1, top5, got 'top3'"):
        load_config(overrides=["evaluation.blessing_metric=top3"], environ={})


def test_with_five_classes_or_fewer_there_is_no_top5_to_report_or_bless_by():
    config = build_eval_config(EvaluationConfig(), with_champion=False, num_classes=5)
    assert "SparseTopKCategoricalAccuracy" not in {metric.class_name for metric in config.metrics_specs[0].metrics}
    with pytest.raises(ConfigError, match="only 5 classes.*set evaluation.blessing_metric = \"top1\""):
        build_eval_config(EvaluationConfig(blessing_metric="top5"), with_champion=False, num_classes=5)
