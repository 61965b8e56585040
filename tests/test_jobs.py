"""core.jobs: staging that goes however a job ends, a commit that never leaves half a folder, and a storage failure
inside a worker turned into one message naming the job and its output."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from core import jobs
from core.beam import beam_pipeline_args
from core.config import Config
from core.storage import Storage, StorageError, StorageUnreachable


class JobFailed(StorageError):
    pass


def files_under(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_staging_is_deleted_when_the_job_fails(tmp_path):
    storage = Storage()
    with pytest.raises(RuntimeError, match="the job broke"):
        with jobs.staged(storage, str(tmp_path)) as staging:
            assert staging.uri == f"{tmp_path}/.staging-{staging.job_id}"
            storage.write_text(f"{staging.uri}/part.txt", "half of it")
            raise RuntimeError("the job broke")
    assert files_under(tmp_path) == []


def test_publish_replaces_what_an_interrupted_commit_left_and_removes_a_half_copied_folder(tmp_path):
    storage = Storage()
    storage.write_text(f"{tmp_path}/staged/a", "a")
    storage.write_text(f"{tmp_path}/out/left-over", "from an interrupted commit")

    jobs.publish(storage, [(f"{tmp_path}/staged/a", "first/a.txt")], f"{tmp_path}/out")
    assert files_under(tmp_path / "out") == ["first/a.txt"]

    with pytest.raises(FileNotFoundError):
        jobs.publish(storage, [(f"{tmp_path}/staged/a", "a.txt"), (f"{tmp_path}/staged/gone", "b.txt")],
                     f"{tmp_path}/out")
    assert not (tmp_path / "out").exists()


class _StorageGoesAway(beam.DoFn):
    def process(self, uri: str):
        raise StorageUnreachable(f"blob storage at http://127.0.0.1:1 did not answer while accessing {uri}")


def test_a_storage_failure_in_a_worker_names_the_job_and_its_output():
    pipeline = beam.Pipeline(options=PipelineOptions(beam_pipeline_args(Config())))
    _ = pipeline | beam.Create(["azfs://devstoreaccount1/c/x.jpg"]) | beam.ParDo(_StorageGoesAway())

    with pytest.raises(JobFailed) as raised:
        jobs.run(Config(), pipeline, job="test", output_uri="azfs://devstoreaccount1/c/out", error=JobFailed)

    assert str(raised.value) == (
        "blob storage stopped answering during the test job (blob storage at http://127.0.0.1:1 did not answer while "
        "accessing azfs://devstoreaccount1/c/x.jpg). Nothing was written to azfs://devstoreaccount1/c/out; rerun "
        "when it is back")


def test_merge_all_sums_outcomes_in_any_grouping():
    class Count:
        def __init__(self, value: int = 0):
            self.value = value

        def merge(self, other: "Count") -> "Count":
            self.value += other.value
            return self

    merge_all = jobs.MergeAll(Count)
    left = merge_all.add_input(merge_all.add_input(merge_all.create_accumulator(), Count(1)), Count(2))
    right = merge_all.add_input(merge_all.create_accumulator(), Count(4))
    assert merge_all.extract_output(merge_all.merge_accumulators([left, right])).value == 7
