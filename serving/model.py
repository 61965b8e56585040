"""A registered model, ready to answer: `load(config, "places365-scenes@champion")` finds the version in the MLflow
registry, downloads it once into the state folder (both registry/) and loads its SavedModel.

The SavedModel's signatures are called directly, not through the registered pyfunc: the pyfunc wraps every call
in pandas/schema handling that the endpoint's own checks (serving.inputs) make unnecessary.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import typing
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tfx.utils.path_constants import SERVING_MODEL_DIR

from core.config import Config, ServingConfig
from core.storage import join
from data_schema import display_name
from registry import Registry, parse_reference
from serving import inputs
from serving.inputs import InvalidInput

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopClass:
    key: str
    display_name: str
    probability: np.float32


@dataclass(frozen=True)
class Pixels:
    """Pixels that passed inputs.pixels: float32 [N, 128, 128, 3] in [0, 1]."""
    array: np.ndarray

    def __len__(self) -> int:
        return len(self.array)

    @staticmethod
    def join(requests: typing.Sequence[Pixels]) -> np.ndarray:
        return requests[0].array if len(requests) == 1 else np.concatenate([request.array for request in requests])


@dataclass(frozen=True)
class Images:
    """Encoded images that passed SceneModel.checked_images, and their names in the request (for errors)."""
    encoded: tuple[bytes, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.encoded)

    @staticmethod
    def join(requests: typing.Sequence[Images]) -> list[bytes]:
        return [image for request in requests for image in request.encoded]


# What one request asks the model: its checked pixels or its checked images.
ModelInput = Pixels | Images


def checked_pixels(pixels, name: str = "inputs") -> Pixels:
    """`pixels` (nested lists, as JSON gives them, or an array) as Pixels once inputs.pixels accepts them."""
    return Pixels(inputs.pixels(pixels, name))


def _in_calls(run: typing.Callable[[typing.Any], np.ndarray], joined, images_per_call: int,
              on_call: typing.Callable[[int], None]) -> np.ndarray:
    """`run` over `joined` (an array or a list), at most `images_per_call` (0: all) at a time, its answers joined."""
    size = images_per_call or len(joined)
    answers = []
    for start in range(0, len(joined), size):
        part = joined[start:start + size]
        on_call(len(part))
        answers.append(run(part))
    return answers[0] if len(answers) == 1 else np.concatenate(answers)


class SceneModel:
    """A registered version of the scene classifier: pixels or encoded images in, class probabilities out.

    Thread-safe: the HTTP server's batcher calls it from serving.model_calls_at_once threads at once.
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
        return self._predict_one(checked_pixels(pixels, name))

    def predict_images(self, images: typing.Sequence[bytes], names: typing.Sequence[str] | None = None) -> np.ndarray:
        """float32 [N, classes] for JPEG or PNG images of any size; InvalidInput names the first bad one by
        `names` (default images[i])."""
        return self._predict_one(self.checked_images(images, names))

    def checked_images(self, images: typing.Sequence[bytes], names: typing.Sequence[str] | None = None) -> Images:
        """`images` as Images, once each passes inputs.check_image; InvalidInput (or RejectedImage) names the first
        that does not by `names` (default images[i]). Only the headers are read: predict_batch finds the images
        whose pixels cannot be decoded."""
        names = names or [f"images[{index}]" for index in range(len(images))]
        if not images:
            raise inputs.InvalidInput("images is empty: send at least one JPEG or PNG image")
        for data, name in zip(images, names):
            inputs.check_image(data, name, self._max_image_pixels)
        return Images(tuple(images), tuple(names))

    def predict_batch(self, requests: typing.Sequence[ModelInput], images_per_call: int = 0,
                      on_call: typing.Callable[[int], None] = lambda images: None) -> list[np.ndarray | InvalidInput]:
        """Each request's float32 [N, classes], or the InvalidInput that names its image the graph cannot decode.
        The pixels of all requests go to the model together, and the images together, `images_per_call` at a time
        (0: all at once); `on_call` is told each call's size. A request's answer never depends on the others."""
        answers: list[np.ndarray | InvalidInput | None] = [None] * len(requests)
        for kind, run in ((Pixels, self._run_pixels), (Images, self._run_images)):
            indices = [index for index, request in enumerate(requests) if isinstance(request, kind)]
            if not indices:
                continue
            joined = kind.join([requests[index] for index in indices])
            try:
                probabilities = _in_calls(run, joined, images_per_call, on_call)
            except tf.errors.InvalidArgumentError:
                if kind is Pixels:
                    raise
                # One image that cannot be decoded fails its whole call: each request alone finds whose it is.
                for index in indices:
                    answers[index] = self._images_alone(requests[index])
                continue
            ends = np.cumsum([len(requests[index]) for index in indices])
            for index, rows in zip(indices, np.split(probabilities, ends[:-1])):
                answers[index] = rows
        return answers

    def _predict_one(self, request: ModelInput) -> np.ndarray:
        (answer,) = self.predict_batch([request])
        if isinstance(answer, InvalidInput):
            raise answer
        return answer

    def _images_alone(self, request: Images) -> np.ndarray | InvalidInput:
        try:
            return self._run_images(request.encoded)
        except tf.errors.InvalidArgumentError:
            # Decoding each image alone finds which one failed.
            for data, name in zip(request.encoded, request.names):
                if len(request) == 1 or not self._decodes(data):
                    return inputs.InvalidInput(f"{name} is a corrupt or truncated {inputs.image_format(data)} image: "
                                               "its pixels cannot be decoded")
            raise

    def _run_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self._predict_pixels(pixels=tf.constant(pixels))["probabilities"].numpy()

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


def cpu_cores() -> int:
    """The CPU cores this process may run on: a container's share where the system tells (Linux), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def model_calls_at_once(config: ServingConfig) -> int:
    """serving.model_calls_at_once, 0 being one per CPU core."""
    return config.model_calls_at_once or cpu_cores()


def share_cores(config: ServingConfig) -> None:
    """Give each of the model calls that may run at once its share of the cores, as TensorFlow's intra-op threads.
    Only before TensorFlow has run anything in this process: later, its threads stay as they are (logged)."""
    threads = max(1, cpu_cores() // model_calls_at_once(config))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started, e.g. a server inside a test process
        _LOG.info("TensorFlow already runs in this process: its intra-op threads stay at %d, not %d",
                  tf.config.threading.get_intra_op_parallelism_threads(), threads)


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
