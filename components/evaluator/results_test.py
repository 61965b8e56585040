"""TFMA's top-1 and top-5 accuracy, overall and by category, and its confusion matrix, as read_evaluation returns
them, against the same figures counted by hand from the exported model's own probabilities."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.evaluator.eval_config import CANDIDATE, build_eval_config
from components.evaluator.results import read_evaluation
from components.trainer.conftest import encoded_image, random_pixels, serialized_example, write_shards
from components.trainer.export import export
from core.config import EvaluationConfig
from data_schema import CHANNELS, IMAGE_SIZE

# Every test reads what one real TFMA Beam job evaluated.
pytestmark = pytest.mark.slow

# Seven classes, so top-5 is not trivially every label; a few images each.
CLASS_NAMES = ("alley", "bakery/shop", "canyon", "desert/sand", "field/wild", "harbor", "volcano")
IMAGES_PER_CLASS = 6


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(read_evaluation's summary, labels, the model's probabilities) for an untrained model on random images:
    its ranking of the classes is arbitrary, so top-1 and top-5 differ from class to class."""
    folder = tmp_path_factory.mktemp("evaluation")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS)),
        keras.layers.Conv2D(4, 8, strides=8, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
    ])
    export(model, list(CLASS_NAMES), str(folder / "model"))
    labels = np.repeat(np.arange(len(CLASS_NAMES)), IMAGES_PER_CLASS)
    examples = [serialized_example(encoded_image(random_pixels(IMAGE_SIZE, IMAGE_SIZE, seed=number)), int(label),
                                   CLASS_NAMES)
                for number, label in enumerate(labels)]
    data = write_shards(folder / "eval", examples)

    eval_config = build_eval_config(EvaluationConfig(accuracy_floor=0.0), with_champion=False,
                                    num_classes=len(CLASS_NAMES))
    tfma.run_model_analysis(
        eval_shared_model=tfma.default_eval_shared_model(str(folder / "model"), model_name=CANDIDATE,
                                                         eval_config=eval_config),
        eval_config=eval_config, data_location=data, file_format="tfrecords", output_path=str(folder / "output"))
    loaded = tf.saved_model.load(str(folder / "model"))
    probabilities = loaded.signatures["predict_examples"](examples=tf.constant(examples))["probabilities"].numpy()
    return read_evaluation(str(folder / "output")), labels, probabilities


def _by_hand(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    most_probable = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean([label in row for label, row in zip(labels, most_probable)]))


def test_top1_and_top5_accuracy_match_a_count_by_hand_overall_and_per_category(evaluated):
    summary, labels, probabilities = evaluated
    candidate = summary.candidate
    assert candidate.examples == len(labels)
    assert candidate.accuracy == pytest.approx(_by_hand(labels, probabilities, 1), abs=1e-6)
    assert candidate.top5_accuracy == pytest.approx(_by_hand(labels, probabilities, 5), abs=1e-6)
    # Top-5 is neither trivial nor top-1 again on this data, so the check above could tell them apart.
    assert candidate.accuracy < candidate.top5_accuracy < 1.0
    for category, name in enumerate(CLASS_NAMES):
        mine = labels == category
        assert candidate.examples_by_class[name] == IMAGES_PER_CLASS
        assert candidate.accuracy_by_class[name] == pytest.approx(
            _by_hand(labels[mine], probabilities[mine], 1), abs=1e-6), name
        assert candidate.top5_accuracy_by_class[name] == pytest.approx(
            _by_hand(labels[mine], probabilities[mine], 5), abs=1e-6), name


def test_the_confusion_matrix_counts_each_true_and_most_probable_class(evaluated):
    summary, labels, probabilities = evaluated
    by_hand = collections.Counter(zip(labels.tolist(), np.argmax(probabilities, axis=1).tolist()))

    assert {(true, predicted): images for true, predicted, images in summary.candidate.confusion_cells} == by_hand
