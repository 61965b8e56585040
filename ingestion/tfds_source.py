"""The tfds layout: TensorFlow Datasets' places365_small, read from the record shards TFDS prepared.

  --input tfds:places365_small              TFDS's train and validation splits
  --input tfds:places365_small:train        one of them (train or validation)
  data.tfds_data_dir (--tfds-data-dir)      the data dir it was prepared in; empty: TFDS's default

The driver opens the builder in the data dir, which reads only the dataset's info (splits, shard files, label
names), checks every label name against Places365's categories and makes one listing task per shard file.
Each worker reads its shards with TFDS's own file adapter and example parser, and hands each record's encoded
image on as a listed file: from there it is checked, converted and written like an image of any other layout.
TFDS's train split becomes our train split and its validation split our eval split; its test split has no
labels. TFDS reads local paths (and gs://), not azfs://, so the data dir is a local or mounted folder, at the
same path on every worker.

Nothing here downloads: where the dataset is not prepared, the error shows the one command that prepares it,
which a user runs once, outside any Beam worker (the download is tens of GB).
"""

from __future__ import annotations

import functools
import os
import typing

import data_schema
from core import storage as storage_module
from ingestion.layouts import EXPECTED_SHAPE, TFDS, TFDS_PREFIX, ListedFile, ListingTask
from ingestion.manifest import IngestError

DATASET = "places365_small"
# TFDS's split -> ours. Its test split is unlabelled, so it has no place in training or evaluation.
SPLITS = {"train": data_schema.TRAIN_SPLIT, "validation": data_schema.EVAL_SPLIT}


def parse_input(input_uri: str) -> tuple[str, tuple[str, ...]]:
    """(dataset, TFDS splits) of "tfds:places365_small[:split]"; IngestError for anything else."""
    dataset, _, split = input_uri.removeprefix(TFDS_PREFIX).partition(":")
    if dataset != DATASET:
        raise IngestError(f"--input {input_uri}: the tfds layout reads TFDS's {DATASET} only "
                          f"({EXPECTED_SHAPE[TFDS]})")
    if split and split not in SPLITS:
        unlabelled = " (TFDS's test split has no labels)" if split == "test" else ""
        raise IngestError(f"--input {input_uri}: '{split}' is not a split to ingest{unlabelled}; use "
                          f"{' or '.join(f'{TFDS_PREFIX}{DATASET}:{name}' for name in SPLITS)}, or "
                          f"{TFDS_PREFIX}{DATASET} for both")
    return dataset, (split,) if split else tuple(SPLITS)


def data_dir_root(tfds_data_dir: str) -> str:
    """The data dir TFDS will use: the configured one, or TFDS's default ($TFDS_DATA_DIR, ~/tensorflow_datasets)."""
    if storage_module.is_blob_uri(tfds_data_dir):
        raise IngestError(f"data.tfds_data_dir is {tfds_data_dir}, but TensorFlow Datasets reads local or mounted "
                          "folders only: prepare the dataset in a local folder (or mount the container, e.g. with "
                          "blobfuse2) and set --tfds-data-dir to that path")
    if tfds_data_dir:
        return os.path.abspath(os.path.expanduser(tfds_data_dir))
    from tensorflow_datasets.core import constants

    return constants.get_default_data_dir()


def prepare_command(data_dir: str) -> str:
    """The one command that downloads and prepares the dataset in `data_dir` (TFDS's own CLI)."""
    return f"tfds build {DATASET} --data_dir={data_dir}"


def listing_tasks(input_uri: str, tfds_data_dir: str) -> list[ListingTask]:
    """One task per record shard of the requested splits; IngestError where the dataset is not prepared."""
    _, splits = parse_input(input_uri)
    data_dir = data_dir_root(tfds_data_dir)
    builder = _open_builder(data_dir)
    if not builder.is_prepared():
        raise IngestError(f"TFDS's {DATASET} is not prepared in {data_dir}: download and prepare it once with "
                          f"`{prepare_command(data_dir)}` (see README, 'The real Places365 from TensorFlow "
                          "Datasets'), then ingest again")
    categories = places365_keys(builder.info.features["label"].names, builder.data_dir)
    tasks = []
    for split in splits:
        info = builder.info.splits[split]
        tasks += [ListingTask(TFDS, os.fspath(path), input_uri, categories=categories, split=SPLITS[split],
                              tfds_data_dir=data_dir) for path in info.filepaths]
    return tasks


def read_shard(task: ListingTask) -> typing.Iterator[ListedFile]:
    """Every record of one shard as a listed file that carries its encoded image, streamed."""
    adapter, parser = _reader(task.tfds_data_dir)
    for record in adapter.make_tf_data(task.uri).as_numpy_iterator():
        example = parser.parse_example(record)
        filename = _text(example["filename"])
        image = bytes(example["image"])
        source = f"{TFDS_PREFIX}{DATASET}/{filename}"
        yield ListedFile(source, filename, len(image), task.categories[int(example["label"])], split=task.split,
                         image=image)


def places365_keys(label_names: list[str], where: str) -> tuple[str, ...]:
    """The Places365 key of each TFDS label number ("arena/hockey" -> "arena/hockey"); IngestError naming a label
    that is no Places365 category, found in the dataset at `where`."""
    try:
        return tuple(data_schema.category_key(name) for name in label_names)
    except ValueError as error:
        raise IngestError(f"TFDS's {DATASET} in {where} has a label that is no Places365 category: {error} "
                          "Prepare it again with the tensorflow-datasets version in requirements.txt") from None


def _open_builder(data_dir: str):
    # Reads dataset_info.json from data_dir where the dataset is prepared; downloads nothing. Opened afresh on
    # the driver each time, since a dataset prepared since the last look has splits the last builder lacks.
    import tensorflow_datasets as tfds

    return tfds.builder(DATASET, data_dir=data_dir)


@functools.lru_cache(maxsize=None)
def _reader(data_dir: str):
    """The file adapter of the format the dataset was prepared in, and a parser for its records (NumPy only):
    once per worker process."""
    from tensorflow_datasets.core import example_parser, file_adapters

    info = _open_builder(data_dir).info
    return (file_adapters.ADAPTER_FOR_FORMAT[info.file_format],
            example_parser.ExampleParserNp(info.features.get_serialized_info()))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
