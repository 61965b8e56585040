"""One image, from (seed, official category, image number) alone: its size and format, its class's scene, what
does not define the class (distractors, occluders), what a camera adds, and the encoded file."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from data_schema import places365_categories
from sample_data.elements import car, foliage, person, pole, tree
from sample_data.family_scenes import derived_recipe, derived_scene
from sample_data.painting import Painter
from sample_data.tutorial_scenes import TUTORIAL_RECIPES

PNG_SHARE = 0.10
GRAYSCALE_SHARE = 0.05
SMALLEST_SIDE = 96
LARGEST_SIDE = 512

# Nuisance strengths, tuned with bench/sample_data_difficulty.py so the tutorial's seed CNN lands
# between 40 % and 90 % validation accuracy: with less, it reads classes off one colour or shape.
DISTRACTOR_SHARE = 0.8  # images that also show a motif of another tutorial class
OCCLUDER_SHARE = 0.6  # images with people, cars, poles or foliage in front
COLOUR_CAST = 0.16  # spread of per-channel gains: white balance and time of day
LIGHTING_SLOPE = 0.35  # strongest brightness change across the frame
CROP_SHARE = 0.6  # images framed tighter: a random part of the scene, at least MIN_CROP of each side
MIN_CROP = 0.6


# --- nuisance shared by all classes -------------------------------------------------------------------------------
def _distract(p: Painter, own_key: str) -> None:
    """Objects that do not define the class: another tutorial class's motif, people, cars, poles, leaves."""
    rng = p.rng
    if rng.random() < DISTRACTOR_SHARE:
        borrowed = sorted(key for key in TUTORIAL_RECIPES if key != own_key)
        _, motif = TUTORIAL_RECIPES[borrowed[rng.integers(len(borrowed))]]
        base_y = rng.uniform(0.5, 1.0)
        motif(p, rng.uniform(0, p.right), base_y, rng.uniform(0.12, 0.35))
    if rng.random() < OCCLUDER_SHARE:
        for _ in range(rng.integers(1, 4)):
            occluder = (person, car, pole, tree, foliage)[rng.integers(5)]
            base_y = rng.uniform(0.7, 1.05)
            occluder(p, rng.uniform(0, p.right), base_y, rng.uniform(0.1, 0.35))


def _photograph(p: Painter) -> Image.Image:
    """What a camera adds: framing, white balance, uneven light, blur, sensor noise."""
    rng = p.rng
    image = p.image
    if rng.random() < CROP_SHARE:
        width, height = p.width * rng.uniform(MIN_CROP, 1), p.height * rng.uniform(MIN_CROP, 1)
        left, top = rng.uniform(0, p.width - width), rng.uniform(0, p.height - height)
        image = image.resize((p.width, p.height), Image.BILINEAR, box=(left, top, left + width, top + height))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.5)))
    pixels = np.asarray(image, np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.ogrid[0:1:complex(0, p.height), 0:1:complex(0, p.width)]
    light = 1 + rng.uniform(0, LIGHTING_SLOPE) * ((xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle))
    gains = rng.normal(1, COLOUR_CAST, 3) * rng.uniform(0.75, 1.15)
    pixels = pixels * light[..., None].astype(np.float32) * gains.astype(np.float32)
    pixels += rng.uniform(1, 8) * rng.standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# --- one image --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    width: int
    height: int
    format: str  # "JPEG" or "PNG"
    grayscale: bool
    jpeg_quality: int

    @property
    def extension(self) -> str:
        return ".png" if self.format == "PNG" else ".jpg"


def _image_rng(seed: int, category_index: int, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, category_index, number])


def _draw_spec(rng: np.random.Generator) -> ImageSpec:
    """Size and file format: the first draws of an image's generator, so a file's name is known before painting."""
    if rng.random() < 0.3:
        width = height = int(rng.integers(SMALLEST_SIDE, LARGEST_SIDE + 1))
    else:
        long_side = int(rng.integers(128, LARGEST_SIDE + 1))
        short_side = int(np.clip(long_side / rng.uniform(1.15, 1.9), SMALLEST_SIDE, long_side))
        width, height = (long_side, short_side) if rng.random() < 0.7 else (short_side, long_side)
    return ImageSpec(width=width, height=height, format="PNG" if rng.random() < PNG_SHARE else "JPEG",
                     grayscale=bool(rng.random() < GRAYSCALE_SHARE), jpeg_quality=int(rng.integers(70, 96)))


def image_spec(seed: int, category_index: int, number: int) -> ImageSpec:
    """Size and format of image `number` (from 1) of an official category, without painting it."""
    return _draw_spec(_image_rng(seed, category_index, number))


def render(seed: int, category_index: int, number: int) -> bytes:
    """The encoded file of image `number` (from 1) of an official category: the same arguments, the same bytes."""
    rng = _image_rng(seed, category_index, number)
    spec = _draw_spec(rng)
    key = places365_categories()[category_index]
    painter = Painter(spec.width, spec.height, rng)
    if key in TUTORIAL_RECIPES:
        scene, _ = TUTORIAL_RECIPES[key]
        scene(painter)
    else:
        derived_scene(painter, derived_recipe(category_index))
    _distract(painter, key)
    image = _photograph(painter)
    if spec.grayscale:
        image = image.convert("L")
    encoded = io.BytesIO()
    if spec.format == "PNG":
        image.save(encoded, "PNG")
    else:
        image.save(encoded, "JPEG", quality=spec.jpeg_quality)
    return encoded.getvalue()
