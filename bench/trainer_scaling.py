"""The Trainer on worker processes against one process, on this machine, in one run: throughput, accuracy, and
what a killed worker costs.

    PYTHONPATH=. .venv/bin/python bench/trainer_scaling.py                       # better_cnn, 60 per class, 3 epochs
    PYTHONPATH=. .venv/bin/python bench/trainer_scaling.py --model seed_cnn --per-class 20 --epochs 2 --rounds 1

1. Generates the 10 tutorial classes (sample_data) and writes a seeded 80/20 split of GZIP TFRecord shards, as
   bench/trainer_throughput.py does.
2. Takes turns, --rounds times: run_fn with one process on every core (training.workers = 1), then run_fn with
   training.workers = 2, one core each (MultiWorkerMirroredStrategy on 127.0.0.1). Each run's throughput is the median
   of its epochs after the first (training images per second of wall clock, from the chief's history.json); the
   scaling efficiency is the two workers' median over the one process's. Same data, same seed, same epochs:
   training.batch_size images per replica, so the two workers' global batch is twice the one process's, with the
   learning rate scaled by sqrt(2) (components/trainer/distribution.py).
3. Once more with two workers, worker 1 killed with SIGKILL in the middle of epoch 2: the restart's cost is that
   run's wall time less the median clean two-worker run's.

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.trainer_throughput import write_split_shards
from core.config import MODEL_NAMES, TrainingConfig
from data_schema import TUTORIAL_CLASSES
from sample_data import generate

BATCH_SIZE = 32


def run_trainer(split_dir: Path, run_dir: Path, model: str, epochs: int, workers: int, seed: int,
                kill_in_epoch: int | None = None, batch_size: int = BATCH_SIZE, image_cache_mb: int = 2048) -> dict:
    """run_fn as the Trainer calls it; its wall time and the chief's history."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    from components.trainer.custom_config import to_custom_config
    from components.trainer.run_fn import run_fn

    killer = _Killer(run_dir / "worker-logs", kill_in_epoch) if kill_in_epoch else None
    if killer:
        killer.start()
    started = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's lines; stdout is for the JSON result alone
        run_fn(FnArgs(
            train_files=[str(split_dir / "Split-train" / "*")], eval_files=[str(split_dir / "Split-eval" / "*")],
            serving_model_dir=str(run_dir / "serving_model"), model_run_dir=str(run_dir / "model_run"),
            custom_config=to_custom_config(
                TrainingConfig(model=model, epochs=epochs, batch_size=batch_size, seed=seed, workers=workers,
                               image_cache_mb=image_cache_mb),
                TUTORIAL_CLASSES, str(run_dir / "worker-logs"))))
    wall_s = time.monotonic() - started
    history = json.loads((run_dir / "model_run" / "history.json").read_text())
    result = {
        "wall_s": round(wall_s, 1),
        "images_per_s": float(np.median([epoch["train_images_per_s"] for epoch in history[1:] or history])),
        "eval_accuracy": round(history[-1]["val_accuracy"], 4),
        "epochs": len(history),
    }
    if killer:
        killer.join(1)
        result["killed_worker_pid"] = killer.killed
        result["epochs_finished_before_the_kill"] = killer.finished_epochs
        result["kill_to_training_again_s"] = killer.seconds_to_training_again
    return result


class _Killer(threading.Thread):
    """SIGKILLs worker 1 once the chief reports progress within epoch `epoch`."""

    def __init__(self, log_root: Path, epoch: int):
        super().__init__(daemon=True)
        self.log_root, self.epoch, self.killed, self.finished_epochs = log_root, epoch, None, None
        self.seconds_to_training_again = None

    def run(self) -> None:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline and self.killed is None:
            time.sleep(0.1)
            logs = sorted(self.log_root.glob("*/worker-[01].log"))
            if len(logs) < 2:
                continue
            chief_log, worker_log = (log.read_text(errors="replace") for log in logs)
            if re.search(rf"trainer: epoch {self.epoch}/\d+: \d+/\d+ steps", chief_log):
                self.killed = int(re.findall(r"=== pid (\d+) ===", worker_log)[-1])
                os.kill(self.killed, signal.SIGKILL)
                killed_at = time.monotonic()
                self.finished_epochs = len(re.findall(r"trainer: epoch \d+/\d+: \d+ steps in", chief_log))
        # Until the new group's chief reports a step again: detecting the death, stopping the other worker, and
        # starting and connecting a new group that restored the backup.
        while self.killed is not None and time.monotonic() < deadline:
            time.sleep(0.1)
            after_restart = logs[0].read_text(errors="replace").split("resumed from the backup", 1)
            if len(after_restart) == 2 and re.search(r"trainer: epoch \d+/\d+: \d+", after_restart[1]):
                self.seconds_to_training_again = round(time.monotonic() - killed_at, 1)
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODEL_NAMES, default="better_cnn")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="turns of one process and two workers each")
    parser.add_argument("--seed", type=int, default=365)
    parser.add_argument("--image-cache-mb", type=int, default=2048,
                        help="training.image_cache_mb: 0 streams the shards every epoch, as at Places365's size")
    arguments = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    with tempfile.TemporaryDirectory(prefix="trainer-scaling-") as temporary:
        work_dir = Path(temporary)
        generate(work_dir / "images", TUTORIAL_CLASSES, arguments.per_class, "folders", arguments.seed)
        split_dir = work_dir / "examples"
        split_counts = write_split_shards(work_dir / "images", split_dir, arguments.seed)
        runs: dict[str, list[dict]] = {"one_process_all_cores": [], "two_workers_one_core_each": []}
        for round_number in range(arguments.rounds):
            for name, workers in (("one_process_all_cores", 1), ("two_workers_one_core_each", 2)):
                print(f"round {round_number + 1}: {name}", file=sys.stderr)
                runs[name].append(run_trainer(split_dir, work_dir / f"{name}-{round_number}", arguments.model,
                                              arguments.epochs, workers, arguments.seed,
                                              image_cache_mb=arguments.image_cache_mb))
        print("two workers, worker 1 killed in epoch 2", file=sys.stderr)
        killed = run_trainer(split_dir, work_dir / "killed", arguments.model, arguments.epochs, 2, arguments.seed,
                             kill_in_epoch=2, image_cache_mb=arguments.image_cache_mb)

    def median(name: str, key: str) -> float:
        return float(np.median([run[key] for run in runs[name]]))

    one, two = "one_process_all_cores", "two_workers_one_core_each"
    json.dump({
        "model": arguments.model, "classes": len(TUTORIAL_CLASSES), "images": split_counts,
        "epochs": arguments.epochs, "batch_size_per_replica": BATCH_SIZE, "image_cache_mb": arguments.image_cache_mb,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "runs": runs,
        "one_process_images_per_s": median(one, "images_per_s"),
        "two_workers_images_per_s": median(two, "images_per_s"),
        "scaling_efficiency": round(median(two, "images_per_s") / median(one, "images_per_s"), 3),
        "one_process_eval_accuracy": median(one, "eval_accuracy"),
        "two_workers_eval_accuracy": median(two, "eval_accuracy"),
        "killed_run": killed,
        "restart_cost_s": round(killed["wall_s"] - median(two, "wall_s"), 1),
        "restart_kill_to_training_again_s": killed["kill_to_training_again_s"],
    }, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
