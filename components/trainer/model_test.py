import keras
import numpy as np
import pytest

from components.trainer.model import MODELS, build_model
from core.config import MODEL_NAMES
from data_schema import CHANNELS, IMAGE_SIZE


def test_seed_cnn_is_the_tutorials_cnn_layer_for_layer():
    model = build_model("seed_cnn", num_classes=10, learning_rate=0.001)

    described = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            described.append(("Conv2D", layer.filters, layer.kernel_size, layer.activation.__name__, layer.padding))
        elif isinstance(layer, keras.layers.MaxPooling2D):
            described.append(("MaxPooling2D", layer.pool_size))
        elif isinstance(layer, keras.layers.Dropout):
            described.append(("Dropout", layer.rate))
        elif isinstance(layer, keras.layers.Dense):
            described.append(("Dense", layer.units, layer.activation.__name__))
        else:
            described.append((type(layer).__name__,))
    assert model.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    assert described == [
        ("Conv2D", 32, (3, 3), "relu", "valid"),
        ("MaxPooling2D", (2, 2)),
        ("Dropout", 0.25),
        ("Conv2D", 64, (3, 3), "relu", "valid"),
        ("MaxPooling2D", (2, 2)),
        ("Flatten",),
        ("Dense", 128, "relu"),
        ("Dropout", 0.5),
        ("Dense", 10, "softmax"),
    ]
    # 896 + 18,496 + (30 * 30 * 64 * 128 + 128) + (128 * 10 + 10), as the tutorial's model.summary() counts.
    assert model.count_params() == 7_393_610


def test_seed_cnn_trains_as_the_tutorial_compiled_it_with_integer_labels():
    model = build_model("seed_cnn", num_classes=10, learning_rate=0.001)

    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    logs = model.train_on_batch(np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), np.float32), np.array([3, 7]),
                                return_dict=True)
    assert set(logs) == {"loss", "accuracy"}


@pytest.mark.parametrize("num_classes", [10, 365])
def test_better_cnn_gives_probabilities_for_each_class_and_stays_small(num_classes):
    model = build_model("better_cnn", num_classes=num_classes, learning_rate=0.001)
    pixels = np.random.default_rng(0).random((2, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), dtype=np.float32)

    probabilities = model.predict_on_batch(pixels)

    assert probabilities.shape == (2, num_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.count_params() < 1_000_000  # trains in minutes on a laptop's CPU


def test_better_cnn_augments_in_training_only():
    model = build_model("better_cnn", num_classes=10, learning_rate=0.001)
    pixels = np.random.default_rng(0).random((4, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), dtype=np.float32)

    np.testing.assert_array_equal(model(pixels, training=False), model(pixels, training=False))
    augmentation = [layer for layer in model.layers if layer.name.startswith("random_")]
    assert augmentation, "better_cnn has no augmentation layers"
    augmented = pixels
    for layer in augmentation:
        augmented = layer(augmented, training=True)
    assert not np.allclose(augmented, pixels)


def test_an_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="resnet.*" + ".*".join(MODEL_NAMES)):
        build_model("resnet", num_classes=10, learning_rate=0.001)


def test_the_registry_builds_exactly_the_models_the_configuration_accepts():
    assert sorted(MODELS) == sorted(MODEL_NAMES)
    for name, builder in MODELS.items():
        assert builder(num_classes=3).name == name
