"""Each BLE driver's captures, fed through its registered decoder, give exactly the readings in their JSON."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from healthhut.drivers import DecodeError, get_driver
from healthhut.drivers.gatt import GattProfileDecoder, parse
from healthhut.protocol import Flag, Kind, Quantity, Reading
from tests.drivers.gatt_support import CAPTURES, DRIVER_PACKAGES, ROOT, expected_capture, load_capture

SHANGHAI = ZoneInfo("Asia/Shanghai")


def feed(package: str, name: str) -> tuple[list[Reading], GattProfileDecoder]:
    decoder = get_driver(package.replace("_", "-")).new_decoder()
    assert isinstance(decoder, GattProfileDecoder)
    readings = [reading for uuid, data in load_capture(package, name) for reading in decoder.on_value(uuid, data)]
    return readings + decoder.flush(), decoder


def test_every_driver_has_real_or_constructed_captures_with_provenance() -> None:
    for package in DRIVER_PACKAGES:
        folder = ROOT / "drivers" / package
        readme = (folder / "README.md").read_text()
        names = [name for owner, name in CAPTURES if owner == package]
        assert names, package
        for name in names:
            assert (folder / "captures" / f"{name}.json").is_file(), name
            first = (folder / "captures" / f"{name}.hex").read_text().splitlines()[0]
            assert first.startswith("# REAL") or first.startswith("# CONSTRUCTED"), name
            assert f"`{name}`" in readme, f"{package}/README.md, Captures, does not say where {name} came from"


@pytest.mark.parametrize(("package", "name"), CAPTURES)
def test_capture_gives_the_expected_readings(package: str, name: str) -> None:
    readings, decoder = feed(package, name)
    expected, frame_errors = expected_capture(package, name)
    assert readings == expected
    assert decoder.frame_errors == frame_errors


@pytest.mark.parametrize(("package", "name"), CAPTURES)
def test_capture_values_parse_alone_as_the_decoder_reads_them(package: str, name: str) -> None:
    """parse() and on_value() agree value by value, wherever a value is a measurement on its own."""
    for uuid, data in load_capture(package, name):
        decoder = GattProfileDecoder()
        try:
            alone = parse(uuid, data)
        except DecodeError:
            assert decoder.on_value(uuid, data) == []
            continue
        readings = decoder.on_value(uuid, data) + decoder.flush()
        assert readings in ([alone], []), (uuid, data.hex())


# --- the real captures, checked against expectations written out by hand from the sources' own numbers


def at(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def test_real_cuff_with_reserved_flag_bits() -> None:
    """nRF Connect showed 127.0 mmHg for these bytes; the MAP is NaN; flags bits 6-7 are reserved."""
    data = bytes.fromhex("DE F6 F4 16 F3 FF 07 E4 07 01 14 08 2B 00 B2 F2 01 80 00")
    assert parse(0x2A35, data) == Reading(
        Kind.BLOOD_PRESSURE,
        {
            "systolic": Quantity(127.0, "mm[Hg]"),
            "diastolic": Quantity(79.0, "mm[Hg]"),
            "pulse_rate": Quantity(69.0, "/min"),
        },
        frozenset({Flag.VALUE_UNAVAILABLE}),
        at(2020, 1, 20, 8, 43, 0),
    )
    with pytest.raises(DecodeError, match=r"reserved bits 0xc0"):
        parse(0x2A35, data, strict=True)


def test_real_thermometers() -> None:
    assert parse(0x2A1C, bytes.fromhex("06 68 01 00 FF E2 07 03 0A 15 34 00 02")) == Reading(
        Kind.BODY_TEMPERATURE, {"temperature": Quantity(36.0, "Cel")}, measured_at=at(2018, 3, 10, 21, 52, 0)
    )
    assert parse(0x2A1C, bytes.fromhex("06 D7 0A 00 FE E1 07 08 1E 08 2D 35 04")) == Reading(
        Kind.BODY_TEMPERATURE, {"temperature": Quantity(27.75, "Cel")}, measured_at=at(2017, 8, 30, 8, 45, 53)
    )


def test_real_accu_chek_guide_record_waits_for_its_context_until_the_racp_response() -> None:
    decoder = get_driver("ble-glucose").new_decoder()
    assert isinstance(decoder, GattProfileDecoder)
    assert decoder.on_value(0x2A18, bytes.fromhex("1B 04 00 E4 07 07 0E 0B 06 05 5A 02 77 B0 F8 00 00")) == []
    # 119 mg/dL / 18.016 = 6.6052398..., at base time 11:06:05 + 602 minutes.
    assert decoder.on_value(0x2A52, bytes.fromhex("06 00 01 01")) == [
        Reading(Kind.BLOOD_GLUCOSE, {"glucose": Quantity(6.60524, "mmol/L")}, measured_at=at(2020, 7, 14, 21, 8, 5))
    ]
    assert decoder.last_sequence_number == 4
    assert decoder.last_racp_response is not None and decoder.last_racp_response.response_code == 1


def test_real_choicemmed_oximeter() -> None:
    spot = parse(0x2A5E, bytes.fromhex("17 61 00 60 00 E1 07 01 01 01 22 13 20 00 20 00 00"))
    assert spot == Reading(
        Kind.SPO2,
        {"spo2": Quantity(97.0, "%"), "pulse_rate": Quantity(96.0, "/min")},
        frozenset({Flag.LOW_PERFUSION, Flag.CLOCK_UNVERIFIED}),
        at(2017, 1, 1, 1, 34, 19),
    )
    assert parse(0x2A5F, bytes.fromhex("0C 62 00 4E 00 20 00 00 00 00")) == Reading(
        Kind.SPO2, {"spo2": Quantity(98.0, "%"), "pulse_rate": Quantity(78.0, "/min")}
    )


@pytest.mark.parametrize(
    ("data", "rate", "rr_ms"),
    [
        ("10 3B 53 04", 59, (1107 * 1000 / 1024,)),
        ("16 4D 16 03", 77, (790 * 1000 / 1024,)),
        ("10 54 AA 02 99 02", 84, (682 * 1000 / 1024, 665 * 1000 / 1024)),
    ],
)
def test_real_heart_rate_straps(data: str, rate: int, rr_ms: tuple[float, ...]) -> None:
    values = {"heart_rate": Quantity(rate, "/min"), "rr_intervals": Quantity(rr_ms, "ms")}
    assert parse(0x2A37, bytes.fromhex(data)) == Reading(Kind.HEART_RATE, values)
