"""tf.data input for training and evaluation: GZIP TFRecord shards of tf.Example -> batches of (pixels, category).

Two ways, chosen by the Trainer (run_fn) from training.image_cache_mb:
  cached     shards -> decode -> cache -> shuffle decoded images -> batch: after the first epoch nothing is read
             or decoded again; memory grows with the data set (DECODED_IMAGE_BYTES per image).
  streaming  shards read in parallel -> shuffle the still encoded records -> decode in parallel -> batch ->
             prefetch: memory stays the same whatever the data set's size, since only the shuffle buffer's
             small JPEG records and a few batches are held.
Either way the model, not the input, sets the pace on CPU (bench/trainer_throughput.py measures both against
numpy arrays already in memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from components.trainer.preprocessing import IMAGE_FEATURE, preprocess_image
from data_schema import CHANNELS, IMAGE_KEY, IMAGE_SIZE, LABEL_KEY

# Images held for shuffling. It covers a whole small data set; on large ones it mixes the shards read at once
# (shards may hold long runs of one class). Streaming holds them encoded (a few KB each), cached decoded.
SHUFFLE_BUFFER_IMAGES = 4096
# One decoded image: 128 x 128 x 3 float32.
DECODED_IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * CHANNELS * 4
# Shards read at the same time, so a batch mixes images from many of them.
SHARDS_READ_AT_ONCE = 16

_FEATURES = {**IMAGE_FEATURE, LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


def shard_paths(file_patterns: list[str]) -> list[str]:
    """Every file matching any of `file_patterns` (the Trainer's fn_args.train_files or eval_files), sorted."""
    paths = sorted({path for pattern in file_patterns for path in tf.io.gfile.glob(pattern)})
    if not paths:
        raise FileNotFoundError(f"no TFRecord shards match {', '.join(file_patterns)}: check that the examples "
                                f"artifact given to the Trainer holds this split")
    return paths


@dataclass(frozen=True)
class InputPart:
    """The part of a split that one input pipeline reads (one per worker): pipeline `index` of `count`.

    Whole shards where every pipeline gets at least one (shard i goes to pipeline i % count), so no worker reads
    another's files; with fewer shards than pipelines, every pipeline reads all shards and keeps every count-th
    record from its index on."""
    index: int = 0
    count: int = 1

    def shards(self, paths: list[str]) -> list[str]:
        return paths[self.index::self.count] if self.by_shard(paths) else paths

    def by_shard(self, paths: list[str]) -> bool:
        return len(paths) >= self.count

    def describe(self, paths: list[str]) -> str:
        """What this part reads, for the worker's log: the shard files' names, or the records it keeps."""
        names = ", ".join(path.rsplit("/", 1)[-1] for path in self.shards(paths))
        if self.count == 1:
            return f"all {len(paths)} shards: {names}"
        if self.by_shard(paths):
            return f"{len(self.shards(paths))} of {len(paths)} shards: {names}"
        return f"record {self.index} and every {self.count}th after it of all {len(paths)} shards: {names}"


WHOLE_SPLIT = InputPart()


def count_examples(file_patterns: list[str]) -> int:
    """How many tf.Examples the shards hold: one pass over the compressed records, nothing decoded."""
    records = tf.data.TFRecordDataset(shard_paths(file_patterns), compression_type="GZIP",
                                      num_parallel_reads=tf.data.AUTOTUNE)
    return int(records.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def fits_in_memory(images: int, budget_mb: int) -> bool:
    """Whether `images` decoded images fit in `budget_mb` megabytes (training.image_cache_mb)."""
    return images * DECODED_IMAGE_BYTES <= budget_mb * 1024 * 1024


def make_dataset(file_patterns: list[str], batch_size: int, *, training: bool, seed: int, cache_images: bool,
                 repeat: bool, part: InputPart = WHOLE_SPLIT) -> tf.data.Dataset:
    """Batches of (float32 [batch, IMAGE_SIZE, IMAGE_SIZE, CHANNELS] in [0, 1], int64 [batch] category).

    training: shuffle shards and images (seeded; a new order each epoch). cache_images: keep the decoded images
    in memory after the first epoch (for data sets that fit: no more reading or decoding); otherwise stream them
    (see the module docstring). repeat: endless, for a fixed number of steps per epoch; otherwise one pass per
    epoch. part: the part of the split to read (one worker's).
    """
    paths = shard_paths(file_patterns)
    shards = tf.data.Dataset.from_tensor_slices(part.shards(paths))
    if training:
        shards = shards.shuffle(len(shards), seed=seed)
    records = shards.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=SHARDS_READ_AT_ONCE,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if not part.by_shard(paths):
        records = records.shard(part.count, part.index)
    if training and not cache_images:
        records = records.shuffle(SHUFFLE_BUFFER_IMAGES, seed=seed, reshuffle_each_iteration=True)
    examples = records.map(_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache_images:
        examples = examples.cache()
        if training:
            examples = examples.shuffle(SHUFFLE_BUFFER_IMAGES, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        examples = examples.repeat()
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    features = tf.io.parse_single_example(serialized, _FEATURES)
    return preprocess_image(features[IMAGE_KEY]), features[LABEL_KEY]
