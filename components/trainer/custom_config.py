"""The Trainer's custom_config: every field of core.config.TrainingConfig plus the class names, written by the
pipeline and read back by run_fn, so a new training setting is added to TrainingConfig alone.

TFX stores custom_config as JSON, so the dict holds only what JSON keeps: the class names as a list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.config import TrainingConfig

CLASS_NAMES_KEY = "class_names"
WORKER_LOG_DIR_KEY = "worker_log_dir"


@dataclass(frozen=True)
class TrainerInputs:
    """What run_fn trains with: the training settings, the class keys in label order (`category` i is
    class_names[i]; the model gets one output per name), and the local folder where the Trainer's worker
    processes write their logs (under the state folder)."""

    training: TrainingConfig
    class_names: tuple[str, ...]
    worker_log_dir: str


def to_custom_config(training: TrainingConfig, class_names: tuple[str, ...], worker_log_dir: str) -> dict:
    return {**dataclasses.asdict(training), CLASS_NAMES_KEY: list(class_names), WORKER_LOG_DIR_KEY: worker_log_dir}


def from_custom_config(custom_config: dict | None) -> TrainerInputs:
    """The custom_config to_custom_config wrote, checked: exactly its keys, at least one class, one epoch and one
    image per batch. ValueError names what is wrong."""
    custom_config = dict(custom_config or {})
    known = [field.name for field in dataclasses.fields(TrainingConfig)] + [CLASS_NAMES_KEY, WORKER_LOG_DIR_KEY]
    unknown = sorted(set(custom_config) - set(known))
    missing = [name for name in known if name not in custom_config]
    if unknown or missing:
        problems = ([f"has unknown keys {', '.join(unknown)}"] if unknown else []) + (
            [f"lacks {', '.join(missing)}"] if missing else [])
        raise ValueError(f"Trainer custom_config {' and '.join(problems)}: give exactly {', '.join(known)}")
    class_names = tuple(custom_config.pop(CLASS_NAMES_KEY))
    worker_log_dir = custom_config.pop(WORKER_LOG_DIR_KEY)
    inputs = TrainerInputs(TrainingConfig(**custom_config), class_names, worker_log_dir)
    if not inputs.class_names:
        raise ValueError("Trainer custom_config class_names is empty: give the class keys in label order")
    for name in ("epochs", "batch_size"):
        if getattr(inputs.training, name) < 1:
            raise ValueError(f"Trainer custom_config {name} is {getattr(inputs.training, name)}: give 1 or more")
    return inputs
