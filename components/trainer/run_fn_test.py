import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from PIL import Image

from components.trainer.conftest import CLASS_NAMES, encoded_image, random_pixels, serialized_example
from components.trainer.run_fn import TrainerConfig, run_fn
from data_schema import IMAGE_SIZE


def _fn_args(example_splits, tmp_path, train_steps=None, eval_steps=None, **custom_config):
    """What the TFX Trainer passes (tfx.components.FnArgs, minus what run_fn does not read)."""
    return SimpleNamespace(
        train_files=[example_splits["train"]], eval_files=[example_splits["eval"]],
        train_steps=train_steps, eval_steps=eval_steps,
        serving_model_dir=str(tmp_path / "serving_model"), model_run_dir=str(tmp_path / "model_run"),
        custom_config={"class_names": list(CLASS_NAMES), "seed": 0, "batch_size": 8, "learning_rate": 0.001,
                       "image_cache_mb": 0, **custom_config})


@pytest.mark.slow
def test_run_fn_trains_writes_its_reports_and_exports_a_model_that_serves_alone(example_splits, tmp_path):
    fn_args = _fn_args(example_splits, tmp_path, model="better_cnn", epochs=2, image_cache_mb=2048)

    run_fn(fn_args)

    run_dir = tmp_path / "model_run"
    history = json.loads((run_dir / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history] == [1, 2]
    assert [epoch["steps"] for epoch in history] == [3, 3]  # 24 images in batches of 8
    for epoch in history:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "train_images_per_s"} <= set(epoch)
        assert 0 <= epoch["val_accuracy"] <= 1 and epoch["seconds"] > 0 and epoch["train_images_per_s"] > 0
    for plot in ("accuracy_vs_epoch.png", "confusion_matrix.png"):
        with Image.open(run_dir / plot) as image:
            assert image.format == "PNG" and min(image.size) >= 400
    report = json.loads((run_dir / "eval_report.json").read_text())
    assert report["images"] == 12 and sum(map(sum, report["confusion_matrix"])) == 12
    assert report["class_names"] == list(CLASS_NAMES)

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


def test_train_and_eval_steps_are_per_epoch_and_may_exceed_one_pass(example_splits, tmp_path):
    # 24 training images in batches of 8 are 3 batches; 12 eval images are 2 batches, the second one of 4.
    run_fn(_fn_args(example_splits, tmp_path, train_steps=5, eval_steps=2, model="seed_cnn", epochs=2))

    history = json.loads((tmp_path / "model_run" / "history.json").read_text())
    assert [epoch["steps"] for epoch in history] == [5, 5]
    report = json.loads((tmp_path / "model_run" / "eval_report.json").read_text())
    assert report["images"] == 2 * 8


def test_custom_config_names_unknown_and_missing_keys():
    with pytest.raises(ValueError, match="has unknown keys epoch and lacks epochs, batch_size, .*: give exactly"):
        TrainerConfig.from_custom_config({"class_names": ["glacier"], "model": "seed_cnn", "epoch": 3})
    with pytest.raises(ValueError, match="class_names is empty"):
        TrainerConfig.from_custom_config({"class_names": [], "model": "seed_cnn", "epochs": 1, "batch_size": 1,
                                          "learning_rate": 0.001, "seed": 0, "image_cache_mb": 0})
