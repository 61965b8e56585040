"""core.beam: one table of Beam flags per runner, shared by the ingestion job and the TFX pipeline."""

from __future__ import annotations

import time
import typing

import apache_beam as beam
import pytest
from apache_beam import coders as beam_coders

from core.beam import beam_pipeline_args
from core.config import BEAM_RUNNERS, Config, ConfigError, apply


def test_local_runs_in_process_threads_one_per_core_by_default():
    assert beam_pipeline_args(Config()) == ["--runner=FnApiRunner", "--direct_num_workers=0",
                                            "--direct_running_mode=multi_threading"]


def test_portable_names_the_job_service_and_the_worker_pool():
    config = apply(Config(), {"beam.runner": "portable", "beam.job_endpoint": "jobs:8099",
                              "beam.environment_type": "EXTERNAL", "beam.environment_config": "workers:50000",
                              "beam.extra_args": "--max_num_workers=4"})
    assert beam_pipeline_args(config) == ["--runner=PortableRunner", "--job_endpoint=jobs:8099",
                                          "--environment_type=EXTERNAL", "--environment_config=workers:50000",
                                          "--max_num_workers=4"]


def test_flink_sends_jobs_to_the_cluster_job_server_with_its_worker_pool_never_docker():
    config = apply(Config(), {"beam.runner": "flink", "cluster.job_port": "18099", "cluster.worker_pool_port": "15000",
                              "cluster.taskmanagers": "3"})
    assert beam_pipeline_args(config) == ["--runner=PortableRunner", "--job_endpoint=127.0.0.1:18099",
                                          "--environment_type=EXTERNAL", "--environment_config=127.0.0.1:15000",
                                          "--sdk_worker_parallelism=1", "--parallelism=3"]


@pytest.mark.parametrize("runner, flag", [("dataflow", "--runner=DataflowRunner"), ("spark", "--runner=SparkRunner")])
def test_cluster_runners_are_named(runner, flag):
    assert beam_pipeline_args(apply(Config(), {"beam.runner": runner}))[0] == flag


@pytest.mark.parametrize("runner", BEAM_RUNNERS)
def test_every_runner_the_config_takes_has_its_flags(runner):
    assert beam_pipeline_args(apply(Config(), {"beam.runner": runner}))[0].startswith("--runner=")


def test_an_unknown_runner_lists_the_known_ones_when_the_config_is_read():
    with pytest.raises(ConfigError, match="'beam.runner' takes one of local, flink, portable, dataflow, spark"):
        apply(Config(), {"beam.runner": "direct"})


class _PausesMidElement(str):
    """A value whose coder writes the element's key, then waits past the local runner's one-second timed flush
    before the value is written: the timing under which the runner once received half an element."""


class _PausingCoder(beam_coders.Coder):
    def encode(self, value):
        time.sleep(1.5)
        return value.encode()

    def decode(self, encoded):
        return _PausesMidElement(encoded.decode())

    def is_deterministic(self):
        return True


beam_coders.registry.register_coder(_PausesMidElement, _PausingCoder)


@pytest.mark.slow
def test_the_local_runner_never_sends_half_an_element_between_stages():
    # Grouping makes the runner decode what the stage sent: half an element fails the job (or, cut elsewhere,
    # reads as a count of billions of windows and exhausts memory, as large ingestion jobs did).
    from apache_beam.testing.util import assert_that, equal_to

    from core.jobs import pipeline_options

    with beam.Pipeline(options=pipeline_options(Config(), "half-elements")) as pipeline:
        grouped = (pipeline
                   | beam.Create(["a", "b"])
                   | beam.Map(lambda key: (key, _PausesMidElement(key * 3))).with_output_types(
                       typing.Tuple[str, _PausesMidElement])
                   | beam.GroupByKey()
                   | beam.MapTuple(lambda key, values: (key, sorted(values))))
        assert_that(grouped, equal_to([("a", ["aaa"]), ("b", ["bbb"])]))
