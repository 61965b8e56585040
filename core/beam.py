"""Beam flags for config.beam, in one table: the ingestion job and the TFX pipeline both run with them.

No secret is ever a flag: runners log their options and ship them to job services. Workers reach blob
storage through AZURE_STORAGE_CONNECTION_STRING in their own environment (see core.storage).
"""

from __future__ import annotations

import typing

from core.config import BeamConfig, Config, ConfigError

LOCAL = "local"


def _environment(beam: BeamConfig) -> list[str]:
    flags = [f"--environment_type={beam.environment_type}"]
    if beam.environment_config:
        flags.append(f"--environment_config={beam.environment_config}")
    return flags


_RUNNER_FLAGS: dict[str, typing.Callable[[BeamConfig], list[str]]] = {
    # FnApiRunner, named: Beam's DirectRunner would download the Prism runner, which fails offline.
    # direct_num_workers 0 means one per CPU core to Beam as to beam.workers.
    # multi_threading, because it is faster: Pillow and the blob client release the GIL while they decode,
    # resize and wait for blob reads, so worker threads overlap, while in_memory runs a single worker.
    # Ingesting 2,000 images Azurite to Azurite on 2 busy cores: 95 images/s with 2 threads, 72 in_memory
    # (bench/ingest_throughput.py). multi_processing would put the DoFns in child processes, out of reach
    # of the progress bar.
    LOCAL: lambda beam: ["--runner=FnApiRunner", f"--direct_num_workers={beam.workers}",
                         "--direct_running_mode=multi_threading"],
    "portable": lambda beam: ["--runner=PortableRunner", f"--job_endpoint={beam.job_endpoint}", *_environment(beam)],
    "dataflow": lambda beam: ["--runner=DataflowRunner"],
    "flink": lambda beam: ["--runner=FlinkRunner", *_environment(beam)],
    "spark": lambda beam: ["--runner=SparkRunner", *_environment(beam)],
}


def beam_pipeline_args(config: Config) -> list[str]:
    """The Beam flags for config.beam.runner, then config.beam.extra_args as given."""
    try:
        flags = _RUNNER_FLAGS[config.beam.runner](config.beam)
    except KeyError:
        raise ConfigError(f"beam.runner is '{config.beam.runner}'; use one of {', '.join(_RUNNER_FLAGS)}") from None
    return [*flags, *config.beam.extra_args]


def runs_locally(config: Config) -> bool:
    """Whether the job's DoFns run in this process (so they can drive a progress bar here)."""
    return config.beam.runner == LOCAL
