"""The 10 tutorial classes, each drawn as what it is: a motif (the class's signature object) and a scene around it.

A motif draws at horizontal centre cx standing on base_y, `scale` image heights big; other classes borrow it as
a distractor (sample_data/rendering.py).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from sample_data.elements import building, ground, mountains, outdoors, ridge_line, sky, tree, treeline, windows
from sample_data.painting import Painter, Point, Texture, shade, vary


def _fountain(p: Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    stone = vary(rng, 35, 0.15, 0.7)
    water = vary(rng, 200, 0.45, 0.65)
    spray = vary(rng, 195, 0.12, 0.97, (5, 0.05, 0.03))
    radius = scale
    p.ellipse(cx, base_y, radius, radius * 0.3, shade(stone, 0.75))
    p.ellipse(cx, base_y - radius * 0.08, radius, radius * 0.26, stone)
    p.ellipse(cx, base_y - radius * 0.08, radius * 0.88, radius * 0.2, water)
    column_top = base_y - radius * rng.uniform(0.6, 1.1)
    p.rectangle(cx - radius * 0.05, column_top, cx + radius * 0.05, base_y - radius * 0.08, stone)
    p.ellipse(cx, column_top, radius * 0.25, radius * 0.06, shade(stone, 0.9))
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


def _fountain_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.4, 0.65)
    if rng.random() < 0.5:
        treeline(p, horizon, rng.uniform(0.06, 0.15))
    else:
        for x in np.arange(rng.uniform(-0.2, 0), p.right, rng.uniform(0.15, 0.35)):
            building(p, x, x + rng.uniform(0.12, 0.3), horizon - rng.uniform(0.1, 0.3), horizon + 0.01,
                     vary(rng, rng.uniform(20, 50), 0.25, 0.75))
    ground(p, horizon, vary(rng, 35, 0.15, 0.6),
           Texture(contrast=0.12, period=rng.uniform(0.03, 0.08), angle=90, blotch=0.06))
    _fountain(p, rng.uniform(0.3, 0.7) * p.right, rng.uniform(0.72, 0.9), rng.uniform(0.2, 0.42))


def _gas_station(p: Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    brand = vary(rng, rng.choice([0, 45, 120, 215, 25]), 0.8, 0.8)
    half_width = scale * rng.uniform(1.0, 1.6)
    roof_top = base_y - scale * rng.uniform(0.9, 1.2)
    roof_bottom = roof_top + scale * rng.uniform(0.12, 0.22)
    p.polygon([(cx - half_width, base_y + scale * 0.05), (cx + half_width, base_y + scale * 0.05),
               (cx + half_width * 0.9, base_y - scale * 0.05), (cx - half_width * 0.9, base_y - scale * 0.05)],
              (70, 70, 75))
    for x in np.linspace(cx - half_width * 0.75, cx + half_width * 0.75, int(rng.integers(2, 4))):
        p.rectangle(x - scale * 0.04, roof_bottom, x + scale * 0.04, base_y, vary(rng, 0, 0.0, 0.8))
    for x in np.linspace(cx - half_width * 0.5, cx + half_width * 0.5, int(rng.integers(2, 5))):
        pump_top = base_y - scale * rng.uniform(0.35, 0.5)
        p.rectangle(x - scale * 0.08, pump_top, x + scale * 0.08, base_y, vary(rng, 0, 0.05, 0.92))
        p.rectangle(x - scale * 0.08, pump_top, x + scale * 0.08, pump_top + scale * 0.08, brand)
        p.rectangle(x - scale * 0.05, pump_top + scale * 0.12, x + scale * 0.05, pump_top + scale * 0.2, (30, 35, 40))
    p.rectangle(cx - half_width, roof_top, cx + half_width, roof_bottom, vary(rng, 0, 0.0, 0.93))
    p.rectangle(cx - half_width, roof_top + (roof_bottom - roof_top) * 0.3, cx + half_width,
                roof_top + (roof_bottom - roof_top) * 0.75, brand)


def _gas_station_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.45, 0.65)
    if rng.random() < 0.6:
        treeline(p, horizon, rng.uniform(0.05, 0.12))
    ground(p, horizon, vary(rng, 220, 0.05, 0.4), Texture(contrast=0.03, blotch=0.08, grain=0.06))
    cx = rng.uniform(0.35, 0.65) * p.right
    scale = rng.uniform(0.25, 0.4)
    if rng.random() < 0.6:
        shop_x = cx + rng.choice([-1, 1]) * scale * rng.uniform(0.8, 1.6)
        building(p, shop_x - scale * 0.8, shop_x + scale * 0.8, horizon - scale * 0.5, horizon + 0.05,
                 vary(rng, 30, 0.15, 0.85))
    _gas_station(p, cx, rng.uniform(0.75, 0.9), scale)
    if rng.random() < 0.7:
        sign_x = rng.uniform(0.05, 0.95) * p.right
        sign_top = horizon - rng.uniform(0.15, 0.35)
        p.line([(sign_x, horizon + 0.1), (sign_x, sign_top)], (90, 90, 95), 0.012)
        p.rectangle(sign_x - 0.06, sign_top - 0.12, sign_x + 0.06, sign_top, vary(rng, rng.uniform(0, 360), 0.7, 0.8))


def _glacier(p: Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    ice = vary(rng, 195, 0.15, 0.93, (6, 0.06, 0.04))
    top = base_y - scale * rng.uniform(0.8, 1.3)
    width = scale * rng.uniform(1.0, 1.6)
    steps = 8
    left = [(cx - width * (0.15 + 0.85 * t / steps) + rng.normal(0, scale * 0.05), top + (base_y - top) * t / steps)
            for t in range(steps + 1)]
    right = [(cx + width * (0.15 + 0.85 * t / steps) + rng.normal(0, scale * 0.05), top + (base_y - top) * t / steps)
             for t in range(steps + 1)]
    p.polygon(left + right[::-1], ice)
    p.polygon([(cx, top)] + right[::-1][:steps // 2] + [(cx + width * 0.2, base_y)], shade(ice, 0.85))
    crevasse = vary(rng, 205, 0.35, 0.6)
    for _ in range(rng.integers(4, 12)):
        y = rng.uniform(top + (base_y - top) * 0.2, base_y)
        half = width * (0.15 + 0.85 * (y - top) / (base_y - top)) * 0.8
        x = cx + rng.uniform(-half, half * 0.5)
        p.line([(x, y), (x + half * rng.uniform(0.2, 0.5), y + rng.normal(0, scale * 0.04))], crevasse, scale * 0.015)


def _glacier_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.3, 0.5)
    mountains(p, horizon, vary(rng, 30, 0.15, 0.45), rng.uniform(0.1, 0.25), snow=rng.random() < 0.7)
    ground(p, horizon, vary(rng, 30, 0.18, 0.45),
           Texture(contrast=0.05, period=0.03, angle=rng.uniform(0, 180), blotch=0.18, grain=0.1))
    _glacier(p, rng.uniform(0.3, 0.7) * p.right, rng.uniform(0.9, 1.1), rng.uniform(0.45, 0.7))
    if rng.random() < 0.25:
        y = rng.uniform(0.85, 0.95)
        p.ellipse(rng.uniform(0, p.right), y, rng.uniform(0.1, 0.3), 0.03, vary(rng, 195, 0.45, 0.6))


def _iceberg(p: Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    ice = vary(rng, 195, 0.12, 0.95, (6, 0.06, 0.03))
    width = scale * rng.uniform(0.8, 1.5)
    p.polygon([(cx - width * 1.2, base_y), (cx + width * 1.2, base_y), (cx + width * 0.8, base_y + scale * 0.4),
               (cx - width * 0.9, base_y + scale * 0.45)], vary(rng, 195, 0.5, 0.55))
    ridge = ridge_line(p, base_y, scale * rng.uniform(0.6, 1.2), cx - width, cx + width, 0.45)
    p.polygon(ridge, ice)
    peak = min(range(len(ridge)), key=lambda index: ridge[index][1])
    p.polygon(ridge[peak:] + [(ridge[peak][0], base_y)], shade(ice, rng.uniform(0.75, 0.9)))


def _iceberg_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.35, 0.6)
    if rng.random() < 0.3:
        mountains(p, horizon, vary(rng, 210, 0.1, 0.6), rng.uniform(0.04, 0.12), snow=True)
    water = vary(rng, 210, 0.6, 0.45)
    ground(p, horizon, water, Texture(contrast=0.1, period=rng.uniform(0.015, 0.04), angle=90, blotch=0.05))
    for _ in range(rng.integers(1, 3)):
        base_y = rng.uniform(horizon + 0.05, 0.8)
        _iceberg(p, rng.uniform(0.1, 0.9) * p.right, base_y, (base_y - horizon + 0.1) * rng.uniform(0.4, 0.9))
    for _ in range(rng.integers(0, 8)):
        x, y = rng.uniform(0, p.right), rng.uniform(horizon + 0.05, 1)
        p.ellipse(x, y, (y - horizon) * 0.15, (y - horizon) * 0.03, vary(rng, 195, 0.1, 0.92))


def _hayfield(p: Painter, cx: float, base_y: float, scale: float) -> None:
    """Round hay bales (spirals seen from the side) or square bales."""
    rng = p.rng
    straw = vary(rng, 42, 0.55, 0.75)
    for _ in range(rng.integers(1, 4)):
        x = cx + rng.normal(0, scale)
        size = scale * rng.uniform(0.3, 0.45)
        if rng.random() < 0.7:
            p.ellipse(x, base_y - size, size, size, straw)
            for ring in (0.75, 0.5, 0.25):
                p.ring(x, base_y - size, size * ring, shade(straw, 0.7), size * 0.06)
        else:
            p.rectangle(x - size * 1.3, base_y - size, x + size * 1.3, base_y, straw)
            p.rectangle(x + size * 0.9, base_y - size, x + size * 1.3, base_y, shade(straw, 0.8))


def _hayfield_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.25, 0.5)
    if rng.random() < 0.7:
        treeline(p, horizon, rng.uniform(0.03, 0.1))
    vanishing = (rng.uniform(-0.5, 1.5) * p.right, horizon)
    ground(p, horizon, vary(rng, 45, 0.55, 0.78, (8, 0.12, 0.08)),
           Texture(contrast=0.15, period=rng.uniform(0.03, 0.08), blotch=0.08, grain=0.12, vanishing=vanishing))
    for _ in range(rng.integers(0, 6)):
        y = rng.uniform(horizon + 0.05, 1.0)
        _hayfield(p, rng.uniform(0, p.right), y, (y - horizon) * 0.6)


def _igloo(p: Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    snow = vary(rng, 200, 0.06, 0.93, (8, 0.03, 0.04))
    joint = shade(snow, rng.uniform(0.65, 0.8))
    rx, ry = scale, scale * rng.uniform(0.6, 0.85)
    p.dome(cx, base_y, rx, ry, snow)
    p.dome(cx + rx * 0.3, base_y, rx * 0.7, ry * 0.9, shade(snow, 0.9))
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
    p.dome(door_x, base_y, scale * 0.28, scale * 0.32, shade(snow, 0.85))
    p.dome(door_x, base_y, scale * 0.18, scale * 0.22, vary(rng, 215, 0.3, 0.2))


def _igloo_scene(p: Painter) -> None:
    rng = p.rng
    horizon = rng.uniform(0.35, 0.6)
    if rng.random() < 0.2:
        p.gradient(vary(rng, 230, 0.6, 0.15), vary(rng, 220, 0.5, 0.35), 0, horizon + 0.02)
    else:
        sky(p, horizon)
    if rng.random() < 0.4:
        mountains(p, horizon, vary(rng, 205, 0.08, 0.85), rng.uniform(0.05, 0.15), snow=False)
    ground(p, horizon, vary(rng, 205, 0.08, 0.9, (8, 0.03, 0.05)),
           Texture(contrast=0.03, period=0.1, angle=rng.uniform(60, 120), blotch=0.08, grain=0.03))
    base_y = rng.uniform(0.65, 0.92)
    _igloo(p, rng.uniform(0.25, 0.75) * p.right, base_y, (base_y - horizon + 0.1) * rng.uniform(0.7, 1.3))


def _lawn(p: Painter, cx: float, base_y: float, scale: float) -> None:
    """A mown patch of grass: light and dark stripes."""
    grass = vary(p.rng, 100, 0.6, 0.6, (12, 0.1, 0.1))
    p.textured([(cx - scale * 1.5, base_y - scale * 0.3), (cx + scale * 1.5, base_y - scale * 0.3),
                (cx + scale * 2, base_y), (cx - scale * 2, base_y)], grass,
               Texture(contrast=0.15, period=scale * 0.5, angle=p.rng.uniform(0, 30), blotch=0.05, grain=0.15))


def _lawn_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.05, 0.45)
    backdrop = rng.choice(["trees", "house", "hedge", "none"])
    if backdrop == "trees":
        treeline(p, horizon, rng.uniform(0.05, 0.15))
    elif backdrop == "house":
        x = rng.uniform(0, 0.6) * p.right
        building(p, x, x + rng.uniform(0.3, 0.6), horizon - rng.uniform(0.1, 0.25), horizon + 0.01,
                 vary(rng, rng.uniform(0, 60), 0.25, 0.8))
    elif backdrop == "hedge":
        p.rectangle(0, horizon - rng.uniform(0.03, 0.08), p.right, horizon + 0.01, vary(rng, 110, 0.6, 0.3))
    vanishing = (rng.uniform(-0.5, 1.5) * p.right, horizon - 0.02) if rng.random() < 0.6 else None
    ground(p, horizon, vary(rng, 100, 0.6, 0.6, (15, 0.12, 0.1)),
           Texture(contrast=rng.uniform(0.05, 0.18), period=rng.uniform(0.08, 0.3) if vanishing is None else 0.4,
                   angle=rng.uniform(-30, 30), blotch=0.08, grain=0.2, vanishing=vanishing))
    for _ in range(rng.integers(0, 3)):
        y = rng.uniform(horizon + 0.1, 1.0)
        tree(p, rng.uniform(0, p.right), y, (y - horizon) * rng.uniform(0.6, 1.2))


def _palace(p: Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    wall = vary(rng, rng.choice([40, 15, 50, 0]), rng.uniform(0.05, 0.35), 0.88)
    roof = vary(rng, rng.choice([45, 150, 210, 30]), 0.45, 0.6)
    half = scale * rng.uniform(1.2, 1.8)
    body_top = base_y - scale * rng.uniform(0.45, 0.6)
    center_top = base_y - scale * rng.uniform(0.75, 0.95)
    lit, dark = shade(wall, 1.1), vary(rng, 210, 0.2, 0.3)
    p.rectangle(cx - half, body_top, cx + half, base_y, wall)
    windows(p, cx - half, body_top + scale * 0.08, cx + half, base_y, 2 + int(rng.integers(0, 2)),
            2 * int(rng.integers(4, 8)), dark, dark)
    p.rectangle(cx - half, body_top - scale * 0.04, cx + half, body_top, shade(wall, 0.8))
    p.rectangle(cx - scale * 0.35, center_top, cx + scale * 0.35, base_y, shade(wall, 1.05))
    windows(p, cx - scale * 0.35, center_top + scale * 0.08, cx + scale * 0.35, base_y, 3, 4, lit, dark)
    p.dome(cx, center_top, scale * 0.3, scale * rng.uniform(0.25, 0.45), roof)
    p.line([(cx, center_top - scale * 0.3), (cx, center_top - scale * 0.55)], roof, scale * 0.03)
    if rng.random() < 0.8:
        for side in (-1, 1):
            tower_x = cx + side * (half - scale * 0.12)
            tower_top = body_top - scale * 0.2
            p.rectangle(tower_x - scale * 0.12, tower_top, tower_x + scale * 0.12, base_y, wall)
            p.dome(tower_x, tower_top, scale * 0.12, scale * 0.15, roof)


def _palace_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.5, 0.75)
    front = rng.choice(["plaza", "lawn", "water"])
    if front == "plaza":
        ground(p, horizon, vary(rng, 35, 0.2, 0.7), Texture(contrast=0.1, period=0.04, blotch=0.06,
                                                            vanishing=(p.right / 2, horizon)))
    elif front == "lawn":
        ground(p, horizon, vary(rng, 100, 0.55, 0.55), Texture(contrast=0.05, blotch=0.1, grain=0.15))
    else:
        ground(p, horizon, vary(rng, 205, 0.45, 0.55), Texture(contrast=0.08, period=0.02, angle=90))
    cx = rng.uniform(0.35, 0.65) * p.right
    scale = rng.uniform(0.25, 0.42)
    _palace(p, cx, horizon + 0.02, scale)
    if rng.random() < 0.5:
        for side in (-1, 1):
            tree(p, cx + side * scale * rng.uniform(1.9, 2.4), horizon + 0.1, scale * 0.9)


def _runway(p: Painter, cx: float, base_y: float, scale: float) -> None:
    """A runway strip in perspective from base_y up to a vanishing point `scale` higher."""
    rng = p.rng
    asphalt = vary(rng, 220, 0.05, 0.42)
    paint = vary(rng, 50, 0.1, 0.93, (5, 0.05, 0.03))
    far_y, far_x = base_y - scale, cx + rng.normal(0, scale * 0.3)
    half = scale * rng.uniform(0.8, 1.6)
    p.textured([(cx - half, base_y), (cx + half, base_y), (far_x + half * 0.04, far_y), (far_x - half * 0.04, far_y)],
               asphalt, Texture(contrast=0.02, blotch=0.06, grain=0.05))

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


def _runway_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.3, 0.55)
    if rng.random() < 0.5:
        treeline(p, horizon, rng.uniform(0.02, 0.06))
    ground(p, horizon, vary(rng, rng.uniform(60, 110), 0.4, 0.5),
           Texture(contrast=0.04, period=0.05, angle=90, blotch=0.12, grain=0.12))
    _runway(p, rng.uniform(0.3, 0.7) * p.right, 1.02, 1.02 - horizon)
    if rng.random() < 0.3:
        x, y, size = rng.uniform(0.2, 0.8) * p.right, rng.uniform(0.05, horizon * 0.8), rng.uniform(0.05, 0.12)
        plane = vary(rng, 210, 0.05, rng.uniform(0.3, 0.9))
        p.ellipse(x, y, size, size * 0.12, plane)
        p.polygon([(x - size * 0.1, y), (x + size * 0.2, y), (x - size * 0.2, y + size * 0.6)], plane)


def _skyscraper(p: Painter, cx: float, base_y: float, scale: float) -> None:
    rng = p.rng
    for _ in range(rng.integers(1, 4)):
        x = cx + rng.normal(0, scale * 0.4)
        half = scale * rng.uniform(0.12, 0.3)
        top = base_y - scale * rng.uniform(1.5, 3.0)
        glass = vary(rng, rng.choice([205, 190, 30, 220]), rng.uniform(0.05, 0.4), rng.uniform(0.35, 0.8))
        taper = half * rng.uniform(0, 0.3)
        p.polygon([(x - half, base_y), (x + half, base_y), (x + half - taper, top), (x - half + taper, top)], glass)
        rows = max(3, round((base_y - top) / (scale * rng.uniform(0.06, 0.12))))
        columns = int(rng.integers(3, 8))
        windows(p, x - half + taper, top, x + half - taper, base_y, rows, columns, shade(glass, 1.35),
                shade(glass, 0.7))


def _skyscraper_scene(p: Painter) -> None:
    rng = p.rng
    horizon = outdoors(p, 0.75, 1.0)
    for x in np.arange(rng.uniform(-0.1, 0.1), p.right, rng.uniform(0.12, 0.25)):
        haze = vary(rng, 215, 0.12, 0.72)
        p.rectangle(x, horizon - rng.uniform(0.2, 0.5), x + rng.uniform(0.08, 0.2), horizon + 0.01, haze)
    ground(p, horizon, vary(rng, 220, 0.05, 0.35), Texture(contrast=0.02, blotch=0.05))
    for _ in range(rng.integers(1, 3)):
        _skyscraper(p, rng.uniform(0.1, 0.9) * p.right, horizon + 0.01, rng.uniform(0.25, 0.45))


Motif = Callable[[Painter, float, float, float], None]

TUTORIAL_RECIPES: dict[str, tuple[Callable[[Painter], None], Motif]] = {
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
