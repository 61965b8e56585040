"""The serving model: a SavedModel whose signatures take pixels, encoded images or tf.Examples.

Why a tf.Module with explicit signatures, saved with tf.saved_model.save, and not Keras' model.export() or a
.keras file: TFMA 0.47 tries tf.keras.models.load_model first, which under TF 2.16's Keras 3 reads only .keras
files, so it evaluates a SavedModel as a generic TensorFlow model, through a named signature that takes
serialized tf.Examples (checked with TFMA 0.47.1: accuracy overall and per category_name, with thresholds).
model.export() writes one endpoint on the model's own input, pixels; tf_keras would be a second Keras beside
the one we train with. Writing the signatures ourselves gives TFMA its tf.Example signature and puts the one
preprocessing function into the graph of every signature that starts from encoded images.

Signatures, each returning {"probabilities": float32 [N, num_classes]}, class i being class_names[i]:
    serving_default   = predict_pixels: "pixels" float32 [N, IMAGE_SIZE, IMAGE_SIZE, 3] in [0, 1]
                        (the tutorial endpoint's input: images its client already resized and scaled)
    predict_images    "images" string [N]: JPEG or PNG bytes, any size, grayscale or RGB
    predict_examples  "examples" string [N]: serialized tf.Examples with the image in IMAGE_KEY (for TFMA)

The class keys are saved with the model, in output order. After loading:
    loaded = tf.saved_model.load(serving_model_dir)
    class_names = [key.decode() for key in loaded.class_names.numpy()]
and data_schema.display_name(key) spells one for people ("gas_station" -> "Gas Station").
"""

from __future__ import annotations

import keras
import tensorflow as tf

from components.trainer.preprocessing import IMAGE_FEATURE, preprocess_images
from data_schema import CHANNELS, IMAGE_KEY, IMAGE_SIZE


class ServingModel(tf.Module):
    """A trained Keras model, its preprocessing and its class names, as TensorFlow saves them."""

    def __init__(self, model: keras.Model, class_names: list[str]):
        super().__init__()
        if model.output_shape[-1] != len(class_names):
            raise ValueError(f"model {model.name} has {model.output_shape[-1]} outputs but {len(class_names)} "
                             f"class names were given: pass the class list it was trained with")
        self.model = model
        # Keras 3 keeps the augmentation layers' random seed states where tf.saved_model does not look; the
        # graph refers to them even with training=False, so they are saved through this list.
        self.model_variables = list(model.variables)
        # A variable, not a constant: it is saved in the SavedModel and readable as loaded.class_names.
        self.class_names = tf.Variable(class_names, dtype=tf.string, trainable=False, name="class_names")

    @tf.function(input_signature=[
        tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], tf.float32, name="pixels")])
    def predict_pixels(self, pixels):
        return {"probabilities": self.model(pixels, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def predict_images(self, images):
        return self.predict_pixels(preprocess_images(images))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(self, examples):
        images = tf.io.parse_example(examples, IMAGE_FEATURE)[IMAGE_KEY]
        return self.predict_images(images)


def export(model: keras.Model, class_names: list[str], serving_model_dir: str) -> None:
    """Save `model` with its preprocessing and `class_names` (in output order) as a SavedModel in serving_model_dir."""
    serving_model = ServingModel(model, class_names)
    tf.saved_model.save(serving_model, serving_model_dir, signatures={
        "serving_default": serving_model.predict_pixels,
        "predict_images": serving_model.predict_images,
        "predict_examples": serving_model.predict_examples,
    })
