"""Scenery that several recipes share: sky, ground, mountains, trees, buildings, and the people, cars, poles and
leaves that may stand in front of any scene."""

from __future__ import annotations

import numpy as np

from sample_data.painting import Colour, Painter, Point, Texture, shade, vary


def sky(p: Painter, horizon: float) -> None:
    """Clear, hazy, overcast or dusk sky down to the horizon, with clouds sometimes."""
    rng = p.rng
    weather = rng.choice(["clear", "hazy", "overcast", "dusk"], p=[0.45, 0.2, 0.2, 0.15])
    if weather == "clear":
        top, bottom = vary(rng, 212, 0.65, 0.8), vary(rng, 200, 0.3, 0.95)
    elif weather == "hazy":
        top, bottom = vary(rng, 205, 0.3, 0.85), vary(rng, 40, 0.1, 0.92)
    elif weather == "overcast":
        grey = rng.uniform(0.6, 0.85)
        top, bottom = vary(rng, 210, 0.08, grey), vary(rng, 210, 0.05, grey + 0.08)
    else:
        top, bottom = vary(rng, 240, 0.5, 0.45), vary(rng, 25, 0.7, 0.95, (12, 0.1, 0.05))
    p.gradient(top, bottom, 0, horizon + 0.02)
    if weather != "overcast" and rng.random() < 0.5:
        cloud = shade(bottom, rng.uniform(1.0, 1.15))
        for _ in range(rng.integers(1, 5)):
            cx, cy, size = rng.uniform(0, p.right), rng.uniform(0.03, max(0.05, horizon * 0.7)), rng.uniform(0.04, 0.12)
            for _ in range(rng.integers(2, 5)):
                p.ellipse(cx + rng.normal(0, size), cy + rng.normal(0, size * 0.25), size, size * 0.45, cloud)


def outdoors(p: Painter, lowest: float, highest: float) -> float:
    """A horizon height between `lowest` and `highest`, with the sky painted above it."""
    horizon = p.rng.uniform(lowest, highest)
    sky(p, horizon)
    return horizon


def ground(p: Painter, horizon: float, colour: Colour, texture: Texture) -> None:
    p.textured([(0, horizon), (p.right, horizon), (p.right, 1), (0, 1)], colour, texture)


def ridge_line(p: Painter, base_y: float, height: float, x0: float, x1: float, roughness: float) -> list[Point]:
    """Points of a jagged ridge line from x0 to x1 on base_y, its peaks around 0.6 x `height` high."""
    count = int(p.rng.integers(5, 14))
    xs = np.linspace(x0, x1, count)
    heights = np.abs(p.rng.normal(0.6, roughness, count)) * height
    heights[0] = heights[-1] = 0
    return [(x, base_y - h) for x, h in zip(xs, heights)]


def mountains(p: Painter, horizon: float, colour: Colour, height: float, snow: bool) -> None:
    ridge = ridge_line(p, horizon, height, -0.1, p.right + 0.1, 0.35)
    p.polygon(ridge + [(p.right + 0.1, horizon + 0.01), (-0.1, horizon + 0.01)], colour)
    if snow:
        white = vary(p.rng, 200, 0.06, 0.95)
        for (x0, y0), (x1, y1), (x2, y2) in zip(ridge, ridge[1:], ridge[2:]):
            if y1 < min(y0, y2) and horizon - y1 > height * 0.4:
                cap = (horizon - y1) * 0.35
                p.polygon([(x1, y1), (x1 + (x2 - x1) * 0.35, y1 + cap), (x1 - (x1 - x0) * 0.35, y1 + cap)], white)


def treeline(p: Painter, horizon: float, height: float) -> None:
    rng = p.rng
    hue = rng.uniform(80, 140)
    for x in np.arange(-0.05, p.right + 0.05, height * rng.uniform(0.6, 1.2)):
        radius = height * rng.uniform(0.5, 1.0)
        p.ellipse(x, horizon - radius * 0.6, radius * 0.8, radius, vary(rng, hue, 0.5, 0.35))


def tree(p: Painter, x: float, base_y: float, size: float) -> None:
    rng = p.rng
    p.rectangle(x - size * 0.06, base_y - size * 0.5, x + size * 0.06, base_y, vary(rng, 25, 0.5, 0.3))
    green = vary(rng, rng.uniform(70, 140), 0.55, 0.4)
    if rng.random() < 0.5:
        p.ellipse(x, base_y - size * 0.75, size * 0.35, size * 0.4, green)
    else:
        crown_base = base_y - size * 0.3
        p.polygon([(x, base_y - size * 1.2), (x + size * 0.35, crown_base), (x - size * 0.35, crown_base)], green)


def windows(p: Painter, x0: float, y0: float, x1: float, y1: float, rows: int, columns: int, lit: Colour,
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


def building(p: Painter, x0: float, x1: float, top: float, base_y: float, colour: Colour) -> None:
    p.rectangle(x0, top, x1, base_y, colour)
    rows = max(1, round((base_y - top) / p.rng.uniform(0.04, 0.09)))
    columns = max(1, round((x1 - x0) / p.rng.uniform(0.04, 0.09)))
    windows(p, x0, top, x1, base_y, rows, columns, shade(colour, 1.3), shade(colour, 0.55))


def person(p: Painter, x: float, base_y: float, size: float) -> None:
    rng = p.rng
    body = vary(rng, rng.uniform(0, 360), 0.5, 0.45, (0, 0.2, 0.2))
    p.rectangle(x - size * 0.12, base_y - size * 0.8, x + size * 0.12, base_y - size * 0.4, body)
    p.rectangle(x - size * 0.1, base_y - size * 0.4, x + size * 0.1, base_y, vary(rng, 220, 0.3, 0.25))
    p.ellipse(x, base_y - size * 0.9, size * 0.09, size * 0.1, vary(rng, 25, 0.45, 0.7))


def car(p: Painter, x: float, base_y: float, size: float) -> None:
    rng = p.rng
    body = vary(rng, rng.uniform(0, 360), rng.uniform(0, 0.8), rng.uniform(0.2, 0.9), (0, 0.1, 0.1))
    p.rectangle(x - size, base_y - size * 0.55, x + size, base_y - size * 0.15, body)
    p.polygon([(x - size * 0.6, base_y - size * 0.55), (x - size * 0.35, base_y - size * 0.9),
               (x + size * 0.45, base_y - size * 0.9), (x + size * 0.7, base_y - size * 0.55)], shade(body, 0.8))
    for wheel in (-0.6, 0.6):
        p.ellipse(x + wheel * size, base_y - size * 0.15, size * 0.2, size * 0.2, (25, 25, 28))


def pole(p: Painter, x: float, base_y: float, size: float) -> None:
    p.line([(x, base_y), (x, base_y - size)], vary(p.rng, 0, 0.0, 0.35), size * 0.03)
    p.ellipse(x, base_y - size, size * 0.06, size * 0.03, vary(p.rng, 50, 0.3, 0.9))


def foliage(p: Painter, x: float, base_y: float, size: float) -> None:
    """Leaves hanging into the frame from the top edge, as from a branch in front of the camera (base_y
    is ignored: the branch is not standing anywhere)."""
    rng = p.rng
    hue = rng.uniform(60, 140)
    for _ in range(rng.integers(8, 25)):
        p.ellipse(x + rng.normal(0, size * 0.5), rng.uniform(-0.05, size * 0.6), size * 0.12, size * 0.08,
                  vary(rng, hue, 0.6, 0.3))
