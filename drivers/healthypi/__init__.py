"""ProtoCentral HealthyPi vital-signs boards: ECG, respiration, PPG, SpO2, heart rate and temperature.

``board = "v4"`` (the default) is the HealthyPi v4 HAT: OpenView data packets with a 20-byte payload, 125
a second on a 115200 8N1 serial line. ``board = "v5"`` is the HealthyPi 5: the same framing with a 22-byte
payload, 128 a second over USB. This driver decodes either into ECG and PPG strips and spot readings
(README.md).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from healthhut.drivers.base import DeviceConfig, DriverSpec, SerialLink, SerialSettings
from healthhut.drivers.healthypi.codec import (
    ECG_UV_PER_COUNT,
    SAMPLE_RATE_HZ,
    HealthyPiDecoder,
    HealthyPiFrame,
    parse_packet,
)
from healthhut.drivers.healthypi.codec_v5 import DEFAULT_ECG_GAIN, EcgGain, HealthyPi5Decoder, HealthyPi5Frame
from healthhut.drivers.healthypi.codec_v5 import SAMPLE_RATE_HZ as V5_SAMPLE_RATE_HZ

HealthyPiBoard = Literal["v4", "v5"]

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class HealthyPiConfig(DeviceConfig):
    """One HealthyPi on a serial port. ``report_interval_s`` limits spot observations; strips are all sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["healthypi"]
    name: DeviceName
    path: str = Field(min_length=1, description="serial device, e.g. /dev/serial0 on the Raspberry Pi")
    board: HealthyPiBoard = Field(
        default="v4", description='"v4": HealthyPi v4 HAT; "v5": HealthyPi 5 on USB (README, HealthyPi 5)'
    )
    ecg_gain: EcgGain = Field(
        default=DEFAULT_ECG_GAIN, description="v5 only: the MAX30001 ECG gain (V/V) the board's firmware sets"
    )
    strip_seconds: float = Field(default=10, gt=0, le=60)
    report_interval_s: float = Field(default=1.0, ge=0.1)

    @model_validator(mode="after")
    def _gain_is_for_v5(self) -> Self:
        if self.board == "v4" and "ecg_gain" in self.model_fields_set:
            # The v4's ADS1292R gain is fixed by its firmware; a gain here would be silently ignored.
            raise ValueError('ecg_gain applies to board = "v5" only')
        return self

    @property
    def sample_rate_hz(self) -> float:
        return V5_SAMPLE_RATE_HZ if self.board == "v5" else SAMPLE_RATE_HZ

    @property
    def strip_samples(self) -> int:
        return max(1, round(self.strip_seconds * self.sample_rate_hz))


def _decoder_for(config: HealthyPiConfig) -> HealthyPiDecoder | HealthyPi5Decoder:
    if config.board == "v5":
        return HealthyPi5Decoder(strip_samples=config.strip_samples, ecg_gain=config.ecg_gain)
    return HealthyPiDecoder(strip_samples=config.strip_samples)


DRIVER = DriverSpec(
    name="healthypi",
    description="ProtoCentral HealthyPi v4 HAT or HealthyPi 5 (ECG, PPG, SpO2, heart rate, temperature): OpenView",
    transport="serial",
    config_model=HealthyPiConfig,
    new_decoder=HealthyPiDecoder,
    decoder_for=_decoder_for,
    # Both firmwares' Serial.begin(115200) (the HealthyPi 5's USB CDC ignores it); both stream without being
    # asked, so there is no start command.
    serial=SerialLink(settings=SerialSettings(baudrate=115200, bytesize=8, parity="N", stopbits=1)),
)

__all__ = [
    "DRIVER",
    "ECG_UV_PER_COUNT",
    "HealthyPi5Decoder",
    "HealthyPi5Frame",
    "HealthyPiBoard",
    "HealthyPiConfig",
    "HealthyPiDecoder",
    "HealthyPiFrame",
    "parse_packet",
]
