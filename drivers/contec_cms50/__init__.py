"""Contec CMS50D+/CMS50E pulse oximeters, older firmware: 5-byte live frames at 60 Hz over USB serial."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from healthhut.drivers.base import DeviceConfig, DriverSpec, SerialLink, SerialSettings
from healthhut.drivers.contec_cms50.codec import SAMPLE_RATE_HZ, Cms50Decoder, Cms50Frame, parse_frame

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class Cms50Config(DeviceConfig):
    """One CMS50 on a serial port. ``report_interval_s`` limits SpO2 observations; strips are all sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["contec-cms50"]
    name: DeviceName
    path: str = Field(min_length=1, description="serial device, e.g. /dev/serial/by-id/usb-Silicon_Labs_...")
    strip_seconds: float = Field(default=10, gt=0, le=60)
    report_interval_s: float = Field(default=1.0, ge=0.1)

    @property
    def strip_samples(self) -> int:
        return max(1, round(self.strip_seconds * SAMPLE_RATE_HZ))


def _decoder_for(config: Cms50Config) -> Cms50Decoder:
    return Cms50Decoder(strip_samples=config.strip_samples)


DRIVER = DriverSpec(
    name="contec-cms50",
    description="Contec CMS50D+/CMS50E pulse oximeter, 5-byte live protocol (firmware before 4.6)",
    transport="serial",
    config_model=Cms50Config,
    new_decoder=Cms50Decoder,
    decoder_for=_decoder_for,
    serial=SerialLink(
        # 19200 8O1 as every source on the USB cable agrees. No XON/XOFF: the live stream is one-way
        # binary, and a tty with IXON set would swallow data bytes 0x11 and 0x13 (README, Quirks).
        settings=SerialSettings(baudrate=19200, bytesize=8, parity="O", stopbits=1, xonxoff=False),
        # F6 F6 F6 ends a record upload and returns to live mode (atbrask); OSCAR sends it before reading
        # live data, and the CMS50E starts streaming on any byte it receives (tranzoa).
        start_command=b"\xf6\xf6\xf6",
    ),
)

__all__ = ["DRIVER", "Cms50Config", "Cms50Decoder", "Cms50Frame", "parse_frame"]
