"""One worker process of the Trainer's group (launcher.py starts them; so can any launcher that sets TF_CONFIG):

    python -m components.trainer.worker places-trainer-worker --job JOB.json [--cores 0,1] [--parent PID]

JOB.json is a run_fn.TrainingJob (the Trainer's FnArgs as JSON; the launcher writes it into the workers' log
folder). TF_CONFIG names the cluster and this worker's place in it. Lines meant for people start with
launcher.REPORT_PREFIX; TensorFlow's own logging goes to the same output.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from pathlib import Path

from components.trainer.launcher import REPORT_PREFIX, WORKER_TAG

_PR_SET_PDEATHSIG = 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m components.trainer.worker {WORKER_TAG}",
                                     description="One worker of the Trainer's MultiWorkerMirroredStrategy group.")
    parser.add_argument("tag", choices=[WORKER_TAG], help="marks the command line of every worker")
    parser.add_argument("--job", required=True, help="the TrainingJob JSON file")
    parser.add_argument("--cores", default="", help="CPU cores to run on, with commas (default: all)")
    parser.add_argument("--parent", type=int, default=0, help="die when this process (the launcher) does")
    args = parser.parse_args(argv)
    if args.parent:
        _die_with(args.parent)
    if args.cores:
        # Before TensorFlow starts: its thread pools size themselves by the cores this process may use.
        os.sched_setaffinity(0, {int(core) for core in args.cores.split(",")})

    from components.trainer.run_fn import TrainingJob, train

    train(TrainingJob.from_json(Path(args.job).read_text()),
          lambda line: print(f"{REPORT_PREFIX}{line}", flush=True))


def _die_with(parent: int) -> None:
    """The kernel kills this process when the launcher's ends, however it ends (SIGKILL included)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the launcher died before the request above took effect
        sys.exit(f"{WORKER_TAG}: the launcher (pid {parent}) is gone")


if __name__ == "__main__":
    main()
