"""core.beam: one table of Beam flags per runner, shared by the ingestion job and the TFX pipeline."""

from __future__ import annotations

import pytest

from core.beam import beam_pipeline_args
from core.config import Config, ConfigError, apply


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


def test_an_unknown_runner_lists_the_known_ones():
    with pytest.raises(ConfigError, match="beam.runner is 'direct'; use one of local, flink, portable, dataflow, spark"):
        beam_pipeline_args(apply(Config(), {"beam.runner": "direct"}))
