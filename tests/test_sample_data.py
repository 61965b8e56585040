"""The offline Places365 stand-in: deterministic bytes, the three layouts, a realistic mix of files, and data
that is learnable but not trivially so."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_schema import CATEGORIES_FILE, TUTORIAL_CLASSES, category_key, folder_name, places365_categories
from sample_data import generate, image_spec


def digests(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def generated(folder: Path, *arguments) -> dict[str, str]:
    """The digests of what generate(folder, *arguments) wrote."""
    generate(folder, *arguments)
    return digests(folder)


def official_index(key: str) -> int:
    return places365_categories().index(key)


# Files written by generate(out, PINNED_CLASSES, 3, layout, 365), the default data.sample_seed: a tutorial
# recipe, an indoor and an outdoor scene family. A change that is meant to alter the images (a recipe, a
# nuisance strength) updates these and reruns bench/sample_data_difficulty.py; any other change must keep them.
PINNED_CLASSES = ("igloo", "bedroom", "arena/hockey")
PINNED_DIGESTS = {
    "folders": {
        "Arena - Hockey/arena-hockey_00003.jpg": "6434f123378a675b12c306d2f9a9707c5cb7e1e6bbf4c524d973513ca60f7c8a",
        "Bedroom/bedroom_00002.png": "d6d7abbff6a1dee49a9d94245dcc1d5901985020a1200e39e45cc4a452f7f2e0",
        "Igloo/igloo_00001.jpg": "940238c81d18efd711eb3e63950a8e2c816f0a12ce5612854f9d14f861a43f2c",
    },
    "places365-lists": {
        "categories_places365.txt": "30765acf8e994f938fc1b027b07b9dc582e2327025da65005493cbe0cf3a8727",
        "places365_train_standard.txt": "a1563801a6e7eb5d7ef3f5477ca09611e73f25cbbaec9c2190ee64e89da58676",
        "places365_val.txt": "7a9a5c295815fe4d7bf2ef3e4651562858b3c09e3a5d56c3822ce5dd18788566",
        "data_256/a/arena/hockey/00000002.jpg": "6434f123378a675b12c306d2f9a9707c5cb7e1e6bbf4c524d973513ca60f7c8a",
        "data_256/b/bedroom/00000001.jpg": "266bb6d740f68012174f403cd485dafc4037f1d7be05bb34a13b44f33bc4b37b",
        "val_256/Places365_val_00000001.jpg": "24d8c257e7ea3fb2b26d39b31c65e1297d516962ed85441674c670639cdcf92a",
    },
    "places365-small": {
        "data_256/a/arena/hockey/00000001.jpg": "01985e50fb8908d6d089e4c3aa27f6a2b2daf8841457b2ef9211de5fc0702848",
        "data_256/b/bedroom/00000003.jpg": "28cc1c90798dc63ef2d01b9865274754d1ef34dfd42c89d0ac65e5cb431eb8af",
        "data_256/i/igloo/00000002.jpg": "24d8c257e7ea3fb2b26d39b31c65e1297d516962ed85441674c670639cdcf92a",
    },
}


@pytest.mark.parametrize("layout", sorted(PINNED_DIGESTS))
def test_default_seed_still_writes_the_pinned_bytes(tmp_path, layout):
    written = generated(tmp_path, PINNED_CLASSES, 3, layout, 365)
    assert {name: written.get(name) for name in PINNED_DIGESTS[layout]} == PINNED_DIGESTS[layout]


def test_same_seed_gives_identical_files_and_another_seed_other_files(tmp_path):
    classes = ("gas_station", "arena/hockey")
    first = generated(tmp_path / "first", classes, 6, "folders", 11)
    again = generated(tmp_path / "again", classes, 6, "folders", 11)
    other_seed = generated(tmp_path / "other", classes, 6, "folders", 12)
    assert first == again
    assert len(first) == 12
    assert set(first.values()).isdisjoint(other_seed.values())


def test_an_image_does_not_depend_on_the_other_classes_requested(tmp_path):
    together = generated(tmp_path / "together", ("igloo", "gas_station"), 4, "folders", 5)
    alone = generated(tmp_path / "alone", ("gas_station",), 4, "folders", 5)
    assert alone == {name: digest for name, digest in together.items() if name.startswith("Gas Station/")}


def test_rerun_rewrites_identical_files_and_removes_its_own_stale_images(tmp_path):
    generate(tmp_path, ("lawn",), 12, "folders", 1)
    keep = tmp_path / "Lawn" / "my notes.txt"
    keep.write_text("not an image of the generator")
    before = digests(tmp_path)
    generate(tmp_path, ("lawn",), 12, "folders", 1)
    assert digests(tmp_path) == before
    generate(tmp_path, ("lawn",), 3, "folders", 1)
    assert sorted(path.name for path in (tmp_path / "Lawn").iterdir()) == sorted(
        [f"lawn_{number:05d}{image_spec(1, official_index('lawn'), number).extension}" for number in (1, 2, 3)]
        + ["my notes.txt"])


def test_an_interrupted_write_leaves_no_image_and_no_partial_file(tmp_path, monkeypatch):
    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)  # the moment a file would get its image name
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, ("igloo",), 3, "folders", 1)
    assert list((tmp_path / "Igloo").iterdir()) == []


def test_folders_layout(tmp_path):
    written = generate(tmp_path, ("gas_station", "arena/hockey", "apartment_building/outdoor"), 3, "folders", 2)
    assert written == 9
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Apartment Building - Outdoor", "Arena - Hockey",
                                                               "Gas Station"]
    names = sorted(path.name for path in (tmp_path / folder_name("arena/hockey")).iterdir())
    assert [re.fullmatch(r"arena-hockey_0000([123])\.(jpg|png)", name).group(1) for name in names] == ["1", "2", "3"]


@pytest.mark.slow
def test_places365_lists_layout_points_at_existing_files_with_official_indices(tmp_path):
    classes = ("gas_station", "arena/hockey", "glacier")
    written = generate(tmp_path, classes, 21, "places365-lists", 3)
    assert written == 63
    assert (tmp_path / "categories_places365.txt").read_bytes() == CATEGORIES_FILE.read_bytes()

    train_lines = (tmp_path / "places365_train_standard.txt").read_text().splitlines()
    assert len(train_lines) == 3 * 19  # of images 1..21, numbers 2 and 12 go to the val list
    for line in train_lines:
        path, index = line.split(" ")
        match = re.fullmatch(r"/([a-z])/(.+)/(\d{8})\.(jpg|png)", path)
        assert match, line
        assert path[1] == match.group(2)[0]
        assert official_index(match.group(2)) == int(index)
        assert (tmp_path / "data_256" / path[1:]).is_file()
    assert "/a/arena/hockey/00000001" in "".join(train_lines)
    assert any(line.startswith("/g/gas_station/00000001.") and line.endswith(" 158") for line in train_lines)

    val_lines = (tmp_path / "places365_val.txt").read_text().splitlines()
    assert len(val_lines) == 3 * 2
    assert [line.split(" ")[0][:22] for line in val_lines] == [f"Places365_val_{n:08d}" for n in range(1, 7)]
    assert sorted(int(line.split(" ")[1]) for line in val_lines) == sorted(2 * [official_index(key) for key in classes])
    for line in val_lines:
        assert (tmp_path / "val_256" / line.split(" ")[0]).is_file()
    assert len(list((tmp_path / "val_256").iterdir())) == 6


def test_places365_small_layout_is_image_folders_only(tmp_path):
    written = generate(tmp_path, ("gas_station", "arena/hockey"), 4, "places365-small", 4)
    files = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file())
    assert written == len(files) == 8
    for name in files:
        match = re.fullmatch(r"data_256/([a-z])/(.+)/0000000([1-4])\.(jpg|png)", name)
        assert match and match.group(2)[0] == match.group(1) and match.group(2) in ("gas_station", "arena/hockey"), name


@pytest.mark.slow
def test_files_mix_jpeg_png_grayscale_and_sizes_with_matching_extensions(tmp_path):
    generate(tmp_path, TUTORIAL_CLASSES, 8, "folders", 365)
    formats, modes, sizes = [], [], []
    for path in tmp_path.rglob("*.*"):
        with Image.open(path) as image:
            assert {".jpg": "JPEG", ".png": "PNG"}[path.suffix] == image.format, path
            formats.append(image.format)
            modes.append(image.mode)
            sizes.append(image.size)
    assert len(formats) == 80
    assert formats.count("PNG") >= 2 and formats.count("JPEG") >= 60
    assert "L" in modes and modes.count("RGB") >= 70
    assert all(96 <= side <= 512 for size in sizes for side in size)
    assert any(width != height for width, height in sizes) and len(set(sizes)) > 40


def test_format_and_mode_shares_are_about_ten_and_five_percent():
    specs = [image_spec(365, official_index(key), number) for key in TUTORIAL_CLASSES for number in range(1, 201)]
    assert 0.07 <= sum(spec.format == "PNG" for spec in specs) / len(specs) <= 0.13
    assert 0.03 <= sum(spec.grayscale for spec in specs) / len(specs) <= 0.07


@pytest.mark.parametrize("name", ["arena/hockey", "apartment_building/outdoor", "Bedroom", "ski_slope"])
def test_any_official_category_works(tmp_path, name):
    key = category_key(name)
    assert generate(tmp_path, (key,), 2, "places365-small", 9) == 2
    for path in (tmp_path / "data_256" / key[0] / key).iterdir():
        with Image.open(path) as image:
            image.load()


@pytest.mark.slow
def test_every_official_category_renders(tmp_path):
    assert generate(tmp_path, places365_categories(), 1, "places365-small", 1) == 365


@pytest.mark.slow
def test_tutorial_classes_are_learnable_but_not_trivially(tmp_path):
    """A linear model on 32x32 thumbnails must beat chance (0.1) by far but fail on many images.

    The bounds sit well outside what several seeds give (README, "Measured here"). Below 0.3 the recipes have lost
    their class structure; above 0.85 colour and layout alone give the class away, and the seed CNN, which
    bench/sample_data_difficulty.py holds between 40 % and 90 %, would leave that range."""
    from sklearn.linear_model import LogisticRegression

    generate(tmp_path, TUTORIAL_CLASSES, 40, "folders", 2024)
    thumbnails, labels = [], []
    for label, key in enumerate(TUTORIAL_CLASSES):
        for path in sorted((tmp_path / folder_name(key)).iterdir()):
            with Image.open(path) as image:
                thumbnails.append(np.asarray(image.convert("RGB").resize((32, 32)), np.float32).ravel() / 255)
            labels.append(label)
    thumbnails, labels = np.array(thumbnails), np.array(labels)
    held_out = np.arange(len(labels)) % 4 == 0
    model = LogisticRegression(max_iter=2000).fit(thumbnails[~held_out], labels[~held_out])
    accuracy = model.score(thumbnails[held_out], labels[held_out])
    assert 0.3 <= accuracy <= 0.85, accuracy
