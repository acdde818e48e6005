"""SFLOAT and FLOAT against independent public test vectors, special values, and exact encoding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers.gatt import Float, SFloat, Special, decode_float, decode_sfloat, encode_float, encode_sfloat

# HL7 Personal Health Device IG, "Mder FLOATs and SFLOATs" (github.com/HL7/phd,
# input/pagecontent/MderFLOATsandSFLOATs.md): the same numbers as FLOAT and as SFLOAT.
HL7_PHD_FLOATS = [
    (0x00000002, "2"),
    (0xFF000014, "2.0"),
    (0xFE0000C8, "2.00"),
    (0x01000002, "2E+1"),
    (0x02000002, "2E+2"),
    (0x000000C8, "200"),
    (0x000004D2, "1234"),
    (0x00FFFB2E, "-1234"),
]
HL7_PHD_SFLOATS = [
    (0x0002, "2"),
    (0xF014, "2.0"),
    (0xE0C8, "2.00"),
    (0x1002, "2E+1"),
    (0x2002, "2E+2"),
    (0x00C8, "200"),
    (0x04D2, "1234"),
    (0x0B2E, "-1234"),
]
HL7_PHD_SPECIALS = [
    (0x007FFFFF, 0x07FF, Special.NAN),
    (0x007FFFFE, 0x07FE, Special.POSITIVE_INFINITY),
    (0x00800002, 0x0802, Special.NEGATIVE_INFINITY),
    (0x00800000, 0x0800, Special.NRES),
    (0x00800001, 0x0801, Special.RESERVED),
]
# Tidepool BluetoothCommonKit, SFloatTests.swift (github.com/tidepool-org): encodings its encoder produces, and
# the value each stands for; 0x77FF, 0x7800 and 0xF800 show that the specials live at exponent 0 only.
TIDEPOOL_SFLOATS = [
    (0x07FD, "2045"),
    (0x0803, "-2045"),
    (0x10CC, "2040"),
    (0x1F34, "-2040"),
    (0x13E8, "10000"),
    (0x2830, "-200000"),
    (0x612C, "300000000"),
    (0x7E70, "-4000000000"),
    (0x77FF, "20470000000"),
    (0x7800, "-20480000000"),
    (0xCC18, "-0.1000"),
    (0xB7D0, "0.02000"),
    (0xBED4, "-0.00300"),
    (0xA190, "0.000400"),
    (0xAB32, "-0.001230"),
    (0xA1C8, "0.000456"),
    (0x8CEB, "-0.00000789"),
    (0xC3E8, "0.1000"),
    (0xE0E4, "2.28"),
    (0xF4B5, "120.5"),
    (0xEF83, "-1.25"),
    (0xF800, "-204.8"),
    (0xD7FF, "2.047"),
    (0xF7FF, "204.7"),
]


@pytest.mark.parametrize(("raw", "value"), HL7_PHD_SFLOATS)
def test_sfloat_hl7_vectors_keep_their_resolution(raw: int, value: str) -> None:
    decoded = decode_sfloat(raw.to_bytes(2, "little"))
    # 2, 2.0 and 2.00 are equal numbers but different values on the wire.
    assert str(decoded.decimal()) == str(Decimal(value))
    assert encode_sfloat(decoded) == raw.to_bytes(2, "little")


@pytest.mark.parametrize(("raw", "value"), HL7_PHD_SFLOATS + TIDEPOOL_SFLOATS)
def test_sfloat_public_vectors(raw: int, value: str) -> None:
    decoded = decode_sfloat(raw.to_bytes(2, "little"))
    assert decoded.decimal() == Decimal(value)
    assert decoded.to_float() == float(value)
    assert encode_sfloat(decoded) == raw.to_bytes(2, "little")


@pytest.mark.parametrize(("raw", "value"), HL7_PHD_FLOATS)
def test_float_public_vectors(raw: int, value: str) -> None:
    decoded = decode_float(raw.to_bytes(4, "little"))
    assert decoded.decimal() == Decimal(value)
    assert str(decoded.decimal()) == str(Decimal(value))
    assert encode_float(decoded) == raw.to_bytes(4, "little")


def test_personal_health_devices_transcoding_white_paper_example() -> None:
    """0x0072 is 114, the worked example of the Bluetooth SIG PHD Transcoding White Paper (as cited in Current
    Health's SFloatTests.kt)."""
    assert decode_sfloat(b"\x72\x00").to_float() == 114.0


def test_nordic_temperature_float() -> None:
    """Nordic Android-BLE-Common-Library, TemperatureMeasurementDataCallbackTest: B0 0E 00 FE is 37.60."""
    assert decode_float(bytes.fromhex("B0 0E 00 FE")) == Float(3760, -2)


@pytest.mark.parametrize(("float_raw", "sfloat_raw", "special"), HL7_PHD_SPECIALS)
def test_special_values(float_raw: int, sfloat_raw: int, special: Special) -> None:
    for decoded in (decode_float(float_raw.to_bytes(4, "little")), decode_sfloat(sfloat_raw.to_bytes(2, "little"))):
        assert decoded.special is special
        assert decoded.decimal() is None and decoded.to_float() is None
        assert str(decoded) == special.value
    assert SFloat.of_special(special).raw == sfloat_raw
    assert Float.of_special(special).raw == float_raw


def test_every_sfloat_code_round_trips_and_specials_sit_at_exponent_zero() -> None:
    specials = set()
    for raw in range(0x10000):
        value = SFloat.from_raw(raw)
        assert value.raw == raw
        if value.special is not None:
            specials.add(raw)
        else:
            assert value.decimal() == Decimal(value.mantissa).scaleb(value.exponent)
    assert specials == {0x07FE, 0x07FF, 0x0800, 0x0801, 0x0802}


@settings(max_examples=300, database=None, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_float_codes_round_trip(raw: int) -> None:
    value = Float.from_raw(raw)
    assert value.raw == raw
    assert (value.special is None) == (value.decimal() is not None)


@pytest.mark.parametrize(
    ("value", "exponent", "expected"),
    [
        ("36.5", None, SFloat(365, -1)),
        ("2.00", None, SFloat(200, -2)),
        ("36.50", None, SFloat(365, -1)),  # a zero dropped: 3650 does not fit 12 bits
        ("120", None, SFloat(120, 0)),
        ("-204.8", None, SFloat(-2048, -1)),
        ("36.57", -1, SFloat(366, -1)),
        ("36.55", -1, SFloat(366, -1)),  # half-even
        ("36.45", -1, SFloat(364, -1)),
        ("20470000000", None, SFloat(2047, 7)),
    ],
)
def test_sfloat_from_decimal(value: str, exponent: int | None, expected: SFloat) -> None:
    assert SFloat.from_decimal(value, exponent) == expected


@pytest.mark.parametrize("value", ["2046", "2047", "-2048", "1.2345", "1e30", "NaN", "Infinity"])
def test_sfloat_from_decimal_refuses_what_it_cannot_encode_exactly(value: str) -> None:
    with pytest.raises(ValueError):
        SFloat.from_decimal(value)


def test_fields_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="mantissa"):
        SFloat(2048, 0)
    with pytest.raises(ValueError, match="exponent"):
        Float(0, 128)
    with pytest.raises(ValueError, match="2 bytes"):
        decode_sfloat(b"\x00")
