"""Identity source: a barcode or QR scanner reading the resident's health card, over USB-serial.

Not a measuring device: each scan starts a resident session (gateway/identity), and the code itself is
turned into a pseudonym at once and dropped. See README.md for the scanners' serial output format.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from healthhut.drivers.base import DeviceConfig, DriverSpec, SerialLink, SerialSettings
from healthhut.drivers.id_scanner.codec import MAX_CODE, ScanDecoder, Terminator, encode_scan

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class ScannerConfig(DeviceConfig):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["id-scanner"]
    name: DeviceName
    path: str = Field(min_length=1, description="the scanner's serial device, e.g. /dev/serial/by-id/usb-...")
    terminator: Terminator = Field(default="CR", description="the suffix the scanner is set to send after a code")
    baudrate: int = Field(default=115200, description="ignored by USB virtual-COM scanners; RS-232 ones need it")
    max_code: int = Field(default=MAX_CODE, ge=8, le=MAX_CODE)


def _decoder_for(config: ScannerConfig) -> ScanDecoder:
    return ScanDecoder(config.terminator, config.max_code)


def _link_for(config: ScannerConfig) -> SerialLink:
    return SerialLink(SerialSettings(config.baudrate))


DRIVER = DriverSpec(
    name="id-scanner",
    description="barcode/QR scanner reading residents' health cards (identity source, USB-serial)",
    transport="serial",
    config_model=ScannerConfig,
    new_decoder=ScanDecoder,
    serial=SerialLink(SerialSettings(115200)),
    decoder_for=_decoder_for,
    serial_link_for=_link_for,
    role="identity",
)

__all__ = ["DRIVER", "ScanDecoder", "ScannerConfig", "encode_scan"]
