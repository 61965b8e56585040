"""Reading and converting images in worker processes beside a Beam worker, so that every core does that work.

The blob client's GET and parts of the conversion are Python code that holds the GIL, so the threads of one
Beam worker take turns at them; child processes each have their own. A child reads one image (its size checked
first), converts it, and hands back the small training JPEG or the reason it was rejected: only URIs and
results cross between processes.

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
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from core.config import Config
from core.storage import Storage
from ingestion import images

# Images in flight per child process: enough that a child never waits for the next URI, few enough that a
# bundle's results stay in order without holding many images.
_IN_FLIGHT_PER_PROCESS = 4

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_processes = 0

# In each child: the storage client and the limits, set once by _start_child.
_child_storage: Storage | None = None
_child_config: Config | None = None


def processes(config: Config) -> int:
    return config.ingest.conversion_processes or os.cpu_count() or 1


def _start_child(config: Config) -> None:
    global _child_storage, _child_config
    _child_storage = Storage.from_config(config)
    _child_config = config
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    # A pool's children wait for work until their parent says stop; a parent that exits without saying so
    # (os._exit, a kill) would leave them waiting forever, holding its stdout open.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _read_and_convert(uri: str, size: int | None,
                      data: bytes | None = None) -> images.TrainingImage | images.RejectedImage:
    """In a child: the training image, or the rejection as a value (any other error fails the job). `data`: the
    image's bytes where the caller has them already (read from a TFDS record); convert() checks their size."""
    try:
        if data is None:
            data = images.read_checked(_child_storage, uri, size, _child_config.ingest)
        return images.convert(data, _child_config.ingest)
    except images.RejectedImage as rejection:
        return rejection


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
        self._limit = _pool_processes * _IN_FLIGHT_PER_PROCESS
        self._pending: collections.deque[tuple[typing.Any, Future]] = collections.deque()

    def submit(self, item: typing.Any, uri: str, size: int | None,
               data: bytes | None = None) -> typing.Iterator[tuple[typing.Any, object]]:
        """Queue `item`'s image (read from `uri`, or `data` where given); yields (item, result) for earlier items
        that are done or must be waited for."""
        self._pending.append((item, self._pool.submit(_read_and_convert, uri, size, data)))
        while self._pending and (self._pending[0][1].done() or len(self._pending) > self._limit):
            yield self._take()

    def drain(self) -> typing.Iterator[tuple[typing.Any, object]]:
        """(item, result) for every image still in flight."""
        while self._pending:
            yield self._take()

    def _take(self) -> tuple[typing.Any, object]:
        global _pool
        item, future = self._pending.popleft()
        try:
            return item, future.result()
        except BrokenProcessPool:
            with _lock:
                _pool = None  # the next job starts a fresh pool
            raise RuntimeError("an image conversion process died (out of memory, or killed); see the system log "
                               "and rerun, or lower ingest.conversion_processes") from None
