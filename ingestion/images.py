"""One image file in, one training image out: the checks that reject a file, and the conversion every
accepted image gets (RGB JPEG at IMAGE_SIZE x IMAGE_SIZE, the same bytes for the same input)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.config import IngestConfig
from core.storage import NotFound, Storage
from data_schema import IMAGE_SIZE

# ingest.max_image_pixels is the limit that counts here; Pillow would otherwise warn about every image above
# its own, lower, default. Pillow still refuses images over twice its default (179 M pixels) by itself.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class RejectedImage(ValueError):
    """A file that cannot become a training image; the message is the reason the manifest records."""


@dataclass(frozen=True)
class TrainingImage:
    image_jpeg: bytes
    # The original size, before resizing.
    height: int
    width: int


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


def convert(data: bytes, limits: IngestConfig) -> TrainingImage:
    """`data` as an RGB JPEG of IMAGE_SIZE x IMAGE_SIZE, or RejectedImage saying why it cannot be."""
    check_size(len(data), limits)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RejectedImage("not an image: its bytes are in no image format Pillow reads") from None
    except Image.DecompressionBombError as error:
        raise RejectedImage(f"too many pixels, not decoded: {error}") from None
    except Exception as error:  # a header cut short or garbled
        raise _corrupt(error) from None
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise RejectedImage(f"too many pixels, not decoded: {width} x {height} = {width * height} is more than "
                            f"ingest.max_image_pixels ({limits.max_image_pixels})")
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
    return TrainingImage(encoded.getvalue(), height, width)


def _corrupt(error: Exception, image_format: str | None = None) -> RejectedImage:
    kind = f"{image_format} image" if image_format else "image"
    return RejectedImage(f"truncated or corrupt {kind}: {type(error).__name__}: {error}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit samples: keep the high byte; Pillow's own conversion clips everything above 255 to white.
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) >> 8, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent pixels have no colour of their own; the white a viewer shows beneath them stands in.
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")
