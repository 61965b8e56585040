"""The one preprocessing function: encoded image bytes in, the model's input out.

Training (input.py) and every exported signature (export.py) call `preprocess_image`, so an image is turned
into pixels by the same graph ops whether it is trained on, evaluated by TFMA or sent to the serving endpoint.
"""

from __future__ import annotations

import tensorflow as tf

from data_schema import CHANNELS, IMAGE_KEY, IMAGE_SIZE

# How the image is read from a tf.Example, in training and in the exported predict_examples signature.
IMAGE_FEATURE = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}


def preprocess_image(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes (scalar string; any size, grayscale or RGB) -> float32 [IMAGE_SIZE, IMAGE_SIZE, CHANNELS]
    in [0, 1]."""
    # expand_animations=False: a GIF or APNG gives its first frame, so every image is rank 3.
    image = tf.io.decode_image(encoded, channels=CHANNELS, expand_animations=False)
    # Antialiasing keeps the large photos serving may get from aliasing when shrunk; ingestion's 128 x 128
    # JPEGs pass through unchanged.
    image = tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear", antialias=True)
    return image / 255.0


def preprocess_images(encoded: tf.Tensor) -> tf.Tensor:
    """A batch [N] of encoded images -> float32 [N, IMAGE_SIZE, IMAGE_SIZE, CHANNELS]: `preprocess_image` on each."""
    # map_fn, not a vectorised op: the images of one request may each have another size and format.
    return tf.map_fn(preprocess_image, encoded,
                     fn_output_signature=tf.TensorSpec((IMAGE_SIZE, IMAGE_SIZE, CHANNELS), tf.float32))
