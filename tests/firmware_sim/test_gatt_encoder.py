"""hut-sim's GATT encoders invert the codecs exactly: fields -> bytes -> fields, and bytes -> fields -> bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers import DecodeError
from healthhut.drivers.gatt import (
    CHARACTERISTICS,
    BloodPressureMeasurement,
    DateTime,
    GattProfileDecoder,
    HeartRateMeasurement,
    SFloat,
    decode_racp,
    decode_value,
    racp_report_after,
    racp_report_all,
    racp_report_range,
)
from healthhut.drivers.gatt.racp import Operator, ResponseCode
from healthhut.firmware_sim.encoders.gatt import ENCODERS, encode, racp_number_of_records, racp_response
from healthhut.protocol import Kind, Quantity, Reading
from tests.drivers.gatt_support import CAPTURES, FIELD_STRATEGIES, load_capture

UUIDS = sorted(CHARACTERISTICS)


def test_every_decoded_characteristic_has_an_encoder() -> None:
    assert set(ENCODERS) == set(CHARACTERISTICS) == set(FIELD_STRATEGIES)


@pytest.mark.parametrize("uuid", UUIDS, ids=lambda uuid: f"{uuid:#06x}")
def test_fields_round_trip(uuid: int) -> None:
    @settings(max_examples=100, database=None, deadline=None)
    @given(FIELD_STRATEGIES[uuid])
    def run(fields: Any) -> None:
        assert decode_value(uuid, encode(uuid, fields)) == fields

    run()


@pytest.mark.parametrize("uuid", UUIDS, ids=lambda uuid: f"{uuid:#06x}")
def test_every_accepted_value_round_trips_byte_for_byte(uuid: int) -> None:
    @settings(max_examples=150, database=None, deadline=None)
    @given(st.tuples(st.integers(0, 255), st.binary(max_size=30)).map(lambda pair: bytes([pair[0]]) + pair[1]))
    def run(data: bytes) -> None:
        try:
            fields = decode_value(uuid, data)
        except DecodeError:
            return
        assert encode(uuid, fields) == data

    run()


@pytest.mark.parametrize(("package", "name"), CAPTURES)
def test_capture_values_round_trip(package: str, name: str) -> None:
    for uuid, data in load_capture(package, name):
        try:
            fields = decode_value(uuid, data)
        except DecodeError:
            continue
        assert encode(uuid, fields) == data


def test_a_simulated_cuff_reading_reaches_the_decoder() -> None:
    fields = BloodPressureMeasurement(
        kpa=False,
        systolic=SFloat.from_decimal("128"),
        diastolic=SFloat.from_decimal("84"),
        mean_arterial=SFloat.from_decimal("99"),
        time_stamp=DateTime(2000, 1, 1, 0, 0, 0),  # a clock reset to 2000-01-01, as hut-sim's fault does
        pulse_rate=SFloat.from_decimal("66"),
    )
    decoder = GattProfileDecoder()
    [reading] = decoder.on_value(0x2A35, encode(0x2A35, fields))
    assert reading.values == {
        "systolic": Quantity(128.0, "mm[Hg]"),
        "diastolic": Quantity(84.0, "mm[Hg]"),
        "mean_arterial": Quantity(99.0, "mm[Hg]"),
        "pulse_rate": Quantity(66.0, "/min"),
    }
    assert reading.measured_at is not None and reading.measured_at.year == 2000


def test_special_values_can_be_sent() -> None:
    fields = HeartRateMeasurement(72, rr_intervals=(800,))
    assert encode(0x2A37, fields) == bytes.fromhex("10 48 20 03")
    nan = SFloat.from_raw(0x07FF)
    cuff = BloodPressureMeasurement(False, nan, nan, nan)
    assert decode_value(0x2A35, encode(0x2A35, cuff)) == cuff


@pytest.mark.parametrize(
    ("uuid", "fields", "message"),
    [
        (0x2A35, HeartRateMeasurement(72), "carries BloodPressureMeasurement, not HeartRateMeasurement"),
        (0x2A00, HeartRateMeasurement(72), "no encoder for characteristic 0x2a00"),
        (0x2A37, HeartRateMeasurement(300), "heart_rate must fit 8 unsigned bits"),
        (0x2A37, HeartRateMeasurement(72, rfu_flags=0x01), "overlaps the defined flags"),
        (0x2A37, HeartRateMeasurement(72, sensor_contact=4), "sensor_contact is two bits"),
        (0x2A35, BloodPressureMeasurement(False, SFloat(1), SFloat(1), SFloat(1), user_id=256), "user_id"),
        (0x2A35, BloodPressureMeasurement(False, SFloat(1), SFloat(1), SFloat(1), DateTime(2024, 2, 30)), "not a date"),
    ],
)
def test_encoder_refuses_what_does_not_fit(uuid: int, fields: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode(uuid, fields)


def test_fields_keep_their_invariants() -> None:
    from healthhut.drivers.gatt import WeightMeasurement

    with pytest.raises(ValueError, match="BMI and height"):
        WeightMeasurement(False, 100, bmi=200)
    with pytest.raises(ValueError, match="at least one interval"):
        HeartRateMeasurement(72, rr_intervals=())


# --- RACP: the meter's side


def test_meter_responses() -> None:
    assert racp_number_of_records(300) == bytes.fromhex("05 00 2C 01")
    assert racp_response(0x01, ResponseCode.NO_RECORDS_FOUND) == bytes.fromhex("06 00 01 06")
    decoder = GattProfileDecoder()
    decoder.on_value(0x2A52, racp_number_of_records(2))
    assert decoder.racp_record_count == 2
    with pytest.raises(ValueError, match="record count"):
        racp_number_of_records(70_000)


def test_the_meter_reads_the_gateways_commands() -> None:
    after = decode_racp(racp_report_after(41))
    assert (after.operator, after.sequence_filter) == (Operator.GREATER_THAN_OR_EQUAL_TO, (42,))
    assert decode_racp(racp_report_range(3, 9)).sequence_filter == (3, 9)
    assert decode_racp(racp_report_all()).sequence_filter is None
    with pytest.raises(DecodeError, match="takes 3 operand bytes, not 2"):
        decode_racp(bytes.fromhex("01 03 01 05"))
    with pytest.raises(DecodeError, match="op code 0x0c"):
        decode_racp(bytes.fromhex("0C 00"))


def test_a_simulated_glucose_transfer() -> None:
    from healthhut.drivers.gatt import GlucoseContext, GlucoseMeasurement

    decoder = GattProfileDecoder()
    record = GlucoseMeasurement(1, DateTime(2024, 6, 1, 7, 30), None, SFloat(95, -5), 1, 1, context_follows=True)
    values = [
        (0x2A52, racp_number_of_records(1)),
        (0x2A18, encode(0x2A18, record)),
        (0x2A34, encode(0x2A34, GlucoseContext(1, meal=3))),
        (0x2A52, racp_response(0x01, ResponseCode.SUCCESS)),
    ]
    readings = [reading for uuid, data in values for reading in decoder.on_value(uuid, data)]
    assert [reading.kind for reading in readings] == [Kind.BLOOD_GLUCOSE]
    assert readings[0] == Reading(
        Kind.BLOOD_GLUCOSE, {"glucose": Quantity(5.273091, "mmol/L")}, measured_at=readings[0].measured_at
    )
    assert decoder.frame_errors == 0
