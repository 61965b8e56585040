"""The TFX Trainer's entry point: `Trainer(run_fn="components.trainer.run_fn.run_fn", ...)`.

custom_config holds every field of core.config.TrainingConfig (model, epochs, batch size, ...; see the comments
there) and class_names, the class keys in label order; pipeline/pipeline.py writes it with
custom_config.to_custom_config, and run_fn reads it back with from_custom_config.

train_args num_steps is the number of steps in each epoch, as TFX's Keras examples pass it to fit(); 0 or unset
(TFX gives None) makes each epoch one full pass over the train split. eval_args num_steps likewise limits each
validation; 0 or unset means the whole eval split.

Writes, besides the SavedModel in fn_args.serving_model_dir (export.py), to fn_args.model_run_dir:
    history.json            per epoch: loss, accuracy, val_loss, val_accuracy, steps, seconds, train_images_per_s
The evaluation by class and the confusion matrix are the Evaluator's (TFMA's); pipeline/report.py draws the plots.
"""

from __future__ import annotations

import json
import logging
import os
import time

import keras
import tensorflow as tf

from components.trainer import HISTORY_FILE, export
from components.trainer.custom_config import from_custom_config
from components.trainer.input import DECODED_IMAGE_BYTES, count_examples, fits_in_memory, make_dataset
from components.trainer.model import build_model


def run_fn(fn_args) -> None:
    """Train the configured model on fn_args.train_files, validate on fn_args.eval_files, write its history to
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

    run_dir = fn_args.model_run_dir
    tf.io.gfile.makedirs(run_dir)
    _write(os.path.join(run_dir, HISTORY_FILE), json.dumps(history, indent=2).encode())
    export.export(model, list(class_names), fn_args.serving_model_dir)
    logging.info("Exported %s to %s; history in %s", model.name, fn_args.serving_model_dir, run_dir)


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


def _write(path: str, content: bytes) -> None:
    # tf.io.gfile, not open(): model_run_dir may be on any file system TensorFlow reads.
    with tf.io.gfile.GFile(path, "wb") as file:
        file.write(content)
