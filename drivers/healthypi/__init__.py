"""ProtoCentral HealthyPi v4 vital-signs HAT: ECG, respiration, PPG, SpO2, heart rate and temperature.

Its firmware streams OpenView data packets at 125 a second over a 115200 8N1 serial line; this driver
decodes them into ECG and PPG strips and spot readings (README.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from healthhut.drivers.base import DeviceConfig, DriverSpec, SerialLink, SerialSettings
from healthhut.drivers.healthypi.codec import (
    ECG_UV_PER_COUNT,
    SAMPLE_RATE_HZ,
    HealthyPiDecoder,
    HealthyPiFrame,
    parse_packet,
)

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class HealthyPiConfig(DeviceConfig):
    """One HealthyPi on a serial port. ``report_interval_s`` limits spot observations; strips are all sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["healthypi"]
    name: DeviceName
    path: str = Field(min_length=1, description="serial device, e.g. /dev/serial0 on the Raspberry Pi")
    strip_seconds: float = Field(default=10, gt=0, le=60)
    report_interval_s: float = Field(default=1.0, ge=0.1)

    @property
    def strip_samples(self) -> int:
        return max(1, round(self.strip_seconds * SAMPLE_RATE_HZ))


def _decoder_for(config: HealthyPiConfig) -> HealthyPiDecoder:
    return HealthyPiDecoder(strip_samples=config.strip_samples)


DRIVER = DriverSpec(
    name="healthypi",
    description="ProtoCentral HealthyPi v4 vital-signs HAT (ECG, PPG, SpO2, heart rate, temperature), OpenView stream",
    transport="serial",
    config_model=HealthyPiConfig,
    new_decoder=HealthyPiDecoder,
    decoder_for=_decoder_for,
    # The firmware's Serial.begin(115200); it streams without being asked, so there is no start command.
    serial=SerialLink(settings=SerialSettings(baudrate=115200, bytesize=8, parity="N", stopbits=1)),
)

__all__ = ["DRIVER", "ECG_UV_PER_COUNT", "HealthyPiConfig", "HealthyPiDecoder", "HealthyPiFrame", "parse_packet"]
