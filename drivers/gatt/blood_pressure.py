"""Blood Pressure Service (0x1810): Blood Pressure Measurement, Intermediate Cuff Pressure and Feature, per the GSS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from enum import IntFlag

from healthhut.drivers.gatt.date_time import DateTime
from healthhut.drivers.gatt.sfloat import SFloat
from healthhut.drivers.gatt.units import kpa_to_mmhg, put
from healthhut.drivers.gatt.wire import Cursor
from healthhut.protocol import Flag, Kind, Quantity, Reading

BLOOD_PRESSURE_MEASUREMENT = 0x2A35
INTERMEDIATE_CUFF_PRESSURE = 0x2A36
BLOOD_PRESSURE_FEATURE = 0x2A49


class BpFlags(IntFlag):
    """Flags of 0x2A35 and 0x2A36; bits 5-7 are reserved."""

    KPA = 0x01
    TIME_STAMP = 0x02
    PULSE_RATE = 0x04
    USER_ID = 0x08
    MEASUREMENT_STATUS = 0x10


BP_DEFINED_FLAGS = 0x1F


class BpStatus(IntFlag):
    """Measurement Status; bits 3-4 hold the pulse rate range (0 in range, 1 above, 2 below, 3 reserved)."""

    BODY_MOVEMENT = 0x0001
    CUFF_FIT_LOOSE = 0x0002
    IRREGULAR_PULSE = 0x0004
    PULSE_RATE_RANGE = 0x0018
    IMPROPER_POSITION = 0x0020


PULSE_RATE_ABOVE_UPPER_LIMIT = 1
PULSE_RATE_BELOW_LOWER_LIMIT = 2


def status_flags(status: int | None) -> set[Flag]:
    """Quality flags of a Measurement Status field (README, Protocol)."""
    if status is None:
        return set()
    flags = {
        flag
        for bit, flag in (
            (BpStatus.BODY_MOVEMENT, Flag.BODY_MOVEMENT),
            (BpStatus.CUFF_FIT_LOOSE, Flag.CUFF_FIT_LOOSE),
            (BpStatus.IRREGULAR_PULSE, Flag.IRREGULAR_PULSE),
            (BpStatus.IMPROPER_POSITION, Flag.IMPROPER_POSITION),
        )
        if status & bit
    }
    if (status & BpStatus.PULSE_RATE_RANGE) >> 3 in (PULSE_RATE_ABOVE_UPPER_LIMIT, PULSE_RATE_BELOW_LOWER_LIMIT):
        flags.add(Flag.OUT_OF_RANGE)
    return flags


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    """0x2A35 as sent. Pressures are in kPa when ``kpa`` is set, else mmHg."""

    kpa: bool
    systolic: SFloat
    diastolic: SFloat
    mean_arterial: SFloat
    time_stamp: DateTime | None = None
    pulse_rate: SFloat | None = None
    user_id: int | None = None  # 0xFF = unknown user
    status: int | None = None
    rfu_flags: int = 0  # reserved Flags bits as sent (ignored)
    trailing: bytes = b""  # bytes after the last field (ignored)

    def reading(self, tz: tzinfo) -> Reading:
        values: dict[str, Quantity] = {}
        flags = status_flags(self.status)
        convert = kpa_to_mmhg if self.kpa else None
        put(values, flags, "systolic", self.systolic, "mm[Hg]", convert)
        put(values, flags, "diastolic", self.diastolic, "mm[Hg]", convert)
        put(values, flags, "mean_arterial", self.mean_arterial, "mm[Hg]", convert)
        put(values, flags, "pulse_rate", self.pulse_rate, "/min")
        measured_at = None if self.time_stamp is None else self.time_stamp.to_datetime(tz)
        return Reading(Kind.BLOOD_PRESSURE, values, frozenset(flags), measured_at)


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure:
    """0x2A36 as sent: the cuff pressure while a measurement runs. The two unused fields should be NaN."""

    kpa: bool
    cuff_pressure: SFloat
    unused_diastolic: SFloat
    unused_mean_arterial: SFloat
    time_stamp: DateTime | None = None
    pulse_rate: SFloat | None = None
    user_id: int | None = None
    status: int | None = None
    rfu_flags: int = 0
    trailing: bytes = b""

    def cuff_pressure_mmhg(self) -> float | None:
        exact = self.cuff_pressure.decimal()
        if exact is None:
            return None
        return float(kpa_to_mmhg(exact) if self.kpa else exact)

    def reading(self, tz: tzinfo) -> Reading:
        """A progress report, not a result: the vocabulary has no cuff pressure, so it carries only the
        pulse rate (when sent), the status flags and the time."""
        values: dict[str, Quantity] = {}
        flags = status_flags(self.status)
        put(values, flags, "pulse_rate", self.pulse_rate, "/min")
        measured_at = None if self.time_stamp is None else self.time_stamp.to_datetime(tz)
        return Reading(Kind.BLOOD_PRESSURE, values, frozenset(flags), measured_at)


_BP_NAMES = {
    BLOOD_PRESSURE_MEASUREMENT: "Blood Pressure Measurement",
    INTERMEDIATE_CUFF_PRESSURE: "Intermediate Cuff Pressure",
}


def _decode_layout(
    data: bytes, characteristic: int, strict: bool
) -> tuple[bool, tuple[SFloat, SFloat, SFloat], DateTime | None, SFloat | None, int | None, int | None, int, bytes]:
    cursor = Cursor(data, f"{_BP_NAMES[characteristic]} ({characteristic:#06x})")
    flags, rfu = cursor.flags(BP_DEFINED_FLAGS, strict)
    pressures = (cursor.sfloat("Systolic"), cursor.sfloat("Diastolic"), cursor.sfloat("Mean Arterial Pressure"))
    time_stamp = cursor.date_time("Time Stamp") if flags & BpFlags.TIME_STAMP else None
    pulse_rate = cursor.sfloat("Pulse Rate") if flags & BpFlags.PULSE_RATE else None
    user_id = cursor.uint(1, "User ID") if flags & BpFlags.USER_ID else None
    status = cursor.uint(2, "Measurement Status") if flags & BpFlags.MEASUREMENT_STATUS else None
    trailing = cursor.trailing(strict)
    return bool(flags & BpFlags.KPA), pressures, time_stamp, pulse_rate, user_id, status, rfu, trailing


def decode_blood_pressure_measurement(data: bytes, strict: bool = False) -> BloodPressureMeasurement:
    kpa, (sys, dia, mean), time_stamp, pulse, user, status, rfu, trailing = _decode_layout(
        data, BLOOD_PRESSURE_MEASUREMENT, strict
    )
    return BloodPressureMeasurement(kpa, sys, dia, mean, time_stamp, pulse, user, status, rfu, trailing)


def decode_intermediate_cuff_pressure(data: bytes, strict: bool = False) -> IntermediateCuffPressure:
    kpa, (cuff, dia, mean), time_stamp, pulse, user, status, rfu, trailing = _decode_layout(
        data, INTERMEDIATE_CUFF_PRESSURE, strict
    )
    return IntermediateCuffPressure(kpa, cuff, dia, mean, time_stamp, pulse, user, status, rfu, trailing)


class BpFeature(IntFlag):
    """Blood Pressure Feature bits (BLS v1.1.1 adds 6-8)."""

    BODY_MOVEMENT_DETECTION = 0x0001
    CUFF_FIT_DETECTION = 0x0002
    IRREGULAR_PULSE_DETECTION = 0x0004
    PULSE_RATE_RANGE_DETECTION = 0x0008
    MEASUREMENT_POSITION_DETECTION = 0x0010
    MULTIPLE_BONDS = 0x0020
    E2E_CRC = 0x0040
    USER_DATA_SERVICE = 0x0080
    USER_FACING_TIME = 0x0100


@dataclass(frozen=True, slots=True)
class BloodPressureFeature:
    """0x2A49: what the cuff can detect. It produces no reading."""

    bits: int
    trailing: bytes = b""

    @property
    def features(self) -> BpFeature:
        return BpFeature(self.bits & 0x01FF)


def decode_blood_pressure_feature(data: bytes, strict: bool = False) -> BloodPressureFeature:
    cursor = Cursor(data, f"Blood Pressure Feature ({BLOOD_PRESSURE_FEATURE:#06x})")
    bits = cursor.uint(2, "Blood Pressure Feature")
    return BloodPressureFeature(bits, cursor.trailing(strict))
