"""The models the Trainer can train, by name. Both take float32 [batch, IMAGE_SIZE, IMAGE_SIZE, CHANNELS] pixels
in [0, 1] (preprocessing.py makes them) and give class probabilities.

    seed_cnn    the tutorial's CNN, layer for layer: the baseline every other model has to beat.
    better_cnn  a small residual CNN with separable convolutions, batch norm and augmentation (the default).
"""

from __future__ import annotations

import typing

import keras
from keras import layers

from data_schema import CHANNELS, IMAGE_SIZE


def build_model(name: str, num_classes: int, learning_rate: float) -> keras.Model:
    """The compiled model called `name` (one of MODELS) with `num_classes` outputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': set training.model to one of {', '.join(MODELS)}")
    model = MODELS[name](num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        # Labels are class indices (the `category` feature); the tutorial's categorical cross-entropy on one-hot
        # labels is the same loss.
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def seed_cnn(num_classes: int) -> keras.Model:
    """The tutorial's CNN, exactly (its 10 outputs become num_classes)."""
    return keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.25),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            _probabilities(num_classes),
        ],
        name="seed_cnn",
    )


def better_cnn(num_classes: int) -> keras.Model:
    """A small residual CNN in the style of Xception (keras-io "Image classification from scratch").

    What it changes from the seed CNN, and why:
    - Random flips, shifts and contrast changes while training: a few hundred pictures per class are too few to
      learn from as they are; a mirrored or shifted scene is still the same scene.
    - Global average pooling instead of Flatten + Dense(128): the seed CNN puts 7.4 M of its 7.4 M weights in
      that Dense layer and memorises the training set; pooling keeps the model at about 0.2 M weights and makes
      it look for a scene's parts anywhere in the frame.
    - Four blocks of separable convolutions with batch norm and a shortcut, halving the resolution each time:
      features of larger parts (a dome, a dashed line) at about the seed CNN's cost per image, and stable
      training from the first epoch.
    """
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS))
    # Augmentation layers act in fit() only; in evaluation and in the exported model they pass images through.
    x = layers.RandomFlip("horizontal")(inputs)
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="reflect")(x)
    x = layers.RandomContrast(0.2, value_range=(0, 1))(x)

    # Stem: 128 x 128 -> 64 x 64 at once; full-resolution features cost most and add least on scenes.
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(x)
    x = _batch_norm(x)
    x = layers.Activation("relu")(x)

    # Few filters where the images are large, more as they shrink: the cost per block stays about the same.
    for filters in (32, 64, 128, 256):  # 64 x 64 -> 32 x 32 -> 16 x 16 -> 8 x 8 -> 4 x 4
        x = _residual_block(x, filters)

    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = _probabilities(num_classes)(x)
    return keras.Model(inputs, outputs, name="better_cnn")


def _residual_block(x, filters: int):
    """Two separable convolutions and a halving max pool, added to a strided 1 x 1 projection of the block's input."""
    shortcut = layers.Conv2D(filters, 1, strides=2, padding="same")(x)
    for _ in range(2):
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = _batch_norm(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    return layers.add([x, shortcut])


def _probabilities(num_classes: int) -> layers.Layer:
    # float32 under every dtype policy: with mixed_float16 a softmax in float16 rounds small probabilities to 0,
    # and the loss of those to infinity.
    return layers.Dense(num_classes, activation="softmax", dtype="float32")


def compiles_with_xla(model: keras.Model) -> bool:
    """Whether XLA can compile a training step of `model`: not with RandomTranslation, whose image transform
    (ImageProjectiveTransformV3) XLA has no kernel for (tf2xla conversion fails in affine_transform, tried with
    better_cnn); seed_cnn compiles."""
    return not any(isinstance(layer, layers.RandomTranslation) for layer in model.layers)


def _batch_norm(x):
    # Momentum 0.9, not Keras' 0.99: the moving statistics that evaluation and serving use must settle within the
    # few hundred steps a small data set gives; at 0.99 validation stays at chance for the first epochs.
    return layers.BatchNormalization(momentum=0.9)(x)


# Each network by its name in training.model; core.config.MODEL_NAMES lists the same names (model_test checks),
# since the configuration, below this package, cannot import it.
MODELS: dict[str, typing.Callable[[int], keras.Model]] = {"seed_cnn": seed_cnn, "better_cnn": better_cnn}
