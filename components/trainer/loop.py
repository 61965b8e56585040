"""The one training loop, for every strategy (one device, the GPUs of one machine, workers on many): a step under
`strategy.run` over each replica's part of the batch, with gradients summed across replicas by the optimizer, and
an epoch's end marked by a backup that a restarted worker group resumes from.

Why not Keras' fit(): with TensorFlow 2.16, Keras 3's fit() fails under MultiWorkerMirroredStrategy (keras-team/keras
#20585, tensorflow/tensorflow#72388); tf_keras's fit() works but is a second Keras whose layers the models would
have to be written for. This loop is what TensorFlow's guide "Custom training loop with MultiWorkerMirroredStrategy"
does, with the same Keras 3 model that fit() trained before, so one model definition serves every path.

The backup plays the part of Keras' BackupAndRestore callback (which belongs to fit()): after each epoch the chief
writes a checkpoint of every model and optimizer variable plus the history so far to backup_dir, and the other
workers write theirs to scratch and delete it (TensorFlow's rule: every worker saves, only the chief's copy is kept).
A group started again restores the newest backup and goes on with the next epoch.
"""

from __future__ import annotations

import json
import math
import time
import typing
from dataclasses import dataclass

import keras
import tensorflow as tf

# Progress lines per epoch besides the epoch's own line.
_PROGRESS_LINES = 4
_PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class Backup:
    """Where this worker writes its end-of-epoch checkpoints: backup_dir if it is the chief, else its scratch
    folder, deleted after each save. Every worker restores from backup_dir."""
    backup_dir: str
    write_dir: str

    @property
    def is_chief(self) -> bool:
        return self.write_dir == self.backup_dir

    def epochs_done(self) -> int:
        """The epochs the newest backup holds: 0 before the first epoch ends."""
        return len(self._progress()["history"])

    def _progress(self) -> dict:
        path = f"{self.backup_dir}/{_PROGRESS_FILE}"
        if not tf.io.gfile.exists(path):
            return {"checkpoint": None, "history": []}
        with tf.io.gfile.GFile(path) as file:
            return json.load(file)

    def restore(self, checkpoint: tf.train.Checkpoint) -> list[dict]:
        """The history of the epochs the newest backup holds, its variables restored into `checkpoint`; [] if none."""
        progress = self._progress()
        if progress["checkpoint"] is None:
            return []
        checkpoint.read(f"{self.backup_dir}/{progress['checkpoint']}").assert_existing_objects_matched()
        return progress["history"]

    def save(self, checkpoint: tf.train.Checkpoint, history: list[dict]) -> None:
        saved = checkpoint.write(f"{self.write_dir}/epoch-{len(history)}")
        if not self.is_chief:
            tf.io.gfile.rmtree(self.write_dir)
            return
        # The progress file names the checkpoint, and is replaced in one rename after it is complete, so a worker
        # killed while saving leaves the previous epoch's backup whole.
        progress_path = f"{self.backup_dir}/{_PROGRESS_FILE}"
        with tf.io.gfile.GFile(progress_path + ".tmp", "w") as file:
            json.dump({"checkpoint": saved.rsplit("/", 1)[-1], "history": history}, file)
        tf.io.gfile.rename(progress_path + ".tmp", progress_path, overwrite=True)
        for old in tf.io.gfile.glob(f"{self.backup_dir}/epoch-{len(history) - 1}.*"):
            tf.io.gfile.remove(old)

    def clear(self) -> None:
        for folder in {self.backup_dir, self.write_dir}:
            if tf.io.gfile.exists(folder):
                tf.io.gfile.rmtree(folder)


def train(model: keras.Model, strategy: tf.distribute.Strategy, train_data, eval_data, *, epochs: int,
          steps_per_epoch: int, global_batch: int, backup: Backup, jit_compile: bool,
          report: typing.Callable[[str], None]) -> list[dict]:
    """Train `model` (built and compiled under `strategy.scope()`) from the newest backup on, to `epochs` epochs of
    `steps_per_epoch` global batches from `train_data` (a distributed dataset that repeats), validating on all
    of `eval_data` (a distributed dataset, one pass) after each; returns the history of every epoch, those the
    backup held included: loss, accuracy, val_loss, val_accuracy, steps, seconds, train_images_per_s."""
    optimizer = model.optimizer
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model_variables=list(model.variables),
                                     optimizer_variables=list(optimizer.variables))
    history = backup.restore(checkpoint)
    if history:
        report(f"resumed from the backup of epoch {len(history)} in {backup.backup_dir}: training epochs "
               f"{len(history) + 1} to {epochs}")
    train_one_batch = train_step(model, strategy, global_batch, jit_compile)
    evaluate = _evaluation(model, strategy)
    batches = iter(train_data)
    for epoch in range(len(history) + 1, epochs + 1):
        started = time.monotonic()
        totals = tf.zeros([3])
        progress_every = max(1, math.ceil(steps_per_epoch / (_PROGRESS_LINES + 1)))
        for step in range(1, steps_per_epoch + 1):
            totals += train_one_batch(batches)
            if step % progress_every == 0 and step < steps_per_epoch:
                loss, accuracy = _means(totals)
                report(f"epoch {epoch}/{epochs}: {step}/{steps_per_epoch} steps, loss {loss:.4f}, "
                       f"accuracy {accuracy:.4f}")
        train_seconds = time.monotonic() - started
        loss, accuracy = _means(totals)
        val_loss, val_accuracy = _means(evaluate(eval_data))
        seconds = time.monotonic() - started
        history.append({"epoch": epoch, "loss": loss, "accuracy": accuracy, "val_loss": val_loss,
                        "val_accuracy": val_accuracy, "steps": steps_per_epoch, "seconds": round(seconds, 3),
                        "train_images_per_s": round(steps_per_epoch * global_batch / train_seconds, 1)})
        report(f"epoch {epoch}/{epochs}: {steps_per_epoch} steps in {seconds:.1f} s "
               f"({history[-1]['train_images_per_s']} images/s), loss {loss:.4f}, accuracy {accuracy:.4f}, "
               f"val_loss {val_loss:.4f}, val_accuracy {val_accuracy:.4f}")
        backup.save(checkpoint, history)
    return history


def replica_train_step(model: keras.Model, global_batch: int, jit_compile: bool):
    """One replica's training step on its part of a global batch: (pixels, labels) -> [loss sum, correct, images]."""
    optimizer = model.optimizer

    @tf.function(jit_compile=jit_compile)
    def replica_step(pixels, labels):
        with tf.GradientTape() as tape:
            probabilities = model(pixels, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            # The mean over the global batch, so that the replicas' gradients, summed, are the batch's gradient.
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            # Under mixed_float16 compile() wrapped the optimizer in a LossScaleOptimizer, whose apply unscales.
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return _sums(losses, probabilities, labels)

    return replica_step


def train_step(model: keras.Model, strategy: tf.distribute.Strategy, global_batch: int, jit_compile: bool):
    """One global step: the next batch from an iterator over a distributed dataset, trained on by every replica;
    returns [loss sum, correct, images] summed over the replicas."""
    replica_step = replica_train_step(model, global_batch, jit_compile)

    @tf.function
    def step(batches):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=next(batches)), axis=None)

    return step


def _evaluation(model: keras.Model, strategy: tf.distribute.Strategy):
    def replica_step(pixels, labels):
        def sums():
            probabilities = model(pixels, training=False)
            return _sums(keras.losses.sparse_categorical_crossentropy(labels, probabilities), probabilities, labels)

        # The empty batches below lose their image shape on the way, which the model's layers refuse.
        return tf.cond(tf.size(labels) > 0, sums, lambda: tf.zeros([3]))

    @tf.function
    def evaluate(batches):
        # A worker whose part is used up gets empty batches until every worker's is (tf.distribute agrees on the
        # end of a distributed dataset), so each one runs as many steps and the sums cover every eval image once.
        totals = tf.zeros([3])
        for pixels, labels in batches:
            totals += strategy.reduce(tf.distribute.ReduceOp.SUM,
                                      strategy.run(replica_step, args=(pixels, labels)), axis=None)
        return totals

    return evaluate


def _sums(losses, probabilities, labels) -> tf.Tensor:
    """[sum of losses, correct predictions, images] of one replica's batch."""
    correct = tf.cast(tf.argmax(probabilities, axis=-1), labels.dtype) == labels
    return tf.stack([tf.reduce_sum(tf.cast(losses, tf.float32)), tf.reduce_sum(tf.cast(correct, tf.float32)),
                     tf.cast(tf.size(labels), tf.float32)])


def _means(totals: tf.Tensor) -> tuple[float, float]:
    loss_sum, correct, images = (float(value) for value in totals.numpy())
    return (loss_sum / images, correct / images) if images else (math.nan, math.nan)
