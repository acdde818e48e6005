"""The shared vocabulary: observation kinds, value names with UCUM units, quality flags and codes.

Drivers, the gateway, InfluxDB and the alert rules all name things through this module, so that a
``systolic`` in a cuff driver is the same ``systolic`` in a NEWS2 rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Kind(StrEnum):
    """What was measured. One InfluxDB measurement per kind."""

    BLOOD_PRESSURE = "blood_pressure"
    SPO2 = "spo2"
    BODY_TEMPERATURE = "body_temperature"
    BODY_WEIGHT = "body_weight"
    BLOOD_GLUCOSE = "blood_glucose"
    HEART_RATE = "heart_rate"
    ECG = "ecg"
    PPG = "ppg"


class Flag(StrEnum):
    """Quality flags: a closed vocabulary. Extend it deliberately, and only here."""

    BODY_MOVEMENT = "body_movement"
    CUFF_FIT_LOOSE = "cuff_fit_loose"
    IRREGULAR_PULSE = "irregular_pulse"
    IMPROPER_POSITION = "improper_position"
    LOW_PERFUSION = "low_perfusion"
    FINGER_OUT = "finger_out"
    SEARCHING = "searching"
    PROBE_ERROR = "probe_error"
    LEAD_OFF = "lead_off"
    MOTION_ARTIFACT = "motion_artifact"
    LOW_SIGNAL_QUALITY = "low_signal_quality"
    OUT_OF_RANGE = "out_of_range"
    IMPLAUSIBLE = "implausible"
    CLOCK_UNVERIFIED = "clock_unverified"
    # The device marked a value as not a number (IEEE-11073 NaN/NRes/±INF, or a vendor's "invalid"
    # sentinel). The value is left out of the reading; this flag says why it is missing.
    VALUE_UNAVAILABLE = "value_unavailable"
    # The time this reading may have been taken (its device time give or take the clock limit, or the
    # moments before it arrived, back to the start of a live device's measurement run) meets two
    # residents' sessions: it is kept anonymous, never guessed.
    SUBJECT_CONFLICT = "subject_conflict"


class Finding(StrEnum):
    """What a waveform's analysis found about the rhythm: clinical findings, not quality flags."""

    POSSIBLE_AF = "possible_af"
    PAUSE = "pause"
    ASYSTOLE = "asystole"
    BRADYCARDIA = "bradycardia"
    TACHYCARDIA = "tachycardia"


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """One named value of a kind: its UCUM unit and its codes."""

    name: str
    unit: str
    loinc: str | None = None
    mdc: int | None = None
    is_list: bool = False


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What a kind carries. Waveform kinds carry a strip besides their derived values."""

    kind: Kind
    values: Mapping[str, ValueSpec]
    loinc: str | None = None
    mdc: int | None = None
    waveform: bool = False
    strip_unit: str | None = None
    aliases: tuple[str, ...] = field(default=())


def _spec(kind: Kind, *values: ValueSpec, **extra: object) -> KindSpec:
    table = MappingProxyType({v.name: v for v in values})
    return KindSpec(kind, table, **extra)  # type: ignore[arg-type]


# MDC_PULS_OXIM_PULS_RATE; a cuff's pulse is MDC_PULS_RATE_NON_INV (149546).
_PULSE = ValueSpec("pulse_rate", "/min", loinc="8867-4", mdc=149530)

KINDS: Mapping[Kind, KindSpec] = MappingProxyType(
    {
        Kind.BLOOD_PRESSURE: _spec(
            Kind.BLOOD_PRESSURE,
            ValueSpec("systolic", "mm[Hg]", loinc="8480-6", mdc=150021),
            ValueSpec("diastolic", "mm[Hg]", loinc="8462-4", mdc=150022),
            ValueSpec("mean_arterial", "mm[Hg]", loinc="8478-0", mdc=150023),
            ValueSpec("pulse_rate", "/min", loinc="8867-4", mdc=149546),
            loinc="85354-9",
            mdc=150020,
        ),
        Kind.SPO2: _spec(
            Kind.SPO2,
            ValueSpec("spo2", "%", loinc="59408-5", mdc=150456),
            _PULSE,
            ValueSpec("perfusion_index", "%", mdc=150488),
            loinc="59408-5",
            mdc=150456,
        ),
        Kind.BODY_TEMPERATURE: _spec(
            Kind.BODY_TEMPERATURE,
            ValueSpec("temperature", "Cel", loinc="8310-5", mdc=150364),
            loinc="8310-5",
            mdc=150364,
        ),
        Kind.BODY_WEIGHT: _spec(
            Kind.BODY_WEIGHT,
            ValueSpec("weight", "kg", loinc="29463-7", mdc=188736),
            ValueSpec("height", "m", loinc="8302-2", mdc=188740),
            ValueSpec("bmi", "kg/m2", loinc="39156-5", mdc=188752),
            loinc="29463-7",
        ),
        Kind.BLOOD_GLUCOSE: _spec(
            Kind.BLOOD_GLUCOSE,
            ValueSpec("glucose", "mmol/L", loinc="15074-8", mdc=160368),
            loinc="15074-8",
            mdc=160368,
        ),
        Kind.HEART_RATE: _spec(
            Kind.HEART_RATE,
            ValueSpec("heart_rate", "/min", loinc="8867-4", mdc=147842),
            ValueSpec("rr_intervals", "ms", is_list=True),
            loinc="8867-4",
        ),
        Kind.ECG: _spec(
            Kind.ECG,
            ValueSpec("heart_rate", "/min", loinc="8867-4", mdc=147842),
            ValueSpec("rr_intervals", "ms", is_list=True),
            ValueSpec("signal_quality", "1"),
            waveform=True,
            strip_unit="uV",
        ),
        Kind.PPG: _spec(
            Kind.PPG,
            _PULSE,
            ValueSpec("signal_quality", "1"),
            waveform=True,
            strip_unit="1",
        ),
    }
)

# MDC codes of ECG leads (IEEE 11073-10101 MDC_ECG_ELEC_POTL_*). DESIGN.md gave 131329 for lead II, but
# 131329 is lead I; lead II is 131330, as in HL7's FHIR ECG example.
ECG_LEAD_MDC: Mapping[str, int] = MappingProxyType({"I": 131329, "II": 131330, "III": 131389})

# Glucose: 1 mmol/L = 18.016 mg/dL (DESIGN.md, Vocabulary).
MG_DL_PER_MMOL_L = 18.016
MMHG_PER_KPA = 7.500617
KG_PER_LB = 0.45359237


def value_problem(kind: Kind, name: str, unit: str, is_list: bool) -> str | None:
    """Why ``name`` in ``unit`` is not a value of ``kind``, or None when it is."""
    allowed = KINDS[kind].values.get(name)
    if allowed is None:
        return f"{kind.value} has no value named {name!r}"
    if unit != allowed.unit:
        return f"{kind.value}.{name} must be in {allowed.unit!r}, not {unit!r}"
    if is_list != allowed.is_list:
        return f"{kind.value}.{name} must be {'a list' if allowed.is_list else 'a number'}"
    return None


def value_spec(kind: Kind, name: str) -> ValueSpec:
    """The spec of ``name`` in ``kind``; KeyError names both when the pair is not in the vocabulary."""
    try:
        return KINDS[kind].values[name]
    except KeyError:
        raise KeyError(f"{kind.value} has no value named {name!r}") from None
