"""Exponential backoff with full jitter, shared by every reconnect loop of the gateway."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """``await backoff.wait()`` sleeps ever longer (to ``maximum``); ``reset()`` after a success."""

    def __init__(self, minimum: float, maximum: float, *, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.minimum * 2**self.attempts)
        self.attempts += 1
        # Full jitter spreads the reconnects of thousands of huts after a broker restart.
        return self._rng.uniform(self.minimum, max(self.minimum, ceiling))

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.attempts = 0
