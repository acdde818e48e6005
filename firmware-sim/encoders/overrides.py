"""Injected values: the next few frames of a stream carry given raw field values (sentinels and
out-of-range values included) in place of what the stream would send. Shared by the serial streams."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

F = TypeVar("F")


class FrameOverrides:
    def __init__(self, fields: Iterable[str], what: str) -> None:
        self._known = frozenset(fields)
        self._what = what  # how the stream calls its fields, for the error
        self._values: dict[str, int] = {}
        self._left = 0

    def set(self, frames: int, fields: Mapping[str, int]) -> None:
        """Send ``fields`` (field names to raw values) in the next ``frames`` frames."""
        unknown = set(fields) - self._known
        if unknown:
            raise ValueError(f"no {self._what} {', '.join(sorted(unknown))}")
        self._values, self._left = dict(fields), frames

    def apply(self, frame: F) -> F:
        """``frame`` with the pending values, while frames are left to carry them."""
        if self._left <= 0:
            return frame
        self._left -= 1
        changed: Any = dataclasses.replace(frame, **self._values)  # type: ignore[type-var]
        return changed  # type: ignore[no-any-return]
