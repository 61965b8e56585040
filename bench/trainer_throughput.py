"""The Trainer's speed and the two models' accuracy, on the project's sample data, in one run.

    PYTHONPATH=. .venv/bin/python bench/trainer_throughput.py                      # 200 per class, 20 epochs
    PYTHONPATH=. .venv/bin/python bench/trainer_throughput.py --per-class 20 --epochs 2 --throughput-rounds 1

1. Generates the 10 tutorial classes (sample_data, folders layout), converts each image as ingestion
   does (ingestion.images.convert: RGB JPEG at IMAGE_SIZE) and writes a seeded 80/20 split as GZIP TFRecord
   shards of tf.Example, in the layout ExampleGen gives the Trainer (Split-train/, Split-eval/).
2. Throughput: training images/s (wall clock) and CPU ms per image, for each model, back to back in this
   process: the Trainer's training step fed by our input pipeline from the shards (streamed and cached) against
   the same step fed by a numpy array of the same preprocessed images already in memory (the baseline: no input
   cost), and Keras' fit() on that array for information. After a warm-up epoch each, the feeds take turns, one
   epoch at a time (--throughput-rounds); medians count. CPU time is the steadier number on a shared machine: it
   is what the image costs, whoever else is running.
3. Accuracy: run_fn itself, for seed_cnn and then better_cnn, for --epochs epochs on the same split.

Prints one JSON object on stdout; progress goes to stderr.
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

from core.config import MODEL_NAMES, IngestConfig, TrainingConfig
from data_schema import IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, TUTORIAL_CLASSES, folder_name
from ingestion.images import convert
from sample_data import generate

BATCH_SIZE = 32
EVAL_SHARE = 0.2
SHARDS_PER_SPLIT = 4


def write_split_shards(image_dir: Path, out_dir: Path, seed: int) -> dict[str, int]:
    """GZIP TFRecords of tf.Example under out_dir/Split-train and out_dir/Split-eval; returns images per split."""
    import tensorflow as tf

    labelled = [(path, label) for label, key in enumerate(TUTORIAL_CLASSES)
                for path in sorted((image_dir / folder_name(key)).iterdir())]
    order = np.random.default_rng(seed).permutation(len(labelled))
    eval_count = round(len(labelled) * EVAL_SHARE)
    counts = {}
    for split, indices in (("eval", order[:eval_count]), ("train", order[eval_count:])):
        split_dir = out_dir / f"Split-{split}"
        split_dir.mkdir(parents=True, exist_ok=True)  # a rerun in the same --work-dir overwrites the shards
        writers = [tf.io.TFRecordWriter(str(split_dir / f"data_tfrecord-{shard:05d}-of-{SHARDS_PER_SPLIT:05d}.gz"),
                                        options="GZIP") for shard in range(SHARDS_PER_SPLIT)]
        for position, index in enumerate(sorted(indices)):  # class order within shards, as a listing gives it
            path, label = labelled[index]
            image_jpeg = convert(path.read_bytes(), IngestConfig()).image_jpeg
            writers[position * SHARDS_PER_SPLIT // len(indices)].write(tf.train.Example(features=tf.train.Features(
                feature={
                    IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_jpeg])),
                    LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                    LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[TUTORIAL_CLASSES[label].encode()])),
                })).SerializeToString())
        for writer in writers:
            writer.close()
        counts[split] = len(indices)
    return counts


def measure_throughput(model_name: str, split_dir: Path, rounds: int, seed: int) -> dict:
    """Training images/s (wall clock) and CPU milliseconds per image of one epoch, fed four ways.

    The Trainer's training step (loop.train_step, one device) fed by our input pipeline, streamed and cached, and
    by a numpy array of the same preprocessed images already in memory (the tutorial's way, and the baseline: the
    step with no input cost); and, for information, Keras' fit() on that array (what the Trainer ran before its
    own loop). Each feed gets its own model and a warm-up epoch (graph tracing, filling the cache); then the feeds
    take turns, one epoch each, `rounds` times, so load from other processes falls on all of them alike. The median
    of the rounds counts.
    """
    import keras
    import tensorflow as tf

    from components.trainer.input import make_dataset
    from components.trainer.loop import train_step
    from components.trainer.model import build_model

    train_files = [str(split_dir / "Split-train" / "*")]
    pixels, categories = in_memory_arrays(train_files)
    steps = -(-len(categories) // BATCH_SIZE)
    strategy = tf.distribute.get_strategy()
    in_memory = tf.data.Dataset.from_tensor_slices((pixels, categories)).shuffle(len(categories), seed=seed)
    datasets = {
        "input_pipeline": make_dataset(train_files, BATCH_SIZE, training=True, seed=seed, cache_images=False,
                                       repeat=True),
        "input_pipeline_cached": make_dataset(train_files, BATCH_SIZE, training=True, seed=seed, cache_images=True,
                                              repeat=True),
        "numpy_in_memory": in_memory.repeat().batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE),
    }
    epochs = {}
    for feed, dataset in datasets.items():
        keras.utils.set_random_seed(seed)
        model = build_model(model_name, len(TUTORIAL_CLASSES), 0.001)
        step, batches = train_step(model, strategy, BATCH_SIZE, jit_compile=False), iter(dataset)

        def epoch(step=step, batches=batches) -> None:
            for _ in range(steps):
                totals = step(batches)
            totals.numpy()

        epochs[feed] = epoch
    keras.utils.set_random_seed(seed)
    fit_model = build_model(model_name, len(TUTORIAL_CLASSES), 0.001)
    epochs["keras_fit_numpy"] = lambda: fit_model.fit(pixels, categories, batch_size=BATCH_SIZE, shuffle=True,
                                                      epochs=1, verbose=0)
    for epoch in epochs.values():
        epoch()
    measured = {feed: {"images_per_s": [], "cpu_ms_per_image": []} for feed in epochs}
    for _ in range(rounds):
        for feed, epoch in epochs.items():
            wall, cpu = time.monotonic(), time.process_time()
            epoch()
            measured[feed]["images_per_s"].append(len(categories) / (time.monotonic() - wall))
            measured[feed]["cpu_ms_per_image"].append(1000 * (time.process_time() - cpu) / len(categories))
            print(f"{model_name} fed by {feed}: {measured[feed]['images_per_s'][-1]:.1f} images/s, "
                  f"{measured[feed]['cpu_ms_per_image'][-1]:.1f} CPU ms/image", file=sys.stderr, flush=True)
    medians = {feed: {name: round(float(np.median(values)), 1) for name, values in results.items()}
               for feed, results in measured.items()}
    medians["streamed_over_in_memory"] = round(medians["input_pipeline"]["images_per_s"]
                                               / medians["numpy_in_memory"]["images_per_s"], 3)
    medians["cached_over_in_memory"] = round(medians["input_pipeline_cached"]["images_per_s"]
                                             / medians["numpy_in_memory"]["images_per_s"], 3)
    return medians


def in_memory_arrays(file_patterns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All (pixels, category) of the shards as numpy arrays, preprocessed by the same function as training."""
    from components.trainer.input import make_dataset

    batches = list(make_dataset(file_patterns, BATCH_SIZE, training=False, seed=0, cache_images=False,
                                repeat=False).as_numpy_iterator())
    return np.concatenate([pixels for pixels, _ in batches]), np.concatenate([labels for _, labels in batches])


def measure_accuracy(model_name: str, split_dir: Path, run_dir: Path, epochs: int, seed: int) -> dict:
    """run_fn as the Trainer calls it; eval accuracy and timings from the files it writes."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    from components.trainer.custom_config import to_custom_config
    from components.trainer.run_fn import run_fn

    started = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):  # Keras' line per epoch; stdout is for the JSON result alone
        run_fn(FnArgs(
            train_files=[str(split_dir / "Split-train" / "*")], eval_files=[str(split_dir / "Split-eval" / "*")],
            serving_model_dir=str(run_dir / "serving_model"), model_run_dir=str(run_dir / "model_run"),
            custom_config=to_custom_config(
                TrainingConfig(model=model_name, epochs=epochs, batch_size=BATCH_SIZE, seed=seed), TUTORIAL_CLASSES,
                str(run_dir / "worker-logs"))))
    run_fn_s = time.monotonic() - started
    history = json.loads((run_dir / "model_run" / "history.json").read_text())
    return {
        # The last epoch's validation is the exported model on the whole eval split.
        "eval_accuracy": round(history[-1]["val_accuracy"], 4),
        "best_epoch_val_accuracy": round(max(epoch["val_accuracy"] for epoch in history), 4),
        "train_accuracy": round(history[-1]["accuracy"], 4),
        "training_s": round(sum(epoch["seconds"] for epoch in history), 1),
        "run_fn_s": round(run_fn_s, 1),
        "median_train_images_per_s": float(np.median([epoch["train_images_per_s"] for epoch in history])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the accuracy comparison")
    parser.add_argument("--throughput-rounds", type=int, default=2,
                        help="measured epochs per model and feed, after one warm-up epoch")
    parser.add_argument("--seed", type=int, default=365)
    parser.add_argument("--work-dir", type=Path,
                        help="keep the data and each model's run_fn outputs (history, plots, SavedModel) here "
                             "instead of in a temporary folder")
    arguments = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    with tempfile.TemporaryDirectory(prefix="trainer-throughput-") as temporary:
        work_dir = arguments.work_dir or Path(temporary)
        started = time.monotonic()
        images = generate(work_dir / "images", TUTORIAL_CLASSES, arguments.per_class, "folders", arguments.seed)
        split_dir = work_dir / "examples"
        split_counts = write_split_shards(work_dir / "images", split_dir, arguments.seed)
        print(f"{images} images generated and converted in {time.monotonic() - started:.0f} s", file=sys.stderr)

        throughput = {name: measure_throughput(name, split_dir, arguments.throughput_rounds, arguments.seed)
                      for name in MODEL_NAMES}
        accuracy = {name: measure_accuracy(name, split_dir, work_dir / name, arguments.epochs, arguments.seed)
                    for name in MODEL_NAMES}
    json.dump({
        "classes": len(TUTORIAL_CLASSES), "per_class": arguments.per_class, "images": split_counts,
        "batch_size": BATCH_SIZE, "seed": arguments.seed, "cpu_cores": os.cpu_count(),
        "throughput": throughput,
        "accuracy_epochs": arguments.epochs, "accuracy": accuracy,
    }, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
