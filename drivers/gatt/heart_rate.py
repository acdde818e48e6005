"""Heart Rate Service (0x180D): Heart Rate Measurement, per the GSS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from enum import IntEnum, IntFlag

from healthhut.drivers.gatt.wire import Cursor
from healthhut.protocol import Flag, Kind, Quantity, Reading

HEART_RATE_MEASUREMENT = 0x2A37
# RR-Interval is in 1/1024 s; 1000/1024 ms is exact in binary, so no rounding happens.
MS_PER_RR_STEP = 1000 / 1024


class HrFlags(IntFlag):
    UINT16 = 0x01
    SENSOR_CONTACT = 0x06  # two bits: see SensorContact
    ENERGY_EXPENDED = 0x08
    RR_INTERVAL = 0x10


HR_DEFINED_FLAGS = 0x1F


class SensorContact(IntEnum):
    """Flags bits 1-2."""

    NOT_SUPPORTED = 0
    NOT_SUPPORTED_ALSO = 1
    NOT_DETECTED = 2
    DETECTED = 3


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """0x2A37 as sent. ``uint16`` says the rate was sent in 16 bits; RR intervals are in 1/1024 s, oldest first."""

    heart_rate: int
    uint16: bool = False
    sensor_contact: int = SensorContact.NOT_SUPPORTED
    energy_expended: int | None = None  # kJ
    rr_intervals: tuple[int, ...] | None = None
    rfu_flags: int = 0
    trailing: bytes = b""  # only without RR intervals, which otherwise fill the value

    def __post_init__(self) -> None:
        if self.rr_intervals is not None and not self.rr_intervals:
            raise ValueError("rr_intervals is None or holds at least one interval")
        if self.rr_intervals is not None and self.trailing:
            raise ValueError("RR intervals fill the rest of the value: there can be no trailing bytes")

    def reading(self, tz: tzinfo) -> Reading:
        """No time stamp: the gateway stamps it. Contact not detected (a strap's electrodes off the skin) is
        ``LEAD_OFF``."""
        values: dict[str, Quantity] = {"heart_rate": Quantity(self.heart_rate, "/min")}
        if self.rr_intervals:
            values["rr_intervals"] = Quantity(tuple(rr * MS_PER_RR_STEP for rr in self.rr_intervals), "ms")
        flags = {Flag.LEAD_OFF} if self.sensor_contact == SensorContact.NOT_DETECTED else set()
        return Reading(Kind.HEART_RATE, values, frozenset(flags))


def decode_heart_rate_measurement(data: bytes, strict: bool = False) -> HeartRateMeasurement:
    cursor = Cursor(data, f"Heart Rate Measurement ({HEART_RATE_MEASUREMENT:#06x})")
    flags, rfu = cursor.flags(HR_DEFINED_FLAGS, strict)
    wide = bool(flags & HrFlags.UINT16)
    heart_rate = cursor.uint(2 if wide else 1, "Heart Rate Measurement Value")
    energy = cursor.uint(2, "Energy Expended") if flags & HrFlags.ENERGY_EXPENDED else None
    rr_intervals = None
    trailing = b""
    if flags & HrFlags.RR_INTERVAL:
        # The intervals fill the rest of the value. The flag promises at least one (as Nordic's parser has it).
        rest = cursor.rest()
        if not rest or len(rest) % 2:
            raise cursor.error(f"RR-Interval needs one or more 2-byte intervals, but {len(rest)} bytes are left")
        rr_intervals = tuple(int.from_bytes(rest[i : i + 2], "little") for i in range(0, len(rest), 2))
    else:
        trailing = cursor.trailing(strict)
    contact = (flags & HrFlags.SENSOR_CONTACT) >> 1
    return HeartRateMeasurement(heart_rate, wide, contact, energy, rr_intervals, rfu, trailing)
