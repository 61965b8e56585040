"""What the project's Beam jobs (ingestion, batch prediction) share: output staged and committed only when the job
succeeded, a progress bar while the job runs (here, or on the Flink cluster), and storage or cluster failures as
one clear message.

A job writes under <output>/.staging-<job id>/ (`staged`); the driver, once the job succeeded, copies what it
wants kept to its final names (`publish`) and writes its own commit point (core/commit_point.py: a manifest,
a summary) last. The staging folder goes whether the job succeeded or not, so a failed job leaves the output as
it was.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import threading
import typing
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.runners.runner import PipelineState

from core.beam import FLINK, runs_locally
from core.config import Config
from core.console import progress
from core.storage import Storage, StorageAuthError, StorageError, StorageUnreachable, join

_LOGGER = logging.getLogger(__name__)
# Items listed and processed, counted wherever the DoFns run: on a cluster they are the progress bar's source.
_METRICS_NAMESPACE = "places"
_LISTED = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "items_listed")
_PROCESSED = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "items_processed")


@dataclass(frozen=True)
class Staging:
    job_id: str
    # <output>/.staging-<job id>
    uri: str


@contextlib.contextmanager
def staged(storage: Storage, output_uri: str) -> typing.Iterator[Staging]:
    """A fresh staging folder under `output_uri` for one job, deleted when the block ends, however it ends."""
    job_id = uuid.uuid4().hex[:12]
    staging = Staging(job_id, join(output_uri, f".staging-{job_id}"))
    try:
        yield staging
    finally:
        discard(storage, staging.uri)


def publish(storage: Storage, copies: list[tuple[str, str]], folder_uri: str) -> None:
    """Copy each (staged URI, name) to `folder_uri`/name, in a folder emptied first; on failure none stay."""
    try:
        storage.delete_prefix(folder_uri)  # what an interrupted commit left, if anything
        for source, name in copies:
            storage.copy(source, join(folder_uri, name))
    except BaseException:
        discard(storage, folder_uri)
        raise


def discard(storage: Storage, uri: str) -> None:
    """Delete the folder `uri` that a job wrote; a failure to do so is a warning, not the job's failure."""
    try:
        storage.delete_prefix(uri)
    except StorageError as error:
        _LOGGER.warning("could not delete %s, which a job wrote and nothing names; delete it by hand (%s)", uri, error)


def pipeline_options(config: Config, job_name: str):
    """Beam's options for one of this project's jobs: the runner's flags, and a job name the cluster shows."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from core.beam import beam_pipeline_args

    return PipelineOptions([*beam_pipeline_args(config), f"--job_name={job_name}"])


def run(config: Config, pipeline: beam.Pipeline, *, job: str, output_uri: str, error: type[Exception]) -> None:
    """Run `pipeline` to the end; `error` (naming `job` and `output_uri`) where blob storage failed it, the cluster
    is not there, or it did not finish. Other failures propagate as the runner raised them."""
    if config.beam.runner == FLINK:
        from core import cluster

        cluster.require_running(config)
    try:
        with _worker_errors_unlogged(config):
            state = pipeline.run().wait_until_finish()
    except Exception as failure:
        translated = _storage_failure(failure, job, output_uri, error)
        if translated is None and config.beam.runner == FLINK:
            translated = _cluster_failure(config, failure, job, output_uri, error)
        if translated is None:
            raise
        raise translated from None
    if state != PipelineState.DONE:
        raise error(f"the Beam job ended {state}; nothing was written to {output_uri}")


@contextlib.contextmanager
def _worker_errors_unlogged(config: Config):
    """The local runner raises a worker's error here, traceback included; its loggers would print it twice more."""
    loggers = [logging.getLogger(name)
               for name in ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker")]
    levels = [logger.level for logger in loggers]
    if runs_locally(config):
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _storage_failure(failure: Exception, job: str, output_uri: str, error: type[Exception]) -> Exception | None:
    """The `error` for a job that failed because blob storage did; None for any other failure.

    Runners hand back a worker's exception as text (the local runner too), so it is found by its name.
    """
    for kind in (StorageUnreachable, StorageAuthError):
        match = re.search(rf"\b{kind.__name__}: (.+?)(?: \[while running [^\]]*\])?$", str(failure), re.MULTILINE)
        if match is None:
            continue
        if kind is StorageUnreachable:
            return error(f"blob storage stopped answering during the {job} job ({match.group(1)}). "
                         f"Nothing was written to {output_uri}; rerun when it is back")
        return error(match.group(1))
    return None


def _cluster_failure(config: Config, failure: Exception, job: str, output_uri: str,
                     error: type[Exception]) -> Exception:
    """The `error` for a job that the Flink cluster failed (after its restarts), with the cause Flink gave."""
    from core import cluster

    return error(f"{cluster.job_failed(config, f'the {job} job', failure)}. Nothing was written to {output_uri}; "
                 "rerun when the cause is fixed")


def save_outcome(outcome, config: Config, uri: str) -> None:
    """Write a job's summed outcome (anything with `to_json()`) where the driver reads it after the job."""
    Storage.from_config(config).write_text(uri, outcome.to_json())


class MergeAll(beam.CombineFn):
    """Sums a job's outcomes into one: `kind()` is an empty outcome and `a.merge(b)` adds b into a and returns a."""

    def __init__(self, kind: type):
        self._kind = kind

    def create_accumulator(self):
        return self._kind()

    def add_input(self, total, outcome):
        return total.merge(outcome)

    def merge_accumulators(self, totals):
        totals = iter(totals)
        merged = next(totals)
        for total in totals:
            merged.merge(total)
        return merged

    def extract_output(self, total):
        return total


class _LocalProgress:
    """Items listed and processed by this process's local-runner jobs, by job, shown as a progress bar.

    The local runner runs the DoFns in this process, so they report here directly. On a remote worker no job
    is registered and reports go nowhere; the Beam counters count there.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._bars: dict[str, typing.Any] = {}
        self._processed: collections.Counter = collections.Counter()

    @contextlib.contextmanager
    def showing(self, job_id: str, desc: str, unit: str):
        with progress(desc=desc, unit=unit) as bar:
            with self._lock:
                self._bars[job_id] = bar
            try:
                yield
            finally:
                with self._lock:
                    del self._bars[job_id]
                    del self._processed[job_id]

    def listed(self, job_id: str, count: int) -> None:
        _LISTED.inc(count)
        with self._lock:
            bar = self._bars.get(job_id)
            if bar is not None:
                bar.total = (bar.total or 0) + count
                bar.refresh()

    def processed(self, job_id: str, count: int = 1) -> None:
        _PROCESSED.inc(count)
        with self._lock:
            bar = self._bars.get(job_id)
            if bar is not None:
                self._processed[job_id] += count
                bar.update(count)

    def images_processed(self) -> int:
        """Items processed so far by the local jobs running now."""
        with self._lock:
            return sum(self._processed.values())


LOCAL_PROGRESS = _LocalProgress()


def job_name(job: str, job_id: str) -> str:
    return f"places-{job}-{job_id}"


def progress_bar(config: Config, job: str, job_id: str, unit: str) -> typing.ContextManager:
    """A progress bar for the job: fed by the DoFns when they run in this process, by the counters that Flink
    collects from its workers when the job runs on the cluster; nothing for other remote runners."""
    if runs_locally(config):
        return LOCAL_PROGRESS.showing(job_id, job, unit)
    if config.beam.runner == FLINK:
        return _cluster_progress(config, job_name(job, job_id), job, unit)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _cluster_progress(config: Config, name: str, desc: str, unit: str):
    from core import cluster

    stopped = threading.Event()

    def update(bar, final: bool = False) -> None:
        counters = cluster.job_counters(config, name, _METRICS_NAMESPACE, final=final)
        if counters is not None:
            bar.total = counters.get(_LISTED.metric_name.name) or None
            bar.n = counters.get(_PROCESSED.metric_name.name, 0)
            bar.refresh()

    def follow(bar) -> None:
        while not stopped.wait(1.0):
            update(bar)

    with progress(desc=desc, unit=unit) as bar:
        follower = threading.Thread(target=follow, args=(bar,), daemon=True)
        follower.start()
        try:
            yield
        finally:
            stopped.set()
            follower.join()
        update(bar, final=True)
