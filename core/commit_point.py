"""The commit point of a job's output: a JSON document that the driver writes last, in one piece, beside the folder
it names (an ingestion's manifest.json, a batch prediction's summary.json). A reader that finds one finds that
folder complete; what a failed job left behind is named by none.
"""

from __future__ import annotations

import dataclasses
import json
import typing

_Document = typing.TypeVar("_Document", bound="CommitPoint")


@dataclasses.dataclass(frozen=True)
class CommitPoint:
    """Base of the frozen dataclasses written as commit points: their fields as JSON, and back."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls: type[_Document], text: str) -> _Document:
        """ValueError where `text` is not JSON with exactly this document's fields."""
        try:
            return cls(**json.loads(text))
        except TypeError as error:
            raise ValueError(f"its fields do not match ({error})") from None
