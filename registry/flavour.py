"""The registered model's MLflow flavour: a pyfunc around the Trainer's SavedModel.

MLflow pickles a PlacesSceneModel with each version; the pickle names the class by its module, registry.flavour,
so loading a version imports this module from the project (its checkout, or the package setup.py builds) and needs
TensorFlow, no other pickled code. The SavedModel does all preprocessing in its own graph, so the pyfunc answers
MLflow's serving format as the tutorial's endpoint did: {"inputs": [[...pixels...]]} -> {"predictions": [[...]]}.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np

from data_schema import CHANNELS, IMAGE_SIZE

# The artifact key under which a version stores the SavedModel (the Trainer's Format-Serving folder).
SAVED_MODEL_ARTIFACT = "saved_model"
# What `mlflow models serve` installs where it builds an environment for a version.
PIP_REQUIREMENTS = ["tensorflow==2.16.2", "mlflow==3.17.2"]


class PlacesSceneModel(mlflow.pyfunc.PythonModel):
    """Answers a float32 batch [N, 128, 128, 3] scaled to [0, 1] (the tutorial's request) with [N, classes]."""

    def load_context(self, context) -> None:
        import tensorflow as tf

        self.saved_model = tf.saved_model.load(context.artifacts[SAVED_MODEL_ARTIFACT])
        self.predict_pixels = self.saved_model.signatures["serving_default"]

    # The np.ndarray hint tells MLflow the input is a plain array: it skips its own type-hint validation (the
    # logged signature and the endpoint check inputs) and stops warning about missing hints in every run.
    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        import tensorflow as tf

        pixels = tf.constant(np.asarray(model_input, dtype=np.float32))
        return self.predict_pixels(pixels)["probabilities"].numpy()


def save(path: str, serving_model_dir: str) -> None:
    """Write an MLflow model folder at `path`: this flavour, with the SavedModel in `serving_model_dir` as its
    artifact and the tutorial's tensor signature."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, IMAGE_SIZE, IMAGE_SIZE, CHANNELS))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]))
    mlflow.pyfunc.save_model(path=path, python_model=PlacesSceneModel(),
                             artifacts={SAVED_MODEL_ARTIFACT: serving_model_dir}, signature=signature,
                             pip_requirements=PIP_REQUIREMENTS)
