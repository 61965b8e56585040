"""The other 355 categories: not drawn as what they are, but each given one of 16 scene families (indoors or
outdoors, times 8 object shapes) and a fixed look (palette, texture, horizon, object count and size) derived from
its official index alone."""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass

import numpy as np

from data_schema import places365_categories
from sample_data.elements import building, ground, sky, tree
from sample_data.painting import Colour, Painter, Texture, shade, vary

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
class Recipe:
    indoor: bool
    wall_hue: float  # indoors only: outdoors the sky varies with the weather as for every class
    wall_value: float
    ground_hue: float
    ground_saturation: float
    ground_value: float
    object_hue: float
    shape_family: str
    texture: Texture
    horizon: float
    objects: int
    object_scale: float


@functools.lru_cache(maxsize=None)
def derived_recipe(category_index: int) -> Recipe:
    """The fixed look of an official category without a hand-made recipe, from its index alone."""
    key = places365_categories()[category_index]
    # A stream of its own, apart from the images' [seed, index, number]: a category looks the same for every seed.
    rng = np.random.default_rng([0x9E3779B9, category_index])
    words = set(re.split(r"[/_]", key))
    indoor = "outdoor" not in words and bool(words & _INDOOR_WORDS)
    return Recipe(
        indoor=indoor,
        wall_hue=float(rng.uniform(0, 360)),
        wall_value=float(rng.uniform(0.45, 0.9)),
        ground_hue=float(rng.uniform(0, 360)),
        ground_saturation=float(rng.uniform(0.05, 0.7)),
        ground_value=float(rng.uniform(0.3, 0.85)),
        object_hue=float(rng.uniform(0, 360)),
        shape_family=str(rng.choice(_SHAPE_FAMILIES)),
        texture=Texture(contrast=float(rng.uniform(0.02, 0.2)), period=float(rng.uniform(0.01, 0.15)),
                        angle=float(rng.uniform(0, 180)), blotch=float(rng.uniform(0.02, 0.15)),
                        grain=float(rng.uniform(0.02, 0.2))),
        horizon=float(rng.uniform(0.45, 0.7) if indoor else rng.uniform(0.25, 0.75)),
        objects=int(rng.integers(1, 7)),
        object_scale=float(rng.uniform(0.08, 0.35)),
    )


def _shape(p: Painter, family: str, cx: float, base_y: float, scale: float, colour: Colour) -> None:
    """One object of a derived recipe's shape family."""
    rng = p.rng
    if family == "blocks":
        building(p, cx - scale * 0.5, cx + scale * 0.5, base_y - scale * rng.uniform(0.8, 2.0), base_y, colour)
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
        tree(p, cx, base_y, scale * 1.5)
    elif family == "boxes":
        p.rectangle(cx - scale * 0.6, base_y - scale * 0.5, cx + scale * 0.6, base_y, colour)
        p.rectangle(cx - scale * 0.6, base_y - scale * 0.6, cx + scale * 0.6, base_y - scale * 0.5, shade(colour, 1.3))
    else:  # arches: a doorway in a wall
        p.rectangle(cx - scale * 0.6, base_y - scale * 1.2, cx + scale * 0.6, base_y, colour)
        p.dome(cx, base_y - scale * 0.5, scale * 0.35, scale * 0.4, shade(colour, 0.35))
        p.rectangle(cx - scale * 0.35, base_y - scale * 0.5, cx + scale * 0.35, base_y, shade(colour, 0.35))


def derived_scene(p: Painter, recipe: Recipe) -> None:
    rng = p.rng
    horizon = float(np.clip(recipe.horizon + rng.normal(0, 0.06), 0.15, 0.85))
    ground_colour = vary(rng, recipe.ground_hue, recipe.ground_saturation, recipe.ground_value)
    if recipe.indoor:
        wall = vary(rng, recipe.wall_hue, 0.25, recipe.wall_value)
        p.gradient(shade(wall, 0.85), wall, 0, horizon + 0.02)
        inset = rng.uniform(0.1, 0.3) * p.right
        p.polygon([(0, 0), (inset, horizon * 0.15), (inset, horizon), (0, 1)], shade(wall, 0.8))
        p.polygon([(p.right, 0), (p.right - inset, horizon * 0.15), (p.right - inset, horizon), (p.right, 1)],
                  shade(wall, 0.7))
        p.textured([(inset, horizon), (p.right - inset, horizon), (p.right, 1), (0, 1)], ground_colour,
                   dataclasses.replace(recipe.texture, vanishing=(p.right / 2, horizon - 0.3)))
    else:
        sky(p, horizon)
        ground(p, horizon, ground_colour, recipe.texture)
    for _ in range(max(1, recipe.objects + int(rng.integers(-1, 2)))):
        y = rng.uniform(horizon, min(1.0, horizon + 0.35))
        scale = recipe.object_scale * rng.uniform(0.6, 1.4) * (0.6 + y - horizon)
        _shape(p, recipe.shape_family, rng.uniform(0, p.right), y, scale,
               vary(rng, recipe.object_hue, 0.5, 0.6, (15, 0.2, 0.2)))
