"""Beam flags for config.beam, in one table: the ingestion job and the TFX pipeline both run with them.

No secret is ever a flag: runners log their options and ship them to job services. Workers reach blob
storage through AZURE_STORAGE_CONNECTION_STRING in their own environment (see core.storage).
"""

from __future__ import annotations

import typing

from core.config import Config

LOCAL = "local"
FLINK = "flink"


def _environment(config: Config) -> list[str]:
    flags = [f"--environment_type={config.beam.environment_type}"]
    if config.beam.environment_config:
        flags.append(f"--environment_config={config.beam.environment_config}")
    return flags


def _flink(config: Config) -> list[str]:
    """The cluster of `./places cluster up`: its job server, and its worker pool as the EXTERNAL environment.

    Never Beam's default DOCKER environment (no container engine is assumed). One SDK worker per TaskManager
    (sdk_worker_parallelism=1): more would each hold their own TensorFlow in memory (tensorflow/tfx#3256).
    """
    cluster = config.cluster
    host = config.services.host
    return ["--runner=PortableRunner", f"--job_endpoint={host}:{cluster.job_port}",
            "--environment_type=EXTERNAL", f"--environment_config={host}:{cluster.worker_pool_port}",
            "--sdk_worker_parallelism=1", f"--parallelism={cluster.parallelism or cluster.taskmanagers}"]


def _local(config: Config) -> list[str]:
    """FnApiRunner, named: Beam's DirectRunner would download the Prism runner, which fails offline.

    direct_num_workers 0 means one per CPU core to Beam as to beam.workers. multi_threading: worker threads
    overlap where Pillow, TFDV and the blob client release the GIL. multi_processing would put the DoFns in
    child processes, out of reach of the progress bar; ingestion puts its per-image work in processes of its
    own instead (ingestion/conversion_pool.py).
    """
    _whole_elements_only()
    return ["--runner=FnApiRunner", f"--direct_num_workers={config.beam.workers}",
            "--direct_running_mode=multi_threading"]


def _whole_elements_only() -> None:
    """Make the local runner's in-process workers send a stage's output only between elements.

    Those workers also flush their output buffer every second from a timer thread, and that thread takes no
    lock against the worker writing an element (TimeBasedBufferingClosableOutputStream in Beam's
    runners/worker/data_plane.py). A flush in the middle of an element hands the runner half of it; the runner
    then reads the next bytes as a count of up to 2**31 windows and fills memory until the kernel kills the
    process (large ingestion jobs died so, now and then). The time limit is a module constant that the runner
    offers no option for; at 0 the workers flush by size, between elements, and at the end of each bundle,
    which costs a batch job nothing.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


# Every name of config.BeamRunner, which the config loader checks beam.runner against.
_RUNNER_FLAGS: dict[str, typing.Callable[[Config], list[str]]] = {
    LOCAL: _local,
    FLINK: _flink,
    "portable": lambda config: ["--runner=PortableRunner", f"--job_endpoint={config.beam.job_endpoint}",
                                *_environment(config)],
    "dataflow": lambda config: ["--runner=DataflowRunner"],
    "spark": lambda config: ["--runner=SparkRunner", *_environment(config)],
}


def beam_pipeline_args(config: Config) -> list[str]:
    """The Beam flags for config.beam.runner, then config.beam.extra_args as given."""
    return [*_RUNNER_FLAGS[config.beam.runner](config), *config.beam.extra_args]


def runs_locally(config: Config) -> bool:
    """Whether the job's DoFns run in this process (so they can drive a progress bar here)."""
    return config.beam.runner == LOCAL
