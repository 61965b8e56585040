"""The Trainer's worker group on this machine, for training.workers > 1: that many worker processes
(worker.py), each one worker of a MultiWorkerMirroredStrategy cluster that its TF_CONFIG names on 127.0.0.1 ports,
each pinned to its share of the CPU cores.

The launcher waits for them and shows the chief's lines (its epochs and progress); every worker's output goes to
<state>/logs/trainer/<start time>/worker-<i>.log. When a worker dies (killed, out of memory) the others wait on it
forever in their next collective, so the launcher stops them and starts the whole group again, up to
training.max_restarts times; the new group resumes from the chief's last end-of-epoch backup (loop.Backup). Past
the limit it fails with WorkersFailed, which names the dead worker's log. Workers never outlive the launcher:
it stops them when it ends, however it ends, and each worker asks the kernel to kill it if the launcher dies first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import typing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.config import PROJECT_ROOT, ConfigError, TrainingConfig
from core.errors import UserError

# In every worker's command line, so that an operator finds them: `pgrep -af places-trainer-worker`.
WORKER_TAG = "places-trainer-worker"
# Workers mark the lines meant for people with this, so the launcher can show them apart from TensorFlow's logs.
REPORT_PREFIX = "trainer: "
WORKER_HOST = "127.0.0.1"
_POLL_S = 0.2
_STOP_GRACE_S = 5.0


class WorkersFailed(UserError):
    """A worker of the Trainer's group died more often than training.max_restarts allows."""


@dataclass(frozen=True)
class WorkerPlan:
    """Where each worker runs: its CPU cores and its port, checked before anything starts."""
    cores: list[list[int]]
    ports: list[int]


def plan(settings: TrainingConfig, available_cores: typing.Collection[int] | None = None) -> WorkerPlan:
    """The cores and ports of settings.workers workers; ConfigError names the setting that cannot work."""
    available = sorted(os.sched_getaffinity(0) if available_cores is None else available_cores)
    workers = settings.workers
    share = settings.worker_cores or len(available) // workers
    if share == 0:
        raise ConfigError(f"training.workers is {workers}, but this machine gives the Trainer {len(available)} CPU "
                          f"cores and each worker needs one: set training.workers (--workers) to at most "
                          f"{len(available)}")
    if share * workers > len(available):
        raise ConfigError(f"training.worker_cores is {settings.worker_cores}: {workers} workers would need "
                          f"{share * workers} CPU cores, and this machine gives the Trainer {len(available)}: set it "
                          f"to at most {len(available) // workers}, or 0 to share the cores equally")
    return WorkerPlan(cores=[available[index * share:(index + 1) * share] for index in range(workers)],
                      ports=_ports(settings))


def _ports(settings: TrainingConfig) -> list[int]:
    if settings.worker_port == 0:
        return [_free_port() for _ in range(settings.workers)]
    ports = list(range(settings.worker_port, settings.worker_port + settings.workers))
    if ports[-1] > 65535:
        raise ConfigError(f"training.worker_port is {settings.worker_port}: {settings.workers} workers need ports "
                          f"up to {ports[-1]}, past 65535; set a lower one, or 0 for free ports")
    for port in ports:
        with socket.socket() as probe:
            # As gRPC binds, so that a port the last group left in TIME_WAIT is not taken for a busy one.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((WORKER_HOST, port))
            except OSError:
                raise ConfigError(f"port {port} on {WORKER_HOST} is taken, and training.worker_port is "
                                  f"{settings.worker_port} (the workers use {ports[0]} to {ports[-1]}): set "
                                  f"training.worker_port to a free range, or 0 for free ports") from None
    return ports


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((WORKER_HOST, 0))
        return probe.getsockname()[1]


def train_on_workers(job, report: typing.Callable[[str], None]) -> None:
    """Run `job` (run_fn.TrainingJob) on training.workers worker processes until they all finish, starting the
    group again after a worker dies (see the module docstring)."""
    settings = job.inputs.training
    worker_plan = plan(settings)  # before anything starts: a bad core or port setting costs nothing
    log_dir = Path(job.inputs.worker_log_dir) / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    log_dir.mkdir(parents=True, exist_ok=True)
    job_file = log_dir / "job.json"
    job_file.write_text(job.to_json())
    report(f"training on {settings.workers} worker processes ({WORKER_TAG}), cores "
           f"{'; '.join(','.join(map(str, cores)) for cores in worker_plan.cores)}; their logs: {log_dir}")
    for start in range(settings.max_restarts + 1):
        group = _Group.start(job_file, log_dir, worker_plan if start == 0 else plan(settings), start, settings)
        try:
            dead = group.wait(report)
        finally:
            group.stop()
        if dead is None:
            return
        index, returncode = dead
        log = group.logs[index]
        if start == settings.max_restarts:
            raise WorkersFailed(f"the Trainer's worker {index} {_death(returncode)}, and the group was already "
                                f"started again {settings.max_restarts} times (training.max_restarts); see its log "
                                f"{log}. Fix the cause (out of memory: a smaller training.batch_size or fewer "
                                f"training.workers) and run again")
        report(f"worker {index} {_death(returncode)} (log: {log}); stopped the others, starting the group again "
               f"(restart {start + 1} of {settings.max_restarts}) from the last finished epoch")


def _death(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        cause = " (the kernel's out-of-memory killer sends it too)" if -returncode == signal.SIGKILL else ""
        return f"was killed by {name}{cause}"
    return f"exited with code {returncode}"


@dataclass
class _Group:
    processes: list[subprocess.Popen]
    logs: list[Path]
    # Where this start's lines begin in the chief's log, which every start of the group appends to.
    chief_log_start: int = 0

    @classmethod
    def start(cls, job_file: Path, log_dir: Path, worker_plan: WorkerPlan, start: int,
              settings: TrainingConfig) -> _Group:
        cluster = {"worker": [f"{WORKER_HOST}:{port}" for port in worker_plan.ports]}
        gpus = _visible_gpus()
        processes, logs = [], []
        chief_log = log_dir / "worker-0.log"
        chief_log_start = chief_log.stat().st_size if chief_log.exists() else 0
        try:
            for index, cores in enumerate(worker_plan.cores):
                log = log_dir / f"worker-{index}.log"
                env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                              "task": {"type": "worker", "index": index}}),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
                if gpus:
                    # Each worker its own GPUs where there are enough; none would share one.
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[index::len(worker_plan.cores)])
                with open(log, "a") as output:
                    output.write(f"=== {WORKER_TAG} {index} of {len(worker_plan.cores)}, start {start + 1} of "
                                 f"{settings.max_restarts + 1}, cores {','.join(map(str, cores))}, port "
                                 f"{worker_plan.ports[index]} ===\n")
                    output.flush()
                    processes.append(subprocess.Popen(
                        [sys.executable, "-m", "components.trainer.worker", WORKER_TAG, "--job", str(job_file),
                         "--cores", ",".join(map(str, cores)), "--parent", str(os.getpid())],
                        stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                        cwd=PROJECT_ROOT))
                with open(log, "a") as output:
                    output.write(f"=== pid {processes[-1].pid} ===\n")
                logs.append(log)
        except BaseException:
            cls(processes, logs).stop()
            raise
        return cls(processes, logs, chief_log_start)

    def wait(self, report: typing.Callable[[str], None]) -> tuple[int, int] | None:
        """Until the chief has finished, or a worker has died; shows the chief's lines meanwhile. None when the chief
        finished (it has written the results, so training is complete whatever happens to the others now), else the
        dead worker's index and exit code."""
        chief_log = _Follower(self.logs[0], self.chief_log_start)
        while True:
            finished = self.processes[0].poll() == 0
            if finished:
                self._wait_until(lambda: all(process.poll() is not None for process in self.processes))
            for line in chief_log.new_lines():
                if line.startswith(REPORT_PREFIX):
                    report(line[len(REPORT_PREFIX):])
            if finished:
                return None
            if any(process.poll() not in (None, 0) for process in self.processes):
                return self._first_death()
            time.sleep(_POLL_S)

    def _wait_until(self, done: typing.Callable[[], bool]) -> None:
        deadline = time.monotonic() + _STOP_GRACE_S
        while time.monotonic() < deadline and not done():
            time.sleep(_POLL_S)

    def _first_death(self) -> tuple[int, int]:
        """The worker whose death ended the group: the others fail soon after, on their next collective, with an
        error of their own, so one killed by a signal is the cause wherever there is one."""
        self._wait_until(lambda: any((process.poll() or 0) < 0 for process in self.processes))
        failed = [(index, process.poll()) for index, process in enumerate(self.processes)
                  if process.poll() not in (None, 0)]
        return min(failed, key=lambda failure: (failure[1] >= 0, failure[0]))

    def stop(self) -> None:
        """Every worker still running ends: SIGTERM, then SIGKILL after a grace period."""
        running = [process for process in self.processes if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Follower:
    """The complete lines a log file gains from `offset` on, as they come."""

    def __init__(self, path: Path, offset: int):
        self.path, self.offset, self.partial = path, offset, ""

    def new_lines(self) -> list[str]:
        with open(self.path, errors="replace") as file:
            file.seek(self.offset)
            text = file.read()
            self.offset = file.tell()
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        return lines


def _visible_gpus() -> list[str]:
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [gpu for gpu in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    import tensorflow as tf

    return [str(index) for index in range(len(tf.config.list_physical_devices("GPU")))]
