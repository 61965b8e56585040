"""The one place for input checks: the HTTP endpoint, `./places predict` and batch prediction all pass what they
get through these before the model sees it, so the same mistake gets the same message everywhere. Encoded images
pass the project's one set of image rules (ingestion.images.accepted_image), in the formats served here.

The model would take a wrong input without complaint: NaN pixels give NaN probabilities, 0-255 pixels give
confident nonsense, and a decode error in one image of a batch fails the whole batch without saying which.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from core.config import IngestConfig
from core.errors import UserError
from data_schema import CHANNELS, IMAGE_SIZE
from ingestion import images

PIXELS_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
_SHAPE_TEXT = f"[N, {IMAGE_SIZE}, {IMAGE_SIZE}, {CHANNELS}]"
_PIXELS_HINT = (f"send N images as {_SHAPE_TEXT} RGB pixels scaled to [0, 1], as the tutorial's preprocess_image "
                "makes them")
# The encodings the endpoint promises (Pillow's names); TensorFlow's decoder would also take GIF and BMP, which
# ingestion converts but the endpoint does not promise.
SERVED_FORMATS = ("JPEG", "PNG")


class InvalidInput(UserError):
    """An input the model cannot answer; the message names it and says what to send instead."""


# What a bad input raises: a bad request or pixels, or an image the image rules reject.
INPUT_ERRORS = (InvalidInput, images.RejectedImage)


def pixels(inputs, name: str = "inputs") -> np.ndarray:
    """`inputs` (nested lists, as JSON gives them, or an array) as float32 [N, 128, 128, 3] in [0, 1]."""
    try:
        # No dtype given: numpy then says whether the lists hold numbers, strings or a mix.
        array = np.asarray(inputs)
    except ValueError:
        raise InvalidInput(f"{name} is ragged: its lists are not all of one length; {_PIXELS_HINT}") from None
    if array.dtype.kind in "US":
        raise InvalidInput(f"{name} holds strings; {_PIXELS_HINT}")
    if array.dtype.kind == "b":
        raise InvalidInput(f"{name} holds true/false values; {_PIXELS_HINT}")
    if array.dtype.kind not in "iuf":
        raise InvalidInput(f"{name} holds something other than numbers (null, an object, or lists beside "
                           f"numbers); {_PIXELS_HINT}")
    if array.size == 0:
        raise InvalidInput(f"{name} is empty: send at least one image, {_SHAPE_TEXT}")
    if array.shape == PIXELS_SHAPE:
        raise InvalidInput(f"{name} is one image without the batch dimension, shape {list(array.shape)}: "
                           f"wrap it in a list, [image], to send shape [1, {IMAGE_SIZE}, {IMAGE_SIZE}, {CHANNELS}]")
    if array.ndim != 4 or array.shape[1:] != PIXELS_SHAPE:
        raise InvalidInput(f"{name} has shape {list(array.shape)}, but the model takes {_SHAPE_TEXT}: resize each "
                           f"image to {IMAGE_SIZE} x {IMAGE_SIZE} RGB")
    with np.errstate(over="ignore"):  # numbers beyond float32 become infinity, refused just below
        array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name} holds NaN or infinite values (at {_first(~np.isfinite(array))}): send finite "
                           "pixel values in [0, 1]")
    if array.min() < 0:
        raise InvalidInput(f"{name} holds negative values, down to {array.min():g} (at {_first(array < 0)}): "
                           "pixels must be in [0, 1]")
    if array.max() > 1:
        raise InvalidInput(f"{name} holds values up to {array.max():g} (at {_first(array > 1)}), but pixels must "
                           "be in [0, 1]: these look like unscaled 0-255 pixels, so divide them by 255")
    return array


def base64_images(images, name: str = "images") -> list[bytes]:
    """The bytes of each base64 string in the JSON list `images`; InvalidInput names the element that is not one."""
    if not isinstance(images, list):
        raise InvalidInput(f"{name} must be a list of base64 strings, one JPEG or PNG image each")
    decoded = []
    for index, text in enumerate(images):
        if not isinstance(text, str):
            raise InvalidInput(f"{name}[{index}] is a JSON {type(text).__name__}, not a base64 string")
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as error:
            raise InvalidInput(f"{name}[{index}] is not valid base64 ({error}): send the image file's bytes "
                               "base64-encoded (standard alphabet, with padding)") from None
    return decoded


def check_image(data: bytes, name: str, max_pixels: int) -> None:
    """RejectedImage, naming `name`, unless `data` passes ingestion.images.accepted_image as a JPEG or PNG with at
    most `max_pixels` (SceneModel knows only that limit; the byte limit is ingest.max_image_bytes' default). Only
    the header is read: the pixels are decoded by the model's own graph, whose errors `predict_images` reports by
    image."""
    images.accepted_image(data, IngestConfig(max_image_pixels=max_pixels), SERVED_FORMATS, name)


def image_format(data: bytes) -> str:
    """The served format of `data`, which check_image accepted."""
    return images.image_format(data, SERVED_FORMATS)


def _first(mask: np.ndarray) -> str:
    """The index of the first True in `mask`, as [image, row, column, channel]."""
    return str([int(i) for i in np.unravel_index(np.argmax(mask), mask.shape)])
