"""The endpoint's request log (serving.request_log): a sample of the images `./places serve` is sent and what it
answered, kept for `./places monitor` to compare with the champion's training data (serving/monitor.py).

On the request path only the choice (every 100 / serving.request_log_percent-th image) and a put on a bounded queue
happen; a background thread measures each image with ingestion's own conversion (ingestion.images.convert: the
original height and width, the brightness of the 128 x 128 pixels), encodes the records and writes them as GZIP
TFRecord files of tf.Examples, one per serving.request_log_images_per_file images or serving.request_log_flush_s
seconds, and at shutdown:

    <serving.request_log>/<UTC date>/requests-<UTC time>-<random>.tfrecord.gz

A record holds data_schema's IMAGE_KEY (the 128 x 128 JPEG ingestion would have made) and IMAGE_MEASUREMENTS, and
the keys below: the predicted class, its probability, the model that answered and when. Nothing here fails or
slows a request: a full queue drops the image, a failure (storage out of reach, a prefix it refuses, an image the
conversion refuses) drops what it concerns; both are counted in /metrics and logged once per cause.
"""

from __future__ import annotations

import datetime
import io
import itertools
import logging
import queue
import secrets
import tempfile
import threading
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from prometheus_client.core import CounterMetricFamily

from core.config import Config, IngestConfig
from core.storage import Storage, join
from data_schema import BRIGHTNESS_KEY, HEIGHT_KEY, IMAGE_KEY, IMAGE_SIZE, WIDTH_KEY
from ingestion.images import convert
from ingestion.shards import serialized_example
from serving.model import Images, ModelInput, SceneModel

_LOG = logging.getLogger(__name__)

# The request log's own keys, beside ingestion's image and measurements.
PREDICTED_CLASS_KEY = "predicted_class"  # int64 index into the model's classes
PREDICTED_CLASS_NAME_KEY = "predicted_class_name"  # its key, e.g. "gas_station"
PROBABILITY_KEY = "probability"  # the predicted class's probability
MODEL_KEY = "model"  # NAME/VERSION of the model that answered
REQUESTED_AT_KEY = "requested_at_ms"  # when the answer was sent, UTC milliseconds since 1970
FILE_SUFFIX = ".tfrecord.gz"
DATE_FOLDER = "%Y-%m-%d"  # the UTC day a file was written, one folder per day

_CLOSE = object()  # the queue's last item: write what is pending, then stop


@dataclass(frozen=True)
class _Sampled:
    """One chosen image, as the request left it: encoded bytes or pixels [128, 128, 3] in [0, 1]."""
    image: bytes | np.ndarray
    probabilities: np.ndarray
    model: SceneModel
    requested_at_ms: int


class RequestLog:
    """Takes each answered request (add), writes a sample of its images from a background thread until close().

    Also a Prometheus collector: registered in the server's registry, it reports the counts below.
    """

    def __init__(self, prefix: str, storage: Storage, limits: IngestConfig, percent: int, images_per_file: int,
                 flush_s: float, queue_size: int):
        self.prefix = prefix
        self.percent = percent
        self._storage = storage
        self._limits = limits
        self._images_per_file = images_per_file
        self._flush_s = flush_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._seen = itertools.count()  # next() is atomic in CPython: no lock on the request path
        self.logged = self.dropped = self.errors = 0
        self._counting = threading.Lock()  # request threads count too
        # The failure last warned about (what failed, the error's type): one warning per cause, not per image.
        self._warned: tuple[str, str] | None = None
        self._container_ready = False
        self._thread = threading.Thread(target=self._write_files, name="request-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, config: Config) -> RequestLog | None:
        """The log serving.request_log names, or None where it is empty."""
        serving = config.serving
        if not serving.request_log:
            return None
        return cls(serving.request_log, Storage.from_config(config), config.ingest, serving.request_log_percent,
                   serving.request_log_images_per_file, serving.request_log_flush_s, serving.request_log_queue)

    def add(self, model_input: ModelInput, probabilities: np.ndarray, model: SceneModel) -> None:
        """On the request path, after the answer: queue the chosen images of an answered request. Never raises."""
        try:
            now_ms = time.time_ns() // 1_000_000
            for index in range(len(model_input)):
                if not self._chosen():
                    continue
                image = (model_input.encoded[index] if isinstance(model_input, Images)
                         else model_input.array[index])
                try:
                    self._queue.put_nowait(_Sampled(image, probabilities[index], model, now_ms))
                except queue.Full:
                    with self._counting:
                        self.dropped += 1
        except Exception as error:  # a bug here must not cost the client its answer
            self._failed(1, "queue an image", error)

    def _chosen(self) -> bool:
        """Whether the next image is logged: every image at 100 %, every tenth at 10 %, none at 0."""
        seen = next(self._seen)
        return (seen + 1) * self.percent // 100 > seen * self.percent // 100

    def close(self) -> None:
        """Write what is still queued or pending, then stop the background thread."""
        self._queue.put(_CLOSE)
        self._thread.join()

    def collect(self) -> typing.Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("places_serving_requests_logged", "Images written to the request log.",
                                  value=self.logged)
        yield CounterMetricFamily("places_serving_request_log_dropped",
                                  "Images chosen for the request log but dropped: its queue was full "
                                  "(serving.request_log_queue).", value=self.dropped)
        yield CounterMetricFamily("places_serving_request_log_errors",
                                  "Images chosen for the request log but lost to a failure (measuring or writing; "
                                  "the server log says why).", value=self.errors)

    # --- the background thread ---------------------------------------------------------------------------
    def _write_files(self) -> None:
        pending: list[bytes] = []
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _CLOSE:
                self._write(pending)
                return
            if item is not None and (record := self._record(item)) is not None:
                pending.append(record)
                deadline = deadline or time.monotonic() + self._flush_s
            if pending and (len(pending) >= self._images_per_file or time.monotonic() >= deadline):
                self._write(pending)
                pending, deadline = [], None

    def _record(self, sampled: _Sampled) -> bytes | None:
        """The serialized tf.Example of one image, or None where it could not be measured (counted)."""

        try:
            if isinstance(sampled.image, bytes):
                converted = convert(sampled.image, self._limits)
                image_jpeg, height, width, brightness = (converted.image_jpeg, converted.height, converted.width,
                                                         converted.brightness)
            else:
                # The tutorial's pixels are the model's own input: already IMAGE_SIZE square and scaled to [0, 1].
                height = width = IMAGE_SIZE
                brightness = round(float(sampled.image.mean()), 6)
                encoded = io.BytesIO()
                Image.fromarray((sampled.image * 255).round().astype(np.uint8)).save(
                    encoded, "JPEG", quality=self._limits.jpeg_quality)
                image_jpeg = encoded.getvalue()
            predicted = int(np.argmax(sampled.probabilities))
        except Exception as error:
            self._failed(1, "measure an image", error)
            return None

        return serialized_example({
            IMAGE_KEY: image_jpeg, HEIGHT_KEY: height, WIDTH_KEY: width, BRIGHTNESS_KEY: brightness,
            PREDICTED_CLASS_KEY: predicted, PREDICTED_CLASS_NAME_KEY: sampled.model.class_names[predicted].encode(),
            PROBABILITY_KEY: float(sampled.probabilities[predicted]), MODEL_KEY: sampled.model.reference.encode(),
            REQUESTED_AT_KEY: sampled.requested_at_ms,
        })

    def _write(self, records: list[bytes]) -> None:
        if not records:
            return
        import tensorflow as tf

        now = datetime.datetime.now(datetime.timezone.utc)
        uri = join(self.prefix, now.strftime(DATE_FOLDER),
                   f"requests-{now.strftime('%H%M%S')}-{secrets.token_hex(4)}{FILE_SUFFIX}")
        try:
            with tempfile.TemporaryDirectory(prefix="request-log-") as folder:
                local = str(Path(folder) / "records")
                with tf.io.TFRecordWriter(local, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
                    for record in records:
                        writer.write(record)
                data = Path(local).read_bytes()
            if not self._container_ready:
                self._storage.ensure_container(uri)
                self._container_ready = True
            self._storage.write_bytes(uri, data, content_type="application/octet-stream")
        except Exception as error:
            self._failed(len(records), "write a file", error)
            return
        self.logged += len(records)
        if self._warned is not None:
            _LOG.warning("the request log at %s is written again", self.prefix)
            self._warned = None

    def _failed(self, images: int, what: str, error: Exception) -> None:
        """Count `images` lost; warn once per cause (the same failure again is only counted)."""
        with self._counting:
            self.errors += images
            cause = (what, type(error).__name__)
            if cause == self._warned:
                return
            self._warned = cause
        _LOG.warning("the request log at %s could not %s, %d image(s) not logged; requests are answered as ever, "
                     "places_serving_request_log_errors_total counts what is lost, and the same failure again is "
                     "not logged: %s: %s", self.prefix, what, images, type(error).__name__, error)
