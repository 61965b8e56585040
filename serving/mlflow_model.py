"""The registered model's MLflow flavour: a pyfunc around the Trainer's SavedModel.

MLflow logs this file with the model ("models from code"), so loading the model needs no pickle and none
of this project's code: only TensorFlow. The SavedModel does all preprocessing in its own graph.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np

# The artifact key under which the Pusher stores the SavedModel (its Format-Serving folder).
SAVED_MODEL_ARTIFACT = "saved_model"


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


mlflow.models.set_model(PlacesSceneModel())
