"""Weight Scale Service (0x181D): Weight Measurement and Weight Scale Feature, per the GSS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from enum import IntFlag

from healthhut.drivers.gatt.date_time import DateTime
from healthhut.drivers.gatt.units import inch_to_m, lb_to_kg
from healthhut.drivers.gatt.wire import Cursor
from healthhut.protocol import Flag, Kind, Quantity, Reading

WEIGHT_MEASUREMENT = 0x2A9D
WEIGHT_SCALE_FEATURE = 0x2A9E

# The units of the fields are fixed by the Flags field, whatever resolution the scale measures to (0x2A9E).
KG_PER_STEP = Decimal("0.005")
LB_PER_STEP = Decimal("0.01")
M_PER_STEP = Decimal("0.001")
INCH_PER_STEP = Decimal("0.1")
BMI_PER_STEP = Decimal("0.1")
# Weight Scale Service v1.0: a weight of 0xFFFF means "Measurement Unsuccessful".
MEASUREMENT_UNSUCCESSFUL = 0xFFFF


class WeightFlags(IntFlag):
    IMPERIAL = 0x01
    TIME_STAMP = 0x02
    USER_ID = 0x04
    BMI_AND_HEIGHT = 0x08


WEIGHT_DEFINED_FLAGS = 0x0F


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    """0x2A9D as sent: weight in 0.005 kg (or 0.01 lb) steps; BMI in 0.1 kg/m2; height in 1 mm (or 0.1 in)."""

    imperial: bool
    weight: int
    time_stamp: DateTime | None = None
    user_id: int | None = None  # 0xFF = unknown user
    bmi: int | None = None
    height: int | None = None
    rfu_flags: int = 0
    trailing: bytes = b""

    def __post_init__(self) -> None:
        if (self.bmi is None) != (self.height is None):
            raise ValueError("BMI and height are sent together: give both or neither")

    def weight_kg(self) -> Decimal | None:
        if self.weight == MEASUREMENT_UNSUCCESSFUL:
            return None
        return lb_to_kg(self.weight * LB_PER_STEP) if self.imperial else self.weight * KG_PER_STEP

    def height_m(self) -> Decimal | None:
        if self.height is None:
            return None
        return inch_to_m(self.height * INCH_PER_STEP) if self.imperial else self.height * M_PER_STEP

    def reading(self, tz: tzinfo) -> Reading:
        values: dict[str, Quantity] = {}
        flags: set[Flag] = set()
        weight = self.weight_kg()
        if weight is None:
            flags.add(Flag.VALUE_UNAVAILABLE)
        else:
            values["weight"] = Quantity(float(weight), "kg")
        height = self.height_m()
        if height is not None and self.bmi is not None:
            values["height"] = Quantity(float(height), "m")
            values["bmi"] = Quantity(float(self.bmi * BMI_PER_STEP), "kg/m2")
        measured_at = None if self.time_stamp is None else self.time_stamp.to_datetime(tz)
        return Reading(Kind.BODY_WEIGHT, values, frozenset(flags), measured_at)


def decode_weight_measurement(data: bytes, strict: bool = False) -> WeightMeasurement:
    cursor = Cursor(data, f"Weight Measurement ({WEIGHT_MEASUREMENT:#06x})")
    flags, rfu = cursor.flags(WEIGHT_DEFINED_FLAGS, strict)
    weight = cursor.uint(2, "Weight")
    time_stamp = cursor.date_time("Time Stamp") if flags & WeightFlags.TIME_STAMP else None
    user_id = cursor.uint(1, "User ID") if flags & WeightFlags.USER_ID else None
    bmi = height = None
    if flags & WeightFlags.BMI_AND_HEIGHT:
        bmi = cursor.uint(2, "BMI")
        height = cursor.uint(2, "Height")
    imperial = bool(flags & WeightFlags.IMPERIAL)
    return WeightMeasurement(imperial, weight, time_stamp, user_id, bmi, height, rfu, cursor.trailing(strict))


# Weight Scale Feature, bits 3-6 and 7-9: the resolution the scale measures to, as (kg, lb) and (m, inch).
WEIGHT_RESOLUTIONS: dict[int, tuple[Decimal, Decimal]] = {
    1: (Decimal("0.5"), Decimal("1")),
    2: (Decimal("0.2"), Decimal("0.5")),
    3: (Decimal("0.1"), Decimal("0.2")),
    4: (Decimal("0.05"), Decimal("0.1")),
    5: (Decimal("0.02"), Decimal("0.05")),
    6: (Decimal("0.01"), Decimal("0.02")),
    7: (Decimal("0.005"), Decimal("0.01")),
}
HEIGHT_RESOLUTIONS: dict[int, tuple[Decimal, Decimal]] = {
    1: (Decimal("0.01"), Decimal("1")),
    2: (Decimal("0.005"), Decimal("0.5")),
    3: (Decimal("0.001"), Decimal("0.1")),
}


class WeightScaleFeatures(IntFlag):
    TIME_STAMP = 0x01
    MULTIPLE_USERS = 0x02
    BMI = 0x04


@dataclass(frozen=True, slots=True)
class WeightScaleFeature:
    """0x2A9E: what the scale supports and how finely it measures. It produces no reading."""

    bits: int
    trailing: bytes = b""

    @property
    def features(self) -> WeightScaleFeatures:
        return WeightScaleFeatures(self.bits & 0x07)

    @property
    def weight_resolution_code(self) -> int:
        return (self.bits >> 3) & 0x0F

    @property
    def height_resolution_code(self) -> int:
        return (self.bits >> 7) & 0x07

    def weight_resolution(self, imperial: bool = False) -> Decimal | None:
        """The step the scale weighs in (kg, or lb), or None when not specified or reserved."""
        pair = WEIGHT_RESOLUTIONS.get(self.weight_resolution_code)
        return None if pair is None else pair[imperial]

    def height_resolution(self, imperial: bool = False) -> Decimal | None:
        """The step the scale measures height in (m, or inch), or None when not specified or reserved."""
        pair = HEIGHT_RESOLUTIONS.get(self.height_resolution_code)
        return None if pair is None else pair[imperial]


def decode_weight_scale_feature(data: bytes, strict: bool = False) -> WeightScaleFeature:
    cursor = Cursor(data, f"Weight Scale Feature ({WEIGHT_SCALE_FEATURE:#06x})")
    bits = cursor.uint(4, "Weight Scale Feature")
    return WeightScaleFeature(bits, cursor.trailing(strict))
