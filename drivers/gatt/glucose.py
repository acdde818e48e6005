"""Glucose Service (0x1808): Glucose Measurement, Glucose Measurement Context and Glucose Feature, per the GSS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import IntEnum, IntFlag

from healthhut.drivers.gatt.date_time import DateTime
from healthhut.drivers.gatt.sfloat import SFloat
from healthhut.drivers.gatt.units import kg_per_l_to_mmol_per_l, mol_per_l_to_mmol_per_l, put
from healthhut.drivers.gatt.wire import Cursor
from healthhut.protocol import Flag, Kind, Quantity, Reading

GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_MEASUREMENT_CONTEXT = 0x2A34
GLUCOSE_FEATURE = 0x2A51


class GlucoseFlags(IntFlag):
    TIME_OFFSET = 0x01
    CONCENTRATION_TYPE_LOCATION = 0x02
    MOL_PER_L = 0x04  # else kg/L
    SENSOR_STATUS = 0x08
    CONTEXT_FOLLOWS = 0x10


GLUCOSE_DEFINED_FLAGS = 0x1F


class SampleType(IntEnum):
    """Type nibble; 0 and 11-15 are reserved."""

    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class SampleLocation(IntEnum):
    """Sample Location nibble; 0 and 5-14 are reserved."""

    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    NOT_AVAILABLE = 15


class SensorStatus(IntFlag):
    """Sensor Status Annunciation; bits 12-15 are reserved."""

    BATTERY_LOW = 0x0001
    SENSOR_MALFUNCTION = 0x0002
    SAMPLE_SIZE_INSUFFICIENT = 0x0004
    STRIP_INSERTION_ERROR = 0x0008
    STRIP_TYPE_INCORRECT = 0x0010
    RESULT_TOO_HIGH = 0x0020
    RESULT_TOO_LOW = 0x0040
    TEMPERATURE_TOO_HIGH = 0x0080
    TEMPERATURE_TOO_LOW = 0x0100
    READ_INTERRUPTED = 0x0200
    GENERAL_DEVICE_FAULT = 0x0400
    TIME_FAULT = 0x0800


# README, Protocol: what each annunciation means for the reading. A low battery says nothing about the value.
SENSOR_STATUS_FLAGS: dict[SensorStatus, Flag] = {
    SensorStatus.SENSOR_MALFUNCTION: Flag.PROBE_ERROR,
    SensorStatus.SAMPLE_SIZE_INSUFFICIENT: Flag.LOW_SIGNAL_QUALITY,
    SensorStatus.STRIP_INSERTION_ERROR: Flag.PROBE_ERROR,
    SensorStatus.STRIP_TYPE_INCORRECT: Flag.PROBE_ERROR,
    SensorStatus.RESULT_TOO_HIGH: Flag.OUT_OF_RANGE,
    SensorStatus.RESULT_TOO_LOW: Flag.OUT_OF_RANGE,
    SensorStatus.TEMPERATURE_TOO_HIGH: Flag.PROBE_ERROR,
    SensorStatus.TEMPERATURE_TOO_LOW: Flag.PROBE_ERROR,
    SensorStatus.READ_INTERRUPTED: Flag.PROBE_ERROR,
    SensorStatus.GENERAL_DEVICE_FAULT: Flag.PROBE_ERROR,
    SensorStatus.TIME_FAULT: Flag.CLOCK_UNVERIFIED,
}


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    """0x2A18 as sent. The concentration is in kg/L, or mol/L when ``mol_per_l`` is set; it comes with the sample
    type and location, or not at all."""

    sequence_number: int
    base_time: DateTime
    time_offset: int | None = None  # minutes
    concentration: SFloat | None = None
    sample_type: int | None = None
    sample_location: int | None = None
    mol_per_l: bool = False
    status: int | None = None
    context_follows: bool = False
    rfu_flags: int = 0
    trailing: bytes = b""

    def __post_init__(self) -> None:
        present = (self.concentration is not None, self.sample_type is not None, self.sample_location is not None)
        if len(set(present)) != 1:
            raise ValueError("concentration, sample_type and sample_location are sent together: give all or none")

    def measured_at(self, tz: tzinfo) -> datetime | None:
        """Base Time plus Time Offset, in the device's zone; None when the base time is not known."""
        base = self.base_time.to_datetime(tz)
        if base is None or self.time_offset is None:
            return base
        return base + timedelta(minutes=self.time_offset)

    @property
    def control_solution(self) -> bool:
        """A test of control solution, not of a resident's blood."""
        return (
            self.sample_type == SampleType.CONTROL_SOLUTION or self.sample_location == SampleLocation.CONTROL_SOLUTION
        )

    def reading(self, tz: tzinfo) -> Reading:
        values: dict[str, Quantity] = {}
        flags = {flag for bit, flag in SENSOR_STATUS_FLAGS.items() if (self.status or 0) & bit}
        if self.concentration is None:
            # A record without a concentration reports a failed test (its annunciation says why).
            flags.add(Flag.VALUE_UNAVAILABLE)
        convert = mol_per_l_to_mmol_per_l if self.mol_per_l else kg_per_l_to_mmol_per_l
        put(values, flags, "glucose", self.concentration, "mmol/L", convert)
        return Reading(Kind.BLOOD_GLUCOSE, values, frozenset(flags), self.measured_at(tz))


def decode_glucose_measurement(data: bytes, strict: bool = False) -> GlucoseMeasurement:
    cursor = Cursor(data, f"Glucose Measurement ({GLUCOSE_MEASUREMENT:#06x})")
    flags, rfu = cursor.flags(GLUCOSE_DEFINED_FLAGS, strict)
    sequence_number = cursor.uint(2, "Sequence Number")
    base_time = cursor.date_time("Base Time")
    time_offset = cursor.sint16("Time Offset") if flags & GlucoseFlags.TIME_OFFSET else None
    concentration = sample_type = sample_location = None
    if flags & GlucoseFlags.CONCENTRATION_TYPE_LOCATION:
        concentration = cursor.sfloat("Glucose Concentration")
        type_location = cursor.uint(1, "Type-Sample Location")
        sample_type, sample_location = type_location & 0x0F, type_location >> 4
    status = cursor.uint(2, "Sensor Status Annunciation") if flags & GlucoseFlags.SENSOR_STATUS else None
    return GlucoseMeasurement(
        sequence_number,
        base_time,
        time_offset,
        concentration,
        sample_type,
        sample_location,
        bool(flags & GlucoseFlags.MOL_PER_L),
        status,
        bool(flags & GlucoseFlags.CONTEXT_FOLLOWS),
        rfu,
        cursor.trailing(strict),
    )


class ContextFlags(IntFlag):
    CARBOHYDRATE = 0x01
    MEAL = 0x02
    TESTER_HEALTH = 0x04
    EXERCISE = 0x08
    MEDICATION = 0x10
    MEDICATION_IN_LITRES = 0x20  # else kilograms
    HBA1C = 0x40
    EXTENDED_FLAGS = 0x80


class Meal(IntEnum):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5


@dataclass(frozen=True, slots=True)
class GlucoseContext:
    """0x2A34 as sent: what the resident recorded about the measurement with the same sequence number.

    Pairs travel together (carbohydrate ID and amount in kg; tester and health; exercise duration in s and
    intensity in %; medication ID and amount in kg, or litres when ``medication_in_litres``).
    """

    sequence_number: int
    extended_flags: int | None = None  # all bits reserved
    carbohydrate_id: int | None = None
    carbohydrate: SFloat | None = None
    meal: int | None = None
    tester: int | None = None
    health: int | None = None
    exercise_duration: int | None = None  # 0xFFFF = overrun
    exercise_intensity: int | None = None
    medication_id: int | None = None
    medication: SFloat | None = None
    medication_in_litres: bool = False
    hba1c: SFloat | None = None  # %
    trailing: bytes = b""

    def __post_init__(self) -> None:
        for first, second in (
            ("carbohydrate_id", "carbohydrate"),
            ("tester", "health"),
            ("exercise_duration", "exercise_intensity"),
            ("medication_id", "medication"),
        ):
            if (getattr(self, first) is None) != (getattr(self, second) is None):
                raise ValueError(f"{first} and {second} are sent together: give both or neither")


def decode_glucose_context(data: bytes, strict: bool = False) -> GlucoseContext:
    cursor = Cursor(data, f"Glucose Measurement Context ({GLUCOSE_MEASUREMENT_CONTEXT:#06x})")
    flags = cursor.uint(1, "Flags")
    sequence_number = cursor.uint(2, "Sequence Number")
    # Extended Flags has no defined bit yet; a future one would add fields after all of today's.
    extended = cursor.uint(1, "Extended Flags") if flags & ContextFlags.EXTENDED_FLAGS else None
    carbohydrate_id = carbohydrate = meal = tester = health = None
    duration = intensity = medication_id = medication = hba1c = None
    if flags & ContextFlags.CARBOHYDRATE:
        carbohydrate_id = cursor.uint(1, "Carbohydrate ID")
        carbohydrate = cursor.sfloat("Carbohydrate")
    if flags & ContextFlags.MEAL:
        meal = cursor.uint(1, "Meal")
    if flags & ContextFlags.TESTER_HEALTH:
        tester_health = cursor.uint(1, "Tester-Health")
        tester, health = tester_health & 0x0F, tester_health >> 4
    if flags & ContextFlags.EXERCISE:
        duration = cursor.uint(2, "Exercise Duration")
        intensity = cursor.uint(1, "Exercise Intensity")
    if flags & ContextFlags.MEDICATION:
        medication_id = cursor.uint(1, "Medication ID")
        medication = cursor.sfloat("Medication")
    if flags & ContextFlags.HBA1C:
        hba1c = cursor.sfloat("HbA1c")
    return GlucoseContext(
        sequence_number,
        extended,
        carbohydrate_id,
        carbohydrate,
        meal,
        tester,
        health,
        duration,
        intensity,
        medication_id,
        medication,
        bool(flags & ContextFlags.MEDICATION_IN_LITRES),
        hba1c,
        cursor.trailing(strict),
    )


class GlucoseFeatures(IntFlag):
    LOW_BATTERY_DETECTION = 0x0001
    SENSOR_MALFUNCTION_DETECTION = 0x0002
    SENSOR_SAMPLE_SIZE = 0x0004
    STRIP_INSERTION_ERROR_DETECTION = 0x0008
    STRIP_TYPE_ERROR_DETECTION = 0x0010
    RESULT_HIGH_LOW_DETECTION = 0x0020
    TEMPERATURE_HIGH_LOW_DETECTION = 0x0040
    READ_INTERRUPT_DETECTION = 0x0080
    GENERAL_DEVICE_FAULT = 0x0100
    TIME_FAULT = 0x0200
    MULTIPLE_BOND = 0x0400


@dataclass(frozen=True, slots=True)
class GlucoseFeature:
    """0x2A51: which annunciations the meter can raise. It produces no reading."""

    bits: int
    trailing: bytes = b""

    @property
    def features(self) -> GlucoseFeatures:
        return GlucoseFeatures(self.bits & 0x07FF)


def decode_glucose_feature(data: bytes, strict: bool = False) -> GlucoseFeature:
    cursor = Cursor(data, f"Glucose Feature ({GLUCOSE_FEATURE:#06x})")
    bits = cursor.uint(2, "Glucose Feature")
    return GlucoseFeature(bits, cursor.trailing(strict))
