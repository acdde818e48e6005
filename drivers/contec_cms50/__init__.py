"""Contec CMS50D+/CMS50E pulse oximeters over USB serial, in both live protocol generations.

``protocol = "5-byte"`` (the default) is the older firmware's one-way 60 Hz stream at 19200 8O1;
``protocol = "9-byte"`` is firmware 4.6 and later: 115200 8N1, started by a command and kept alive.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from healthhut.drivers.base import DeviceConfig, DriverSpec, SerialLink, SerialSettings
from healthhut.drivers.contec_cms50.codec import SAMPLE_RATE_HZ, Cms50Decoder, Cms50Frame, parse_frame
from healthhut.drivers.contec_cms50.codec_v2 import (
    INFORM_CONNECTED_COMMAND,
    KEEPALIVE_INTERVAL_S,
    START_REALTIME_COMMAND,
    Cms50V2Decoder,
    Cms50V2Frame,
    parse_realtime,
)

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Cms50Protocol = Literal["5-byte", "9-byte"]


class Cms50Config(DeviceConfig):
    """One CMS50 on a serial port. ``report_interval_s`` limits SpO2 observations; strips are all sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["contec-cms50"]
    name: DeviceName
    path: str = Field(min_length=1, description="serial device, e.g. /dev/serial/by-id/usb-Silicon_Labs_...")
    protocol: Cms50Protocol = Field(
        default="5-byte", description='"5-byte" before firmware 4.6, "9-byte" from 4.6 on (README, Device)'
    )
    strip_seconds: float = Field(default=10, gt=0, le=60)
    report_interval_s: float = Field(default=1.0, ge=0.1)

    @property
    def strip_samples(self) -> int:
        # Both generations stream 60 frames a second.
        return max(1, round(self.strip_seconds * SAMPLE_RATE_HZ))


SERIAL_LINKS: Mapping[str, SerialLink] = MappingProxyType(
    {
        "5-byte": SerialLink(
            # 19200 8O1 as every source on the USB cable agrees. No XON/XOFF: the live stream is one-way
            # binary, and a tty with IXON set would swallow data bytes 0x11 and 0x13 (README, Quirks).
            settings=SerialSettings(baudrate=19200, bytesize=8, parity="O", stopbits=1, xonxoff=False),
            # F6 F6 F6 ends a record upload and returns to live mode (atbrask); OSCAR sends it before
            # reading live data, and the CMS50E starts streaming on any byte it receives (tranzoa).
            start_command=b"\xf6\xf6\xf6",
        ),
        "9-byte": SerialLink(
            # 115200 8N1 per the V7.0 protocol. No XON/XOFF for the same reason as above: 0x11 and 0x13
            # are packet type bytes here.
            settings=SerialSettings(baudrate=115200, bytesize=8, parity="N", stopbits=1, xonxoff=False),
            start_command=START_REALTIME_COMMAND,
            # "Inform device connected" keeps the stream going (it stops after about 30 s without);
            # the start command after it restarts a device that was switched off and on meanwhile,
            # which the gateway cannot otherwise notice (README, Quirks).
            keepalive=INFORM_CONNECTED_COMMAND + START_REALTIME_COMMAND,
            keepalive_interval_s=KEEPALIVE_INTERVAL_S,
        ),
    }
)


def _decoder_for(config: Cms50Config) -> Cms50Decoder | Cms50V2Decoder:
    if config.protocol == "9-byte":
        return Cms50V2Decoder(strip_samples=config.strip_samples)
    return Cms50Decoder(strip_samples=config.strip_samples)


def _serial_link_for(config: Cms50Config) -> SerialLink:
    return SERIAL_LINKS[config.protocol]


DRIVER = DriverSpec(
    name="contec-cms50",
    description="Contec CMS50D+/CMS50E pulse oximeter: 5-byte live protocol, or 9-byte from firmware 4.6",
    transport="serial",
    config_model=Cms50Config,
    new_decoder=Cms50Decoder,
    decoder_for=_decoder_for,
    serial=SERIAL_LINKS["5-byte"],
    serial_link_for=_serial_link_for,
)

__all__ = [
    "DRIVER",
    "SERIAL_LINKS",
    "Cms50Config",
    "Cms50Decoder",
    "Cms50Frame",
    "Cms50Protocol",
    "Cms50V2Decoder",
    "Cms50V2Frame",
    "parse_frame",
    "parse_realtime",
]
