"""The Trainer's worker group on this machine: real worker processes under MultiWorkerMirroredStrategy, on small
generated shards, killed with SIGKILL where a test says so."""

import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from components.trainer.conftest import (
    _CLASS_COLOURS,
    CLASS_NAMES,
    encoded_image,
    random_pixels,
    serialized_example,
    write_shards,
)
from components.trainer.custom_config import to_custom_config
from components.trainer.launcher import WORKER_TAG, WorkersFailed, plan
from components.trainer.run_fn import run_fn
from core.config import ConfigError, TrainingConfig
from data_schema import IMAGE_SIZE


def test_a_core_setting_that_cannot_work_is_named_before_anything_starts():
    with pytest.raises(ConfigError, match="training.workers is 3, but this machine gives the Trainer 2 CPU cores"):
        plan(TrainingConfig(workers=3), available_cores=[0, 1])
    with pytest.raises(ConfigError, match="training.worker_cores is 2: 2 workers would need 4 CPU cores"):
        plan(TrainingConfig(workers=2, worker_cores=2), available_cores=[0, 1, 2])
    assert plan(TrainingConfig(workers=2), available_cores=[4, 5, 6, 7, 8]).cores == [[4, 5], [6, 7]]


def test_a_port_setting_that_cannot_work_is_named_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is taken.*set training.worker_port"):
            plan(TrainingConfig(workers=1, worker_port=port), available_cores=[0, 1])
    with pytest.raises(ConfigError, match="past 65535"):
        plan(TrainingConfig(workers=2, worker_port=65535), available_cores=[0, 1])
    free = plan(TrainingConfig(workers=2), available_cores=[0, 1]).ports
    assert len(set(free)) == 2


@pytest.fixture
def sharded_splits(tmp_path) -> dict[str, str]:
    """A train split of 4 shards (40 images per class) and an eval split of 2 (8 per class)."""
    def split(name: str, per_class: int, first_seed: int, shards: int) -> str:
        return write_shards(tmp_path / f"Split-{name}", [
            serialized_example(encoded_image(random_pixels(IMAGE_SIZE, IMAGE_SIZE, first_seed + number, colour)),
                               category)
            for category, colour in enumerate(_CLASS_COLOURS) for number in range(per_class)], shards=shards)

    return {"train": split("train", 40, 0, 4), "eval": split("eval", 8, 1000, 2)}


def _fn_args(splits, tmp_path, **training):
    training = TrainingConfig(**{"seed": 0, "batch_size": 4, "image_cache_mb": 0, "model": "seed_cnn",
                                 "workers": 2, **training})
    return SimpleNamespace(
        train_files=[splits["train"]], eval_files=[splits["eval"]], train_steps=None, eval_steps=None,
        serving_model_dir=str(tmp_path / "serving_model"), model_run_dir=str(tmp_path / "model_run"),
        custom_config=to_custom_config(training, CLASS_NAMES, str(tmp_path / "worker-logs")))


def _worker_logs(tmp_path) -> list[str]:
    [log_dir] = (tmp_path / "worker-logs").iterdir()
    return [(log_dir / f"worker-{index}.log").read_text() for index in range(2)]


def _workers_running() -> list[str]:
    found = []
    for process in Path("/proc").iterdir():
        try:
            command = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if WORKER_TAG in command and "pytest" not in command:
            found.append(f"{process.name}: {command}")
    return found


def _epoch_lines(log: str) -> list[dict]:
    return [{"epoch": int(match[1]), "val_accuracy": float(match[2])}
            for match in re.finditer(r"trainer: epoch (\d+)/\d+: \d+ steps in .* val_accuracy ([\d.]+)", log)]


@pytest.mark.slow
def test_two_workers_read_disjoint_shards_and_the_result_is_the_chiefs(sharded_splits, tmp_path, capsys):
    run_fn(_fn_args(sharded_splits, tmp_path, epochs=2))

    shown = capsys.readouterr().out
    chief_log, worker_log = _worker_logs(tmp_path)
    read = [set(re.search(r"reads train 2 of 4 shards: (.*)", log)[1].split(", ")) for log in (chief_log, worker_log)]
    assert not read[0] & read[1]
    assert read[0] | read[1] == {f"data_tfrecord-{shard:05d}-of-00004.gz" for shard in range(4)}

    # The history the Trainer hands on is the chief's, and the chief is the one that exported.
    history = json.loads((tmp_path / "model_run" / "history.json").read_text())
    assert [{"epoch": epoch["epoch"], "val_accuracy": round(epoch["val_accuracy"], 4)} for epoch in history] == \
        _epoch_lines(chief_log)
    assert "MultiWorkerMirroredStrategy cluster, 2 replicas in all, global batch 8" in chief_log
    assert (tmp_path / "serving_model" / "saved_model.pb").exists()
    assert "the chief's are the result" in worker_log
    assert sorted(path.name for path in (tmp_path / "model_run").iterdir()) == ["history.json", "scratch"]
    assert not any((tmp_path / "model_run" / "scratch").iterdir())
    # The user sees the chief's lines: its epochs and its progress within them.
    assert "epoch 2/2: 15 steps in" in shown and "epoch 1/2: 3/15 steps" in shown
    assert _workers_running() == []


class _Killer(threading.Thread):
    """Kills worker 1 with SIGKILL once the chief's log shows progress within epoch `epoch`; remembers how many
    epochs the chief had finished by then."""

    def __init__(self, tmp_path, epoch: int):
        super().__init__(daemon=True)
        self.tmp_path, self.epoch, self.finished_epochs, self.killed = tmp_path, epoch, None, None

    def run(self):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                chief_log, worker_log = _worker_logs(self.tmp_path)
            except (ValueError, FileNotFoundError):
                time.sleep(0.05)
                continue
            if re.search(rf"trainer: epoch {self.epoch}/\d+: \d+/\d+ steps", chief_log):
                pid = int(re.findall(r"=== pid (\d+) ===", worker_log)[-1])
                os.kill(pid, signal.SIGKILL)
                self.finished_epochs, self.killed = len(_epoch_lines(chief_log)), pid
                return
            time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_is_restarted_and_training_resumes_from_the_last_finished_epoch(
        sharded_splits, tmp_path, capsys):
    killer = _Killer(tmp_path, epoch=2)
    killer.start()

    run_fn(_fn_args(sharded_splits, tmp_path, epochs=3))

    killer.join(1)
    assert killer.killed is not None
    shown = capsys.readouterr().out
    assert "worker 1 was killed by SIGKILL" in shown and "restart 1 of 2" in shown
    assert f"resumed from the backup of epoch {killer.finished_epochs}" in shown
    # Each start appends to the same logs; the user sees every finished epoch once, not again after the restart.
    assert shown.count("epoch 1/3: 15 steps in") == 1
    history = json.loads((tmp_path / "model_run" / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history] == [1, 2, 3]
    assert (tmp_path / "serving_model" / "saved_model.pb").exists()
    assert _workers_running() == []


@pytest.mark.slow
def test_a_worker_dying_past_max_restarts_fails_naming_its_log_and_exports_nothing(sharded_splits, tmp_path):
    killer = _Killer(tmp_path, epoch=1)
    killer.start()

    with pytest.raises(WorkersFailed, match=r"worker 1 was killed by SIGKILL.*training.max_restarts.*"
                                            r"worker-logs/.*/worker-1.log"):
        run_fn(_fn_args(sharded_splits, tmp_path, epochs=2, max_restarts=0))

    assert not (tmp_path / "serving_model").exists()
    assert _workers_running() == []
