"""The Trainer on this machine's accelerator against the accelerator's own limit for each model: one JSON object.

    PYTHONPATH=. .venv/bin/python bench/trainer_device.py           # bench/trainer_device.sh runs this on a GPU

For seed_cnn and better_cnn, at a batch of 32 and of 256 images:
  trainer_images_per_s   run_fn as the Trainer calls it (one process, training.precision auto, XLA where the model
                         allows it), from the shards of sample images: the median epoch after the first
  limit_images_per_s     the same model's training step (loop.replica_train_step, same precision and XLA) on one
                         batch already in the device's memory, called --limit-steps times after a warm-up: what
                         this device does for the model when the input costs nothing
  ratio                  the first over the second
On a machine without a GPU it measures the CPU the same way (say so wherever you quote it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.trainer_scaling import run_trainer
from bench.trainer_throughput import write_split_shards
from core.config import MODEL_NAMES
from data_schema import CHANNELS, IMAGE_SIZE, TUTORIAL_CLASSES
from sample_data import generate


def device_limit(model_name: str, batch_size: int, steps: int) -> float:
    """Images/s of the model's training step on a batch that already sits on the device."""
    import keras
    import tensorflow as tf

    from components.trainer import distribution
    from components.trainer.loop import replica_train_step
    from components.trainer.model import build_model, compiles_with_xla

    keras.mixed_precision.set_dtype_policy(distribution.precision_policy("auto"))
    try:
        model = build_model(model_name, len(TUTORIAL_CLASSES), 0.001)
        model.optimizer.build(model.trainable_variables)
        step = replica_train_step(model, batch_size, distribution.on_gpu() and compiles_with_xla(model))
        pixels = tf.random.uniform([batch_size, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], seed=1)
        labels = tf.random.uniform([batch_size], maxval=len(TUTORIAL_CLASSES), dtype=tf.int64, seed=2)
        for _ in range(3):
            step(pixels, labels).numpy()
        started = time.monotonic()
        for _ in range(steps):
            totals = step(pixels, labels)
        totals.numpy()  # waits for the device
        return steps * batch_size / (time.monotonic() - started)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=300, help="sample images per class (80 %% train)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--limit-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=365)
    arguments = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    device = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus
              else f"CPU only ({len(os.sched_getaffinity(0))} cores)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="trainer-device-") as temporary:
        work_dir = Path(temporary)
        generate(work_dir / "images", TUTORIAL_CLASSES, arguments.per_class, "folders", arguments.seed)
        split_counts = write_split_shards(work_dir / "images", work_dir / "examples", arguments.seed)
        for model_name in MODEL_NAMES:
            for batch_size in arguments.batch_sizes:
                print(f"{model_name}, batch {batch_size}", file=sys.stderr)
                with contextlib.redirect_stdout(sys.stderr):
                    limit = device_limit(model_name, batch_size, arguments.limit_steps)
                trainer = run_trainer(work_dir / "examples", work_dir / f"{model_name}-{batch_size}", model_name,
                                      arguments.epochs, 1, arguments.seed, batch_size=batch_size)
                results[f"{model_name}_batch_{batch_size}"] = {
                    "trainer_images_per_s": trainer["images_per_s"], "limit_images_per_s": round(limit, 1),
                    "ratio": round(trainer["images_per_s"] / limit, 3), "eval_accuracy": trainer["eval_accuracy"]}
    json.dump({"device": device, "gpus": len(gpus), "images": split_counts, "epochs": arguments.epochs,
               "tensorflow": tf.__version__, "results": results,
               "median_ratio": float(np.median([result["ratio"] for result in results.values()]))},
              sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
