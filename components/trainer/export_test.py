import keras
import numpy as np
import pytest
import tensorflow as tf

from components.trainer.conftest import CLASS_NAMES, encoded_image, random_pixels, serialized_example, write_shards
from components.trainer.export import export
from components.trainer.input import make_dataset
from components.trainer.preprocessing import preprocess_image
from data_schema import CHANNELS, IMAGE_SIZE


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A SavedModel of a model whose every output depends on every pixel, so any skew in preprocessing shows."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS)),
        keras.layers.Flatten(),
        keras.layers.Dense(len(CLASS_NAMES), activation="softmax",
                           kernel_initializer=keras.initializers.RandomNormal(stddev=0.01)),
    ])
    serving_model_dir = str(tmp_path_factory.mktemp("serving_model"))
    export(model, list(CLASS_NAMES), serving_model_dir)
    return tf.saved_model.load(serving_model_dir)


def _probabilities(loaded, signature: str, **inputs) -> np.ndarray:
    return loaded.signatures[signature](**{name: tf.constant(value) for name, value in inputs.items()})[
        "probabilities"].numpy()


def test_signatures_take_pixels_images_and_examples(loaded):
    assert set(loaded.signatures) == {"serving_default", "predict_images", "predict_examples"}
    inputs_by_signature = {"serving_default": "pixels", "predict_images": "images", "predict_examples": "examples"}
    for name, inputs in inputs_by_signature.items():
        assert list(loaded.signatures[name].structured_input_signature[1]) == [inputs]
        assert list(loaded.signatures[name].structured_outputs) == ["probabilities"]


def test_an_image_trained_on_gets_the_same_probabilities_through_every_signature(loaded, tmp_path):
    images = [encoded_image(random_pixels(IMAGE_SIZE, IMAGE_SIZE, seed)) for seed in range(3)]
    examples = [serialized_example(image, category) for category, image in enumerate(images)]
    training_pixels, _ = next(make_dataset([write_shards(tmp_path / "train", examples, shards=1)], batch_size=3,
                                           training=False, seed=0, cache_images=False, repeat=False)
                              .as_numpy_iterator())

    from_training_pixels = _probabilities(loaded, "serving_default", pixels=training_pixels)
    from_images = _probabilities(loaded, "predict_images", images=images)
    from_examples = _probabilities(loaded, "predict_examples", examples=examples)

    np.testing.assert_allclose(from_images, from_training_pixels, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(from_examples, from_training_pixels, rtol=1e-6, atol=1e-7)
    # The images differ, so equal probabilities above mean equal pixels, not a model that ignores them.
    assert not np.allclose(from_images[0], from_images[1], atol=1e-3)


def test_serving_default_on_preprocessed_pixels_equals_predict_images_on_any_image(loaded):
    images = [encoded_image(random_pixels(480, 640, seed=1)), encoded_image(random_pixels(77, 301, seed=2), "PNG"),
              encoded_image(random_pixels(200, 150, seed=3)[:, :, 0], "PNG")]
    pixels = np.stack([preprocess_image(tf.constant(image)).numpy() for image in images])

    from_images = _probabilities(loaded, "predict_images", images=images)

    np.testing.assert_allclose(from_images, _probabilities(loaded, "serving_default", pixels=pixels), rtol=1e-6,
                               atol=1e-7)
    assert from_images.shape == (3, len(CLASS_NAMES))
    np.testing.assert_allclose(from_images.sum(axis=1), 1.0, rtol=1e-5)


def test_class_names_come_back_in_output_order(loaded):
    assert [name.decode() for name in loaded.class_names.numpy()] == list(CLASS_NAMES)


def test_class_names_must_match_the_outputs(tmp_path):
    model = keras.Sequential([keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])

    with pytest.raises(ValueError, match="2 outputs but 3 class names"):
        export(model, list(CLASS_NAMES), str(tmp_path))
