"""An offline stand-in for Places365: scene-like pictures, written in the real folder layouts.

The real data set cannot be downloaded everywhere (CI, air-gapped laptops), so `./places sample-data`
paints small data instead. The 10 tutorial classes have hand-made recipes (a runway is a grey strip with a
dashed centre line in perspective, an igloo a white dome with block lines, ...); every other official
category gets a recipe derived from its index (palette, shape family, texture, horizon, indoor or outdoor).
Positions, scales, colours, light, noise, blur and objects borrowed from other classes vary per image, so
classes overlap and a CNN has to learn shapes, not one colour per class.

Images are mostly JPEG, about 10 % PNG and 5 % grayscale, 96 to 512 pixels wide and high, not all square;
the file extension always matches the content. An image's bytes depend only on (seed, official category,
image number), never on which other classes are requested.

Layouts (the `layout` argument of `generate`):

  folders
      <out>/<folder_name(key)>/<key with "/" as "-">_<00001>.<jpg|png>
      e.g. <out>/Gas Station/gas_station_00001.jpg, <out>/Arena - Hockey/arena-hockey_00002.png
  places365-lists
      the official list-file layout:
      <out>/categories_places365.txt            copy of the official 365 categories
      <out>/places365_train_standard.txt        lines "/g/gas_station/00000001.jpg 158" (official index)
      <out>/data_256/g/gas_station/00000001.jpg  (nested keys: data_256/a/arena/hockey/00000001.jpg)
      <out>/places365_val.txt                   lines "Places365_val_00000001.jpg 158"
      <out>/val_256/Places365_val_00000001.jpg   numbered across all classes, in a shuffled order
      Image 2, 12, 22, ... of each class (one in ten) goes to the val list, the rest to the train list.
  places365-small
      the TFDS places365_small train archive: <out>/data_256/<first letter>/<key>/<00000001>.<jpg|png>
      only; the folder path names the class.

Files are written under a temporary name and renamed into place, so an interrupted run leaves no
half-written image; a rerun rewrites identical files and removes images of this generator's naming that
the run no longer writes (say, from a larger --per-class or another seed).

Difficulty: seed CNN, 200/class, 20 epochs: 72–73 % validation accuracy (seeds 365, 7), measured 2026-11-26
(bench/sample_data_difficulty.py on 2 CPU cores; a logistic regression on 32x32 thumbnails scores 0.49–0.58).
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import io
import math
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.console import progress
from data_schema import CATEGORIES_FILE, folder_name, places365_categories
# The layout names only: the file names below are spelled out from Places365's own, so the tests check the
# reader in ingestion/layouts.py against an independent writer.
from ingestion.layouts import FOLDERS, LAYOUTS, PLACES365_LISTS

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

# A val image every VAL_EVERY images of a class, starting with image number VAL_OFFSET + 1, so any
# per_class >= 2 gives each class at least one val image and one train image.
VAL_EVERY = 10
VAL_OFFSET = 1

IMAGES_PER_TASK = 32

Colour = tuple[int, int, int]
Point = tuple[float, float]


# --- colours ----------------------------------------------------------------------------------------------
def _hsv(hue: float, saturation: float, value: float) -> Colour:
    """An RGB colour from hue in degrees and saturation/value in [0, 1] (clipped)."""
    red, green, blue = colorsys.hsv_to_rgb((hue % 360) / 360, min(max(saturation, 0), 1), min(max(value, 0), 1))
    return round(red * 255), round(green * 255), round(blue * 255)


def _vary(rng: np.random.Generator, hue: float, saturation: float, value: float,
          spread: tuple[float, float, float] = (10, 0.1, 0.1)) -> Colour:
    """A colour near (hue, saturation, value): every object of a kind differs a little, as in photos."""
    return _hsv(hue + rng.normal(0, spread[0]), saturation + rng.normal(0, spread[1]),
                value + rng.normal(0, spread[2]))


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(min(255, max(0, round(channel * factor))) for channel in colour)


# --- painting ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Texture:
    """Stripes plus blotches plus grain, multiplied into a colour: grass, fields, asphalt, tiles, water."""

    contrast: float = 0.1  # amplitude of the stripes
    period: float = 0.05  # stripe spacing, in image heights (or in slope units when `vanishing` is set)
    angle: float = 0.0  # stripe direction in degrees; 0 gives vertical stripes
    blotch: float = 0.08  # amplitude of large soft patches
    grain: float = 0.05  # amplitude of per-pixel noise
    vanishing: Point | None = None  # stripes as lines converging on this point: rows of a field, a floor


class _Painter:
    """One picture being painted. Coordinates are in image heights: y runs from 0 (top) to 1 (bottom) and x
    from 0 to `right` (the aspect ratio), so a circle stays a circle on every image shape."""

    def __init__(self, width: int, height: int, rng: np.random.Generator):
        self.width, self.height, self.rng = width, height, rng
        self.right = width / height
        self.image = Image.new("RGB", (width, height))
        self.draw = ImageDraw.Draw(self.image)

    def _xy(self, points: list[Point]) -> list[Point]:
        return [(x * self.height, y * self.height) for x, y in points]

    def stroke(self, thickness: float) -> int:
        """A line width in pixels for a thickness in image heights, at least one pixel."""
        return max(1, round(thickness * self.height))

    def polygon(self, points: list[Point], fill: Colour) -> None:
        self.draw.polygon(self._xy(points), fill=fill)

    def rectangle(self, x0: float, y0: float, x1: float, y1: float, fill: Colour) -> None:
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: Colour) -> None:
        (left, top), (right, bottom) = self._xy([(cx - rx, cy - ry), (cx + rx, cy + ry)])
        self.draw.ellipse((left, top, max(left, right), max(top, bottom)), fill=fill)

    def ring(self, cx: float, cy: float, radius: float, colour: Colour, thickness: float) -> None:
        (left, top), (right, bottom) = self._xy([(cx - radius, cy - radius), (cx + radius, cy + radius)])
        self.draw.ellipse((left, top, max(left, right), max(top, bottom)), outline=colour, width=self.stroke(thickness))

    def dome(self, cx: float, base_y: float, rx: float, ry: float, fill: Colour) -> None:
        """The upper half of an ellipse standing on base_y."""
        (left, top), (right, bottom) = self._xy([(cx - rx, base_y - ry), (cx + rx, base_y + ry)])
        self.draw.chord((left, top, max(left, right), max(top, bottom)), 180, 360, fill=fill)

    def line(self, points: list[Point], fill: Colour, thickness: float) -> None:
        self.draw.line(self._xy(points), fill=fill, width=self.stroke(thickness))

    def gradient(self, top: Colour, bottom: Colour, y0: float = 0.0, y1: float = 1.0) -> None:
        """Fill the rows from y0 to y1 with a vertical colour gradient (skies, walls, water)."""
        row0, row1 = max(0, round(y0 * self.height)), min(self.height, round(y1 * self.height))
        if row1 <= row0:
            return
        mix = np.linspace(0, 1, row1 - row0, dtype=np.float32)[:, None, None]
        rows = np.asarray(top, np.float32) * (1 - mix) + np.asarray(bottom, np.float32) * mix
        band = np.broadcast_to(rows, (row1 - row0, self.width, 3)).astype(np.uint8)
        self.image.paste(Image.fromarray(band), (0, row0))

    def textured(self, points: list[Point], colour: Colour, texture: _Texture) -> None:
        """Fill a polygon with `colour` modulated by `texture`."""
        mask = Image.new("L", (self.width, self.height))
        ImageDraw.Draw(mask).polygon(self._xy(points), fill=255)
        box = mask.getbbox()
        if box is None:
            return
        left, top, right, bottom = box
        ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32) / self.height
        if texture.vanishing is None:
            angle = math.radians(texture.angle)
            along = xs * math.cos(angle) + ys * math.sin(angle)
        else:
            vx, vy = texture.vanishing
            along = (xs - vx) / np.maximum(ys - vy, 0.02)
        rng = self.rng
        shade = texture.contrast * np.sin(2 * np.pi * along / texture.period + rng.uniform(0, 2 * np.pi))
        blotches = rng.standard_normal((max(2, (bottom - top) // 24), max(2, (right - left) // 24)),
                                       dtype=np.float32)
        shade += texture.blotch * np.asarray(
            Image.fromarray(blotches).resize((right - left, bottom - top), Image.BILINEAR))
        shade += texture.grain * rng.standard_normal(shade.shape, dtype=np.float32)
        pixels = np.asarray(colour, np.float32) * (1 + shade[..., None])
        patch = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        self.image.paste(patch, (left, top), mask.crop(box))


# --- scene elements shared by the recipes --------------------------------------------------------------------
def _sky(p: _Painter, horizon: float) -> None:
    """Clear, hazy, overcast or dusk sky down to the horizon, with clouds sometimes."""
    rng = p.rng
    weather = rng.choice(["clear", "hazy", "overcast", "dusk"], p=[0.45, 0.2, 0.2, 0.15])
    if weather == "clear":
        top, bottom = _vary(rng, 212, 0.65, 0.8), _vary(rng, 200, 0.3, 0.95)
    elif weather == "hazy":
        top, bottom = _vary(rng, 205, 0.3, 0.85), _vary(rng, 40, 0.1, 0.92)
    elif weather == "overcast":
        grey = rng.uniform(0.6, 0.85)
        top, bottom = _vary(rng, 210, 0.08, grey), _vary(rng, 210, 0.05, grey + 0.08)
    else:
        top, bottom = _vary(rng, 240, 0.5, 0.45), _vary(rng, 25, 0.7, 0.95, (12, 0.1, 0.05))
    p.gradient(top, bottom, 0, horizon + 0.02)
    if weather != "overcast" and rng.random() < 0.5:
        cloud = _shade(bottom, rng.uniform(1.0, 1.15))
        for _ in range(rng.integers(1, 5)):
            cx, cy, size = rng.uniform(0, p.right), rng.uniform(0.03, max(0.05, horizon * 0.7)), rng.uniform(0.04, 0.12)
            for _ in range(rng.integers(2, 5)):
                p.ellipse(cx + rng.normal(0, size), cy + rng.normal(0, size * 0.25), size, size * 0.45, cloud)


def _outdoors(p: _Painter, lowest: float, highest: float) -> float:
    """A horizon height between `lowest` and `highest`, with the sky painted above it."""
    horizon = p.rng.uniform(lowest, highest)
    _sky(p, horizon)
    return horizon


def _ground(p: _Painter, horizon: float, colour: Colour, texture: _Texture) -> None:
    p.textured([(0, horizon), (p.right, horizon), (p.right, 1), (0, 1)], colour, texture)


def _ridge(p: _Painter, base_y: float, height: float, x0: float, x1: float, roughness: float) -> list[Point]:
    """Points of a jagged ridge line from x0 to x1 on base_y, its peaks around 0.6 x `height` high."""
    count = int(p.rng.integers(5, 14))
    xs = np.linspace(x0, x1, count)
    heights = np.abs(p.rng.normal(0.6, roughness, count)) * height
    heights[0] = heights[-1] = 0
    return [(x, base_y - h) for x, h in zip(xs, heights)]


def _mountains(p: _Painter, horizon: float, colour: Colour, height: float, snow: bool) -> None:
    ridge = _ridge(p, horizon, height, -0.1, p.right + 0.1, 0.35)
    p.polygon(ridge + [(p.right + 0.1, horizon + 0.01), (-0.1, horizon + 0.01)], colour)
    if snow:
        white = _vary(p.rng, 200, 0.06, 0.95)
        for (x0, y0), (x1, y1), (x2, y2) in zip(ridge, ridge[1:], ridge[2:]):
            if y1 < min(y0, y2) and horizon - y1 > height * 0.4:
                cap = (horizon - y1) * 0.35
                p.polygon([(x1, y1), (x1 + (x2 - x1) * 0.35, y1 + cap), (x1 - (x1 - x0) * 0.35, y1 + cap)], white)


def _treeline(p: _Painter, horizon: float, height: float) -> None:
    rng = p.rng
    hue = rng.uniform(80, 140)
    for x in np.arange(-0.05, p.right + 0.05, height * rng.uniform(0.6, 1.2)):
        radius = height * rng.uniform(0.5, 1.0)
        p.ellipse(x, horizon - radius * 0.6, radius * 0.8, radius, _vary(rng, hue, 0.5, 0.35))


def _tree(p: _Painter, x: float, base_y: float, size: float) -> None:
    rng = p.rng
    p.rectangle(x - size * 0.06, base_y - size * 0.5, x + size * 0.06, base_y, _vary(rng, 25, 0.5, 0.3))
    green = _vary(rng, rng.uniform(70, 140), 0.55, 0.4)
    if rng.random() < 0.5:
        p.ellipse(x, base_y - size * 0.75, size * 0.35, size * 0.4, green)
    else:
        crown_base = base_y - size * 0.3
        p.polygon([(x, base_y - size * 1.2), (x + size * 0.35, crown_base), (x - size * 0.35, crown_base)], green)


def _windows(p: _Painter, x0: float, y0: float, x1: float, y1: float, rows: int, columns: int, lit: Colour,
             dark: Colour) -> None:
    """A grid of window panes inside a facade, some lit and some dark."""
    cell_w, cell_h = (x1 - x0) / columns, (y1 - y0) / rows
    if cell_w * p.height < 2 or cell_h * p.height < 2:
        return
    for row in range(rows):
        for column in range(columns):
            left, top = x0 + column * cell_w, y0 + row * cell_h
            colour = lit if p.rng.random() < 0.35 else dark
            p.rectangle(left + cell_w * 0.2, top + cell_h * 0.2, left + cell_w * 0.8, top + cell_h * 0.8, colour)


def _building(p: _Painter, x0: float, x1: float, top: float, base_y: float, colour: Colour) -> None:
    p.rectangle(x0, top, x1, base_y, colour)
    rows = max(1, round((base_y - top) / p.rng.uniform(0.04, 0.09)))
    columns = max(1, round((x1 - x0) / p.rng.uniform(0.04, 0.09)))
    _windows(p, x0, top, x1, base_y, rows, columns, _shade(colour, 1.3), _shade(colour, 0.55))


def _person(p: _Painter, x: float, base_y: float, size: float) -> None:
    rng = p.rng
    body = _vary(rng, rng.uniform(0, 360), 0.5, 0.45, (0, 0.2, 0.2))
    p.rectangle(x - size * 0.12, base_y - size * 0.8, x + size * 0.12, base_y - size * 0.4, body)
    p.rectangle(x - size * 0.1, base_y - size * 0.4, x + size * 0.1, base_y, _vary(rng, 220, 0.3, 0.25))
    p.ellipse(x, base_y - size * 0.9, size * 0.09, size * 0.1, _vary(rng, 25, 0.45, 0.7))


def _car(p: _Painter, x: float, base_y: float, size: float) -> None:
    rng = p.rng
    body = _vary(rng, rng.uniform(0, 360), rng.uniform(0, 0.8), rng.uniform(0.2, 0.9), (0, 0.1, 0.1))
    p.rectangle(x - size, base_y - size * 0.55, x + size, base_y - size * 0.15, body)
    p.polygon([(x - size * 0.6, base_y - size * 0.55), (x - size * 0.35, base_y - size * 0.9),
               (x + size * 0.45, base_y - size * 0.9), (x + size * 0.7, base_y - size * 0.55)], _shade(body, 0.8))
    for wheel in (-0.6, 0.6):
        p.ellipse(x + wheel * size, base_y - size * 0.15, size * 0.2, size * 0.2, (25, 25, 28))


def _pole(p: _Painter, x: float, base_y: float, size: float) -> None:
    p.line([(x, base_y), (x, base_y - size)], _vary(p.rng, 0, 0.0, 0.35), size * 0.03)
    p.ellipse(x, base_y - size, size * 0.06, size * 0.03, _vary(p.rng, 50, 0.3, 0.9))


def _foliage(p: _Painter, x: float, base_y: float, size: float) -> None:
    """Leaves hanging into the frame from the top edge, as from a branch in front of the camera (base_y
    is ignored: the branch is not standing anywhere)."""
    rng = p.rng
    hue = rng.uniform(60, 140)
    for _ in range(rng.integers(8, 25)):
        p.ellipse(x + rng.normal(0, size * 0.5), rng.uniform(-0.05, size * 0.6), size * 0.12, size * 0.08,
                  _vary(rng, hue, 0.6, 0.3))


# --- the 10 tutorial classes: a motif (the class's signature object) and a scene around it -------------------
# A motif draws at horizontal centre cx standing on base_y, `scale` image heights big; other classes borrow
# it as a distractor.
def _fountain(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    stone = _vary(rng, 35, 0.15, 0.7)
    water = _vary(rng, 200, 0.45, 0.65)
    spray = _vary(rng, 195, 0.12, 0.97, (5, 0.05, 0.03))
    radius = scale
    p.ellipse(cx, base_y, radius, radius * 0.3, _shade(stone, 0.75))
    p.ellipse(cx, base_y - radius * 0.08, radius, radius * 0.26, stone)
    p.ellipse(cx, base_y - radius * 0.08, radius * 0.88, radius * 0.2, water)
    column_top = base_y - radius * rng.uniform(0.6, 1.1)
    p.rectangle(cx - radius * 0.05, column_top, cx + radius * 0.05, base_y - radius * 0.08, stone)
    p.ellipse(cx, column_top, radius * 0.25, radius * 0.06, _shade(stone, 0.9))
    jet_height = radius * rng.uniform(0.2, 0.6)
    for landing in np.linspace(-0.8, 0.8, int(rng.integers(4, 9))) + rng.normal(0, 0.05):
        ts = np.linspace(0, 1, 12)
        xs = cx + landing * radius * ts
        ys = column_top + (base_y - radius * 0.1 - column_top) * ts ** 2 - jet_height * 4 * ts * (1 - ts)
        p.line(list(zip(xs, ys)), spray, radius * 0.025)
    top = column_top - jet_height * 1.5
    p.line([(cx, column_top), (cx, top)], spray, radius * 0.05)
    for _ in range(rng.integers(30, 90)):
        x, y = cx + rng.normal(0, radius * 0.4), top + abs(rng.normal(0, radius * 0.35))
        p.ellipse(x, y, radius * 0.015, radius * 0.015, spray)


def _fountain_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.4, 0.65)
    if rng.random() < 0.5:
        _treeline(p, horizon, rng.uniform(0.06, 0.15))
    else:
        for x in np.arange(rng.uniform(-0.2, 0), p.right, rng.uniform(0.15, 0.35)):
            _building(p, x, x + rng.uniform(0.12, 0.3), horizon - rng.uniform(0.1, 0.3), horizon + 0.01,
                      _vary(rng, rng.uniform(20, 50), 0.25, 0.75))
    _ground(p, horizon, _vary(rng, 35, 0.15, 0.6),
            _Texture(contrast=0.12, period=rng.uniform(0.03, 0.08), angle=90, blotch=0.06))
    _fountain(p, rng.uniform(0.3, 0.7) * p.right, rng.uniform(0.72, 0.9), rng.uniform(0.2, 0.42))


def _gas_station(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    brand = _vary(rng, rng.choice([0, 45, 120, 215, 25]), 0.8, 0.8)
    half_width = scale * rng.uniform(1.0, 1.6)
    roof_top = base_y - scale * rng.uniform(0.9, 1.2)
    roof_bottom = roof_top + scale * rng.uniform(0.12, 0.22)
    p.polygon([(cx - half_width, base_y + scale * 0.05), (cx + half_width, base_y + scale * 0.05),
               (cx + half_width * 0.9, base_y - scale * 0.05), (cx - half_width * 0.9, base_y - scale * 0.05)],
              (70, 70, 75))
    for x in np.linspace(cx - half_width * 0.75, cx + half_width * 0.75, int(rng.integers(2, 4))):
        p.rectangle(x - scale * 0.04, roof_bottom, x + scale * 0.04, base_y, _vary(rng, 0, 0.0, 0.8))
    for x in np.linspace(cx - half_width * 0.5, cx + half_width * 0.5, int(rng.integers(2, 5))):
        pump_top = base_y - scale * rng.uniform(0.35, 0.5)
        p.rectangle(x - scale * 0.08, pump_top, x + scale * 0.08, base_y, _vary(rng, 0, 0.05, 0.92))
        p.rectangle(x - scale * 0.08, pump_top, x + scale * 0.08, pump_top + scale * 0.08, brand)
        p.rectangle(x - scale * 0.05, pump_top + scale * 0.12, x + scale * 0.05, pump_top + scale * 0.2, (30, 35, 40))
    p.rectangle(cx - half_width, roof_top, cx + half_width, roof_bottom, _vary(rng, 0, 0.0, 0.93))
    p.rectangle(cx - half_width, roof_top + (roof_bottom - roof_top) * 0.3, cx + half_width,
                roof_top + (roof_bottom - roof_top) * 0.75, brand)


def _gas_station_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.45, 0.65)
    if rng.random() < 0.6:
        _treeline(p, horizon, rng.uniform(0.05, 0.12))
    _ground(p, horizon, _vary(rng, 220, 0.05, 0.4), _Texture(contrast=0.03, blotch=0.08, grain=0.06))
    cx = rng.uniform(0.35, 0.65) * p.right
    scale = rng.uniform(0.25, 0.4)
    if rng.random() < 0.6:
        shop_x = cx + rng.choice([-1, 1]) * scale * rng.uniform(0.8, 1.6)
        _building(p, shop_x - scale * 0.8, shop_x + scale * 0.8, horizon - scale * 0.5, horizon + 0.05,
                  _vary(rng, 30, 0.15, 0.85))
    _gas_station(p, cx, rng.uniform(0.75, 0.9), scale)
    if rng.random() < 0.7:
        sign_x = rng.uniform(0.05, 0.95) * p.right
        sign_top = horizon - rng.uniform(0.15, 0.35)
        p.line([(sign_x, horizon + 0.1), (sign_x, sign_top)], (90, 90, 95), 0.012)
        p.rectangle(sign_x - 0.06, sign_top - 0.12, sign_x + 0.06, sign_top, _vary(rng, rng.uniform(0, 360), 0.7, 0.8))


def _glacier(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    ice = _vary(rng, 195, 0.15, 0.93, (6, 0.06, 0.04))
    top = base_y - scale * rng.uniform(0.8, 1.3)
    width = scale * rng.uniform(1.0, 1.6)
    steps = 8
    left = [(cx - width * (0.15 + 0.85 * t / steps) + rng.normal(0, scale * 0.05), top + (base_y - top) * t / steps)
            for t in range(steps + 1)]
    right = [(cx + width * (0.15 + 0.85 * t / steps) + rng.normal(0, scale * 0.05), top + (base_y - top) * t / steps)
             for t in range(steps + 1)]
    p.polygon(left + right[::-1], ice)
    p.polygon([(cx, top)] + right[::-1][:steps // 2] + [(cx + width * 0.2, base_y)], _shade(ice, 0.85))
    crevasse = _vary(rng, 205, 0.35, 0.6)
    for _ in range(rng.integers(4, 12)):
        y = rng.uniform(top + (base_y - top) * 0.2, base_y)
        half = width * (0.15 + 0.85 * (y - top) / (base_y - top)) * 0.8
        x = cx + rng.uniform(-half, half * 0.5)
        p.line([(x, y), (x + half * rng.uniform(0.2, 0.5), y + rng.normal(0, scale * 0.04))], crevasse, scale * 0.015)


def _glacier_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.3, 0.5)
    _mountains(p, horizon, _vary(rng, 30, 0.15, 0.45), rng.uniform(0.1, 0.25), snow=rng.random() < 0.7)
    _ground(p, horizon, _vary(rng, 30, 0.18, 0.45),
            _Texture(contrast=0.05, period=0.03, angle=rng.uniform(0, 180), blotch=0.18, grain=0.1))
    _glacier(p, rng.uniform(0.3, 0.7) * p.right, rng.uniform(0.9, 1.1), rng.uniform(0.45, 0.7))
    if rng.random() < 0.25:
        y = rng.uniform(0.85, 0.95)
        p.ellipse(rng.uniform(0, p.right), y, rng.uniform(0.1, 0.3), 0.03, _vary(rng, 195, 0.45, 0.6))


def _iceberg(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    ice = _vary(rng, 195, 0.12, 0.95, (6, 0.06, 0.03))
    width = scale * rng.uniform(0.8, 1.5)
    p.polygon([(cx - width * 1.2, base_y), (cx + width * 1.2, base_y), (cx + width * 0.8, base_y + scale * 0.4),
               (cx - width * 0.9, base_y + scale * 0.45)], _vary(rng, 195, 0.5, 0.55))
    ridge = _ridge(p, base_y, scale * rng.uniform(0.6, 1.2), cx - width, cx + width, 0.45)
    p.polygon(ridge, ice)
    peak = min(range(len(ridge)), key=lambda index: ridge[index][1])
    p.polygon(ridge[peak:] + [(ridge[peak][0], base_y)], _shade(ice, rng.uniform(0.75, 0.9)))


def _iceberg_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.35, 0.6)
    if rng.random() < 0.3:
        _mountains(p, horizon, _vary(rng, 210, 0.1, 0.6), rng.uniform(0.04, 0.12), snow=True)
    water = _vary(rng, 210, 0.6, 0.45)
    _ground(p, horizon, water, _Texture(contrast=0.1, period=rng.uniform(0.015, 0.04), angle=90, blotch=0.05))
    for _ in range(rng.integers(1, 3)):
        base_y = rng.uniform(horizon + 0.05, 0.8)
        _iceberg(p, rng.uniform(0.1, 0.9) * p.right, base_y, (base_y - horizon + 0.1) * rng.uniform(0.4, 0.9))
    for _ in range(rng.integers(0, 8)):
        x, y = rng.uniform(0, p.right), rng.uniform(horizon + 0.05, 1)
        p.ellipse(x, y, (y - horizon) * 0.15, (y - horizon) * 0.03, _vary(rng, 195, 0.1, 0.92))


def _hayfield(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    """Round hay bales (spirals seen from the side) or square bales."""
    rng = p.rng
    straw = _vary(rng, 42, 0.55, 0.75)
    for _ in range(rng.integers(1, 4)):
        x = cx + rng.normal(0, scale)
        size = scale * rng.uniform(0.3, 0.45)
        if rng.random() < 0.7:
            p.ellipse(x, base_y - size, size, size, straw)
            for ring in (0.75, 0.5, 0.25):
                p.ring(x, base_y - size, size * ring, _shade(straw, 0.7), size * 0.06)
        else:
            p.rectangle(x - size * 1.3, base_y - size, x + size * 1.3, base_y, straw)
            p.rectangle(x + size * 0.9, base_y - size, x + size * 1.3, base_y, _shade(straw, 0.8))


def _hayfield_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.25, 0.5)
    if rng.random() < 0.7:
        _treeline(p, horizon, rng.uniform(0.03, 0.1))
    vanishing = (rng.uniform(-0.5, 1.5) * p.right, horizon)
    _ground(p, horizon, _vary(rng, 45, 0.55, 0.78, (8, 0.12, 0.08)),
            _Texture(contrast=0.15, period=rng.uniform(0.03, 0.08), blotch=0.08, grain=0.12, vanishing=vanishing))
    for _ in range(rng.integers(0, 6)):
        y = rng.uniform(horizon + 0.05, 1.0)
        _hayfield(p, rng.uniform(0, p.right), y, (y - horizon) * 0.6)


def _igloo(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    snow = _vary(rng, 200, 0.06, 0.93, (8, 0.03, 0.04))
    joint = _shade(snow, rng.uniform(0.65, 0.8))
    rx, ry = scale, scale * rng.uniform(0.6, 0.85)
    p.dome(cx, base_y, rx, ry, snow)
    p.dome(cx + rx * 0.3, base_y, rx * 0.7, ry * 0.9, _shade(snow, 0.9))
    rows = int(rng.integers(3, 6))
    heights = [ry * row / rows for row in range(rows + 1)]
    for row, (low, high) in enumerate(zip(heights, heights[1:])):
        half_low = rx * math.sqrt(max(0.0, 1 - (low / ry) ** 2))
        half_high = rx * math.sqrt(max(0.0, 1 - (high / ry) ** 2))
        if row:
            row_line = [(cx - half_low, base_y - low), (cx, base_y - low - ry * 0.04), (cx + half_low, base_y - low)]
            p.line(row_line, joint, scale * 0.025)
        blocks = max(2, round(half_high * 2 / (scale * 0.35)))
        for block in range(blocks):
            x = cx - half_high + (block + 0.5 * (row % 2)) * (2 * half_high / blocks)
            p.line([(x, base_y - low), (x, base_y - high)], joint, scale * 0.02)
    door_x = cx + rng.uniform(-0.4, 0.4) * rx
    p.dome(door_x, base_y, scale * 0.28, scale * 0.32, _shade(snow, 0.85))
    p.dome(door_x, base_y, scale * 0.18, scale * 0.22, _vary(rng, 215, 0.3, 0.2))


def _igloo_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = rng.uniform(0.35, 0.6)
    if rng.random() < 0.2:
        p.gradient(_vary(rng, 230, 0.6, 0.15), _vary(rng, 220, 0.5, 0.35), 0, horizon + 0.02)
    else:
        _sky(p, horizon)
    if rng.random() < 0.4:
        _mountains(p, horizon, _vary(rng, 205, 0.08, 0.85), rng.uniform(0.05, 0.15), snow=False)
    _ground(p, horizon, _vary(rng, 205, 0.08, 0.9, (8, 0.03, 0.05)),
            _Texture(contrast=0.03, period=0.1, angle=rng.uniform(60, 120), blotch=0.08, grain=0.03))
    base_y = rng.uniform(0.65, 0.92)
    _igloo(p, rng.uniform(0.25, 0.75) * p.right, base_y, (base_y - horizon + 0.1) * rng.uniform(0.7, 1.3))


def _lawn(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    """A mown patch of grass: light and dark stripes."""
    grass = _vary(p.rng, 100, 0.6, 0.6, (12, 0.1, 0.1))
    p.textured([(cx - scale * 1.5, base_y - scale * 0.3), (cx + scale * 1.5, base_y - scale * 0.3),
                (cx + scale * 2, base_y), (cx - scale * 2, base_y)], grass,
               _Texture(contrast=0.15, period=scale * 0.5, angle=p.rng.uniform(0, 30), blotch=0.05, grain=0.15))


def _lawn_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.05, 0.45)
    backdrop = rng.choice(["trees", "house", "hedge", "none"])
    if backdrop == "trees":
        _treeline(p, horizon, rng.uniform(0.05, 0.15))
    elif backdrop == "house":
        x = rng.uniform(0, 0.6) * p.right
        _building(p, x, x + rng.uniform(0.3, 0.6), horizon - rng.uniform(0.1, 0.25), horizon + 0.01,
                  _vary(rng, rng.uniform(0, 60), 0.25, 0.8))
    elif backdrop == "hedge":
        p.rectangle(0, horizon - rng.uniform(0.03, 0.08), p.right, horizon + 0.01, _vary(rng, 110, 0.6, 0.3))
    vanishing = (rng.uniform(-0.5, 1.5) * p.right, horizon - 0.02) if rng.random() < 0.6 else None
    _ground(p, horizon, _vary(rng, 100, 0.6, 0.6, (15, 0.12, 0.1)),
            _Texture(contrast=rng.uniform(0.05, 0.18), period=rng.uniform(0.08, 0.3) if vanishing is None else 0.4,
                     angle=rng.uniform(-30, 30), blotch=0.08, grain=0.2, vanishing=vanishing))
    for _ in range(rng.integers(0, 3)):
        y = rng.uniform(horizon + 0.1, 1.0)
        _tree(p, rng.uniform(0, p.right), y, (y - horizon) * rng.uniform(0.6, 1.2))


def _palace(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    wall = _vary(rng, rng.choice([40, 15, 50, 0]), rng.uniform(0.05, 0.35), 0.88)
    roof = _vary(rng, rng.choice([45, 150, 210, 30]), 0.45, 0.6)
    half = scale * rng.uniform(1.2, 1.8)
    body_top = base_y - scale * rng.uniform(0.45, 0.6)
    center_top = base_y - scale * rng.uniform(0.75, 0.95)
    lit, dark = _shade(wall, 1.1), _vary(rng, 210, 0.2, 0.3)
    p.rectangle(cx - half, body_top, cx + half, base_y, wall)
    _windows(p, cx - half, body_top + scale * 0.08, cx + half, base_y, 2 + int(rng.integers(0, 2)),
             2 * int(rng.integers(4, 8)), dark, dark)
    p.rectangle(cx - half, body_top - scale * 0.04, cx + half, body_top, _shade(wall, 0.8))
    p.rectangle(cx - scale * 0.35, center_top, cx + scale * 0.35, base_y, _shade(wall, 1.05))
    _windows(p, cx - scale * 0.35, center_top + scale * 0.08, cx + scale * 0.35, base_y, 3, 4, lit, dark)
    p.dome(cx, center_top, scale * 0.3, scale * rng.uniform(0.25, 0.45), roof)
    p.line([(cx, center_top - scale * 0.3), (cx, center_top - scale * 0.55)], roof, scale * 0.03)
    if rng.random() < 0.8:
        for side in (-1, 1):
            tower_x = cx + side * (half - scale * 0.12)
            tower_top = body_top - scale * 0.2
            p.rectangle(tower_x - scale * 0.12, tower_top, tower_x + scale * 0.12, base_y, wall)
            p.dome(tower_x, tower_top, scale * 0.12, scale * 0.15, roof)


def _palace_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.5, 0.75)
    front = rng.choice(["plaza", "lawn", "water"])
    if front == "plaza":
        _ground(p, horizon, _vary(rng, 35, 0.2, 0.7), _Texture(contrast=0.1, period=0.04, blotch=0.06,
                                                                vanishing=(p.right / 2, horizon)))
    elif front == "lawn":
        _ground(p, horizon, _vary(rng, 100, 0.55, 0.55), _Texture(contrast=0.05, blotch=0.1, grain=0.15))
    else:
        _ground(p, horizon, _vary(rng, 205, 0.45, 0.55), _Texture(contrast=0.08, period=0.02, angle=90))
    cx = rng.uniform(0.35, 0.65) * p.right
    scale = rng.uniform(0.25, 0.42)
    _palace(p, cx, horizon + 0.02, scale)
    if rng.random() < 0.5:
        for side in (-1, 1):
            _tree(p, cx + side * scale * rng.uniform(1.9, 2.4), horizon + 0.1, scale * 0.9)


def _runway(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    """A runway strip in perspective from base_y up to a vanishing point `scale` higher."""
    rng = p.rng
    asphalt = _vary(rng, 220, 0.05, 0.42)
    paint = _vary(rng, 50, 0.1, 0.93, (5, 0.05, 0.03))
    far_y, far_x = base_y - scale, cx + rng.normal(0, scale * 0.3)
    half = scale * rng.uniform(0.8, 1.6)
    p.textured([(cx - half, base_y), (cx + half, base_y), (far_x + half * 0.04, far_y), (far_x - half * 0.04, far_y)],
               asphalt, _Texture(contrast=0.02, blotch=0.06, grain=0.05))

    def along(t: float, offset: float) -> Point:
        """The point a fraction t of the way to the far end, `offset` half-widths from the centre line."""
        depth = 1 / (1 + 6 * t)  # equal steps on the ground shrink toward the horizon
        return far_x + (cx - far_x) * depth + offset * half * depth, far_y + (base_y - far_y) * depth

    for side in (-0.92, 0.92):
        p.line([along(0, side), along(1, side)], paint, scale * 0.02)
    for dash in range(8):
        start, end = dash / 8, (dash + 0.45) / 8
        p.polygon([along(start, -0.03), along(start, 0.03), along(end, 0.03), along(end, -0.03)], paint)
    if rng.random() < 0.5:
        for stripe in np.linspace(-0.8, 0.8, 8):
            p.polygon([along(0, stripe - 0.05), along(0, stripe + 0.05), along(0.05, stripe + 0.05),
                       along(0.05, stripe - 0.05)], paint)


def _runway_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.3, 0.55)
    if rng.random() < 0.5:
        _treeline(p, horizon, rng.uniform(0.02, 0.06))
    _ground(p, horizon, _vary(rng, rng.uniform(60, 110), 0.4, 0.5),
            _Texture(contrast=0.04, period=0.05, angle=90, blotch=0.12, grain=0.12))
    _runway(p, rng.uniform(0.3, 0.7) * p.right, 1.02, 1.02 - horizon)
    if rng.random() < 0.3:
        x, y, size = rng.uniform(0.2, 0.8) * p.right, rng.uniform(0.05, horizon * 0.8), rng.uniform(0.05, 0.12)
        plane = _vary(rng, 210, 0.05, rng.uniform(0.3, 0.9))
        p.ellipse(x, y, size, size * 0.12, plane)
        p.polygon([(x - size * 0.1, y), (x + size * 0.2, y), (x - size * 0.2, y + size * 0.6)], plane)


def _skyscraper(p: _Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    for _ in range(rng.integers(1, 4)):
        x = cx + rng.normal(0, scale * 0.4)
        half = scale * rng.uniform(0.12, 0.3)
        top = base_y - scale * rng.uniform(1.5, 3.0)
        glass = _vary(rng, rng.choice([205, 190, 30, 220]), rng.uniform(0.05, 0.4), rng.uniform(0.35, 0.8))
        taper = half * rng.uniform(0, 0.3)
        p.polygon([(x - half, base_y), (x + half, base_y), (x + half - taper, top), (x - half + taper, top)], glass)
        rows = max(3, round((base_y - top) / (scale * rng.uniform(0.06, 0.12))))
        columns = int(rng.integers(3, 8))
        _windows(p, x - half + taper, top, x + half - taper, base_y, rows, columns, _shade(glass, 1.35),
                 _shade(glass, 0.7))


def _skyscraper_scene(p: _Painter) -> None:
    rng = p.rng
    horizon = _outdoors(p, 0.75, 1.0)
    for x in np.arange(rng.uniform(-0.1, 0.1), p.right, rng.uniform(0.12, 0.25)):
        haze = _vary(rng, 215, 0.12, 0.72)
        p.rectangle(x, horizon - rng.uniform(0.2, 0.5), x + rng.uniform(0.08, 0.2), horizon + 0.01, haze)
    _ground(p, horizon, _vary(rng, 220, 0.05, 0.35), _Texture(contrast=0.02, blotch=0.05))
    for _ in range(rng.integers(1, 3)):
        _skyscraper(p, rng.uniform(0.1, 0.9) * p.right, horizon + 0.01, rng.uniform(0.25, 0.45))


Motif = Callable[[_Painter, float, float, float], None]

_TUTORIAL_RECIPES: dict[str, tuple[Callable[[_Painter], None], Motif]] = {
    "fountain": (_fountain_scene, _fountain),
    "gas_station": (_gas_station_scene, _gas_station),
    "glacier": (_glacier_scene, _glacier),
    "hayfield": (_hayfield_scene, _hayfield),
    "iceberg": (_iceberg_scene, _iceberg),
    "igloo": (_igloo_scene, _igloo),
    "lawn": (_lawn_scene, _lawn),
    "palace": (_palace_scene, _palace),
    "runway": (_runway_scene, _runway),
    "skyscraper": (_skyscraper_scene, _skyscraper),
}


# --- the other 355 categories: a recipe derived from the category's official index --------------------------
# Words of a category key that say "indoors"; a key naming none of them, or "outdoor", is painted outdoors.
_INDOOR_WORDS = frozenset((
    "indoor", "interior", "room", "office", "kitchen", "bathroom", "bedroom", "store", "shop", "lobby", "hall",
    "corridor", "library", "museum", "restaurant", "classroom", "studio", "closet", "cabin", "gym", "laboratory",
    "lab", "theater", "bar", "pub", "salon", "cell", "vault", "pantry", "attic", "basement", "elevator", "shower",
    "sauna", "nursery", "parlor", "chamber", "cockpit", "booth", "alcove", "auditorium", "ballroom", "berth",
    "galley", "bookstore", "cafeteria", "dorm", "escalator", "garage", "hangar", "loft", "pharmacy",
    "reception", "staircase", "stage", "supermarket", "bazaar", "arcade", "archive", "pizzeria", "laundromat",
    "terminal", "aquarium", "gallery", "showroom", "bedchamber", "catacomb", "delicatessen", "discotheque",
    "drugstore", "court", "mezzanine", "pit", "playroom", "toyshop", "atrium", "ring", "assembly",
))
_SHAPE_FAMILIES = ("blocks", "domes", "peaks", "discs", "pillars", "trees", "boxes", "arches")


@dataclass(frozen=True)
class _Recipe:
    indoor: bool
    wall_hue: float  # indoors only: outdoors the sky varies with the weather as for every class
    wall_value: float
    ground_hue: float
    ground_saturation: float
    ground_value: float
    object_hue: float
    shape_family: str
    texture: _Texture
    horizon: float
    objects: int
    object_scale: float


@functools.lru_cache(maxsize=None)
def _derived_recipe(category_index: int) -> _Recipe:
    """The fixed look of an official category without a hand-made recipe, from its index alone."""
    key = places365_categories()[category_index]
    # A stream of its own, apart from the images' [seed, index, number]: a category looks the same for every seed.
    rng = np.random.default_rng([0x9E3779B9, category_index])
    words = set(re.split(r"[/_]", key))
    indoor = "outdoor" not in words and bool(words & _INDOOR_WORDS)
    return _Recipe(
        indoor=indoor,
        wall_hue=float(rng.uniform(0, 360)),
        wall_value=float(rng.uniform(0.45, 0.9)),
        ground_hue=float(rng.uniform(0, 360)),
        ground_saturation=float(rng.uniform(0.05, 0.7)),
        ground_value=float(rng.uniform(0.3, 0.85)),
        object_hue=float(rng.uniform(0, 360)),
        shape_family=str(rng.choice(_SHAPE_FAMILIES)),
        texture=_Texture(contrast=float(rng.uniform(0.02, 0.2)), period=float(rng.uniform(0.01, 0.15)),
                         angle=float(rng.uniform(0, 180)), blotch=float(rng.uniform(0.02, 0.15)),
                         grain=float(rng.uniform(0.02, 0.2))),
        horizon=float(rng.uniform(0.45, 0.7) if indoor else rng.uniform(0.25, 0.75)),
        objects=int(rng.integers(1, 7)),
        object_scale=float(rng.uniform(0.08, 0.35)),
    )


def _shape(p: _Painter, family: str, cx: float, base_y: float, scale: float, colour: Colour) -> None:
    """One object of a derived recipe's shape family."""
    rng = p.rng
    if family == "blocks":
        _building(p, cx - scale * 0.5, cx + scale * 0.5, base_y - scale * rng.uniform(0.8, 2.0), base_y, colour)
    elif family == "domes":
        p.dome(cx, base_y, scale * 0.6, scale * rng.uniform(0.4, 0.8), colour)
    elif family == "peaks":
        p.polygon([(cx - scale, base_y), (cx + rng.normal(0, scale * 0.2), base_y - scale * rng.uniform(0.6, 1.4)),
                   (cx + scale, base_y)], colour)
    elif family == "discs":
        p.ellipse(cx, base_y - scale * 0.5, scale * 0.5, scale * 0.5, colour)
    elif family == "pillars":
        for offset in (-0.4, 0, 0.4):
            x = cx + offset * scale
            p.rectangle(x - scale * 0.06, base_y - scale * 1.5, x + scale * 0.06, base_y, colour)
    elif family == "trees":
        _tree(p, cx, base_y, scale * 1.5)
    elif family == "boxes":
        p.rectangle(cx - scale * 0.6, base_y - scale * 0.5, cx + scale * 0.6, base_y, colour)
        p.rectangle(cx - scale * 0.6, base_y - scale * 0.6, cx + scale * 0.6, base_y - scale * 0.5, _shade(colour, 1.3))
    else:  # arches: a doorway in a wall
        p.rectangle(cx - scale * 0.6, base_y - scale * 1.2, cx + scale * 0.6, base_y, colour)
        p.dome(cx, base_y - scale * 0.5, scale * 0.35, scale * 0.4, _shade(colour, 0.35))
        p.rectangle(cx - scale * 0.35, base_y - scale * 0.5, cx + scale * 0.35, base_y, _shade(colour, 0.35))


def _derived_scene(p: _Painter, recipe: _Recipe) -> None:
    rng = p.rng
    horizon = float(np.clip(recipe.horizon + rng.normal(0, 0.06), 0.15, 0.85))
    ground = _vary(rng, recipe.ground_hue, recipe.ground_saturation, recipe.ground_value)
    if recipe.indoor:
        wall = _vary(rng, recipe.wall_hue, 0.25, recipe.wall_value)
        p.gradient(_shade(wall, 0.85), wall, 0, horizon + 0.02)
        inset = rng.uniform(0.1, 0.3) * p.right
        p.polygon([(0, 0), (inset, horizon * 0.15), (inset, horizon), (0, 1)], _shade(wall, 0.8))
        p.polygon([(p.right, 0), (p.right - inset, horizon * 0.15), (p.right - inset, horizon), (p.right, 1)],
                  _shade(wall, 0.7))
        p.textured([(inset, horizon), (p.right - inset, horizon), (p.right, 1), (0, 1)], ground,
                   dataclasses.replace(recipe.texture, vanishing=(p.right / 2, horizon - 0.3)))
    else:
        _sky(p, horizon)
        _ground(p, horizon, ground, recipe.texture)
    for _ in range(max(1, recipe.objects + int(rng.integers(-1, 2)))):
        y = rng.uniform(horizon, min(1.0, horizon + 0.35))
        scale = recipe.object_scale * rng.uniform(0.6, 1.4) * (0.6 + y - horizon)
        _shape(p, recipe.shape_family, rng.uniform(0, p.right), y, scale,
               _vary(rng, recipe.object_hue, 0.5, 0.6, (15, 0.2, 0.2)))


# --- nuisance shared by all classes -------------------------------------------------------------------------------
def _distract(p: _Painter, own_key: str) -> None:
    """Objects that do not define the class: another tutorial class's motif, people, cars, poles, leaves."""
    rng = p.rng
    if rng.random() < DISTRACTOR_SHARE:
        borrowed = sorted(key for key in _TUTORIAL_RECIPES if key != own_key)
        _, motif = _TUTORIAL_RECIPES[borrowed[rng.integers(len(borrowed))]]
        base_y = rng.uniform(0.5, 1.0)
        motif(p, rng.uniform(0, p.right), base_y, rng.uniform(0.12, 0.35))
    if rng.random() < OCCLUDER_SHARE:
        for _ in range(rng.integers(1, 4)):
            occluder = (_person, _car, _pole, _tree, _foliage)[rng.integers(5)]
            base_y = rng.uniform(0.7, 1.05)
            occluder(p, rng.uniform(0, p.right), base_y, rng.uniform(0.1, 0.35))


def _photograph(p: _Painter) -> Image.Image:
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
    painter = _Painter(spec.width, spec.height, rng)
    if key in _TUTORIAL_RECIPES:
        scene, _ = _TUTORIAL_RECIPES[key]
        scene(painter)
    else:
        _derived_scene(painter, _derived_recipe(category_index))
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


# --- layouts and writing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PlannedImage:
    category_index: int
    number: int  # from 1 within its class; with the seed it fixes the bytes
    path: Path


@dataclass
class _Plan:
    images: list[_PlannedImage]
    list_files: dict[Path, bytes]  # written after the images, so a list never names a missing image
    owned_names: dict[Path, re.Pattern]  # per folder: the file names this generator writes there


# Leftovers of an interrupted write; their names end in neither .jpg nor .png, so no reader takes them for images.
_PARTIAL = r"\..+\.partial"


def _plan(out_dir: Path, classes: tuple[str, ...], per_class: int, layout: str, seed: int) -> _Plan:
    official_index = {key: index for index, key in enumerate(places365_categories())}
    images: list[_PlannedImage] = []
    list_files: dict[Path, bytes] = {}
    owned_names: dict[Path, re.Pattern] = {}
    train_lines: list[str] = []
    val_images: list[tuple[int, int]] = []
    for key in classes:
        index = official_index[key]
        if layout == FOLDERS:
            folder, stem = out_dir / folder_name(key), key.replace("/", "-")
            owned_names[folder] = re.compile(rf"{re.escape(stem)}_\d{{5}}\.(jpg|png)|{_PARTIAL}")
        else:
            folder = out_dir / "data_256" / key[0] / key
            owned_names[folder] = re.compile(rf"\d{{8}}\.(jpg|png)|{_PARTIAL}")
        train_number = 0
        for number in range(1, per_class + 1):
            extension = image_spec(seed, index, number).extension
            if layout == FOLDERS:
                images.append(_PlannedImage(index, number, folder / f"{stem}_{number:05d}{extension}"))
            elif layout == PLACES365_LISTS and (number - 1) % VAL_EVERY == VAL_OFFSET:
                val_images.append((index, number))
            else:
                train_number += 1
                name = f"{train_number:08d}{extension}"
                images.append(_PlannedImage(index, number, folder / name))
                train_lines.append(f"/{key[0]}/{key}/{name} {index}")
    if layout == PLACES365_LISTS:
        val_folder = out_dir / "val_256"
        owned_names[val_folder] = re.compile(rf"Places365_val_\d{{8}}\.(jpg|png)|{_PARTIAL}")
        # The official val folder mixes classes; numbering in a shuffled order keeps readers from relying on order.
        shuffled = np.random.default_rng([seed]).permutation(len(val_images))
        val_lines = []
        for val_number, position in enumerate(shuffled, start=1):
            index, number = val_images[position]
            name = f"Places365_val_{val_number:08d}{image_spec(seed, index, number).extension}"
            images.append(_PlannedImage(index, number, val_folder / name))
            val_lines.append(f"{name} {index}")
        list_files[out_dir / CATEGORIES_FILE.name] = CATEGORIES_FILE.read_bytes()
        list_files[out_dir / "places365_train_standard.txt"] = "".join(f"{line}\n" for line in train_lines).encode()
        list_files[out_dir / "places365_val.txt"] = "".join(f"{line}\n" for line in val_lines).encode()
    return _Plan(images, list_files, owned_names)


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(content)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _remove_stale(plan: _Plan) -> None:
    """Delete images of this generator's naming that this run does not write, e.g. from a larger per_class."""
    planned = {image.path for image in plan.images}
    for folder, owned in plan.owned_names.items():
        for path in folder.iterdir():
            if path not in planned and owned.fullmatch(path.name) and path.is_file():
                path.unlink()


def _write_images(seed: int, images: list[_PlannedImage]) -> int:
    for image in images:
        _write_atomically(image.path, render(seed, image.category_index, image.number))
    return len(images)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def generate(out_dir: Path, classes: tuple[str, ...], per_class: int, layout: str, seed: int) -> int:
    """Write per_class images for each class key in `classes` under out_dir in `layout`; return how many
    images were written. See the module docstring for the layouts."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}': use one of {', '.join(LAYOUTS)}")
    if per_class < 1:
        raise ValueError(f"per_class is {per_class}: give at least 1 image per class")
    if seed < 0:
        raise ValueError(f"seed is {seed}: give a seed of 0 or more")
    unknown = [key for key in classes if key not in places365_categories()]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not official Places365 category keys: resolve class names with "
                         f"data_schema.resolve_classes first")
    out_dir = Path(out_dir)
    plan = _plan(out_dir, tuple(classes), per_class, layout, seed)
    for folder in plan.owned_names:
        folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(plan)
    tasks = [plan.images[start:start + IMAGES_PER_TASK] for start in range(0, len(plan.images), IMAGES_PER_TASK)]
    workers = min(_usable_cores(), len(tasks))
    with progress(total=len(plan.images), desc=f"sample images ({layout})", unit="image") as bar:
        if workers <= 1:
            for task in tasks:
                bar.update(_write_images(seed, task))
        else:
            # spawn, not fork: callers may have TensorFlow or Beam threads running, which fork copies mid-lock.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for done in as_completed([pool.submit(_write_images, seed, task) for task in tasks]):
                    bar.update(done.result())
    for path, content in plan.list_files.items():
        _write_atomically(path, content)
    return len(plan.images)
