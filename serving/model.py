"""A registered model, ready to answer: `load(config, "places365-scenes@champion")` finds the version in the MLflow
registry, downloads it once into the state folder (both registry/) and loads its SavedModel.

The SavedModel's signatures are called directly, not through the registered pyfunc: the pyfunc wraps every call
in pandas/schema handling that the endpoint's own checks (serving.inputs) make unnecessary.
"""

from __future__ import annotations

import functools
import logging
import threading
import typing
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tfx.utils.path_constants import SERVING_MODEL_DIR

from core.config import Config
from core.storage import join
from data_schema import display_name
from registry import Registry, parse_reference
from serving import inputs

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopClass:
    key: str
    display_name: str
    probability: np.float32


class SceneModel:
    """A registered version of the scene classifier: pixels or encoded images in, class probabilities out.

    Thread-safe: the HTTP server calls it from one thread per connection.
    """

    def __init__(self, saved_model_dir: str, name: str, version: str, max_image_pixels: int):
        self.name = name
        self.version = version
        self.saved_model_dir = saved_model_dir
        self._max_image_pixels = max_image_pixels
        # The loaded object owns the variables its signatures use: it lives as long as they are called.
        self._saved_model = tf.saved_model.load(saved_model_dir)
        self._predict_pixels = self._saved_model.signatures["serving_default"]
        self._predict_images = self._saved_model.signatures["predict_images"]
        self.class_names = tuple(key.decode() for key in self._saved_model.class_names.numpy())
        # The first call of a signature optimises its graph, which is slow; better here than in a request.
        self.predict_pixels(np.zeros((1, *inputs.PIXELS_SHAPE), np.float32))
        self.predict_images([tf.io.encode_png(tf.zeros(inputs.PIXELS_SHAPE, tf.uint8)).numpy()])

    @property
    def reference(self) -> str:
        """NAME/VERSION, the registry's name for exactly this model."""
        return f"{self.name}/{self.version}"

    def predict_pixels(self, pixels, name: str = "inputs") -> np.ndarray:
        """float32 [N, classes] for pixels [N, 128, 128, 3] in [0, 1] (nested lists or an array); InvalidInput
        calls them `name`."""
        checked = inputs.pixels(pixels, name)
        return self._predict_pixels(pixels=tf.constant(checked))["probabilities"].numpy()

    def predict_images(self, images: typing.Sequence[bytes], names: typing.Sequence[str] | None = None) -> np.ndarray:
        """float32 [N, classes] for JPEG or PNG images of any size; InvalidInput names the first bad one by
        `names` (default images[i])."""
        names = names or [f"images[{index}]" for index in range(len(images))]
        if not images:
            raise inputs.InvalidInput("images is empty: send at least one JPEG or PNG image")
        for data, name in zip(images, names):
            inputs.check_image(data, name, self._max_image_pixels)
        try:
            return self._run_images(images)
        except tf.errors.InvalidArgumentError:
            # One image fails the whole batch: decoding each alone finds which.
            for data, name in zip(images, names):
                if len(images) == 1 or not self._decodes(data):
                    raise inputs.InvalidInput(f"{name} is a corrupt or truncated {inputs.image_format(data)} image: "
                                              "its pixels cannot be decoded") from None
            raise

    def _run_images(self, images: typing.Sequence[bytes]) -> np.ndarray:
        return self._predict_images(images=tf.constant(list(images), tf.string))["probabilities"].numpy()

    def _decodes(self, image: bytes) -> bool:
        try:
            self._run_images([image])
            return True
        except tf.errors.InvalidArgumentError:
            return False

    def top_classes(self, probabilities: np.ndarray, k: int) -> list[list[TopClass]]:
        """The `k` most probable classes of each row of `probabilities` [N, classes], most probable first."""
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[TopClass(self.class_names[index], display_name(self.class_names[index]), row[index])
                 for index in indices] for row, indices in zip(probabilities, order)]


def load(config: Config, reference: str | None = None) -> SceneModel:
    """The registered model `reference` (default: mlflow.model_name@champion), downloaded and loaded once per
    process: batch prediction's driver and its local-runner workers share it."""
    registry = Registry.from_config(config)
    return _load_version(config, registry, registry.find(reference))


def _load_version(config: Config, registry: Registry, version) -> SceneModel:
    """ModelVersion `version`, found in `registry`, downloaded and loaded."""
    model_dir = registry.download(version)
    return _loaded(join(model_dir, SERVING_MODEL_DIR), version.name, str(version.version),
                   config.ingest.max_image_pixels)


@functools.lru_cache(maxsize=4)
def _loaded(saved_model_dir: str, name: str, version: str, max_image_pixels: int) -> SceneModel:
    return SceneModel(saved_model_dir, name, version, max_image_pixels)


def follow(config: Config, reference: str | None, current: SceneModel,
           switch: typing.Callable[[SceneModel], None], stop: threading.Event) -> None:
    """Every serving.reload_s seconds until `stop`, load the version the alias `reference` (default:
    mlflow.model_name@champion) names, if it has moved off `current`, and hand it to `switch`. A version named by
    number never moves; nor does anything with reload_s 0. A failure is logged and the current model stays."""
    registry = Registry.from_config(config)
    reference = registry.reference(reference)
    if config.serving.reload_s <= 0 or parse_reference(reference)[1] is None:
        return
    _LOG.info("following %s: the registry is asked every %g s whether it has moved", reference,
              config.serving.reload_s)
    while not stop.wait(config.serving.reload_s):
        try:
            version = registry.find(reference)
            if str(version.version) != current.version:
                current = _load_version(config, registry, version)
                switch(current)
                # The old version is answered by no one now; in the cache it would hold its graph's memory
                # until later loads pushed it out.
                _loaded.cache_clear()
                _LOG.info("now serving %s (%s moved)", current.reference, reference)
        except Exception as error:  # the registry or the new version failed: the old model goes on answering
            _LOG.warning("cannot reload %s, still serving %s: %s: %s", reference, current.reference,
                         type(error).__name__, error)
