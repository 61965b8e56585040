"""Which images an input holds and which class each one is, for the four input layouts.

  folders          <input>/<class folder>/<image>, a class in any spelling ("Gas Station", "gas_station")
  places365-lists  <input>/categories_places365.txt with places365_train_standard.txt (paths under data_256/)
                   and/or places365_val.txt (names under val_256/), as in the official download
  places365-small  <input>/data_256/<letter>/<class key>/<image> (or data_large/), the class from the path
  tfds             --input tfds:places365_small[:split]: TensorFlow Datasets' prepared record shards, read by
                   ingestion/tfds_source.py (images and labels inside the records)

Listing fans out: the driver finds the listing tasks (class folders, list files, letter folders or TFDS
shard files: a few hundred at most) and Beam workers list the images of each task as a stream, so no list of
every image is ever held in one place.
"""

from __future__ import annotations

import typing
from pathlib import PurePosixPath

from core.config import FileLayout
from core.storage import NotFound, Storage, join
from data_schema import category_key, folder_name
from ingestion.manifest import IngestError

# The layouts of image files in a folder or under a blob prefix (the ones sample_data can write), named in the
# config's FileLayout so that data.layout is checked when the config is loaded.
FILE_LAYOUTS: tuple[str, ...] = typing.get_args(FileLayout)
FOLDERS, PLACES365_LISTS, PLACES365_SMALL = FILE_LAYOUTS
TFDS = "tfds"
LAYOUTS = (*FILE_LAYOUTS, TFDS)
# What `ingest` takes for "find the layout" (detect_layout).
AUTO = "auto"
# An input that names a TensorFlow Datasets dataset rather than a folder.
TFDS_PREFIX = "tfds:"

CATEGORIES_FILE = "categories_places365.txt"
# Each official list file and the folder its image paths are relative to.
IMAGE_LISTS = {"places365_train_standard.txt": "data_256", "places365_val.txt": "val_256"}
# The small-images download unpacks to data_256/, the high-resolution one to data_large/.
SMALL_IMAGE_ROOTS = ("data_256", "data_large")

EXPECTED_SHAPE = {
    FOLDERS: "<prefix>/<class>/<image>",
    PLACES365_LISTS: f"<prefix>/{CATEGORIES_FILE} with {' or '.join(IMAGE_LISTS)} and the images they list",
    PLACES365_SMALL: "<prefix>/data_256/<letter>/<class>/<image>",
    TFDS: f"--input {TFDS_PREFIX}places365_small[:train|:validation] with data.tfds_data_dir",
}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")


class ListingTask(typing.NamedTuple):
    """One unit of listing work for a worker: a folder to list, or a list file to read."""

    layout: str
    uri: str
    input_uri: str
    # folders layout: the folder's class key, or why the folder is no class.
    category: str | None = None
    rejection: str | None = None
    # places365-lists layout: the folder the list's paths are relative to, and the class of each official
    # index (from the input's categories file; None where that line names no Places365 category). tfds
    # layout: the class of each TFDS label number (the driver checked every label name against Places365's).
    image_folder: str = ""
    categories: tuple[str | None, ...] = ()
    # tfds layout: our split of every record in the shard, and the data dir that holds the dataset's info.
    split: str = ""
    tfds_data_dir: str = ""


class ListedFile(typing.NamedTuple):
    source_uri: str
    # The path below the input, which decides the split: moving the data set keeps every image's split.
    relative_path: str
    # Bytes, where the listing knows it (list files do not).
    size: int | None
    # The Places365 class key, or None with the reason the file cannot be used.
    category: str | None
    rejection: str | None = None
    # Where the input decides the split (tfds), rather than a hash of relative_path.
    split: str | None = None
    # The encoded image, where the listing read it with its label (tfds); None: read source_uri.
    image: bytes | None = None
    # What tells the file's content from another's without reading it (core.storage.ObjectInfo.fingerprint); None
    # where the listing does not see the file itself (list files name paths only): then the path alone identifies
    # it to an incremental ingest.
    fingerprint: str | None = None


def is_tfds_input(input_uri: str) -> bool:
    return input_uri.startswith(TFDS_PREFIX)


def detect_layout(storage: Storage, input_uri: str) -> str:
    """tfds for a tfds: input, places365-lists where list files are present, places365-small for a data_256/
    tree, else folders."""
    if is_tfds_input(input_uri):
        return TFDS
    if any(storage.exists(join(input_uri, name)) for name in (CATEGORIES_FILE, *IMAGE_LISTS)):
        return PLACES365_LISTS
    if _small_image_root(storage, input_uri):
        return PLACES365_SMALL
    return FOLDERS


def listing_tasks(storage: Storage, input_uri: str, layout: str, tfds_data_dir: str = "") -> list[ListingTask]:
    """The listing tasks of `input_uri`; IngestError where the input holds nothing of `layout`."""
    if layout not in LAYOUTS:
        raise IngestError(f"unknown layout '{layout}': use auto or one of {', '.join(LAYOUTS)}")
    if (layout == TFDS) != is_tfds_input(input_uri):
        raise IngestError(f"--input {input_uri} does not go with layout {layout}: the tfds layout reads "
                          f"{EXPECTED_SHAPE[TFDS].removeprefix('--input ')}, and only it reads {TFDS_PREFIX} inputs")
    if layout == TFDS:
        from ingestion import tfds_source

        return tfds_source.listing_tasks(input_uri, tfds_data_dir)
    storage.check_container(input_uri)
    if layout == PLACES365_LISTS:
        tasks = _list_file_tasks(storage, input_uri)
    else:
        root = input_uri if layout == FOLDERS else _small_image_root(storage, input_uri)
        tasks = [_folder_task(layout, folder, input_uri) for folder in _folders(storage, root)] if root else []
    if not tasks:
        raise no_images_error(input_uri, layout)
    return tasks


def no_images_error(input_uri: str, layout: str) -> IngestError:
    return IngestError(f"no images under {input_uri} (layout {layout} expects {EXPECTED_SHAPE[layout]})")


def where_class_goes(layout: str, input_uri: str, category: str) -> str:
    """Where the images of class `category` would be, for a warning that it has none."""
    if layout == FOLDERS:
        return f"a folder {join(input_uri, folder_name(category))}"
    if layout == TFDS:
        return f"examples labelled {category} in {input_uri}"
    if layout == PLACES365_SMALL:
        return f"a folder {join(input_uri, SMALL_IMAGE_ROOTS[0], category[0], category)}"
    return f"lines for class {category} in {' or '.join(IMAGE_LISTS)} under {input_uri}"


def list_images(storage: Storage, task: ListingTask) -> typing.Iterator[ListedFile]:
    """Every file (tfds: record) of one task with its class or the reason it cannot be used, streamed."""
    if task.layout == TFDS:
        # Imported here: TensorFlow Datasets takes seconds to import, and only this layout needs it.
        from ingestion import tfds_source

        yield from tfds_source.read_shard(task)
        return
    if task.layout == PLACES365_LISTS:
        yield from _read_list_file(storage, task)
        return
    for item in storage.list(task.uri):
        relative = _relative(item.uri, task.input_uri)
        if task.layout == FOLDERS:
            category, rejection = task.category, task.rejection
        else:
            category, rejection = _class_of_small_image(relative)
        yield _checked(ListedFile(item.uri, relative, item.size, category, rejection, fingerprint=item.fingerprint))


def _small_image_root(storage: Storage, input_uri: str) -> str | None:
    present = {PurePosixPath(folder).name for folder in _folders(storage, input_uri)}
    return next((join(input_uri, name) for name in SMALL_IMAGE_ROOTS if name in present), None)


def _folders(storage: Storage, root: str) -> list[str]:
    """The sub-folders of `root`; none where it does not exist (a missing blob prefix simply lists none)."""
    try:
        return storage.list_folders(root)
    except NotFound:
        return []


def _folder_task(layout: str, folder: str, input_uri: str) -> ListingTask:
    if layout != FOLDERS:
        return ListingTask(layout, folder, input_uri)
    name = PurePosixPath(folder).name
    try:
        return ListingTask(layout, folder, input_uri, category=category_key(name))
    except ValueError:
        return ListingTask(layout, folder, input_uri, rejection=f"its folder '{name}' is not a Places365 category")


def _list_file_tasks(storage: Storage, input_uri: str) -> list[ListingTask]:
    lists = [name for name in IMAGE_LISTS if storage.exists(join(input_uri, name))]
    if not lists:
        return []
    categories_uri = join(input_uri, CATEGORIES_FILE)
    try:
        categories = _read_categories(storage.read_text(categories_uri), categories_uri)
    except NotFound:
        raise IngestError(f"{join(input_uri, lists[0])} maps images to class numbers, but {categories_uri}, which "
                          "names those numbers, is missing: copy the categories file of the same download "
                          "there") from None
    return [ListingTask(PLACES365_LISTS, join(input_uri, name), input_uri, image_folder=IMAGE_LISTS[name],
                        categories=categories) for name in lists]


def _read_categories(text: str, uri: str) -> tuple[str | None, ...]:
    """Class key of each official index, from lines "/a/airfield 0"; None where a line names no category."""
    by_index: dict[int, str | None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            name, index = line.rsplit(maxsplit=1)
            by_index[int(index)] = _known_category(name)
        except ValueError:
            raise IngestError(f"{uri} line {number} is not '<class path> <index>': {line!r}") from None
    return tuple(by_index.get(index) for index in range(max(by_index, default=-1) + 1))


def _known_category(name: str) -> str | None:
    try:
        return category_key(name)
    except ValueError:
        return None


def _read_list_file(storage: Storage, task: ListingTask) -> typing.Iterator[ListedFile]:
    list_name = PurePosixPath(task.uri).name
    # One read: an official list is tens of MB at most, and workers stream its lines out from there.
    for number, line in enumerate(storage.read_text(task.uri).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{list_name} line {number}"
        path, _, index = line.strip().rpartition(" ")
        relative = f"{task.image_folder}/{path.lstrip('/')}"
        source = join(task.input_uri, relative)
        if not path or not index.isdigit():
            yield ListedFile(task.uri, relative, None, None,
                             f"{where} is not '<image path> <class index>': {line!r}")
        elif int(index) >= len(task.categories) or task.categories[int(index)] is None:
            yield ListedFile(source, relative, None, None,
                             f"{where} gives class index {index}, which {CATEGORIES_FILE} does not name as a "
                             "Places365 category")
        else:
            yield _checked(ListedFile(source, relative, None, task.categories[int(index)]))


def _class_of_small_image(relative: str) -> tuple[str | None, str | None]:
    # data_256/<letter>/<key, possibly two levels as in arena/hockey>/<image>
    parts = relative.split("/")
    if len(parts) < 4:
        return None, f"it is not inside a class folder (expected {EXPECTED_SHAPE[PLACES365_SMALL]})"
    folder = "/".join(parts[2:-1])
    category = _known_category(folder)
    if category is None:
        return None, f"its folder '{'/'.join(parts[:-1])}' is not a Places365 category"
    return category, None


def _checked(listed: ListedFile) -> ListedFile:
    extension = PurePosixPath(listed.relative_path).suffix.lower()
    if listed.rejection is None and extension not in IMAGE_EXTENSIONS:
        return listed._replace(category=None, rejection=f"'{extension or 'no extension'}' is not an image file "
                                                        f"extension ({', '.join(IMAGE_EXTENSIONS)})")
    return listed


def _relative(uri: str, input_uri: str) -> str:
    return str(PurePosixPath(uri).relative_to(PurePosixPath(input_uri)))
