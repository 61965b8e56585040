"""The Evaluator's TFMA configuration: accuracy overall and by category, and what it takes to be blessed."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from core.config import EvaluationConfig
from data_schema import LABEL_KEY, LABEL_NAME_KEY

CANDIDATE = "candidate"
CHAMPION = "champion"
ACCURACY = "sparse_categorical_accuracy"
# The exported signature that takes serialized tf.Examples (components/trainer/export.py).
EXAMPLES_SIGNATURE = "predict_examples"
PREDICTION_KEY = "probabilities"
OVERALL = tfma.SlicingSpec()


def build_eval_config(evaluation: EvaluationConfig, with_champion: bool) -> tfma.EvalConfig:
    """Blessing needs overall accuracy >= the floor and, when a champion exists, no regression against it.

    The thresholds are per-slice thresholds on the overall slice only: a MetricConfig `threshold` would
    apply to every category's slice too, and one weak category would veto the whole model.
    """
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
    accuracy = tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[
        tfma.PerSliceMetricThreshold(slicing_specs=[OVERALL], threshold=threshold)])
    return tfma.EvalConfig(
        model_specs=model_specs,
        slicing_specs=[OVERALL, tfma.SlicingSpec(feature_keys=[LABEL_NAME_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            accuracy,
            tfma.MetricConfig(class_name="ExampleCount"),
        ])])
