import numpy as np
import pytest
import tensorflow as tf

from components.trainer.conftest import encoded_image, random_pixels
from components.trainer.preprocessing import preprocess_image, preprocess_images
from data_schema import CHANNELS, IMAGE_SIZE


def test_an_ingested_image_becomes_its_own_pixels_scaled_to_0_1():
    pixels = random_pixels(IMAGE_SIZE, IMAGE_SIZE, seed=1)
    encoded = encoded_image(pixels, "PNG")  # lossless, so the expected pixels are exact

    preprocessed = preprocess_image(tf.constant(encoded)).numpy()

    assert preprocessed.dtype == np.float32
    np.testing.assert_allclose(preprocessed, pixels / 255.0, atol=1e-6)


@pytest.mark.parametrize("height, width, grayscale, image_format", [
    (IMAGE_SIZE, IMAGE_SIZE, False, "JPEG"),
    (480, 640, False, "JPEG"),  # larger, landscape
    (77, 301, False, "PNG"),  # smaller than IMAGE_SIZE on one side, odd sizes
    (200, 150, True, "PNG"),  # grayscale
    (97, 97, True, "JPEG"),
])
def test_any_size_format_and_colour_becomes_rgb_image_size_in_0_1(height, width, grayscale, image_format):
    pixels = random_pixels(height, width, seed=2)
    if grayscale:
        pixels = pixels[:, :, 0]

    preprocessed = preprocess_image(tf.constant(encoded_image(pixels, image_format))).numpy()

    assert preprocessed.shape == (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    assert 0.0 <= preprocessed.min() and preprocessed.max() <= 1.0
    if grayscale:  # grey stays grey: all three channels equal
        np.testing.assert_array_equal(preprocessed[..., 0], preprocessed[..., 2])


def test_a_large_photo_is_shrunk_smoothly_not_sampled():
    # A one-pixel checkerboard shrunk by 3 is mid-grey when antialiased; plain bilinear samples single pixels of it
    # (black or white).
    checkerboard = ((np.indices((3 * IMAGE_SIZE, 3 * IMAGE_SIZE)).sum(axis=0) % 2) * 255).astype(np.uint8)

    preprocessed = preprocess_image(tf.constant(encoded_image(checkerboard, "PNG"))).numpy()

    np.testing.assert_allclose(preprocessed, 0.5, atol=0.02)


def test_a_batch_of_mixed_images_is_each_image_preprocessed_alone():
    images = [encoded_image(random_pixels(IMAGE_SIZE, IMAGE_SIZE, seed=3)),
              encoded_image(random_pixels(300, 90, seed=4)[:, :, 0], "PNG")]

    batch = preprocess_images(tf.constant(images)).numpy()

    assert batch.shape == (2, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    for image, preprocessed in zip(images, batch):
        np.testing.assert_array_equal(preprocessed, preprocess_image(tf.constant(image)).numpy())
