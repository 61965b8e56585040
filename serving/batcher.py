"""Server-side batching: the requests that come in while the model is busy are joined into one model call.

One model call on 16 images costs much less than 16 calls on one (fewer graph launches, fuller vector units, and
on a GPU far more), so under concurrent load `./places serve` batches, as TensorFlow Serving, Triton and Ray Serve
do. Each connection's thread reads and checks its own request (JSON, base64, the image headers), then hands it to
the batcher and waits; `serving.model_calls_at_once` threads (one per core by default) take what is queued, up to
`serving.max_batch_size` images, and call the model (SceneModel.predict_batch), which splits the answer back out.

A lone request never waits: a batch starts at once when no other call is running and no other request is being
read; otherwise it waits for more at most `serving.batch_timeout_ms`. Each batch reads the served model once, so
a hot swap never splits a batch between two versions. With max_batch_size 0 each request calls the model in its
own thread.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import typing
from concurrent.futures import Future

import numpy as np

from core.config import ServingConfig
from serving.model import ModelInput, SceneModel, model_calls_at_once

# Told the images of each model call, then the seconds each request of a batch waited for its call to start.
OnCall = typing.Callable[[int], None]
OnBatch = typing.Callable[[list[float]], None]


class ShuttingDown(RuntimeError):
    """The batcher was closed before this request's batch ran."""


class _Queued(typing.NamedTuple):
    request: ModelInput
    answer: Future  # (probabilities or InvalidInput, the model that answered)
    since: float


class Batcher:
    """Joins concurrent requests into model calls on whatever model `serving_model()` names at the time."""

    def __init__(self, serving_model: typing.Callable[[], SceneModel], config: ServingConfig,
                 on_call: OnCall = lambda images: None, on_batch: OnBatch = lambda waits: None):
        self._serving_model = serving_model
        self._max_images = config.max_batch_size
        self._timeout_s = config.batch_timeout_ms / 1e3
        self._on_call = on_call
        self._on_batch = on_batch
        self._changed = threading.Condition()
        self._queue: collections.deque[_Queued] = collections.deque()
        self._queued_images = 0
        self._arriving = 0  # requests being read and checked, which a batch may wait for
        self._calls_running = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._take_batches, name=f"model-call-{index}", daemon=True)
                         for index in range(model_calls_at_once(config) if self._max_images else 0)]
        for thread in self._threads:
            thread.start()

    @contextlib.contextmanager
    def request(self) -> typing.Iterator[typing.Callable[[ModelInput], tuple[np.ndarray, SceneModel]]]:
        """Around the reading and checking of one request, from as soon as it is known to ask the model: batches
        starting meanwhile wait for it (serving.batch_timeout_ms at most). Gives `predict`, which answers the
        checked request with (its probabilities, the model that computed them), or raises what the model raised
        (InvalidInput for an image its graph cannot decode)."""
        with self._changed:
            self._arriving += 1
        submitted = False

        def predict(request: ModelInput) -> tuple[np.ndarray, SceneModel]:
            nonlocal submitted
            submitted = True
            return self._predict(request)

        try:
            yield predict
        finally:
            if not submitted:
                self._no_longer_arriving()

    def _no_longer_arriving(self) -> None:
        with self._changed:
            self._arriving -= 1
            self._changed.notify_all()

    def _predict(self, request: ModelInput) -> tuple[np.ndarray, SceneModel]:
        if not self._threads:
            self._no_longer_arriving()
            model = self._serving_model()
            self._on_batch([0.0])
            (answer,) = model.predict_batch([request], on_call=self._on_call)
            return _result(answer, model)
        queued = _Queued(request, Future(), time.monotonic())
        with self._changed:
            self._arriving -= 1
            if self._closed:  # a connection still open while the server stops: no thread would take it
                raise ShuttingDown("the server is shutting down")
            self._queue.append(queued)
            self._queued_images += len(request)
            self._changed.notify_all()
        return _result(*queued.answer.result())

    def _take_batches(self) -> None:
        while True:
            with self._changed:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            finally:
                with self._changed:
                    self._calls_running -= 1
                    self._changed.notify_all()

    def _next_batch(self) -> list[_Queued] | None:
        """The queued requests of the next batch, once it is full or nothing more is coming soon (None once closed);
        called holding the lock."""
        while True:
            while not self._queue and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            deadline = self._queue[0].since + self._timeout_s
            while (self._queue and (self._arriving or self._calls_running) and not self._closed
                   and self._queued_images < self._max_images and (left := deadline - time.monotonic()) > 0):
                self._changed.wait(left)
            if self._queue:  # another thread may have taken it meanwhile
                self._calls_running += 1
                return self._take()

    def _take(self) -> list[_Queued]:
        """The oldest requests whose images fit in one batch; at least one, which may alone be larger (its calls are
        then split: SceneModel.predict_batch)."""
        batch = [self._queue.popleft()]
        images = len(batch[0].request)
        while self._queue and images + len(self._queue[0].request) <= self._max_images:
            images += len(self._queue[0].request)
            batch.append(self._queue.popleft())
        self._queued_images -= images
        return batch

    def _run(self, batch: list[_Queued]) -> None:
        model = self._serving_model()  # once: the whole batch runs on one version
        started = time.monotonic()
        self._on_batch([started - queued.since for queued in batch])
        try:
            answers = model.predict_batch([queued.request for queued in batch], self._max_images, self._on_call)
        except Exception as error:  # the model failed on the batch: each of its requests fails with it
            for queued in batch:
                queued.answer.set_exception(error)
            return
        for queued, answer in zip(batch, answers):
            queued.answer.set_result((answer, model))

    def close(self) -> None:
        """Stop the model-call threads once their batches are done; requests still queued are failed."""
        with self._changed:
            self._closed = True
            left, self._queue = list(self._queue), collections.deque()
            self._changed.notify_all()
        for queued in left:
            queued.answer.set_exception(ShuttingDown("the server is shutting down"))
        for thread in self._threads:
            thread.join()


def _result(answer: np.ndarray | Exception, model: SceneModel) -> tuple[np.ndarray, SceneModel]:
    if isinstance(answer, Exception):
        raise answer
    return answer, model
