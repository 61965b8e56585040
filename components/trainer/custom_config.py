"""The Trainer's custom_config: every field of core.config.TrainingConfig plus the class names, written by the
pipeline and read back by run_fn, so a new training setting is added to TrainingConfig alone.

TFX stores custom_config as JSON, so the dict holds only what JSON keeps: the class names as a list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.config import TrainingConfig

CLASS_NAMES_KEY = "class_names"


@dataclass(frozen=True)
class TrainerInputs:
    """What run_fn trains with: the training settings, and the class keys in label order (`category` i is
    class_names[i]; the model gets one output per name)."""

    training: TrainingConfig
    class_names: tuple[str, ...]


def to_custom_config(training: TrainingConfig, class_names: tuple[str, ...]) -> dict:
    return {**dataclasses.asdict(training), CLASS_NAMES_KEY: list(class_names)}


def from_custom_config(custom_config: dict | None) -> TrainerInputs:
    """The custom_config to_custom_config wrote, checked: exactly its keys, at least one class, one epoch and one
    image per batch. ValueError names what is wrong."""
    custom_config = dict(custom_config or {})
    known = [field.name for field in dataclasses.fields(TrainingConfig)] + [CLASS_NAMES_KEY]
    unknown = sorted(set(custom_config) - set(known))
    missing = [name for name in known if name not in custom_config]
    if unknown or missing:
        problems = ([f"has unknown keys {', '.join(unknown)}"] if unknown else []) + (
            [f"lacks {', '.join(missing)}"] if missing else [])
        raise ValueError(f"Trainer custom_config {' and '.join(problems)}: give exactly {', '.join(known)}")
    class_names = tuple(custom_config.pop(CLASS_NAMES_KEY))
    inputs = TrainerInputs(TrainingConfig(**custom_config), class_names)
    if not inputs.class_names:
        raise ValueError("Trainer custom_config class_names is empty: give the class keys in label order")
    for name in ("epochs", "batch_size"):
        if getattr(inputs.training, name) < 1:
            raise ValueError(f"Trainer custom_config {name} is {getattr(inputs.training, name)}: give 1 or more")
    return inputs
