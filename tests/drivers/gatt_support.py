"""Shared by the GATT tests: capture loading, Reading <-> JSON, and hypothesis strategies of every field type."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from healthhut.drivers.gatt import blood_pressure as bp
from healthhut.drivers.gatt import glucose as gl
from healthhut.drivers.gatt import heart_rate as hr
from healthhut.drivers.gatt import pulse_oximeter as plx
from healthhut.drivers.gatt import racp
from healthhut.drivers.gatt import thermometer as ht
from healthhut.drivers.gatt import weight_scale as ws
from healthhut.drivers.gatt.date_time import DateTime
from healthhut.drivers.gatt.sfloat import Float, SFloat
from healthhut.protocol import Flag, Kind, Quantity, Reading

ROOT = Path(__file__).resolve().parents[2]
DRIVER_PACKAGES = [
    "ble_blood_pressure",
    "ble_thermometer",
    "ble_weight_scale",
    "ble_glucose",
    "ble_pulse_oximeter",
    "ble_heart_rate",
]
CAPTURES = sorted(
    (package, path.stem)
    for package in DRIVER_PACKAGES
    for path in (ROOT / "drivers" / package / "captures").glob("*.hex")
)


def load_capture(package: str, name: str) -> list[tuple[int, bytes]]:
    """The (characteristic, value) lines of a capture: ``2A35  1E 8A 00 ...``, with # comments."""
    values = []
    for text in (ROOT / "drivers" / package / "captures" / f"{name}.hex").read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if line:
            uuid, _, data = line.partition(" ")
            values.append((int(uuid, 16), bytes.fromhex(data)))
    return values


def reading_from_json(obj: dict[str, Any]) -> Reading:
    values = {
        name: Quantity(tuple(value) if isinstance(value, list) else value, unit)
        for name, (value, unit) in obj["values"].items()
    }
    measured_at = None if obj["measured_at"] is None else datetime.fromisoformat(obj["measured_at"])
    return Reading(Kind(obj["kind"]), values, frozenset(Flag(flag) for flag in obj["flags"]), measured_at)


def expected_capture(package: str, name: str) -> tuple[list[Reading], int]:
    obj = json.loads((ROOT / "drivers" / package / "captures" / f"{name}.json").read_text())
    return [reading_from_json(reading) for reading in obj["readings"]], obj["frame_errors"]


# --- strategies of raw fields, covering every value the wire can carry

sfloats = st.builds(SFloat, st.integers(-2048, 2047), st.integers(-8, 7))
floats32 = st.builds(Float, st.integers(-(2**23), 2**23 - 1), st.integers(-128, 127))


@st.composite
def date_times(draw: st.DrawFn) -> DateTime:
    """Valid Date Times, known and unknown (a zero year, month or day)."""
    moment = draw(st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    year, month, day = moment.year, moment.month, moment.day
    if draw(st.booleans()):
        year, month, day = draw(st.sampled_from([(0, month, day), (year, 0, day), (year, month, 0), (0, 0, 0)]))
    return DateTime(year, month, day, moment.hour, moment.minute, moment.second)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


u8, u16, u24, u32 = (st.integers(0, 2**bits - 1) for bits in (8, 16, 24, 32))
trailing = st.binary(max_size=4)


def rfu(defined: int) -> st.SearchStrategy[int]:
    return st.integers(0, 0xFF).map(lambda bits: bits & ~defined & 0xFF)


def _bp_common(kind: type[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        kind,
        st.booleans(),
        sfloats,
        sfloats,
        sfloats,
        optional(date_times()),
        optional(sfloats),
        optional(u8),
        optional(u16),
        rfu(bp.BP_DEFINED_FLAGS),
        trailing,
    )


def _temperature(kind: type[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        kind, st.booleans(), floats32, optional(date_times()), optional(u8), rfu(ht.TEMPERATURE_DEFINED_FLAGS), trailing
    )


@st.composite
def weight_measurements(draw: st.DrawFn) -> ws.WeightMeasurement:
    bmi_height = draw(optional(st.tuples(u16, u16)))
    bmi, height = bmi_height if bmi_height else (None, None)
    return ws.WeightMeasurement(
        draw(st.booleans()),
        draw(u16),
        draw(optional(date_times())),
        draw(optional(u8)),
        bmi,
        height,
        draw(rfu(ws.WEIGHT_DEFINED_FLAGS)),
        draw(trailing),
    )


@st.composite
def glucose_measurements(draw: st.DrawFn) -> gl.GlucoseMeasurement:
    sample = draw(optional(st.tuples(sfloats, st.integers(0, 15), st.integers(0, 15))))
    concentration, sample_type, location = sample if sample else (None, None, None)
    return gl.GlucoseMeasurement(
        draw(u16),
        draw(date_times()),
        draw(optional(st.integers(-0x8000, 0x7FFF))),
        concentration,
        sample_type,
        location,
        draw(st.booleans()),
        draw(optional(u16)),
        draw(st.booleans()),
        draw(rfu(gl.GLUCOSE_DEFINED_FLAGS)),
        draw(trailing),
    )


@st.composite
def glucose_contexts(draw: st.DrawFn) -> gl.GlucoseContext:
    def pair(first: st.SearchStrategy[Any], second: st.SearchStrategy[Any]) -> tuple[Any, Any]:
        both = draw(optional(st.tuples(first, second)))
        return both if both else (None, None)

    carbohydrate_id, carbohydrate = pair(u8, sfloats)
    tester, health = pair(st.integers(0, 15), st.integers(0, 15))
    duration, intensity = pair(u16, u8)
    medication_id, medication = pair(u8, sfloats)
    return gl.GlucoseContext(
        draw(u16),
        draw(optional(u8)),
        carbohydrate_id,
        carbohydrate,
        draw(optional(u8)),
        tester,
        health,
        duration,
        intensity,
        medication_id,
        medication,
        draw(st.booleans()),
        draw(optional(sfloats)),
        draw(trailing),
    )


@st.composite
def racp_responses(draw: st.DrawFn) -> racp.RacpValue:
    if draw(st.booleans()):
        count = draw(st.sampled_from([1, 2, 4]).flatmap(lambda size: st.binary(min_size=size, max_size=size)))
        return racp.RacpValue(racp.OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, racp.Operator.NULL, count)
    return racp.RacpValue(racp.OpCode.RESPONSE_CODE, racp.Operator.NULL, draw(st.binary(min_size=2, max_size=4)))


@st.composite
def plx_features(draw: st.DrawFn) -> plx.PlxFeatures:
    supported = draw(u16)
    measurement = draw(u16) if supported & 0x01 else None
    device = draw(u24) if supported & 0x02 else None
    return plx.PlxFeatures(supported, measurement, device, draw(trailing))


@st.composite
def heart_rates(draw: st.DrawFn) -> hr.HeartRateMeasurement:
    wide = draw(st.booleans())
    rr = draw(optional(st.lists(u16, min_size=1, max_size=9).map(tuple)))
    return hr.HeartRateMeasurement(
        draw(u16 if wide else u8),
        wide,
        draw(st.integers(0, 3)),
        draw(optional(u16)),
        rr,
        draw(rfu(hr.HR_DEFINED_FLAGS)),
        b"" if rr is not None else draw(trailing),
    )


FIELD_STRATEGIES: dict[int, st.SearchStrategy[Any]] = {
    bp.BLOOD_PRESSURE_MEASUREMENT: _bp_common(bp.BloodPressureMeasurement),
    bp.INTERMEDIATE_CUFF_PRESSURE: _bp_common(bp.IntermediateCuffPressure),
    bp.BLOOD_PRESSURE_FEATURE: st.builds(bp.BloodPressureFeature, u16, trailing),
    ht.TEMPERATURE_MEASUREMENT: _temperature(ht.TemperatureMeasurement),
    ht.INTERMEDIATE_TEMPERATURE: _temperature(ht.IntermediateTemperature),
    ws.WEIGHT_MEASUREMENT: weight_measurements(),
    ws.WEIGHT_SCALE_FEATURE: st.builds(ws.WeightScaleFeature, u32, trailing),
    gl.GLUCOSE_MEASUREMENT: glucose_measurements(),
    gl.GLUCOSE_MEASUREMENT_CONTEXT: glucose_contexts(),
    gl.GLUCOSE_FEATURE: st.builds(gl.GlucoseFeature, u16, trailing),
    racp.RECORD_ACCESS_CONTROL_POINT: racp_responses(),
    plx.PLX_SPOT_CHECK_MEASUREMENT: st.builds(
        plx.PlxSpotCheck,
        sfloats,
        sfloats,
        optional(date_times()),
        optional(u16),
        optional(u24),
        optional(sfloats),
        st.booleans(),
        rfu(plx.SPOT_CHECK_DEFINED_FLAGS),
        trailing,
    ),
    plx.PLX_CONTINUOUS_MEASUREMENT: st.builds(
        plx.PlxContinuous,
        sfloats,
        sfloats,
        optional(st.tuples(sfloats, sfloats)),
        optional(st.tuples(sfloats, sfloats)),
        optional(u16),
        optional(u24),
        optional(sfloats),
        rfu(plx.CONTINUOUS_DEFINED_FLAGS),
        trailing,
    ),
    plx.PLX_FEATURES: plx_features(),
    hr.HEART_RATE_MEASUREMENT: heart_rates(),
}
