"""What the scene recipes paint with: colours that vary from object to object, textures, and a canvas whose
coordinates are in image heights."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Colour = tuple[int, int, int]
Point = tuple[float, float]


# --- colours ----------------------------------------------------------------------------------------------
def _hsv(hue: float, saturation: float, value: float) -> Colour:
    """An RGB colour from hue in degrees and saturation/value in [0, 1] (clipped)."""
    red, green, blue = colorsys.hsv_to_rgb((hue % 360) / 360, min(max(saturation, 0), 1), min(max(value, 0), 1))
    return round(red * 255), round(green * 255), round(blue * 255)


def vary(rng: np.random.Generator, hue: float, saturation: float, value: float,
         spread: tuple[float, float, float] = (10, 0.1, 0.1)) -> Colour:
    """A colour near (hue, saturation, value): every object of a kind differs a little, as in photos."""
    return _hsv(hue + rng.normal(0, spread[0]), saturation + rng.normal(0, spread[1]),
                value + rng.normal(0, spread[2]))


def shade(colour: Colour, factor: float) -> Colour:
    return tuple(min(255, max(0, round(channel * factor))) for channel in colour)


# --- painting ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Texture:
    """Stripes plus blotches plus grain, multiplied into a colour: grass, fields, asphalt, tiles, water."""

    contrast: float = 0.1  # amplitude of the stripes
    period: float = 0.05  # stripe spacing, in image heights (or in slope units when `vanishing` is set)
    angle: float = 0.0  # stripe direction in degrees; 0 gives vertical stripes
    blotch: float = 0.08  # amplitude of large soft patches
    grain: float = 0.05  # amplitude of per-pixel noise
    vanishing: Point | None = None  # stripes as lines converging on this point: rows of a field, a floor


class Painter:
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

    def textured(self, points: list[Point], colour: Colour, texture: Texture) -> None:
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
        shading = texture.contrast * np.sin(2 * np.pi * along / texture.period + rng.uniform(0, 2 * np.pi))
        blotches = rng.standard_normal((max(2, (bottom - top) // 24), max(2, (right - left) // 24)),
                                       dtype=np.float32)
        shading += texture.blotch * np.asarray(
            Image.fromarray(blotches).resize((right - left, bottom - top), Image.BILINEAR))
        shading += texture.grain * rng.standard_normal(shading.shape, dtype=np.float32)
        pixels = np.asarray(colour, np.float32) * (1 + shading[..., None])
        patch = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        self.image.paste(patch, (left, top), mask.crop(box))
