"""A client of the endpoint written the way the tutorial's users write one, and the two requests `./places demo`
ends with."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from core.errors import UserError
from data_schema import IMAGE_SIZE


def tutorial_pixels(image: bytes) -> np.ndarray:
    """The tutorial's preprocess_image: RGB, resized to 128 x 128, scaled to [0, 1]; float32 [128, 128, 3]."""
    rgb = Image.open(io.BytesIO(image)).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
    return np.asarray(rgb, dtype=np.float32) / 255.0


def invoke(url: str, payload: dict, key: str | None = None, timeout_s: float = 60) -> dict:
    """POST `payload` to `url`/invocations, with `Authorization: Bearer <key>` where a key is given; UserError
    with the server's message where it refuses."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = requests.post(f"{url}/invocations", json=payload, headers=headers, timeout=timeout_s)
    except requests.RequestException as error:
        raise UserError(f"the endpoint at {url} did not answer ({type(error).__name__}): is `./places serve` "
                        "running there?") from None
    if response.status_code != 200:
        raise UserError(f"the endpoint at {url} answered {response.status_code}: {response.json()['error']}")
    return response.json()


def demo_requests(url: str, image_path: str | Path, key: str | None = None) -> tuple[dict, dict]:
    """The answers to two requests for one image file: the tutorial's (its pixels, preprocessed as the tutorial
    does) and the encoded file itself, asking for the three most probable classes by name; `key` as in invoke."""
    image = Path(image_path).read_bytes()
    tutorial_answer = invoke(url, {"inputs": [tutorial_pixels(image).tolist()]}, key)
    image_answer = invoke(url, {"images": [base64.b64encode(image).decode("ascii")],
                                "params": {"class_names": True, "top_k": 3}}, key)
    return tutorial_answer, image_answer
