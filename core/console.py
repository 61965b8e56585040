"""Terminal output shared by every command: progress bars, tables, quiet library logs."""

from __future__ import annotations

import logging
import os
import sys
import typing
import warnings

from tqdm import tqdm


def quiet_libraries() -> None:
    """TensorFlow, Beam and absl log pages of start-up noise at INFO; keep warnings and errors only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("apache_beam", "absl", "tensorflow", "azure", "urllib3", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


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
