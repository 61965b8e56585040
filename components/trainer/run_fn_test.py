import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from components.trainer.conftest import CLASS_NAMES, encoded_image, random_pixels, serialized_example
from components.trainer.custom_config import to_custom_config
from components.trainer.run_fn import run_fn
from core.config import TrainingConfig
from data_schema import IMAGE_SIZE


def _fn_args(example_splits, tmp_path, train_steps=None, eval_steps=None, **training):
    """What the TFX Trainer passes (tfx.components.FnArgs, minus what run_fn does not read)."""
    training = TrainingConfig(**{"seed": 0, "batch_size": 8, "image_cache_mb": 0, **training})
    return SimpleNamespace(
        train_files=[example_splits["train"]], eval_files=[example_splits["eval"]],
        train_steps=train_steps, eval_steps=eval_steps,
        serving_model_dir=str(tmp_path / "serving_model"), model_run_dir=str(tmp_path / "model_run"),
        custom_config=to_custom_config(training, CLASS_NAMES, str(tmp_path / "worker-logs")))


@pytest.mark.slow
def test_run_fn_trains_writes_its_history_and_exports_a_model_that_serves_alone(example_splits, tmp_path):
    fn_args = _fn_args(example_splits, tmp_path, model="better_cnn", epochs=2, image_cache_mb=2048)

    run_fn(fn_args)

    run_dir = tmp_path / "model_run"
    history = json.loads((run_dir / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history] == [1, 2]
    assert [epoch["steps"] for epoch in history] == [3, 3]  # 24 images in batches of 8
    for epoch in history:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "train_images_per_s"} <= set(epoch)
        assert 0 <= epoch["val_accuracy"] <= 1 and epoch["seconds"] > 0 and epoch["train_images_per_s"] > 0

    # A fresh Python that never imports this project: the SavedModel must carry its preprocessing and classes.
    (tmp_path / "image.png").write_bytes(encoded_image(random_pixels(300, 200, seed=5), "PNG"))
    (tmp_path / "example.pb").write_bytes(
        serialized_example(encoded_image(random_pixels(IMAGE_SIZE, IMAGE_SIZE, seed=6)), 0))
    (tmp_path / "serve.py").write_text(textwrap.dedent(f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({fn_args.serving_model_dir!r})
        image = open("image.png", "rb").read()
        pixels = tf.image.resize(tf.io.decode_image(image, channels=3, expand_animations=False), (128, 128),
                                 antialias=True)[tf.newaxis] / 255.0
        probabilities = {{
            "pixels": loaded.signatures["serving_default"](pixels=pixels),
            "images": loaded.signatures["predict_images"](images=tf.constant([image])),
            "examples": loaded.signatures["predict_examples"](examples=tf.constant([open("example.pb", "rb").read()])),
        }}
        print(json.dumps({{
            "class_names": [name.decode() for name in loaded.class_names.numpy()],
            "probabilities": {{name: output["probabilities"].numpy().tolist()
                              for name, output in probabilities.items()}},
        }}))
    """))
    served = subprocess.run([sys.executable, "serve.py"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert served.returncode == 0, served.stderr[-3000:]
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert answer["class_names"] == list(CLASS_NAMES)
    for name, probabilities in answer["probabilities"].items():
        assert len(probabilities) == 1 and len(probabilities[0]) == len(CLASS_NAMES), name
        assert sum(probabilities[0]) == pytest.approx(1.0, abs=1e-5), name
    assert answer["probabilities"]["pixels"][0] == pytest.approx(answer["probabilities"]["images"][0], abs=1e-6)


@pytest.mark.slow  # a whole run_fn: two epochs of training and the export
def test_train_and_eval_steps_are_per_epoch_and_may_exceed_one_pass(example_splits, tmp_path):
    # 24 training images in batches of 8 are 3 batches; 12 eval images are 2 batches, the second one of 4.
    run_fn(_fn_args(example_splits, tmp_path, train_steps=5, eval_steps=2, model="seed_cnn", epochs=2))

    history = json.loads((tmp_path / "model_run" / "history.json").read_text())
    assert [epoch["steps"] for epoch in history] == [5, 5]


@pytest.mark.slow  # a whole run_fn
def test_mixed_precision_trains_on_cpu_and_the_model_still_answers_float32_probabilities(example_splits, tmp_path):
    import tensorflow as tf

    run_fn(_fn_args(example_splits, tmp_path, model="seed_cnn", epochs=1, precision="mixed_float16"))

    loaded = tf.saved_model.load(str(tmp_path / "serving_model"))
    pixels = tf.random.uniform([2, IMAGE_SIZE, IMAGE_SIZE, 3], seed=3)
    probabilities = loaded.signatures["serving_default"](pixels=pixels)["probabilities"]
    assert probabilities.dtype == tf.float32
    assert probabilities.numpy().sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-3)
    import keras
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the process's policy is restored
