"""An offline stand-in for TFDS's download: a places365_small data dir as `tfds build places365_small` leaves it,
with sample images in place of the real photos (this machine cannot download the 30 GB).

Written with TFDS's own tools, so that TFDS itself takes it for prepared: the builder's features encode and
serialize each example, its file adapter writes the shards under its shard naming
(places365_small-train.tfrecord-00000-of-00002), and its DatasetInfo writer records the splits' shard lengths
in dataset_info.json. `tfds.builder("places365_small", data_dir=...).as_dataset(split=...)` reads it back.

Images are sample scenes (sample_data/rendering.py) resized to 256 x 256 JPEGs, as Places365's small images
are; file names follow the real archives: data_256/<letter>/<key>/<00000001>.jpg for train,
val_256/Places365_val_<00000001>.jpg for validation.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from data_schema import places365_categories
from sample_data.rendering import render

# TFDS's split names, as its places365_small builder writes them.
TFDS_SPLITS = ("train", "validation")
PLACES365_SMALL_SIZE = 256


def write_prepared_places365_small(data_dir: Path, classes: tuple[str, ...], per_split: dict[str, int],
                                   seed: int = 365, shards_per_split: int = 2) -> dict[tuple[str, str], int]:
    """Write the data dir; returns the examples written per (class key, TFDS split). Images of each split are
    dealt over `shards_per_split` shards in turn, so every shard holds several classes."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import example_serializer, file_adapters

    builder = tfds.builder("places365_small", data_dir=str(data_dir))
    features = builder.info.features
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    adapter = file_adapters.ADAPTER_FOR_FORMAT[builder.info.file_format]
    template = tfds.core.ShardedFileTemplate(data_dir=builder.data_dir, dataset_name=builder.name, split="train",
                                             filetype_suffix=builder.info.file_format.file_suffix)
    os.makedirs(builder.data_dir, exist_ok=True)
    official_index = {key: index for index, key in enumerate(places365_categories())}
    written: dict[tuple[str, str], int] = {}
    split_infos = []
    val_number = 0
    for split in TFDS_SPLITS:
        examples = []
        for key in classes:
            for number in range(1, per_split.get(split, 0) + 1):
                # Validation images are numbered after the train images of their class: different pictures.
                picture = number + (per_split.get("train", 0) if split == "validation" else 0)
                if split == "train":
                    filename = f"data_256/{key[0]}/{key}/{number:08d}.jpg"
                else:
                    val_number += 1
                    filename = f"val_256/Places365_val_{val_number:08d}.jpg"
                image = _small_jpeg(render(seed, official_index[key], picture))
                examples.append(serializer.serialize_example(features.encode_example(
                    {"image": io.BytesIO(image), "label": key, "filename": filename})))
                written[key, split] = written.get((key, split), 0) + 1
        if not examples:
            continue
        shards = [examples[index::shards_per_split] for index in range(shards_per_split)]
        shards = [shard for shard in shards if shard]
        split_template = template.replace(split=split)
        paths = split_template.sharded_filepaths(len(shards))
        for path, shard in zip(paths, shards):
            adapter.write_examples(path, [(None, example) for example in shard])
        split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[len(shard) for shard in shards],
                                               num_bytes=sum(os.path.getsize(path) for path in paths),
                                               filename_template=split_template))
    builder.info.set_splits(tfds.core.SplitDict(split_infos))
    builder.info.write_to_directory(builder.data_dir)
    return written


def _small_jpeg(encoded: bytes) -> bytes:
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    image = image.resize((PLACES365_SMALL_SIZE, PLACES365_SMALL_SIZE), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
