"""How hard the sample data is: the tutorial's seed CNN, trained on `sample-data` output, per seed.

    PYTHONPATH=. .venv/bin/python bench/sample_data_difficulty.py --per-class 200 --seeds 365 7

For each seed it generates the 10 tutorial classes into a temporary folder, trains the CNN with plain
Keras on a random 80/20 split and prints one JSON object: validation accuracy per seed, epochs, images,
generation speed and training time. The nuisance strengths in sample_data/rendering.py are tuned so the
accuracy lands between 40 % and 90 %: lower, the demo model learns nothing; higher, the data no longer tells
models apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.console import quiet_libraries
from data_schema import IMAGE_SIZE, TUTORIAL_CLASSES, folder_name
from sample_data import generate

BATCH_SIZE = 32
VALIDATION_SHARE = 0.2


def image_dataset(paths: list[str], labels: list[int]):
    """Decoded images, grayscale made RGB, resized to IMAGE_SIZE and scaled to [0, 1], as the tutorial feeds them."""
    import tensorflow as tf

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32) / 255.0, (IMAGE_SIZE, IMAGE_SIZE)), label

    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()


def measure(seed: int, per_class: int, epochs: int, work_dir: Path) -> dict:
    import tensorflow as tf

    from components.trainer.model import build_model

    data_dir = work_dir / f"seed{seed}"
    started = time.monotonic()
    images = generate(data_dir, TUTORIAL_CLASSES, per_class, "folders", seed)
    generation_s = time.monotonic() - started
    print(f"seed {seed}: generated {images} images in {generation_s:.1f} s", file=sys.stderr, flush=True)

    paths, labels = [], []
    for label, key in enumerate(TUTORIAL_CLASSES):
        for path in sorted((data_dir / folder_name(key)).iterdir()):
            paths.append(str(path))
            labels.append(label)
    order = np.random.default_rng(seed).permutation(len(paths))
    val_count = round(len(paths) * VALIDATION_SHARE)
    val, train = order[:val_count], order[val_count:]

    tf.keras.utils.set_random_seed(seed)
    train_data = image_dataset([paths[i] for i in train], [labels[i] for i in train]) \
        .shuffle(len(train), seed=seed).batch(BATCH_SIZE).prefetch(2)
    val_data = image_dataset([paths[i] for i in val], [labels[i] for i in val]).batch(BATCH_SIZE).prefetch(2)
    started = time.monotonic()
    # Per-epoch lines on stderr show a run is alive during its minutes of training; stdout stays one JSON object.
    report_epoch = tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(
        f"seed {seed} epoch {epoch + 1}/{epochs}: accuracy {logs['accuracy']:.3f}, "
        f"val_accuracy {logs['val_accuracy']:.3f}", file=sys.stderr, flush=True))
    # The Trainer's seed_cnn: the tutorial's network, adam at its default learning rate.
    model = build_model("seed_cnn", len(TUTORIAL_CLASSES), learning_rate=0.001)
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, verbose=0, callbacks=[report_epoch])
    training_s = time.monotonic() - started
    return {
        "val_accuracy": round(history.history["val_accuracy"][-1], 4),
        "best_val_accuracy": round(max(history.history["val_accuracy"]), 4),
        "train_accuracy": round(history.history["accuracy"][-1], 4),
        "images": images,
        "train_images": len(train),
        "val_images": len(val),
        "generation_images_per_s": round(images / generation_s, 1),
        "training_s": round(training_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[365, 7])
    parser.add_argument("--epochs", type=int, default=20)
    arguments = parser.parse_args()
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="sample-data-difficulty-") as work_dir:
        per_seed = {str(seed): measure(seed, arguments.per_class, arguments.epochs, Path(work_dir))
                    for seed in arguments.seeds}
    accuracies = [result["val_accuracy"] for result in per_seed.values()]
    json.dump({"model": "tutorial seed CNN", "classes": len(TUTORIAL_CLASSES), "per_class": arguments.per_class,
               "epochs": arguments.epochs, "batch_size": BATCH_SIZE,
               "val_accuracy_range": [min(accuracies), max(accuracies)], "seeds": per_seed}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
