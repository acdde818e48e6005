"""The codecs against independent public test vectors: Nordic's Android-BLE-Common-Library parser tests.

Each vector is the byte array of a test under ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/
in https://github.com/NordicSemiconductor/Android-BLE-Common-Library, with the values that test asserts.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from healthhut.drivers import DecodeError
from healthhut.drivers.gatt import (
    DateTime,
    GattProfileDecoder,
    GlucoseContext,
    GlucoseMeasurement,
    HeartRateMeasurement,
    RacpValue,
    SFloat,
    decode_value,
    parse,
)
from healthhut.drivers.gatt.glucose import SensorStatus
from healthhut.protocol import Flag, Kind, Quantity, Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")


def mmhg(value: float) -> Quantity:
    return Quantity(value, "mm[Hg]")


# --- bps/BloodPressureMeasurementDataCallbackTest


def test_nordic_bpm_full() -> None:
    data = bytes([0x1E, 0x8A, 0x00, 0x58, 0x00, 0x78, 0x00, 0x00, 0x00, 0x04, 0x11, 0x14, 0x29, 0x3B, 0x3C, 0x00, 0x01])
    data += bytes([0x27, 0x00])
    # Status 0b100111: body movement, cuff too loose, irregular pulse, pulse rate in range, improper position.
    # Nordic keeps a date with no year (April 17); a date without a year is no time here.
    assert parse(0x2A35, data) == Reading(
        Kind.BLOOD_PRESSURE,
        {
            "systolic": mmhg(138.0),
            "diastolic": mmhg(88.0),
            "mean_arterial": mmhg(120.0),
            "pulse_rate": Quantity(60.0, "/min"),
        },
        frozenset({Flag.BODY_MOVEMENT, Flag.CUFF_FIT_LOOSE, Flag.IRREGULAR_PULSE, Flag.IMPROPER_POSITION}),
    )
    fields = decode_value(0x2A35, data)
    assert fields.time_stamp == DateTime(0, 4, 17, 20, 41, 59)  # type: ignore[union-attr]
    assert fields.user_id == 1  # type: ignore[union-attr]


def test_nordic_bpm_some_in_kpa() -> None:
    data = bytes([0x15, 0xBD, 0xF0, 0x0B, 0x00, 0x9F, 0xF0, 0x3C, 0x00, 0x12, 0x00])
    # 18.9 / 11 / 15.9 kPa; status 0b010010: cuff too loose, pulse rate below the lower limit.
    assert parse(0x2A35, data) == Reading(
        Kind.BLOOD_PRESSURE,
        {
            "systolic": mmhg(141.761661),
            "diastolic": mmhg(82.506787),
            "mean_arterial": mmhg(119.25981),
            "pulse_rate": Quantity(60.0, "/min"),
        },
        frozenset({Flag.CUFF_FIT_LOOSE, Flag.OUT_OF_RANGE}),
    )


def test_nordic_bpm_minimal_and_invalid() -> None:
    assert parse(0x2A35, bytes([0x00, 0xBD, 0xF0, 0x0B, 0x00, 0x9F, 0xF0])) == Reading(
        Kind.BLOOD_PRESSURE, {"systolic": mmhg(18.9), "diastolic": mmhg(11.0), "mean_arterial": mmhg(15.9)}
    )
    with pytest.raises(DecodeError, match="Mean Arterial Pressure needs 2 bytes"):
        parse(0x2A35, bytes([1, 2, 3, 4, 5, 6]))
    with pytest.raises(DecodeError, match="Time Stamp needs 7 bytes"):
        parse(0x2A35, bytes([3, 2, 3, 4, 5, 6, 7]))


# --- bps/IntermediateCuffPressureDataCallbackTest


def test_nordic_intermediate_cuff_pressure() -> None:
    decoder = GattProfileDecoder()
    full = bytes([0x1E, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x11, 0x14, 0x29, 0x3B, 0x3C, 0x00, 0x01])
    assert decoder.on_value(0x2A36, full + bytes([0x27, 0x00])) == []
    assert decoder.last_cuff_pressure_mmhg == 4.0
    assert decoder.on_value(0x2A36, bytes([0x15, 0x6F, 0xF0, 0x00, 0x00, 0x00, 0x00, 0x3C, 0x0, 0x12, 0x0])) == []
    assert decoder.last_cuff_pressure_mmhg == 83.256849  # 11.1 kPa
    assert decoder.last_intermediate == Reading(
        Kind.BLOOD_PRESSURE, {"pulse_rate": Quantity(60.0, "/min")}, frozenset({Flag.CUFF_FIT_LOOSE, Flag.OUT_OF_RANGE})
    )
    assert decoder.on_value(0x2A36, bytes([0x00, 0xD7, 0xF0, 0x00, 0x00, 0x00, 0x00])) == []
    assert decoder.last_cuff_pressure_mmhg == 21.5
    assert decoder.on_value(0x2A36, bytes([1, 2, 3, 4, 5, 6])) == []
    assert decoder.frame_errors == 1


# --- ht/TemperatureMeasurementDataCallbackTest


def test_nordic_temperature() -> None:
    data = bytes([0x06, 0xB0, 0x0E, 0x00, 0xFE, 0xDC, 0x07, 0x0C, 0x05, 0x0B, 0x32, 0x1B, 0x04])
    assert parse(0x2A1C, data) == Reading(
        Kind.BODY_TEMPERATURE,
        {"temperature": Quantity(37.6, "Cel")},
        measured_at=datetime(2012, 12, 5, 11, 50, 27, tzinfo=SHANGHAI),
    )
    assert decode_value(0x2A1C, data).temperature_type == 4  # type: ignore[union-attr]  # finger
    with pytest.raises(DecodeError, match="Temperature Type needs 1 bytes"):
        parse(0x2A1C, data[:-1])


# --- hr/HeartRateMeasurementDataCallbackTest


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (bytes([0, 85]), HeartRateMeasurement(85)),
        (bytes([0x4, 0xFF]), HeartRateMeasurement(255, sensor_contact=2)),
        (bytes([0b11110, 85, 50, 0, 33, 0]), HeartRateMeasurement(85, False, 3, 50, (33,))),
        (
            bytes([0b11111, 1, 1, 50, 1, 1, 0, 2, 1, 0xFF, 0xFF]),
            HeartRateMeasurement(257, True, 3, 306, (1, 258, 65535)),
        ),
    ],
)
def test_nordic_heart_rate(data: bytes, fields: HeartRateMeasurement) -> None:
    assert decode_value(0x2A37, data) == fields


def test_nordic_heart_rate_no_contact_and_invalid() -> None:
    assert parse(0x2A37, bytes([0x4, 0xFF])) == Reading(
        Kind.HEART_RATE, {"heart_rate": Quantity(255, "/min")}, frozenset({Flag.LEAD_OFF})
    )
    with pytest.raises(DecodeError, match="RR-Interval"):
        parse(0x2A37, bytes([0b10111, 1, 1]))


# --- glucose/GlucoseMeasurementDataCallbackTest and GlucoseMeasurementContextDataCallbackTest


def test_nordic_glucose_measurement() -> None:
    data = bytes([0b011011, 1, 0, 0xE3, 0x07, 2, 27, 11, 10, 30, 0xFB, 0xFF, 30, 0, 0x12, 0b101, 0b1])
    fields = decode_value(0x2A18, data)
    assert fields == GlucoseMeasurement(
        sequence_number=1,
        base_time=DateTime(2019, 2, 27, 11, 10, 30),
        time_offset=-5,
        concentration=SFloat(30, 0),  # 30 kg/L: Nordic's number, not a physiological one
        sample_type=2,  # capillary plasma
        sample_location=1,  # finger
        status=0x0105,
        context_follows=True,
    )
    assert isinstance(fields, GlucoseMeasurement) and fields.status is not None
    assert fields.status & SensorStatus.BATTERY_LOW and not fields.status & SensorStatus.GENERAL_DEVICE_FAULT
    reading = parse(0x2A18, data)
    assert reading.measured_at == datetime(2019, 2, 27, 11, 5, 30, tzinfo=SHANGHAI)
    # Sample size insufficient (bit 2) and sensor temperature too low (bit 8); a low battery is no flag.
    assert reading.flags == {Flag.LOW_SIGNAL_QUALITY, Flag.PROBE_ERROR}
    with pytest.raises(DecodeError, match="Sensor Status Annunciation needs 2 bytes"):
        parse(0x2A18, bytes([0b011011, 0, 0, 0xE2, 0x07, 4, 26, 11, 9, 30, 30, 0, 0x12, 0b101, 0b1]))


def test_nordic_glucose_context() -> None:
    # Nordic's "empty" vector: flags 0, sequence number 1, then 14 zero bytes of padding.
    empty = decode_value(0x2A34, bytes([0x00, 0x01, 0x00]) + bytes(14))
    assert empty == GlucoseContext(1, trailing=bytes(14))
    with pytest.raises(DecodeError, match="left over"):
        decode_value(0x2A34, bytes([0x00, 0x01, 0x00]) + bytes(14), strict=True)
    # The "full" layout with every flag, as that test fills it (the amounts in our own SFLOAT encoding).
    full = bytes([0xFF, 0, 0, 0xB3, 3, 0x64, 0x00, 4, 0x12, 60, 0, 50, 4, 0xD3, 0xF4, 0x59, 0xF1])
    assert decode_value(0x2A34, full) == GlucoseContext(
        0,
        extended_flags=0xB3,
        carbohydrate_id=3,  # dinner
        carbohydrate=SFloat(100, 0),
        meal=4,  # casual
        tester=2,  # health care professional
        health=1,  # minor health issues
        exercise_duration=60,
        exercise_intensity=50,
        medication_id=4,  # long acting insulin
        medication=SFloat(1235, -1),  # 123.45 does not fit an SFLOAT; 123.5
        medication_in_litres=True,
        hba1c=SFloat(345, -1),
    )
    # Nordic's invalid vector: every flag set, the value cut after the medication (no HbA1c).
    with pytest.raises(DecodeError, match="HbA1c needs 2 bytes"):
        decode_value(0x2A34, full[:-2])


# --- RecordAccessControlPointDataCallbackTest


@pytest.mark.parametrize(
    ("data", "request_op_code", "code"),
    [
        ([6, 0, 1, 1], 1, 1),
        ([6, 0, 12, 2], 12, 2),
        ([6, 0, 1, 3], 1, 3),
        ([6, 0, 2, 4], 2, 4),
        ([6, 0, 1, 5], 1, 5),
        ([6, 0, 1, 6], 1, 6),
        ([6, 0, 3, 7], 3, 7),
        ([6, 0, 2, 8], 2, 8),
        ([6, 0, 2, 9], 2, 9),
        ([6, 0, 1, 10], 1, 10),
    ],
)
def test_nordic_racp_response_codes(data: list[int], request_op_code: int, code: int) -> None:
    value = decode_value(0x2A52, bytes(data))
    assert isinstance(value, RacpValue)
    assert (value.request_op_code, value.response_code, value.record_count) == (request_op_code, code, None)


@pytest.mark.parametrize(("data", "count"), [([5, 0, 1], 1), ([5, 0, 2, 1], 258), ([5, 0, 4, 3, 2, 1], 16909060)])
def test_nordic_racp_record_counts(data: list[int], count: int) -> None:
    value = decode_value(0x2A52, bytes(data))
    assert isinstance(value, RacpValue) and value.record_count == count


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([5, 0, 3, 2, 1], "record count is 1 or 2 or 4 bytes, not 3"),
        ([1, 1], "a meter indicates responses"),
        ([1, 3, 1, 2, 0], "a meter indicates responses"),
        ([6, 1, 1], "the operator of a response is Null"),
    ],
)
def test_nordic_racp_invalid(data: list[int], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_value(0x2A52, bytes(data))
