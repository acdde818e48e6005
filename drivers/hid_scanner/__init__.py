"""Identity source: a barcode/QR scanner in keyboard (USB HID) mode, read from its Linux input device.

Not a measuring device: each scan starts the scanned resident's session (gateway/identity), and the code
is turned into a pseudonym at once and dropped. The gateway's evdev transport reads the scanner's event
device and keeps its keystrokes from the kiosk's screen. See README.md for the events.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from healthhut.drivers.base import DeviceConfig, DriverSpec
from healthhut.drivers.hid_scanner.codec import (
    MAX_CODE,
    MAX_GAP_S,
    KeyDecoder,
    Terminator,
    encode_scan,
    pack_events,
)

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class HidScannerConfig(DeviceConfig):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["hid-scanner"]
    name: DeviceName
    path: str = Field(min_length=1, description="the scanner's event device, e.g. /dev/input/by-id/usb-...-event-kbd")
    terminator: Terminator = Field(default="ENTER", description="the key the scanner presses after a code")
    event_size: Literal[16, 24] | None = Field(
        default=None, description="bytes per input_event: 24 on 64-bit, 16 on 32-bit userland; unset: this one's"
    )
    max_code: int = Field(default=MAX_CODE, ge=8, le=MAX_CODE)
    max_gap_s: float = Field(
        default=MAX_GAP_S, ge=0.1, le=10, description="a pause this long inside a scan means it was cut off"
    )


def _decoder_for(config: HidScannerConfig) -> KeyDecoder:
    return KeyDecoder(config.event_size, config.terminator, config.max_code, config.max_gap_s)


DRIVER = DriverSpec(
    name="hid-scanner",
    description="barcode/QR scanner in keyboard (HID) mode, read from its input device (identity source)",
    transport="evdev",
    config_model=HidScannerConfig,
    new_decoder=KeyDecoder,
    decoder_for=_decoder_for,
    role="identity",
)

__all__ = ["DRIVER", "HidScannerConfig", "KeyDecoder", "encode_scan", "pack_events"]
