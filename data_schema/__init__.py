"""The one place for the facts every stage shares: class names, image size, feature keys.

Ingestion writes tf.Examples with these keys, the pipeline validates them against schema.pbtxt
beside this file, the Trainer builds its input and its exported graph from them, and serving
answers with these class names.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

# Bump when the tf.Example layout changes: manifests record it and readers refuse a mismatch.
SCHEMA_VERSION = 2

# The tutorial's input size: every image is resized to IMAGE_SIZE x IMAGE_SIZE RGB and scaled to [0, 1].
IMAGE_SIZE = 128
CHANNELS = 3

# tf.Example feature keys.
IMAGE_KEY = "image_jpeg"  # JPEG bytes, re-encoded at IMAGE_SIZE x IMAGE_SIZE by ingestion
LABEL_KEY = "category"  # int64 index into the dataset's class list
LABEL_NAME_KEY = "category_name"  # the class key, e.g. "gas_station"
SOURCE_KEY = "source_uri"  # where the original image was read
HEIGHT_KEY = "height"  # original image height in pixels, before resizing
WIDTH_KEY = "width"  # original image width in pixels, before resizing
BRIGHTNESS_KEY = "brightness"  # mean of the IMAGE_SIZE x IMAGE_SIZE RGB pixels, scaled to [0, 1] as the model sees them
# What drift and skew compare: each image's own measurements, besides the class.
IMAGE_MEASUREMENTS = (HEIGHT_KEY, WIDTH_KEY, BRIGHTNESS_KEY)

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"

_HERE = Path(__file__).resolve().parent
CATEGORIES_FILE = _HERE / "categories_places365.txt"
SCHEMA_FILE = _HERE / "schema.pbtxt"

# The Places365 tutorial's 10 classes, in its order.
TUTORIAL_CLASSES = (
    "fountain",
    "gas_station",
    "glacier",
    "hayfield",
    "iceberg",
    "igloo",
    "lawn",
    "palace",
    "runway",
    "skyscraper",
)


@functools.lru_cache(maxsize=None)
def places365_categories() -> tuple[str, ...]:
    """The 365 official category keys in official index order ("airfield", ..., "apartment_building/outdoor")."""
    keys = []
    for number, line in enumerate(CATEGORIES_FILE.read_text().splitlines()):
        path, index = line.rsplit(" ", 1)
        assert int(index) == number, f"{CATEGORIES_FILE} line {number + 1} is out of order"
        keys.append(path[3:])  # drop the "/a/" letter prefix
    return tuple(keys)


def display_name(key: str) -> str:
    """The tutorial's spelling: "gas_station" -> "Gas Station", "arena/hockey" -> "Arena / Hockey"."""
    return " / ".join(part.replace("_", " ").title() for part in key.split("/"))


def folder_name(key: str) -> str:
    """A class's folder in the folders layout: the display name, "Arena - Hockey" where it holds a "/"."""
    return display_name(key).replace(" / ", " - ")


def _normalized(name: str) -> str:
    # One spelling for every way users and the official files write a class:
    # "Gas Station", "gas_station", "/g/gas_station", "apartment_building-outdoor" (the easy-format folders).
    # "Arena - Hockey" (folder names cannot hold "/"), "Arena / Hockey" (display names) -> "arena/hockey".
    name = name.strip().lower()
    name = re.sub(r"^/[a-z]/", "", name)
    name = re.sub(r"\s*[/-]\s*", "/", name)
    return re.sub(r"[\s_]+", "_", name)


@functools.lru_cache(maxsize=None)
def _by_normalized_name() -> dict[str, str]:
    return {_normalized(key): key for key in places365_categories()}


def category_key(name: str) -> str:
    """The official key for any accepted spelling of a Places365 category; ValueError names close matches."""
    key = _by_normalized_name().get(_normalized(name))
    if key is None:
        import difflib

        close = difflib.get_close_matches(_normalized(name), list(_by_normalized_name()), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"'{name}' is not a Places365 category.{hint} The 365 names are in {CATEGORIES_FILE}.")
    return key


def resolve_classes(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Class keys for a user's class list: "tutorial", "all" (the 365), or names separated by commas.

    The order defines the integer `category` labels, so it is the user's order, duplicates refused.
    """
    if isinstance(spec, str):
        if spec.strip().lower() in ("tutorial", "tutorial10", "default"):
            return TUTORIAL_CLASSES
        if spec.strip().lower() in ("all", "places365", "all365"):
            return places365_categories()
        names = [part for part in spec.split(",") if part.strip()]
    else:
        names = list(spec)
    keys = tuple(category_key(name) for name in names)
    if not keys:
        raise ValueError("the class list is empty: give 'tutorial', 'all' or names separated by commas")
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"the class list names {', '.join(duplicates)} more than once")
    return keys


def curated_schema(classes: tuple[str, ...]):
    """The schema in schema.pbtxt with the class domain of `classes` filled in (a tensorflow_metadata Schema)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())
    features = {feature.name: feature for feature in schema.feature}
    features[LABEL_KEY].int_domain.max = len(classes) - 1
    features[LABEL_NAME_KEY].string_domain.value.extend(classes)
    return schema
