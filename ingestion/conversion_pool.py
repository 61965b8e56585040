"""Reading and converting images in worker processes beside a Beam worker, so that every core does that work.

The blob client's GET and parts of the conversion are Python code that holds the GIL, so the threads of one
Beam worker take turns at them; child processes each have their own. Images go to a child IMAGES_PER_CALL at a
time (one call's overhead, its pickling and its round trip, shared by all of them); the child GETs them a few at
once in threads, so that waiting for blob storage overlaps converting the images it already has, checks each
one's size, converts it, and hands back the small training JPEGs or the reasons they were rejected: only URIs
and results cross between processes.

One pool per process, started on first use and shared by the worker's DoFn instances. Its children are spawned
fresh interpreters, never forks of a process that runs gRPC threads and TensorFlow, and they import only the
storage client and the image code.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
import time
import typing
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from core.config import Config
from core.storage import Storage
from ingestion import images

# Images per call to a child: enough that the call's own cost is small beside theirs, few enough that a batch
# of a few hundred images still spreads over every child.
IMAGES_PER_CALL = 32
# Calls in flight per child: the next one waits in its queue while it works on one, so it never idles.
_CALLS_IN_FLIGHT_PER_PROCESS = 2
# GETs in flight in one child: its reads wait for blob storage while it converts the images it has.
_READS_AT_ONCE = 2

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_processes = 0

# In each child: the storage client and the limits, set once by _start_child.
_child_storage: Storage | None = None
_child_config: Config | None = None
_child_readers: ThreadPoolExecutor | None = None


def processes(config: Config) -> int:
    return config.ingest.conversion_processes or os.cpu_count() or 1


def _start_child(config: Config) -> None:
    global _child_storage, _child_config, _child_readers
    _child_storage = Storage.from_config(config)
    _child_config = config
    _child_readers = ThreadPoolExecutor(_READS_AT_ONCE, thread_name_prefix="places-read")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    # A pool's children wait for work until their parent says stop; a parent that exits without saying so
    # (os._exit, a kill) would leave them waiting forever, holding its stdout open.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


Work = tuple[str, "int | None", "bytes | None"]
Result = typing.Union[images.TrainingImage, images.RejectedImage]


def _read(uri: str, size: int | None, data: bytes | None) -> bytes | images.RejectedImage:
    """In a child's reader thread: the image's bytes, or the rejection as a value. `data`: the bytes where the
    caller has them already (read from a TFDS record); convert() checks their size."""
    try:
        return data if data is not None else images.read_checked(_child_storage, uri, size, _child_config.ingest)
    except images.RejectedImage as rejection:
        return rejection


def _read_and_convert_all(work: list[Work]) -> list[Result]:
    """In a child: each image's training image, or its rejection as a value (any other error fails the job), in
    the order given."""
    results = []
    for data in _child_readers.map(lambda item: _read(*item), work):
        if isinstance(data, images.RejectedImage):
            results.append(data)
            continue
        try:
            results.append(images.convert(data, _child_config.ingest))
        except images.RejectedImage as rejection:
            results.append(rejection)
    return results


def _shared_pool(config: Config) -> ProcessPoolExecutor:
    global _pool, _pool_processes
    with _lock:
        if _pool is None:
            _pool_processes = processes(config)
            _pool = ProcessPoolExecutor(_pool_processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_child, initargs=(config,))
        return _pool


def start(config: Config) -> None:
    """Start the pool's processes now (they take seconds to import their modules), e.g. while images are listed."""
    pool = _shared_pool(config)
    for _ in range(_pool_processes):
        pool.submit(int)


class OrderedConversions:
    """Images submitted to the pool and their results taken back in the order they were submitted, so that a
    worker writes its shards in the same order as it would converting them one by one."""

    def __init__(self, config: Config):
        self._pool = _shared_pool(config)
        self._limit = _pool_processes * _CALLS_IN_FLIGHT_PER_PROCESS
        self._pending: collections.deque[tuple[list, Future]] = collections.deque()

    def submit(self, work: list[tuple[typing.Any, str, int | None, bytes | None]]
               ) -> typing.Iterator[tuple[typing.Any, Result]]:
        """Queue each (item, uri, size, data)'s image (read from `uri`, or `data` where given); yields (item,
        result) for earlier items that are done or must be waited for."""
        for start in range(0, len(work), IMAGES_PER_CALL):
            call = work[start:start + IMAGES_PER_CALL]
            self._pending.append(([item for item, *_ in call],
                                  self._pool.submit(_read_and_convert_all, [tuple(rest) for _, *rest in call])))
            while self._pending and (self._pending[0][1].done() or len(self._pending) > self._limit):
                yield from self._take()

    def drain(self) -> typing.Iterator[tuple[typing.Any, Result]]:
        """(item, result) for every image still in flight."""
        while self._pending:
            yield from self._take()

    def _take(self) -> list[tuple[typing.Any, Result]]:
        global _pool
        items, future = self._pending.popleft()
        try:
            return list(zip(items, future.result()))
        except BrokenProcessPool:
            with _lock:
                _pool = None  # the next job starts a fresh pool
            raise RuntimeError("an image conversion process died (out of memory, or killed); see the system log "
                               "and rerun, or lower ingest.conversion_processes") from None
