"""Which tf.distribute strategy the Trainer trains under, and what follows from it: the replicas, the global batch,
the learning rate, who writes, and the precision.

    TF_CONFIG names a cluster   MultiWorkerMirroredStrategy: this process is one worker of it, whoever set
                                TF_CONFIG (the Trainer's own launcher, launcher.py, or Kubeflow's TFJob, Azure ML,
                                Vertex AI); every GPU of this worker is a replica
    more than one local GPU     MirroredStrategy over all of them
    otherwise                   TensorFlow's default strategy: one device (the GPU if there is one, else the CPU)

TensorFlow's own rule for MultiWorkerMirroredStrategy: create it before any other TensorFlow work in the process,
so choose() is called first thing.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import tensorflow as tf

from core.config import ConfigError

TF_CONFIG_ENV = "TF_CONFIG"


@dataclass(frozen=True)
class Cluster:
    """This process's place in the worker cluster that TF_CONFIG names."""
    workers: int
    index: int
    # Kubeflow's TFJob and Vertex AI may name a separate "chief" task; without one, worker 0 is the chief.
    is_chief: bool

    @property
    def name(self) -> str:
        return f"worker {self.index} of {self.workers}"


def cluster_from_environment(environ=os.environ) -> Cluster | None:
    """The cluster TF_CONFIG describes, or None when it names none (unset, or a cluster of one task)."""
    text = environ.get(TF_CONFIG_ENV, "")
    if not text.strip():
        return None
    try:
        tf_config = json.loads(text)
        tasks = tf_config["cluster"]
        task_type, index = tf_config["task"]["type"], int(tf_config["task"]["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"${TF_CONFIG_ENV} is not a TF_CONFIG ({error!r}): it takes "
                          '{"cluster": {"worker": ["HOST:PORT", ...]}, "task": {"type": "worker", "index": 0}}'
                          ", or unset it to train in this process") from None
    workers = sum(len(tasks.get(kind, [])) for kind in ("chief", "worker"))
    if workers < 2:
        return None
    has_chief = bool(tasks.get("chief"))
    is_chief = task_type == "chief" or (not has_chief and task_type == "worker" and index == 0)
    position = index + (1 if has_chief and task_type == "worker" else 0)
    return Cluster(workers=workers, index=position, is_chief=is_chief)


def choose(cluster: Cluster | None) -> tf.distribute.Strategy:
    """The strategy for this process (see the module docstring)."""
    if cluster is not None:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def wait_for_every_worker(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker of the strategy has called it: a one-number all-reduce.

    The chief hosts the cluster's coordination service, so a worker still busy when the chief's process ends loses
    it and aborts halfway; the chief waits here until the others are done.
    """
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def scaled_learning_rate(learning_rate: float, replicas: int) -> float:
    """training.learning_rate for `replicas` replicas, each with a batch of training.batch_size.

    The square-root rule: the global batch grows with the replicas, and for Adam the rate that keeps training the
    same grows with the square root of the batch (Malladi et al., "On the SDEs and Scaling Rules for Adaptive
    Gradient Algorithms", 2022), where SGD's grows linearly (Goyal et al., 2017). The linear rule would give Adam
    steps too large for the first epochs on the few hundred images per class this project is tried with.
    """
    return learning_rate * math.sqrt(replicas)


def precision_policy(precision: str) -> str:
    """The Keras dtype policy for training.precision: "auto" means mixed_float16 on a GPU whose compute capability
    is 7.0 or newer (float16 tensor cores), float32 everywhere else, the CPU included."""
    if precision != "auto":
        return precision
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and all(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) >= (7, 0)
                    for gpu in gpus):
        return "mixed_float16"
    return "float32"


def on_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))
