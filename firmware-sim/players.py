"""What hut-sim can play: for each driver, a stream of encoded frames at the device's own pace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from healthhut.firmware_sim.encoders.contec_cms50 import SAMPLE_RATE_HZ, Cms50Stream


class FrameSource(Protocol):
    def frames(self, n: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Player:
    """A playable device: its frame rate and a factory taking the command-line settings."""

    driver: str
    description: str
    frames_per_second: float
    new_source: Callable[[int, int, int | None], FrameSource]


PLAYERS: dict[str, Player] = {
    "contec-cms50": Player(
        driver="contec-cms50",
        description="Contec CMS50D+/CMS50E pulse oximeter, 5-byte live protocol at 60 frames/s",
        frames_per_second=SAMPLE_RATE_HZ,
        new_source=lambda spo2, pulse_rate, seed: Cms50Stream(spo2, pulse_rate, seed=seed),
    ),
}
