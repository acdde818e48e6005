"""Every flag combination of every characteristic, every status bit, units, time stamps and malformed values."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from healthhut.drivers import DecodeError
from healthhut.drivers.gatt import CHARACTERISTICS, DateTime, decode_date_time, decode_value, parse, short_uuid
from healthhut.drivers.gatt.blood_pressure import BpStatus
from healthhut.drivers.gatt.glucose import SENSOR_STATUS_FLAGS, SensorStatus
from healthhut.drivers.gatt.pulse_oximeter import DEVICE_STATUS_FLAGS, MEASUREMENT_STATUS_FLAGS
from healthhut.protocol import Flag, Kind, Quantity, Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")
STAMP = bytes.fromhex("E8 07 03 0F 09 1E 05")  # 2024-03-15 09:30:05
SF_72 = bytes.fromhex("48 00")  # SFLOAT 72


@dataclass(frozen=True)
class Optional:
    bit: int
    data: bytes
    attribute: str


@dataclass(frozen=True)
class Layout:
    """A characteristic's Flags-driven layout, written out from the GSS tables independently of the codec."""

    uuid: int
    mandatory: bytes
    optional: tuple[Optional, ...]
    switches: tuple[tuple[int, str], ...] = ()  # flag bits that change meaning, not layout
    other_bits: int = 0  # defined bits not varied here (the heart rate's uint16 format: Nordic's vectors)


LAYOUTS = [
    Layout(
        0x2A35,
        bytes.fromhex("78 00 50 00 5D 00"),
        (
            Optional(0x02, STAMP, "time_stamp"),
            Optional(0x04, SF_72, "pulse_rate"),
            Optional(0x08, b"\x02", "user_id"),
            Optional(0x10, b"\x01\x00", "status"),
        ),
        ((0x01, "kpa"),),
    ),
    Layout(
        0x2A36,
        bytes.fromhex("78 00 FF 07 FF 07"),
        (
            Optional(0x02, STAMP, "time_stamp"),
            Optional(0x04, SF_72, "pulse_rate"),
            Optional(0x08, b"\x02", "user_id"),
            Optional(0x10, b"\x01\x00", "status"),
        ),
        ((0x01, "kpa"),),
    ),
    Layout(
        0x2A1C,
        bytes.fromhex("6E 01 00 FF"),
        (Optional(0x02, STAMP, "time_stamp"), Optional(0x04, b"\x03", "temperature_type")),
        ((0x01, "fahrenheit"),),
    ),
    Layout(
        0x2A1E,
        bytes.fromhex("6E 01 00 FF"),
        (Optional(0x02, STAMP, "time_stamp"), Optional(0x04, b"\x03", "temperature_type")),
        ((0x01, "fahrenheit"),),
    ),
    Layout(
        0x2A9D,
        bytes.fromhex("C4 36"),
        (
            Optional(0x02, STAMP, "time_stamp"),
            Optional(0x04, b"\x01", "user_id"),
            Optional(0x08, bytes.fromhex("E5 00 D6 06"), "bmi"),
        ),
        ((0x01, "imperial"),),
    ),
    Layout(
        0x2A18,
        bytes.fromhex("07 00") + STAMP,
        (
            Optional(0x01, bytes.fromhex("C4 FF"), "time_offset"),
            Optional(0x02, bytes.fromhex("5F B0 11"), "concentration"),
            Optional(0x08, bytes.fromhex("02 00"), "status"),
        ),
        ((0x04, "mol_per_l"), (0x10, "context_follows")),
    ),
    Layout(
        0x2A34,
        bytes.fromhex("07 00"),
        (
            Optional(0x80, b"\x00", "extended_flags"),
            Optional(0x01, bytes.fromhex("01 32 00"), "carbohydrate"),
            Optional(0x02, b"\x01", "meal"),
            Optional(0x04, b"\x51", "tester"),
            Optional(0x08, bytes.fromhex("58 02 32"), "exercise_duration"),
            Optional(0x10, bytes.fromhex("01 0A D0"), "medication"),
            Optional(0x40, bytes.fromhex("41 F0"), "hba1c"),
        ),
        ((0x20, "medication_in_litres"),),
    ),
    Layout(
        0x2A5E,
        bytes.fromhex("61 00 48 00"),
        (
            Optional(0x01, STAMP, "time_stamp"),
            Optional(0x02, bytes.fromhex("80 00"), "measurement_status"),
            Optional(0x04, bytes.fromhex("00 00 00"), "device_status"),
            Optional(0x08, bytes.fromhex("34 F0"), "pulse_amplitude_index"),
        ),
        ((0x10, "clock_not_set"),),
    ),
    Layout(
        0x2A5F,
        bytes.fromhex("61 00 48 00"),
        (
            Optional(0x01, bytes.fromhex("60 00 4A 00"), "fast"),
            Optional(0x02, bytes.fromhex("61 00 47 00"), "slow"),
            Optional(0x04, bytes.fromhex("80 00"), "measurement_status"),
            Optional(0x08, bytes.fromhex("00 00 00"), "device_status"),
            Optional(0x10, bytes.fromhex("34 F0"), "pulse_amplitude_index"),
        ),
    ),
    Layout(
        0x2A37,
        b"\x48",
        (
            Optional(0x08, bytes.fromhex("02 01"), "energy_expended"),
            Optional(0x10, bytes.fromhex("00 04 10 04"), "rr_intervals"),
        ),
        ((0x02, "sensor_contact"), (0x04, "sensor_contact")),
        other_bits=0x01,
    ),
]


def combinations(layout: Layout) -> list[tuple[int, bytes]]:
    """(flags, value) for every subset of the optional fields and every switch."""
    out = []
    bits = [option.bit for option in layout.optional] + [bit for bit, _ in layout.switches]
    for chosen in itertools.product((False, True), repeat=len(bits)):
        flags = sum(bit for bit, on in zip(bits, chosen, strict=True) if on)
        data = bytearray(layout.mandatory)
        # In the order of the GSS table (for the context, Extended Flags first, after the sequence number).
        for option in layout.optional:
            if flags & option.bit:
                data += option.data
        out.append((flags, bytes([flags]) + bytes(data)))
    return out


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: f"{layout.uuid:#06x}")
def test_every_flag_combination(layout: Layout) -> None:
    for flags, data in combinations(layout):
        fields = decode_value(layout.uuid, data, strict=True)
        for option in layout.optional:
            assert (getattr(fields, option.attribute) is not None) == bool(flags & option.bit), (flags, option)
        for bit, attribute in layout.switches:
            if attribute != "sensor_contact":
                assert getattr(fields, attribute) == bool(flags & bit), (flags, attribute)
        assert getattr(fields, "trailing", b"") == b""
        if layout.uuid not in (0x2A34,):
            reading = parse(layout.uuid, data)
            assert (reading.measured_at is not None) == bool(
                any(option.attribute == "time_stamp" and flags & option.bit for option in layout.optional)
                or layout.uuid == 0x2A18
            )


def test_units_switch_converts() -> None:
    assert parse(0x2A35, bytes.fromhex("01 A0 F0 6B F0 7D F0")).values == {
        "systolic": Quantity(120.009872, "mm[Hg]"),
        "diastolic": Quantity(80.256602, "mm[Hg]"),
        "mean_arterial": Quantity(93.757712, "mm[Hg]"),
    }
    assert parse(0x2A1C, bytes.fromhex("01 DA 03 00 FF")).values == {"temperature": Quantity(37.0, "Cel")}
    assert parse(0x2A9D, bytes.fromhex("09 20 4E 0F 01 BC 02")).values == {
        "weight": Quantity(90.718474, "kg"),
        "height": Quantity(1.778, "m"),
        "bmi": Quantity(27.1, "kg/m2"),
    }
    # 72e-4 mol/L = 7.2 mmol/L; 5 (mantissa) e-4 kg/L = 50 mg/dL = 2.775311 mmol/L.
    assert parse(0x2A18, bytes.fromhex("06 00 00") + STAMP + bytes.fromhex("48 C0 11")).values == {
        "glucose": Quantity(7.2, "mmol/L")
    }
    assert parse(0x2A18, bytes.fromhex("02 00 00") + STAMP + bytes.fromhex("05 C0 11")).values == {
        "glucose": Quantity(2.775311, "mmol/L")
    }


# --- status bits, one at a time


@pytest.mark.parametrize(
    ("status", "flags"),
    [
        (BpStatus.BODY_MOVEMENT, {Flag.BODY_MOVEMENT}),
        (BpStatus.CUFF_FIT_LOOSE, {Flag.CUFF_FIT_LOOSE}),
        (BpStatus.IRREGULAR_PULSE, {Flag.IRREGULAR_PULSE}),
        (0x0008, {Flag.OUT_OF_RANGE}),  # pulse rate above the upper limit
        (0x0010, {Flag.OUT_OF_RANGE}),  # below the lower limit
        (0x0018, set()),  # reserved range value
        (BpStatus.IMPROPER_POSITION, {Flag.IMPROPER_POSITION}),
        (0xFFC0, set()),  # reserved bits
        (0x0000, set()),
    ],
)
def test_blood_pressure_status_bits(status: int, flags: set[Flag]) -> None:
    data = bytes.fromhex("10 78 00 50 00 5D 00") + int(status).to_bytes(2, "little")
    assert parse(0x2A35, data).flags == flags


@pytest.mark.parametrize("bit", range(16))
def test_glucose_sensor_status_bits(bit: int) -> None:
    data = bytes.fromhex("0A 07 00") + STAMP + bytes.fromhex("5F B0 11") + (1 << bit).to_bytes(2, "little")
    expected = {flag for status, flag in SENSOR_STATUS_FLAGS.items() if status == 1 << bit}
    assert parse(0x2A18, data).flags == expected
    if 1 << bit == SensorStatus.BATTERY_LOW or bit >= 12:
        assert not expected


@pytest.mark.parametrize("bit", range(16))
def test_plx_measurement_status_bits(bit: int) -> None:
    data = bytes.fromhex("04 61 00 48 00") + (1 << bit).to_bytes(2, "little")
    expected = {flag for status, flag in MEASUREMENT_STATUS_FLAGS.items() if status == 1 << bit}
    reading = parse(0x2A5F, data)
    assert reading.flags == expected
    assert reading.values == {"spo2": Quantity(97.0, "%"), "pulse_rate": Quantity(72.0, "/min")}


@pytest.mark.parametrize("bit", range(24))
def test_plx_device_status_bits(bit: int) -> None:
    data = bytes.fromhex("08 61 00 48 00") + (1 << bit).to_bytes(3, "little")
    expected = {flag for status, flag in DEVICE_STATUS_FLAGS.items() if status == 1 << bit}
    assert parse(0x2A5F, data).flags == expected
    assert (bit in (0, *range(16, 24))) == (not expected)


def test_plx_flag_mapping_names() -> None:
    """The mapping the README tables give, spelled out: a change to it must change this test."""
    cases = {
        0x000800: {Flag.FINGER_OUT},
        0x008000: {Flag.PROBE_ERROR},
        0x000020: {Flag.LOW_PERFUSION},
        0x000040: {Flag.LOW_SIGNAL_QUALITY},
        0x000100: {Flag.LOW_SIGNAL_QUALITY},
        0x000200: {Flag.SEARCHING},
        0x002000: {Flag.IMPROPER_POSITION},
    }
    for device_status, flags in cases.items():
        assert parse(0x2A5F, bytes.fromhex("08 61 00 48 00") + device_status.to_bytes(3, "little")).flags == flags


def test_heart_rate_contact_bits() -> None:
    for contact, flags in ((0, set()), (1, set()), (2, {Flag.LEAD_OFF}), (3, set())):
        assert parse(0x2A37, bytes([contact << 1, 70])).flags == flags


# --- special values


@pytest.mark.parametrize("special", ["FF 07", "00 08", "FE 07", "02 08", "01 08"])
def test_a_special_sfloat_is_left_out_and_flagged(special: str) -> None:
    data = bytes.fromhex("04 78 00 50 00 5D 00") + bytes.fromhex(special)
    assert parse(0x2A35, data) == Reading(
        Kind.BLOOD_PRESSURE,
        {
            "systolic": Quantity(120.0, "mm[Hg]"),
            "diastolic": Quantity(80.0, "mm[Hg]"),
            "mean_arterial": Quantity(93.0, "mm[Hg]"),
        },
        frozenset({Flag.VALUE_UNAVAILABLE}),
    )


def test_weight_measurement_unsuccessful() -> None:
    assert parse(0x2A9D, bytes.fromhex("00 FF FF")) == Reading(
        Kind.BODY_WEIGHT, flags=frozenset({Flag.VALUE_UNAVAILABLE})
    )


# --- time


def test_time_stamps_take_the_device_zone() -> None:
    data = bytes.fromhex("02 6E 01 00 FF") + STAMP
    assert parse(0x2A1C, data).measured_at == datetime(2024, 3, 15, 9, 30, 5, tzinfo=SHANGHAI)
    assert parse(0x2A1C, data, tz=UTC).measured_at == datetime(2024, 3, 15, 9, 30, 5, tzinfo=UTC)


def test_glucose_time_offset_crosses_midnight() -> None:
    # 2024-03-15 09:30:05 - 600 minutes = 2024-03-14 23:30:05.
    data = bytes.fromhex("01 07 00") + STAMP + (-600).to_bytes(2, "little", signed=True)
    reading = parse(0x2A18, data)
    assert reading.measured_at == datetime(2024, 3, 14, 23, 30, 5, tzinfo=SHANGHAI)
    assert reading.flags == {Flag.VALUE_UNAVAILABLE}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("E8 07 0D 01 00 00 00", "month 13"),
        ("E8 07 02 1E 00 00 00", "2024-02-30 is not a date"),
        ("E8 07 01 01 18 00 00", "hours 24"),
        ("E8 07 01 01 00 3C 00", "minutes 60"),
        ("E8 07 01 01 00 00 3C", "seconds 60"),
        ("D0 07 01 20 00 00 00", "day 32"),
        ("2D 06 01 01 00 00 00", "year 1581"),
    ],
)
def test_impossible_date_times(fields: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_date_time(bytes.fromhex(fields))
    with pytest.raises(DecodeError, match=f"Time Stamp: .*{message}"):
        parse(0x2A1C, bytes.fromhex("02 6E 01 00 FF") + bytes.fromhex(fields))


@pytest.mark.parametrize("fields", ["00 00 03 0F 09 1E 05", "E8 07 00 0F 09 1E 05", "E8 07 03 00 09 1E 05"])
def test_unknown_dates_give_no_time(fields: str) -> None:
    assert parse(0x2A1C, bytes.fromhex("02 6E 01 00 FF") + bytes.fromhex(fields)).measured_at is None
    assert decode_date_time(bytes.fromhex(fields)).to_datetime(SHANGHAI) is None
    assert DateTime(2024, 3, 15).to_datetime(SHANGHAI) == datetime(2024, 3, 15, tzinfo=SHANGHAI)


# --- malformed values and UUIDs


def longest_value(uuid: int) -> bytes:
    layout = next(layout for layout in LAYOUTS if layout.uuid == uuid)
    return combinations(layout)[-1][1]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: f"{layout.uuid:#06x}")
def test_every_truncation_is_a_decode_error_that_names_the_characteristic(layout: Layout) -> None:
    full = longest_value(layout.uuid)
    name = CHARACTERISTICS[layout.uuid].name
    for size in range(len(full)):
        if layout.uuid == 0x2A37 and size > 4 and size % 2 == 0:
            continue  # fewer whole RR intervals is still a valid value: RR intervals fill the rest
        with pytest.raises(DecodeError, match=rf"^{name} \({layout.uuid:#06x}\): .*(needs|RR-Interval)"):
            decode_value(layout.uuid, full[:size])


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: f"{layout.uuid:#06x}")
def test_reserved_flags_and_trailing_bytes_are_ignored_unless_strict(layout: Layout) -> None:
    flags, data = combinations(layout)[0]
    defined = sum(option.bit for option in layout.optional) | sum(bit for bit, _ in layout.switches) | layout.other_bits
    reserved = 0xFF & ~defined
    if reserved:
        with_reserved = bytes([flags | reserved]) + data[1:]
        assert asdict(decode_value(layout.uuid, with_reserved))["rfu_flags"] == reserved
        with pytest.raises(DecodeError, match="reserved bits"):
            decode_value(layout.uuid, with_reserved, strict=True)
    assert asdict(decode_value(layout.uuid, data + b"\x01\x02"))["trailing"] == b"\x01\x02"
    with pytest.raises(DecodeError, match="2 bytes left over"):
        decode_value(layout.uuid, data + b"\x01\x02", strict=True)


@pytest.mark.parametrize(
    ("uuid", "expected"),
    [
        (0x2A35, 0x2A35),
        ("2A35", 0x2A35),
        ("0x2a35", 0x2A35),
        ("00002a35-0000-1000-8000-00805f9b34fb", 0x2A35),
        ("00002A35-0000-1000-8000-00805F9B34FB", 0x2A35),
    ],
)
def test_uuid_forms(uuid: int | str, expected: int) -> None:
    assert short_uuid(uuid) == expected


@pytest.mark.parametrize(
    ("uuid", "message"),
    [
        ("6e400003-b5a3-f393-e0a9-e50e24dcca9e", "not a 16-bit Bluetooth SIG UUID"),
        (0x12345, "not a 16-bit"),
        ("hello", "not a 16-bit"),
        (0x2A00, "no decoder for characteristic 0x2a00"),
    ],
)
def test_unknown_uuids(uuid: int | str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse(uuid, b"\x00\x00\x00\x00")


@pytest.mark.parametrize(
    ("uuid", "data"),
    [
        (0x2A49, "3F 00"),
        (0x2A9E, "A7 01 00 00"),
        (0x2A60, "00 00"),
        (0x2A51, "FF 07"),
        (0x2A34, "00 01 00"),
        (0x2A52, "06 00 01 01"),
    ],
)
def test_characteristics_without_a_reading(uuid: int, data: str) -> None:
    decode_value(uuid, bytes.fromhex(data), strict=True)
    with pytest.raises(DecodeError, match="carries no reading by itself"):
        parse(uuid, bytes.fromhex(data))


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"Heart Rate Measurement \(0x2a37\): Flags needs 1 bytes"):
        parse("00002a37-0000-1000-8000-00805f9b34fb", b"")
