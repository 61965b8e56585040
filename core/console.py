"""Terminal output shared by every command: progress bars, tables, quiet library logs."""

from __future__ import annotations

import logging
import os
import sys
import typing
import warnings

from tqdm import tqdm


def quiet_libraries() -> None:
    """TensorFlow, Beam and absl log pages of start-up noise; keep warnings and errors only. TensorFlow's C++
    log level 3: on machines without a GPU it logs its CUDA plugin registration as errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # MLflow draws a progress bar per artifact download; the commands print their own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("apache_beam", "absl", "azure", "urllib3", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # TensorFlow warns about its own deprecated APIs that TFX and TFMA call; nothing a user can act on.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_drop_known_noise)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # MLflow suggests type hints and input examples for models it did not build; ours carry a signature.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")


# Library warnings that say nothing about this project's runs (TFX's resolver and TFMA's loader internals).
_KNOWN_NOISE = ("ArtifactQuery.property_predicate is not supported", "Fail to find metrics for model name")


def _drop_known_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(noise in message for noise in _KNOWN_NOISE)


def progress(iterable: typing.Iterable | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it") -> tqdm:
    """A progress bar on stderr when it is a terminal (or PLACES_PROGRESS=1), silent otherwise."""
    forced = os.environ.get("PLACES_PROGRESS")
    disable = (forced == "0") if forced is not None else not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                file=sys.stderr, leave=False)


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(nothing)"
    columns = columns or list(rows[0])
    cells = [[str(row.get(column, "")) if row.get(column) is not None else "" for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip(),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines)
