"""Spot readings: physiological limits, internal consistency and device status flags decide fitness."""

from __future__ import annotations

import math

import pytest

from healthhut.gateway.dsp.spot import SpotCheck, check_reading
from healthhut.protocol import Flag, Kind, Quantity, Reading


def bp(systolic: float, diastolic: float, *, mean: float | None = None, pulse: float = 72.0) -> Reading:
    values = {
        "systolic": Quantity(systolic, "mm[Hg]"),
        "diastolic": Quantity(diastolic, "mm[Hg]"),
        "pulse_rate": Quantity(pulse, "/min"),
    }
    if mean is not None:
        values["mean_arterial"] = Quantity(mean, "mm[Hg]")
    return Reading(kind=Kind.BLOOD_PRESSURE, values=values)


def one(kind: Kind, name: str, value: float, unit: str, flags: frozenset[Flag] = frozenset()) -> Reading:
    return Reading(kind=kind, values={name: Quantity(value, unit)}, flags=flags)


FIT = SpotCheck(flags=frozenset(), fit_for_alerting=True, reasons=())


@pytest.mark.parametrize(
    "reading",
    [
        bp(120, 80, mean=93),
        bp(40, 20),
        bp(300, 200),
        one(Kind.SPO2, "spo2", 50, "%"),
        one(Kind.SPO2, "spo2", 100, "%"),
        one(Kind.BODY_TEMPERATURE, "temperature", 36.6, "Cel"),
        one(Kind.BLOOD_GLUCOSE, "glucose", 5.4, "mmol/L"),
        one(Kind.BLOOD_GLUCOSE, "glucose", 1.0, "mmol/L"),
        one(Kind.HEART_RATE, "heart_rate", 58, "/min"),
        Reading(
            kind=Kind.BODY_WEIGHT,
            values={"weight": Quantity(70.0, "kg"), "height": Quantity(1.75, "m"), "bmi": Quantity(22.9, "kg/m2")},
        ),
        Reading(kind=Kind.HEART_RATE, values={"rr_intervals": Quantity((812.0, 790.0, 3100.0), "ms")}),
    ],
)
def test_plausible_readings_are_fit(reading: Reading) -> None:
    assert check_reading(reading) == FIT


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (bp(310, 80), "systolic outside 40-300 mm[Hg]"),
        (bp(120, 15), "diastolic outside 20-200 mm[Hg]"),
        (one(Kind.SPO2, "spo2", 45, "%"), "spo2 outside 50-100 %"),
        (one(Kind.BODY_TEMPERATURE, "temperature", 29.9, "Cel"), "temperature outside 30-45 Cel"),
        (one(Kind.BODY_TEMPERATURE, "temperature", 45.5, "Cel"), "temperature outside 30-45 Cel"),
        (one(Kind.BLOOD_GLUCOSE, "glucose", 41, "mmol/L"), "glucose outside 1-40 mmol/L"),
        (one(Kind.BLOOD_GLUCOSE, "glucose", 0.5, "mmol/L"), "glucose outside 1-40 mmol/L"),
        (one(Kind.SPO2, "pulse_rate", 320, "/min"), "pulse_rate outside 25-300 /min"),
        (one(Kind.HEART_RATE, "heart_rate", 12, "/min"), "heart_rate outside 25-300 /min"),
        (one(Kind.BODY_WEIGHT, "weight", 700, "kg"), "weight outside 2-350 kg"),
        (one(Kind.BODY_WEIGHT, "height", 3.1, "m"), "height outside 0.45-2.5 m"),
    ],
)
def test_values_outside_physiological_limits_are_out_of_range(reading: Reading, reason: str) -> None:
    assert check_reading(reading) == SpotCheck(
        flags=frozenset({Flag.OUT_OF_RANGE}), fit_for_alerting=False, reasons=(reason,)
    )


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (bp(80, 80), "systolic not above diastolic"),
        (bp(70, 95), "systolic not above diastolic"),
        (bp(120, 80, mean=130), "mean arterial pressure not between diastolic and systolic"),
        (one(Kind.SPO2, "spo2", 101, "%"), "spo2 above 100 % cannot be"),
        (one(Kind.BODY_TEMPERATURE, "temperature", math.nan, "Cel"), "temperature is not a finite number"),
        (
            Reading(
                kind=Kind.BODY_WEIGHT,
                values={"weight": Quantity(70.0, "kg"), "height": Quantity(1.75, "m"), "bmi": Quantity(27.0, "kg/m2")},
            ),
            "bmi disagrees with weight/height^2",
        ),
    ],
)
def test_impossible_or_contradictory_readings_are_implausible(reading: Reading, reason: str) -> None:
    assert check_reading(reading) == SpotCheck(
        flags=frozenset({Flag.IMPLAUSIBLE}), fit_for_alerting=False, reasons=(reason,)
    )


def test_a_failing_reading_keeps_its_values_and_device_flags() -> None:
    reading = Reading(
        kind=Kind.BLOOD_PRESSURE,
        values={"systolic": Quantity(90.0, "mm[Hg]"), "diastolic": Quantity(95.0, "mm[Hg]")},
        flags=frozenset({Flag.IRREGULAR_PULSE}),
    )
    check = check_reading(reading)
    assert check == SpotCheck(
        flags=frozenset({Flag.IRREGULAR_PULSE, Flag.IMPLAUSIBLE}),
        fit_for_alerting=False,
        reasons=("systolic not above diastolic",),
    )
    assert reading.values["systolic"] == Quantity(90.0, "mm[Hg]")  # nothing is changed or dropped


@pytest.mark.parametrize(
    "flag",
    [
        Flag.BODY_MOVEMENT,
        Flag.CUFF_FIT_LOOSE,
        Flag.IMPROPER_POSITION,
        Flag.PROBE_ERROR,
        Flag.FINGER_OUT,
        Flag.SEARCHING,
        Flag.LEAD_OFF,
        Flag.LOW_PERFUSION,
        Flag.MOTION_ARTIFACT,
        Flag.LOW_SIGNAL_QUALITY,
    ],
)
def test_device_flags_that_say_the_measurement_was_disturbed_make_it_unfit(flag: Flag) -> None:
    reading = Reading(kind=Kind.BLOOD_PRESSURE, values=bp(128, 82).values, flags=frozenset({flag}))
    assert check_reading(reading) == SpotCheck(
        flags=frozenset({flag}), fit_for_alerting=False, reasons=(f"device reported {flag.value}",)
    )


@pytest.mark.parametrize("flag", [Flag.IRREGULAR_PULSE, Flag.CLOCK_UNVERIFIED, Flag.VALUE_UNAVAILABLE])
def test_flags_that_do_not_disturb_the_values_leave_a_reading_fit(flag: Flag) -> None:
    reading = one(Kind.SPO2, "pulse_rate", 66, "/min", frozenset({flag}))
    assert check_reading(reading) == SpotCheck(flags=frozenset({flag}), fit_for_alerting=True, reasons=())


def test_a_reading_without_values_is_unfit() -> None:
    reading = Reading(kind=Kind.SPO2, flags=frozenset({Flag.VALUE_UNAVAILABLE}))
    assert check_reading(reading) == SpotCheck(
        flags=frozenset({Flag.VALUE_UNAVAILABLE}), fit_for_alerting=False, reasons=("the reading has no values",)
    )


def test_several_problems_are_all_reported() -> None:
    reading = Reading(
        kind=Kind.BLOOD_PRESSURE,
        values={"systolic": Quantity(350.0, "mm[Hg]"), "diastolic": Quantity(360.0, "mm[Hg]")},
        flags=frozenset({Flag.CUFF_FIT_LOOSE}),
    )
    assert check_reading(reading) == SpotCheck(
        flags=frozenset({Flag.CUFF_FIT_LOOSE, Flag.OUT_OF_RANGE, Flag.IMPLAUSIBLE}),
        fit_for_alerting=False,
        reasons=(
            "systolic outside 40-300 mm[Hg]",
            "diastolic outside 20-200 mm[Hg]",
            "systolic not above diastolic",
            "device reported cuff_fit_loose",
        ),
    )
