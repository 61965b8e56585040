"""The Evaluator's TFMA configuration: top-1 and top-5 accuracy overall and by category, the confusion matrix, and
what it takes to be blessed."""

from __future__ import annotations

import json
import typing

from core.config import ConfigError, EvaluationConfig
from data_schema import LABEL_KEY, LABEL_NAME_KEY

if typing.TYPE_CHECKING:
    import tensorflow_model_analysis as tfma

CANDIDATE = "candidate"
CHAMPION = "champion"
ACCURACY = "sparse_categorical_accuracy"
TOP5_ACCURACY = "top5_accuracy"
# With 5 classes or fewer every label is among the 5 most probable: top-5 accuracy would always be 1.0, so it is
# not computed and the report shows "-".
TOP5_NEEDS_MORE_THAN = 5
# evaluation.blessing_metric -> the TFMA metric its thresholds apply to.
BLESSING_METRICS = {"top1": ACCURACY, "top5": TOP5_ACCURACY}
# The exported signature that takes serialized tf.Examples (components/trainer/export.py).
EXAMPLES_SIGNATURE = "predict_examples"
PREDICTION_KEY = "probabilities"
# Counts of (true class, most probable class) pairs; at its default threshold of 0 every example has a prediction.
CONFUSION_PLOT = "MultiClassConfusionMatrixPlot"


def build_eval_config(evaluation: EvaluationConfig, with_champion: bool, num_classes: int) -> tfma.EvalConfig:
    """Blessing needs the overall evaluation.blessing_metric >= the floor and, when a champion exists, no
    regression against it.

    The thresholds are per-slice thresholds on the overall slice only: a MetricConfig `threshold` would
    apply to every category's slice too, and one weak category would veto the whole model.
    """
    # Imported here: the report reads these names without TFMA, which takes seconds to import.
    import tensorflow_model_analysis as tfma

    overall = tfma.SlicingSpec()
    with_top5 = num_classes > TOP5_NEEDS_MORE_THAN
    if evaluation.blessing_metric == "top5" and not with_top5:
        raise ConfigError(f"evaluation.blessing_metric is 'top5' but there are only {num_classes} classes, so every "
                          f"model's top-5 accuracy is 100 %: set evaluation.blessing_metric = \"top1\"")
    model_specs = [tfma.ModelSpec(name=CANDIDATE, signature_name=EXAMPLES_SIGNATURE, label_key=LABEL_KEY,
                                  prediction_key=PREDICTION_KEY)]
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": evaluation.accuracy_floor}))
    if with_champion:
        model_specs.append(tfma.ModelSpec(name=CHAMPION, is_baseline=True, signature_name=EXAMPLES_SIGNATURE,
                                          label_key=LABEL_KEY, prediction_key=PREDICTION_KEY))
        # The tiny epsilon keeps an exact tie (the same model evaluated twice) on the passing side.
        threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -evaluation.max_regression - 1e-9}))
    blessed_by = BLESSING_METRICS[evaluation.blessing_metric]

    def thresholds(metric: str) -> list[tfma.PerSliceMetricThreshold]:
        if metric != blessed_by:
            return []
        return [tfma.PerSliceMetricThreshold(slicing_specs=[overall], threshold=threshold)]

    metrics = [tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=thresholds(ACCURACY))]
    if with_top5:
        metrics.append(tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy",
                                         config=json.dumps({"k": 5, "name": TOP5_ACCURACY}),
                                         per_slice_thresholds=thresholds(TOP5_ACCURACY)))
    return tfma.EvalConfig(
        model_specs=model_specs,
        slicing_specs=[overall, tfma.SlicingSpec(feature_keys=[LABEL_NAME_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[*metrics, tfma.MetricConfig(class_name="ExampleCount"),
                                                 # The report's confusion matrix and most confused pairs.
                                                 tfma.MetricConfig(class_name=CONFUSION_PLOT)])])
