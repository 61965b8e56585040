"""The TFX Trainer's entry point: `Trainer(run_fn="components.trainer.run_fn.run_fn", ...)`.

custom_config holds every field of core.config.TrainingConfig (model, epochs, batch size, workers, ...; see the
comments there), class_names, the class keys in label order, and worker_log_dir; pipeline/pipeline.py writes it
with custom_config.to_custom_config, and run_fn reads it back with from_custom_config.

Where the training runs:
    TF_CONFIG names a cluster      this process is one of its workers (an outside launcher set it: a TFJob's pod)
    training.workers > 1           launcher.py starts that many worker processes here and waits for them; each
                                   runs `train` on this same job (worker.py)
    otherwise                      `train` in this process, on one device or every local GPU
distribution.py picks the strategy; loop.py is the training loop every path runs.

train_args num_steps is the number of global batches in each epoch; 0 or unset (TFX gives None) makes each epoch
one pass over the train split. eval_args num_steps limits each validation to that many batches per replica; 0 or
unset means the whole eval split.

Writes, besides the SavedModel in fn_args.serving_model_dir (export.py), to fn_args.model_run_dir (the chief only;
the other workers write to scratch there and delete it):
    history.json            per epoch: loss, accuracy, val_loss, val_accuracy, steps, seconds, train_images_per_s
The evaluation by class and the confusion matrix are the Evaluator's (TFMA's); pipeline/report.py draws the plots.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

from components.trainer import HISTORY_FILE, distribution, export, launcher
from components.trainer.custom_config import TrainerInputs, from_custom_config
from components.trainer.input import (
    DECODED_IMAGE_BYTES,
    InputPart,
    count_examples,
    fits_in_memory,
    make_dataset,
    shard_paths,
)
from components.trainer.loop import Backup
from components.trainer.loop import train as train_loop
from components.trainer.model import build_model, compiles_with_xla

BACKUP_FOLDER = "backup"
SCRATCH_FOLDER = "scratch"


@dataclass(frozen=True)
class TrainingJob:
    """What the TFX Trainer asks run_fn for (its FnArgs, less what run_fn does not read), as plain data that a
    worker process reads back from JSON."""
    train_files: list[str]
    eval_files: list[str]
    train_steps: int | None
    eval_steps: int | None
    serving_model_dir: str
    model_run_dir: str
    custom_config: dict

    @classmethod
    def from_fn_args(cls, fn_args) -> TrainingJob:
        return cls(list(fn_args.train_files), list(fn_args.eval_files), fn_args.train_steps or None,
                   fn_args.eval_steps or None, fn_args.serving_model_dir, fn_args.model_run_dir,
                   dict(fn_args.custom_config or {}))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainingJob:
        return cls(**json.loads(text))

    @property
    def inputs(self) -> TrainerInputs:
        return from_custom_config(self.custom_config)


def run_fn(fn_args) -> None:
    """Train the configured model on fn_args.train_files, validate on fn_args.eval_files, write its history to
    fn_args.model_run_dir and export the serving model to fn_args.serving_model_dir."""
    job = TrainingJob.from_fn_args(fn_args)
    if job.inputs.training.workers > 1 and distribution.cluster_from_environment() is None:
        launcher.train_on_workers(job, print)
    else:
        train(job, print)


def train(job: TrainingJob, report: typing.Callable[[str], None]) -> None:
    """Train as this process's place in the cluster says (distribution.py), export if this is the chief."""
    # MultiWorkerMirroredStrategy must exist before TensorFlow does any other work in this process.
    cluster = distribution.cluster_from_environment()
    strategy = distribution.choose(cluster)
    inputs = job.inputs
    settings, class_names = inputs.training, inputs.class_names
    is_chief = cluster is None or cluster.is_chief
    keras.utils.set_random_seed(settings.seed)
    replicas = strategy.num_replicas_in_sync
    global_batch = settings.batch_size * replicas
    learning_rate = distribution.scaled_learning_rate(settings.learning_rate, replicas)
    policy = distribution.precision_policy(settings.precision)
    train_images = count_examples(job.train_files)
    steps_per_epoch = job.train_steps or math.ceil(train_images / global_batch)
    eval_images = count_examples(job.eval_files)
    cache_images = input_mode(train_images + eval_images, settings.image_cache_mb, report)
    scratch = f"{job.model_run_dir}/{SCRATCH_FOLDER}/worker-{cluster.index if cluster else 0}"
    backup = Backup(f"{job.model_run_dir}/{BACKUP_FOLDER}", f"{job.model_run_dir}/{BACKUP_FOLDER}" if is_chief
                    else scratch)
    resumed_epochs = backup.epochs_done()

    def dataset(files: list[str], training: bool):
        def for_input_pipeline(context: tf.distribute.InputContext):
            part = InputPart(context.input_pipeline_id, context.num_input_pipelines)
            if training:
                report(f"{cluster.name if cluster else 'this process'} reads train "
                       f"{part.describe(shard_paths(files))}")
            data = make_dataset(files, context.get_per_replica_batch_size(global_batch), training=training,
                                # After a restart, a new order: the one before it was partly trained on.
                                seed=settings.seed + resumed_epochs, cache_images=cache_images,
                                repeat=training or bool(job.eval_steps), part=part)
            return data.take(job.eval_steps) if job.eval_steps and not training else data
        return strategy.distribute_datasets_from_function(for_input_pipeline)

    keras.mixed_precision.set_dtype_policy(policy)
    try:
        with strategy.scope():
            model = build_model(settings.model, len(class_names), learning_rate)
        jit_compile = distribution.on_gpu() and compiles_with_xla(model)
        report(f"training {model.name} ({model.count_params():,} weights) for {settings.epochs} epochs of "
               f"{steps_per_epoch} steps: {_where(cluster, strategy)}, global batch {global_batch} "
               f"({settings.batch_size} per replica), learning rate {learning_rate:.6g}"
               f"{f' ({settings.learning_rate:g} x sqrt({replicas}))' if replicas > 1 else ''}, {policy}"
               f"{', XLA' if jit_compile else ''}; {train_images} train and {eval_images} eval images")
        history = train_loop(model, strategy, dataset(job.train_files, True), dataset(job.eval_files, False),
                             epochs=settings.epochs, steps_per_epoch=steps_per_epoch, global_batch=global_batch,
                             backup=backup, jit_compile=jit_compile, report=report)
        # Every worker exports (saving may need all of them), the chief where the Trainer's output goes.
        serving_model_dir = job.serving_model_dir if is_chief else f"{scratch}/serving_model"
        export.export(model, list(class_names), serving_model_dir)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    if not is_chief:
        tf.io.gfile.rmtree(scratch)
        report(f"{cluster.name}: trained as a replica; its copies in {scratch} removed (the chief's are the result)")
    distribution.wait_for_every_worker(strategy)
    if is_chief:
        tf.io.gfile.makedirs(job.model_run_dir)
        _write(f"{job.model_run_dir}/{HISTORY_FILE}", json.dumps(history, indent=2).encode())
        backup.clear()
        report(f"exported {model.name} to {job.serving_model_dir}; history in {job.model_run_dir}")


def input_mode(images: int, image_cache_mb: int, report: typing.Callable[[str], None] = print) -> bool:
    """Whether to cache the decoded images (True) or stream them, with the reason in the Trainer's log."""
    cache = fits_in_memory(images, image_cache_mb)
    needed_mb = images * DECODED_IMAGE_BYTES / 2**20
    report(f"input: {'cached in memory' if cache else 'streamed from the shards every epoch'}: {images} decoded "
           f"images take {needed_mb:.0f} MB, training.image_cache_mb is {image_cache_mb}")
    return cache


def _where(cluster, strategy) -> str:
    replicas = strategy.num_replicas_in_sync
    if cluster is not None:
        return (f"{cluster.name}{' (the chief)' if cluster.is_chief else ''} of a MultiWorkerMirroredStrategy "
                f"cluster, {replicas} replicas in all")
    if replicas > 1:
        return f"MirroredStrategy over {replicas} GPUs"
    return "one device"


def _write(path: str, content: bytes) -> None:
    # tf.io.gfile, not open(): model_run_dir may be on any file system TensorFlow reads.
    with tf.io.gfile.GFile(path, "wb") as file:
        file.write(content)
