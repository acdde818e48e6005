"""Plausibility of a spot reading of any kind: physiological limits, internal consistency, device status flags."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from healthhut.protocol import Flag, Kind, Reading


@dataclass(frozen=True, slots=True)
class Limits:
    """Inclusive range of a value; outside it the reading is OUT_OF_RANGE."""

    low: float
    high: float


# Ranges a living, measurable person can show, in the vocabulary's units. A value outside is a device or
# entry error, or a reading the device cannot make: it is kept but never alerts. Sources are in README.md.
PULSE = Limits(25.0, 300.0)  # below oximeter/cuff measuring ranges; above infant SVT rates
LIMITS: Mapping[Kind, Mapping[str, Limits]] = MappingProxyType(
    {
        Kind.BLOOD_PRESSURE: MappingProxyType(
            {
                "systolic": Limits(40.0, 300.0),
                "diastolic": Limits(20.0, 200.0),
                "mean_arterial": Limits(25.0, 250.0),
                "pulse_rate": PULSE,
            }
        ),
        Kind.SPO2: MappingProxyType(
            {"spo2": Limits(50.0, 100.0), "pulse_rate": PULSE, "perfusion_index": Limits(0.02, 20.0)}
        ),
        Kind.BODY_TEMPERATURE: MappingProxyType({"temperature": Limits(30.0, 45.0)}),
        Kind.BODY_WEIGHT: MappingProxyType(
            {"weight": Limits(2.0, 350.0), "height": Limits(0.45, 2.5), "bmi": Limits(10.0, 100.0)}
        ),
        Kind.BLOOD_GLUCOSE: MappingProxyType({"glucose": Limits(1.0, 40.0)}),
        Kind.HEART_RATE: MappingProxyType({"heart_rate": PULSE, "rr_intervals": Limits(200.0, 10_000.0)}),
        Kind.ECG: MappingProxyType(
            {"heart_rate": PULSE, "rr_intervals": Limits(200.0, 10_000.0), "signal_quality": Limits(0.0, 1.0)}
        ),
        Kind.PPG: MappingProxyType({"pulse_rate": PULSE, "signal_quality": Limits(0.0, 1.0)}),
    }
)
# Values that cannot exist at all (not merely unusual) make a reading IMPLAUSIBLE rather than OUT_OF_RANGE.
IMPOSSIBLE_ABOVE: Mapping[tuple[Kind, str], float] = MappingProxyType({(Kind.SPO2, "spo2"): 100.0})
# A device's BMI from rounded weight (0.1 kg) and height (0.5 cm) is within 0.2 kg/m2 of weight/height^2.
BMI_TOLERANCE = 0.5
# Device status flags that say the measurement itself was disturbed: such a reading never alerts.
UNFIT_DEVICE_FLAGS = frozenset(
    {
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
        Flag.OUT_OF_RANGE,
        Flag.IMPLAUSIBLE,
    }
)


@dataclass(frozen=True, slots=True)
class SpotCheck:
    """The verdict on one reading. ``flags`` are the reading's own flags plus any added here.

    ``reasons`` name each problem without the measured value, so they are safe to log.
    """

    flags: frozenset[Flag]
    fit_for_alerting: bool
    reasons: tuple[str, ...]


def check_reading(reading: Reading) -> SpotCheck:
    """Check every value of ``reading`` against physiological limits and against each other.

    The reading is not changed: a failing one keeps its raw values and gets IMPLAUSIBLE (impossible or
    self-contradictory) or OUT_OF_RANGE (outside what a person can show), and is unfit for alerting.
    Device flags that say the measurement was disturbed (movement, loose cuff, lead off ...) also make it
    unfit. A reading with no values at all has nothing to alert on and is unfit too.
    """
    added: set[Flag] = set()
    reasons: list[str] = []

    def fail(flag: Flag, reason: str) -> None:
        added.add(flag)
        reasons.append(reason)

    limits = LIMITS.get(reading.kind, {})
    numbers: dict[str, float] = {}
    for name, quantity in reading.values.items():
        values = quantity.value if isinstance(quantity.value, tuple) else (quantity.value,)
        if not values or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            fail(Flag.IMPLAUSIBLE, f"{name} is not a finite number")
            continue
        if not isinstance(quantity.value, tuple):
            numbers[name] = float(quantity.value)
        impossible = IMPOSSIBLE_ABOVE.get((reading.kind, name))
        if impossible is not None and max(values) > impossible:
            fail(Flag.IMPLAUSIBLE, f"{name} above {impossible:g} {quantity.unit} cannot be")
            continue
        bounds = limits.get(name)
        if bounds is not None and not all(bounds.low <= v <= bounds.high for v in values):
            fail(Flag.OUT_OF_RANGE, f"{name} outside {bounds.low:g}-{bounds.high:g} {quantity.unit}")
    for check in CONSISTENCY.get(reading.kind, ()):
        problem = check(numbers)
        if problem:
            fail(Flag.IMPLAUSIBLE, problem)
    if not reading.values:
        reasons.append("the reading has no values")
    disturbed = sorted(flag.value for flag in reading.flags & UNFIT_DEVICE_FLAGS)
    if disturbed:
        reasons.append("device reported " + ", ".join(disturbed))
    flags = frozenset(reading.flags | added)
    fit = bool(reading.values) and not flags & UNFIT_DEVICE_FLAGS
    return SpotCheck(flags=flags, fit_for_alerting=fit, reasons=tuple(reasons))


def _blood_pressure_order(v: Mapping[str, float]) -> str | None:
    systolic, diastolic, mean = v.get("systolic"), v.get("diastolic"), v.get("mean_arterial")
    if systolic is not None and diastolic is not None:
        if systolic <= diastolic:
            return "systolic not above diastolic"
        if mean is not None and not diastolic <= mean <= systolic:
            return "mean arterial pressure not between diastolic and systolic"
    return None


def _bmi_agrees(v: Mapping[str, float]) -> str | None:
    weight, height, bmi = v.get("weight"), v.get("height"), v.get("bmi")
    if weight is None or height is None or bmi is None or height <= 0:
        return None
    if abs(weight / height**2 - bmi) > BMI_TOLERANCE:
        return "bmi disagrees with weight/height^2"
    return None


CONSISTENCY: Mapping[Kind, tuple[Callable[[Mapping[str, float]], str | None], ...]] = MappingProxyType(
    {Kind.BLOOD_PRESSURE: (_blood_pressure_order,), Kind.BODY_WEIGHT: (_bmi_agrees,)}
)
