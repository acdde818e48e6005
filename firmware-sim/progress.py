"""Progress lines for technicians on long runs: one line to stderr every few seconds, unless quiet."""

from __future__ import annotations

import sys
from typing import TextIO

PROGRESS_EVERY_S = 5.0


class Progress:
    """Notes at once (:meth:`note`), and a period's progress line when :meth:`due` says so."""

    def __init__(self, *, quiet: bool = False, every: float = PROGRESS_EVERY_S, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.every = every
        self.stream = stream
        self._next: float | None = None

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"[hut-sim] {message}", file=self.stream or sys.stderr, flush=True)

    def due(self, now: float) -> bool:
        """True once a period (on the caller's clock) after the previous True; the first period starts now.
        Always False when quiet, so that nobody builds a line that will not be shown."""
        if self._next is None:
            self._next = now + self.every
            return False
        if self.quiet or now < self._next:
            return False
        # Catch up without a burst of lines after a stall.
        while self._next <= now:
            self._next += self.every
        return True
