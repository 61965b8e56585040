"""Small generated data for the trainer's tests: encoded images and GZIP TFRecord shards of tf.Example."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_schema import IMAGE_KEY, IMAGE_SIZE, LABEL_KEY, LABEL_NAME_KEY

CLASS_NAMES = ("glacier", "hayfield", "runway")
# A colour per class, so even two epochs on a few images learn something: ice blue, straw yellow, asphalt grey.
_CLASS_COLOURS = ((170, 210, 240), (220, 190, 90), (90, 90, 95))


def encoded_image(pixels: np.ndarray, image_format: str = "JPEG") -> bytes:
    """uint8 pixels ([height, width, 3] RGB or [height, width] grayscale) as JPEG or PNG bytes."""
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, image_format)
    return encoded.getvalue()


def random_pixels(height: int, width: int, seed: int, colour=(128, 128, 128)) -> np.ndarray:
    """uint8 RGB noise around `colour`: detailed enough that a skew in decoding or resizing changes the result."""
    noise = np.random.default_rng(seed).normal(0, 40, (height, width, 3))
    return np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)


def serialized_example(image_jpeg: bytes, category: int, class_names: tuple[str, ...] = CLASS_NAMES) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_jpeg])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[category])),
        LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[class_names[category].encode()])),
    })).SerializeToString()


def write_shards(directory, examples: list[bytes], shards: int = 2) -> str:
    """`examples` split over GZIP TFRecord files in `directory`, as ExampleGen writes them; returns their glob."""
    directory.mkdir(parents=True)
    for shard in range(shards):
        with tf.io.TFRecordWriter(str(directory / f"data_tfrecord-{shard:05d}-of-{shards:05d}.gz"), "GZIP") as writer:
            for example in examples[shard::shards]:
                writer.write(example)
    return str(directory / "*")


@pytest.fixture
def example_splits(tmp_path) -> dict[str, str]:
    """Glob patterns of a train split (8 images per class) and an eval split (4 per class) of CLASS_NAMES, as
    ingestion writes them: IMAGE_SIZE x IMAGE_SIZE JPEGs."""
    def split(name: str, per_class: int, first_seed: int) -> str:
        return write_shards(tmp_path / f"Split-{name}", [
            serialized_example(encoded_image(random_pixels(IMAGE_SIZE, IMAGE_SIZE, first_seed + number, colour)),
                               category)
            for category, colour in enumerate(_CLASS_COLOURS) for number in range(per_class)])

    return {"train": split("train", 8, 0), "eval": split("eval", 4, 1000)}
