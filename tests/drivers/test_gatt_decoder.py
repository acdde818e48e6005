"""GattProfileDecoder's context (features, glucose records, RACP), the six registered drivers and their config."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from healthhut.drivers import BleProfile, DecodeError, GattDecoder, get_driver
from healthhut.drivers.gatt import (
    GattProfileDecoder,
    GlucoseContext,
    WeightScaleFeature,
    current_time_bytes,
    decode_current_time,
    racp_abort,
    racp_delete_all,
    racp_report_after,
    racp_report_all,
    racp_report_at_most,
    racp_report_count,
    racp_report_count_after,
    racp_report_first,
    racp_report_from,
    racp_report_last,
    racp_report_range,
)
from healthhut.drivers.gatt.config import GattDeviceConfig
from healthhut.drivers.gatt.date_time import AdjustReason
from healthhut.protocol import Kind, Quantity, Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")
STAMP = bytes.fromhex("E8 07 06 01 07 1E 00")  # 2024-06-01 07:30:00


def glucose(sequence: int, *, context_follows: bool = False, type_location: int = 0x11) -> bytes:
    flags = 0x02 | (0x10 if context_follows else 0)
    return bytes([flags]) + sequence.to_bytes(2, "little") + STAMP + bytes.fromhex("5F B0") + bytes([type_location])


def context(sequence: int) -> bytes:
    return bytes([0x02]) + sequence.to_bytes(2, "little") + b"\x03"  # meal: fasting


GLUCOSE_95 = Reading(
    Kind.BLOOD_GLUCOSE,
    {"glucose": Quantity(5.273091, "mmol/L")},
    measured_at=datetime(2024, 6, 1, 7, 30, tzinfo=SHANGHAI),
)


def test_it_is_a_gatt_decoder_and_never_raises_on_garbage() -> None:
    decoder = GattProfileDecoder()
    assert isinstance(decoder, GattDecoder)
    for uuid in (0x2A35, 0x2A18, 0x2A52, 0x2A37, 0x2A60):
        assert decoder.on_value(uuid, b"") == []
    assert decoder.frame_errors == 5
    assert isinstance(decoder.last_error, DecodeError)
    assert "Features" in str(decoder.last_error)


def test_values_of_other_characteristics_are_ignored_not_errors() -> None:
    decoder = GattProfileDecoder(characteristics={0x2A37})
    assert decoder.on_value(0x2A35, bytes.fromhex("00 78 00 50 00 5D 00")) == []
    assert decoder.on_value(0x2A19, b"\x64") == []  # battery level
    assert (decoder.ignored_values, decoder.frame_errors) == (2, 0)
    with pytest.raises(ValueError, match="no decoder for 0x2a19"):
        GattProfileDecoder(characteristics={0x2A19})


def test_features_are_kept_and_give_no_reading() -> None:
    decoder = GattProfileDecoder()
    assert decoder.on_value(0x2A9E, bytes.fromhex("A7 01 00 00")) == []
    assert decoder.on_value(0x2A49, bytes.fromhex("3F 00")) == []
    assert decoder.on_value(0x2A60, bytes.fromhex("03 00 E0 FF FF FF 00")) == []
    feature = decoder.weight_scale_feature
    assert feature == WeightScaleFeature(0x1A7)
    assert feature.weight_resolution() == Decimal("0.05") and feature.weight_resolution(imperial=True) == Decimal("0.1")
    assert feature.height_resolution() == Decimal("0.001")
    assert decoder.bp_feature is not None and decoder.bp_feature.bits == 0x3F
    assert decoder.plx_features is not None and decoder.plx_features.device_status_support == 0xFFFF


def test_intermediate_values_are_kept_for_display() -> None:
    decoder = GattProfileDecoder()
    assert decoder.on_value(0x2A1E, bytes.fromhex("00 6E 01 00 FF")) == []
    assert decoder.last_intermediate == Reading(Kind.BODY_TEMPERATURE, {"temperature": Quantity(36.6, "Cel")})
    assert decoder.on_value(0x2A36, bytes.fromhex("00 A0 00 FF 07 FF 07")) == []
    assert decoder.last_cuff_pressure_mmhg == 160.0


def test_a_glucose_record_waits_for_its_context() -> None:
    decoder = GattProfileDecoder()
    assert decoder.on_value(0x2A18, glucose(7, context_follows=True)) == []
    assert decoder.on_value(0x2A34, context(7)) == [GLUCOSE_95]
    record = decoder.last_glucose_record
    assert record is not None and record.context == GlucoseContext(7, meal=3)
    assert (decoder.last_sequence_number, decoder.glucose_records, decoder.orphan_contexts) == (7, 1, 0)


def test_a_record_whose_context_is_lost_is_released_by_the_next_one_the_racp_response_or_flush() -> None:
    decoder = GattProfileDecoder()
    assert decoder.on_value(0x2A18, glucose(1, context_follows=True)) == []
    assert decoder.on_value(0x2A18, glucose(2, context_follows=True)) == [GLUCOSE_95]
    assert decoder.on_value(0x2A52, bytes.fromhex("06 00 01 01")) == [GLUCOSE_95]
    assert decoder.on_value(0x2A18, glucose(3, context_follows=True)) == []
    assert decoder.flush() == [GLUCOSE_95]
    assert decoder.flush() == []
    assert decoder.last_glucose_record is not None and decoder.last_glucose_record.context is None


def test_a_context_for_another_record_releases_the_waiting_one_and_is_dropped() -> None:
    decoder = GattProfileDecoder()
    assert decoder.on_value(0x2A34, context(3)) == []
    decoder.on_value(0x2A18, glucose(4, context_follows=True))
    assert decoder.on_value(0x2A34, context(5)) == [GLUCOSE_95]
    assert decoder.orphan_contexts == 2


def test_control_solution_and_demonstration_data_give_no_reading() -> None:
    decoder = GattProfileDecoder()
    assert decoder.on_value(0x2A18, glucose(1, type_location=0x1A)) == []  # type 10: control solution
    assert decoder.on_value(0x2A18, glucose(2, type_location=0x41)) == []  # location 4: control solution
    assert decoder.on_value(0x2A5F, bytes.fromhex("04 62 00 48 00 00 08")) == []  # data for testing
    assert decoder.not_patient_data == 3
    assert decoder.on_value(0x2A18, glucose(3)) == [GLUCOSE_95]


def test_racp_responses_give_no_reading_and_are_kept() -> None:
    decoder = GattProfileDecoder()
    assert decoder.on_value(0x2A52, bytes.fromhex("05 00 2C 01")) == []
    assert decoder.racp_record_count == 300
    assert decoder.on_value(0x2A52, bytes.fromhex("06 00 01 06")) == []
    response = decoder.last_racp_response
    assert response is not None and (response.request_op_code, response.response_code) == (1, 6)
    assert decoder.racp_record_count == 300
    assert decoder.on_value(0x2A52, racp_report_all()) == []  # a command indicated back is a protocol error
    assert decoder.frame_errors == 1


def test_reserved_bits_are_counted_as_tolerated_quirks_or_rejected_when_strict() -> None:
    value = bytes.fromhex("DE F6 F4 16 F3 FF 07 E4 07 01 14 08 2B 00 B2 F2 01 80 00")
    lenient, strict = GattProfileDecoder(), GattProfileDecoder(strict=True)
    assert len(lenient.on_value(0x2A35, value)) == 1
    assert lenient.tolerated_quirks == 1
    assert strict.on_value(0x2A35, value) == []
    assert strict.frame_errors == 1


# --- RACP commands


def test_racp_commands() -> None:
    assert racp_report_all() == bytes.fromhex("01 01")
    assert racp_report_after(0x0102) == bytes.fromhex("01 03 01 03 01")
    assert racp_report_from(5) == bytes.fromhex("01 03 01 05 00")
    assert racp_report_at_most(5) == bytes.fromhex("01 02 01 05 00")
    assert racp_report_range(1, 0x100) == bytes.fromhex("01 04 01 01 00 00 01")
    assert racp_report_first() == bytes.fromhex("01 05")
    assert racp_report_last() == bytes.fromhex("01 06")
    assert racp_report_count() == bytes.fromhex("04 01")
    assert racp_report_count_after(9) == bytes.fromhex("04 03 01 0A 00")
    assert racp_delete_all() == bytes.fromhex("02 01")
    assert racp_abort() == bytes.fromhex("03 00")
    with pytest.raises(ValueError, match="0xFFFF"):
        racp_report_after(0xFFFF)
    with pytest.raises(ValueError, match="sequence number"):
        racp_report_from(-1)
    with pytest.raises(ValueError, match="empty"):
        racp_report_range(5, 4)


# --- Current Time


def test_current_time_is_the_devices_wall_clock() -> None:
    now = datetime(2024, 6, 1, 0, 30, 15, 500_000, tzinfo=ZoneInfo("UTC"))
    data = current_time_bytes(now, SHANGHAI)
    # 08:30:15.5 in Shanghai, a Saturday (6), fractions 128/256, external reference time update.
    assert data == bytes.fromhex("E8 07 06 01 08 1E 0F 06 80 02")
    assert decode_current_time(data).to_datetime(SHANGHAI) == now
    assert current_time_bytes(now, SHANGHAI, AdjustReason.MANUAL_TIME_UPDATE)[-1] == 0x01
    with pytest.raises(ValueError, match="timezone-aware"):
        current_time_bytes(datetime(2024, 6, 1), SHANGHAI)


# --- drivers and config

PROFILES = {
    "ble-blood-pressure": BleProfile(0x1810, notify=(0x2A36,), indicate=(0x2A35,), read=(0x2A49,), current_time=True),
    "ble-thermometer": BleProfile(0x1809, notify=(0x2A1E,), indicate=(0x2A1C,), current_time=True),
    "ble-weight-scale": BleProfile(0x181D, indicate=(0x2A9D,), read=(0x2A9E,), current_time=True),
    "ble-glucose": BleProfile(
        0x1808, notify=(0x2A18, 0x2A34), indicate=(0x2A52,), read=(0x2A51,), current_time=True, racp=True
    ),
    "ble-pulse-oximeter": BleProfile(0x1822, notify=(0x2A5F,), indicate=(0x2A5E,), read=(0x2A60,), current_time=True),
    "ble-heart-rate": BleProfile(0x180D, notify=(0x2A37,)),
}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_driver_is_registered_with_its_profile(name: str) -> None:
    spec = get_driver(name)
    assert (spec.name, spec.transport, spec.ble) == (name, "ble", PROFILES[name])
    decoder = spec.new_decoder()
    assert isinstance(decoder, GattProfileDecoder)
    profile = PROFILES[name]
    assert decoder.characteristics == set(profile.notify + profile.indicate + profile.read)
    assert decoder.tz == SHANGHAI


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_config_validates_and_sets_the_zone(name: str) -> None:
    spec = get_driver(name)
    config = spec.config_model.model_validate(
        {"driver": name, "name": "dev-1", "address": "c4:24:e8:23:8f:68", "timezone": "Europe/Berlin"}
    )
    assert isinstance(config, GattDeviceConfig)
    assert config.address == "C4:24:E8:23:8F:68"
    decoder = spec.decoder(config)
    assert isinstance(decoder, GattProfileDecoder) and decoder.tz == ZoneInfo("Europe/Berlin")
    default = spec.config_model.model_validate({"driver": name, "name": "dev-2"})
    assert isinstance(default, GattDeviceConfig)
    assert (default.address, default.timezone, default.pair) == (None, "Asia/Shanghai", False)
    with pytest.raises(ValidationError):
        config.name = "other"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"driver": "ble-glucose-2"}, "driver"),
        ({"name": "-bad"}, "name"),
        ({"name": "has space"}, "name"),
        ({"address": "C4:24:E8:23:8F"}, "address"),
        ({"address": "C4-24-E8-23-8F-68"}, "address"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"pair": "sometimes"}, "pair"),
    ],
)
def test_config_rejects(change: dict[str, Any], field: str) -> None:
    spec = get_driver("ble-blood-pressure")
    with pytest.raises(ValidationError) as caught:
        spec.config_model.model_validate({"driver": "ble-blood-pressure", "name": "cuff-1", **change})
    assert [error["loc"][0] for error in caught.value.errors()] == [field]
