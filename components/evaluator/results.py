"""What an Evaluator run found, read back from its TFMA output for the Pusher, the report and MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.evaluator.eval_config import ACCURACY, CANDIDATE, CHAMPION, TOP5_ACCURACY
from data_schema import LABEL_NAME_KEY

# Where TFMA's loaded plots hold the MultiClassConfusionMatrixPlot (eval_config.CONFUSION_PLOT).
_CONFUSION_PLOT_KEY = "multiClassConfusionMatrixAtThresholds"


@dataclass
class ModelEvaluation:
    # Top-1: the most probable class is the true one.
    accuracy: float
    examples: int
    # The true class is among the 5 most probable; None with 5 classes or fewer (eval_config.TOP5_NEEDS_MORE_THAN).
    top5_accuracy: float | None = None
    # class key -> top-1 accuracy within that class (its recall), top-5 likewise, and how many eval examples it had.
    accuracy_by_class: dict[str, float] = field(default_factory=dict)
    top5_accuracy_by_class: dict[str, float | None] = field(default_factory=dict)
    examples_by_class: dict[str, int] = field(default_factory=dict)
    # The overall confusion matrix's non-empty cells: [true class index, most probable class index, examples], in
    # label order (`category`).
    confusion_cells: list[list[int]] = field(default_factory=list)


@dataclass
class EvaluationSummary:
    candidate: ModelEvaluation
    champion: ModelEvaluation | None
    blessed: bool
    # Why the candidate was not blessed, one sentence per failed check; empty when blessed.
    failures: list[str]


def _value(metrics: dict, name: str) -> float | None:
    for output in metrics.values():
        for sub_key in output.values():
            if name in sub_key:
                return float(sub_key[name].get("doubleValue", 0.0))
    return None


def _model_evaluation(result) -> ModelEvaluation:
    evaluation = ModelEvaluation(accuracy=float("nan"), examples=0)
    for slice_key, metrics in result.slicing_metrics:
        accuracy, top5, examples = (_value(metrics, name) for name in (ACCURACY, TOP5_ACCURACY, "example_count"))
        if slice_key == ():
            evaluation.accuracy, evaluation.top5_accuracy, evaluation.examples = accuracy, top5, int(examples or 0)
        elif len(slice_key) == 1 and slice_key[0][0] == LABEL_NAME_KEY:
            name = slice_key[0][1]
            name = name.decode() if isinstance(name, bytes) else str(name)
            evaluation.accuracy_by_class[name] = accuracy
            evaluation.top5_accuracy_by_class[name] = top5
            evaluation.examples_by_class[name] = int(examples or 0)
    for slice_key, plots in result.plots or []:
        if slice_key == ():
            evaluation.confusion_cells = _confusion_cells(plots)
    return evaluation


def _confusion_cells(plots: dict) -> list[list[int]]:
    for output in plots.values():
        for sub_key in output.values():
            if _CONFUSION_PLOT_KEY in sub_key:
                # One matrix: the plot's only threshold, 0. JSON leaves out zeros, so class 0 has no id written.
                entries = sub_key[_CONFUSION_PLOT_KEY]["matrices"][0].get("entries", [])
                return sorted([int(entry.get("actualClassId", 0)), int(entry.get("predictedClassId", 0)),
                               round(entry.get("numWeightedExamples", 0))] for entry in entries
                              if entry.get("numWeightedExamples", 0))
    return []


def read_evaluation(evaluation_uri: str) -> EvaluationSummary:
    """Candidate (and champion) metrics and the blessing verdict from an Evaluator output folder."""
    import tensorflow_model_analysis as tfma  # here: the report uses this module's classes without TFMA
    from tensorflow_model_analysis.writers.eval_config_writer import load_eval_run

    # TFMA drops the model name when it evaluated one model only: the candidate is then "".
    _, _, _, model_locations = load_eval_run(evaluation_uri)
    candidate_name = CANDIDATE if CANDIDATE in model_locations else ""
    candidate = _model_evaluation(tfma.load_eval_result(evaluation_uri, model_name=candidate_name))
    champion = (_model_evaluation(tfma.load_eval_result(evaluation_uri, model_name=CHAMPION))
                if CHAMPION in model_locations else None)
    validation = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append(_explain(failure, candidate, champion))
    return EvaluationSummary(candidate, champion, bool(validation.validation_ok), failures)


def _explain(failure, candidate: ModelEvaluation, champion: ModelEvaluation | None) -> str:
    threshold = failure.metric_threshold
    if failure.metric_key.name == TOP5_ACCURACY:
        metric, value = "top-5 accuracy", lambda evaluation: evaluation.top5_accuracy
    else:
        metric, value = "accuracy", lambda evaluation: evaluation.accuracy
    if failure.metric_key.is_diff and champion is not None:
        return (f"overall {metric} {value(candidate):.3f} is below the champion's {value(champion):.3f} "
                f"(allowed regression {-threshold.change_threshold.absolute.value:.3f})")
    if threshold.HasField("value_threshold"):
        return (f"overall {metric} {value(candidate):.3f} is below the floor "
                f"{threshold.value_threshold.lower_bound.value:.3f} (evaluation.accuracy_floor)")
    return failure.message or str(failure.metric_key)
