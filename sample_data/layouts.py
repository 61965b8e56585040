"""Writing sample images in the three input layouts that ingestion reads (ingestion/layouts.py).

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
"""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.console import progress
from data_schema import CATEGORIES_FILE, folder_name, places365_categories

# The layout names only: the file names below are spelled out from Places365's own, so the tests check the
# reader in ingestion/layouts.py against an independent writer.
from ingestion.layouts import FILE_LAYOUTS, FOLDERS, PLACES365_LISTS
from sample_data.rendering import image_spec, render

# A val image every VAL_EVERY images of a class, starting with image number VAL_OFFSET + 1, so any
# per_class >= 2 gives each class at least one val image and one train image.
VAL_EVERY = 10
VAL_OFFSET = 1

IMAGES_PER_TASK = 32


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
    if layout not in FILE_LAYOUTS:
        raise ValueError(f"unknown layout '{layout}': use one of {', '.join(FILE_LAYOUTS)}")
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
