"""One image file in, one training image out: the rules that accept or reject an image, and the conversion every
accepted image gets (RGB JPEG at IMAGE_SIZE x IMAGE_SIZE, the same bytes for the same input).

The rules (accepted_image) are the project's one definition of an acceptable image: ingestion, `./places
predict`, batch prediction and the HTTP endpoint all pass images through them, so the same bad file gets the
same reason everywhere. Serving adds only the formats it promises (serving.inputs.SERVED_FORMATS).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.config import IngestConfig
from core.errors import UserError
from core.storage import NotFound, Storage
from data_schema import IMAGE_SIZE

# ingest.max_image_pixels is the limit that counts here; Pillow would otherwise warn about every image above
# its own, lower, default. Pillow still refuses images over twice its default (179 M pixels) by itself.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class RejectedImage(UserError):
    """An image that cannot be used, and why. `reason` is what a manifest or rejected.jsonl records beside the
    file; the message puts the image's name (a file, a request field), where there is one, before it."""

    def __init__(self, reason: str, name: str | None = None):
        super().__init__(reason, name)
        self.reason = reason
        self.name = name

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}" if self.name else self.reason


@dataclass(frozen=True)
class TrainingImage:
    image_jpeg: bytes
    # The original size, before resizing.
    height: int
    width: int
    # data_schema.BRIGHTNESS_KEY: the mean of the resized pixels, in [0, 1].
    brightness: float


def check_size(size: int, limits: IngestConfig) -> None:
    """Reject by file size, before reading a byte."""
    if size == 0:
        raise RejectedImage("empty file (0 bytes)")
    if size > limits.max_image_bytes:
        raise RejectedImage(f"{size} bytes is more than ingest.max_image_bytes ({limits.max_image_bytes})")


def read_checked(storage: Storage, uri: str, size: int | None, limits: IngestConfig) -> bytes:
    """The file's bytes, read only after its size (None: looked up) passed check_size; RejectedImage where it
    is missing or too large. Other storage failures propagate and fail the job: they are not the image's fault."""
    if size is None:
        info = storage.info(uri)
        if info is None:
            raise RejectedImage("listed, but the file does not exist")
        size = info.size
    check_size(size, limits)
    try:
        return storage.read_bytes(uri)
    except NotFound:
        raise RejectedImage("the file disappeared while the job ran") from None


def accepted_image(data: bytes, limits: IngestConfig, formats: tuple[str, ...] = (),
                   name: str | None = None) -> Image.Image:
    """`data` opened as an image, its header read and its pixels not yet decoded, where it passes every rule: not
    empty, at most ingest.max_image_bytes, in one of `formats` (Pillow's names; empty: any format Pillow reads),
    a readable header, at most ingest.max_image_pixels. Otherwise RejectedImage, named `name`, says which failed.

    Decoding the pixels is the last rule, and the caller's: convert() below, or the model's own graph in serving.
    """
    try:
        check_size(len(data), limits)
        if formats and image_format(data, formats) is None:
            raise RejectedImage(f"not a {' or '.join(formats)} image (its first bytes are {data[:8]!r}): send "
                                f"{' or '.join(formats)} bytes")
        try:
            image = Image.open(io.BytesIO(data), formats=formats or None)
        except UnidentifiedImageError:
            if formats:  # it starts as one of them, but Pillow cannot read its header
                raise _corrupt(None, image_format(data, formats)) from None
            raise RejectedImage("not an image: its bytes are in no image format Pillow reads") from None
        except Image.DecompressionBombError as error:
            raise RejectedImage(f"too many pixels, not decoded: {error}") from None
        except Exception as error:  # a header cut short or garbled
            raise _corrupt(error) from None
        width, height = image.size
        if width * height > limits.max_image_pixels:
            raise RejectedImage(f"too many pixels, not decoded: {width} x {height} = {width * height} is more than "
                                f"ingest.max_image_pixels ({limits.max_image_pixels})")
        return image
    except RejectedImage as rejection:
        if name is None:
            raise
        raise RejectedImage(rejection.reason, name) from None


def image_format(data: bytes, formats: tuple[str, ...]) -> str | None:
    """Which of `formats` (Pillow's names) `data` starts as, by the signature Pillow itself checks; None: none."""
    Image.init()
    return next((name for name in formats if Image.OPEN[name][1] is None or Image.OPEN[name][1](data[:16])), None)


def convert(data: bytes, limits: IngestConfig) -> TrainingImage:
    """`data` as an RGB JPEG of IMAGE_SIZE x IMAGE_SIZE, or RejectedImage saying why it cannot be."""
    image = accepted_image(data, limits)
    width, height = image.size
    try:
        # verify() checks what it can without decoding (PNG chunk checksums) and leaves the image unusable,
        # so the pixels are read from a second open.
        image.verify()
        image = Image.open(io.BytesIO(data))
        # A JPEG decodes directly at 1/2, 1/4 or 1/8 of its size where that still covers IMAGE_SIZE.
        image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))
        rgb = _to_rgb(image)
    except Exception as error:  # Pillow's decoders raise many types (OSError, SyntaxError, ValueError, ...)
        raise _corrupt(error, image.format) from None
    # Stretched, not cropped: Places365's own 256 x 256 images are resized the same way.
    resized = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    encoded = io.BytesIO()
    resized.save(encoded, "JPEG", quality=limits.jpeg_quality)
    return TrainingImage(encoded.getvalue(), height, width, brightness(resized))


def brightness(image: Image.Image) -> float:
    """The mean of an RGB image's pixels scaled to [0, 1]: the one measure of light that ingestion records and the
    endpoint's request log compares against it."""
    return round(float(np.asarray(image, dtype=np.float32).mean()) / 255.0, 6)


def _corrupt(error: Exception | None, format_name: str | None = None) -> RejectedImage:
    kind = f"{format_name} image" if format_name else "image"
    detail = f"{type(error).__name__}: {error}" if error else "its header cannot be read"
    return RejectedImage(f"truncated or corrupt {kind}: {detail}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit samples: keep the high byte; Pillow's own conversion clips everything above 255 to white.
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) >> 8, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent pixels have no colour of their own; the white a viewer shows beneath them stands in.
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")
