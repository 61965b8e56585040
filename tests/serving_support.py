"""What the serving tests share: pictures to send, and the /metrics text read back."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families


def scene(seed: int, size: tuple[int, int] = (128, 128)) -> np.ndarray:
    """A smooth picture (gradients, few JPEG artefacts), float [height, width, 3] in [0, 1]."""
    height, width = size
    colours = np.random.default_rng(seed).random((2, 3))
    fade = np.linspace(0, 1, height)[:, None, None] * np.ones((1, width, 1))
    return fade * colours[0] + (1 - fade) * colours[1]


def encoded(pixels: np.ndarray, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(buffer, image_format)
    return buffer.getvalue()


def base64_of(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text as {(sample name, its labels sorted as (name, value) pairs): value}."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}
