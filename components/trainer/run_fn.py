"""The TFX Trainer's entry point: `Trainer(run_fn="components.trainer.run_fn.run_fn", ...)`.

custom_config holds every field of core.config.TrainingConfig (model, epochs, batch size, ...; see the comments
there) and class_names, the class keys in label order; pipeline/pipeline.py writes it with
custom_config.to_custom_config, and run_fn reads it back with from_custom_config.

train_args num_steps is the number of steps in each epoch, as TFX's Keras examples pass it to fit(); 0 or unset
(TFX gives None) makes each epoch one full pass over the train split. eval_args num_steps likewise limits each
validation and the confusion matrix; 0 or unset means the whole eval split.

Writes, besides the SavedModel in fn_args.serving_model_dir (export.py), to fn_args.model_run_dir:
    history.json            per epoch: loss, accuracy, val_loss, val_accuracy, steps, seconds, train_images_per_s
    accuracy_vs_epoch.png   train and validation accuracy per epoch
    confusion_matrix.png    eval split, rows true class, columns predicted class
    eval_report.json        eval accuracy, accuracy per class and the confusion matrix as numbers
"""

from __future__ import annotations

import io
import json
import logging
import os
import time

import keras
import matplotlib
import numpy as np
import tensorflow as tf

from components.trainer import EVAL_REPORT_FILE, HISTORY_FILE, export
from components.trainer.custom_config import from_custom_config
from components.trainer.input import DECODED_IMAGE_BYTES, count_examples, fits_in_memory, make_dataset
from components.trainer.model import build_model
from data_schema import display_name

matplotlib.use("Agg")  # files only: the Trainer runs where there is no display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402


def run_fn(fn_args) -> None:
    """Train the configured model on fn_args.train_files, validate on fn_args.eval_files, write the reports to
    fn_args.model_run_dir and export the serving model to fn_args.serving_model_dir."""
    inputs = from_custom_config(fn_args.custom_config)
    settings, class_names = inputs.training, inputs.class_names
    keras.utils.set_random_seed(settings.seed)
    train_images = count_examples(fn_args.train_files)
    train_images_per_epoch = fn_args.train_steps * settings.batch_size if fn_args.train_steps else train_images
    cache_images = input_mode(train_images + count_examples(fn_args.eval_files), settings.image_cache_mb)
    train_data = make_dataset(fn_args.train_files, settings.batch_size, training=True, seed=settings.seed,
                              cache_images=cache_images, repeat=bool(fn_args.train_steps),
                              example_count=None if fn_args.train_steps else train_images)
    eval_data = make_dataset(fn_args.eval_files, settings.batch_size, training=False, seed=settings.seed,
                             cache_images=cache_images, repeat=bool(fn_args.eval_steps))

    model = build_model(settings.model, len(class_names), settings.learning_rate)
    logging.info("Training %s (%d weights) for %d epochs of %d images", model.name, model.count_params(),
                 settings.epochs, train_images_per_epoch)
    clock = EpochClock()
    fit = model.fit(train_data, validation_data=eval_data, epochs=settings.epochs,
                    steps_per_epoch=fn_args.train_steps, validation_steps=fn_args.eval_steps, callbacks=[clock],
                    verbose=2)
    history = [
        {
            "epoch": epoch + 1,
            **{metric: float(values[epoch]) for metric, values in fit.history.items()},
            "steps": clock.steps[epoch],
            "seconds": round(clock.epoch_seconds[epoch], 3),
            "train_images_per_s": round(train_images_per_epoch / clock.train_seconds[epoch], 1),
        }
        for epoch in range(len(clock.epoch_seconds))
    ]

    # take(-1) is the whole split; with eval steps, the (endless) eval data is cut where validation cut it.
    true, predicted = predict_classes(model, eval_data.take(fn_args.eval_steps or -1))
    confusion = confusion_matrix(true, predicted, len(class_names))
    run_dir = fn_args.model_run_dir
    tf.io.gfile.makedirs(run_dir)
    _write(os.path.join(run_dir, HISTORY_FILE), json.dumps(history, indent=2).encode())
    _write(os.path.join(run_dir, EVAL_REPORT_FILE),
           json.dumps(eval_report(confusion, class_names), indent=2).encode())
    _write_figure(os.path.join(run_dir, "accuracy_vs_epoch.png"), accuracy_figure(history, model.name))
    _write_figure(os.path.join(run_dir, "confusion_matrix.png"),
                  confusion_figure(confusion, class_names, model.name))
    export.export(model, list(class_names), fn_args.serving_model_dir)
    logging.info("Exported %s to %s; reports in %s", model.name, fn_args.serving_model_dir, run_dir)


def input_mode(images: int, image_cache_mb: int) -> bool:
    """Whether to cache the decoded images (True) or stream them, with the reason in the Trainer's log."""
    cache = fits_in_memory(images, image_cache_mb)
    needed_mb = images * DECODED_IMAGE_BYTES / 2**20
    logging.info("Input: %s: %d decoded images take %.0f MB, training.image_cache_mb is %d", "cached in memory"
                 if cache else "streamed from the shards every epoch", images, needed_mb, image_cache_mb)
    return cache


class EpochClock(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch and of its training part alone (validation starts at on_test_begin), and
    the training steps it took."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds: list[float] = []
        self.train_seconds: list[float] = []
        self.steps: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()
        self._training_ended = None
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1

    def on_test_begin(self, logs=None):
        self._training_ended = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        ended = time.monotonic()
        self.epoch_seconds.append(ended - self._started)
        self.train_seconds.append((self._training_ended or ended) - self._started)


def predict_classes(model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) class indices for every image of `dataset`'s (pixels, category) batches."""
    true, predicted = [], []
    for pixels, categories in dataset:
        true.append(categories.numpy())
        predicted.append(np.argmax(model.predict_on_batch(pixels), axis=-1))
    return np.concatenate(true), np.concatenate(predicted)


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [num_classes, num_classes]: row = true class, column = predicted class."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    return counts


def eval_report(confusion: np.ndarray, class_names: tuple[str, ...]) -> dict:
    images_per_class = confusion.sum(axis=1)
    return {
        "images": int(confusion.sum()),
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "accuracy_per_class": {
            name: (float(confusion[i, i] / images_per_class[i]) if images_per_class[i] else None)
            for i, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": confusion.tolist(),
    }


def accuracy_figure(history: list[dict], model_name: str) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    epochs = [row["epoch"] for row in history]
    axes.plot(epochs, [row["accuracy"] for row in history], marker="o", label="train")
    axes.plot(epochs, [row["val_accuracy"] for row in history], marker="o", label="validation")
    axes.set(title=f"{model_name}: accuracy per epoch", xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


# Up to this many classes each cell shows its count; beyond, the colours alone carry the matrix.
_COUNTS_SHOWN_UP_TO = 30


def confusion_figure(confusion: np.ndarray, class_names: tuple[str, ...], model_name: str) -> plt.Figure:
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
    if num_classes <= _COUNTS_SHOWN_UP_TO:
        dark = confusion.max() / 2
        for row in range(num_classes):
            for column in range(num_classes):
                axes.text(column, row, confusion[row, column], ha="center", va="center", fontsize=label_size,
                          color="white" if confusion[row, column] > dark else "black")
    figure.tight_layout()
    return figure


def _write(path: str, content: bytes) -> None:
    # tf.io.gfile, not open(): model_run_dir may be on any file system TensorFlow reads.
    with tf.io.gfile.GFile(path, "wb") as file:
        file.write(content)


def _write_figure(path: str, figure: plt.Figure) -> None:
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    plt.close(figure)
    _write(path, png.getvalue())
