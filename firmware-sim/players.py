"""What hut-sim can play: for each driver, a stream of encoded frames at the device's own pace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from healthhut.firmware_sim.encoders.contec_cms50 import SAMPLE_RATE_HZ, Cms50Stream
from healthhut.firmware_sim.encoders.contec_cms50_v2 import Cms50V2Stream
from healthhut.firmware_sim.encoders.healthypi import SAMPLE_RATE_HZ as HEALTHYPI_RATE_HZ
from healthhut.firmware_sim.encoders.healthypi import HealthyPiStream


class FrameSource(Protocol):
    def frames(self, n: int) -> bytes: ...


@runtime_checkable
class CommandSink(Protocol):
    """A source that listens to the host, as devices with a start command do."""

    def receive(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Player:
    """A playable device: its frame rate and a factory taking the command-line settings."""

    driver: str
    description: str
    frames_per_second: float
    new_source: Callable[[int, int, int | None], FrameSource]
    # Other protocol generations of the device, named as the driver's ``protocol`` setting names them;
    # ``default_protocol`` names this player's own.
    default_protocol: str | None = None
    protocols: Mapping[str, Player] = field(default_factory=lambda: MappingProxyType({}))

    def for_protocol(self, protocol: str | None) -> Player:
        """This player, or its sibling for ``protocol``. KeyError says which protocols there are."""
        if protocol is None or protocol == self.default_protocol:
            return self
        try:
            return self.protocols[protocol]
        except KeyError:
            known = ", ".join(filter(None, (self.default_protocol, *self.protocols))) or "none"
            raise KeyError(f"{self.driver} has no protocol {protocol!r}; it has: {known}") from None


PLAYERS: dict[str, Player] = {
    "contec-cms50": Player(
        driver="contec-cms50",
        description="Contec CMS50D+/CMS50E pulse oximeter, 5-byte live protocol at 60 frames/s",
        frames_per_second=SAMPLE_RATE_HZ,
        new_source=lambda spo2, pulse_rate, seed: Cms50Stream(spo2, pulse_rate, seed=seed),
        default_protocol="5-byte",
        protocols=MappingProxyType(
            {
                "9-byte": Player(
                    driver="contec-cms50",
                    description="Contec CMS50D+/CMS50E firmware 4.6+, 9-byte protocol at 60 packets/s; "
                    "streams after the start command",
                    frames_per_second=SAMPLE_RATE_HZ,
                    new_source=lambda spo2, pulse_rate, seed: Cms50V2Stream(spo2, pulse_rate, seed=seed),
                    default_protocol="9-byte",
                ),
            }
        ),
    ),
    "healthypi": Player(
        driver="healthypi",
        description="ProtoCentral HealthyPi v4 (ECG, PPG, SpO2, temperature), OpenView packets at 125/s",
        frames_per_second=HEALTHYPI_RATE_HZ,
        new_source=lambda spo2, pulse_rate, seed: HealthyPiStream(pulse_rate, spo2, seed=seed),
    ),
}
