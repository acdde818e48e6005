"""The HealthyPi 5 encoder for hut-sim: the exact inverse of the v5 parser; a round trip through the decoder."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers.healthypi import HealthyPi5Decoder, HealthyPi5Frame
from healthhut.drivers.healthypi.codec_v5 import PACKET_LEN, parse_packet
from healthhut.firmware_sim.encoders.healthypi5 import encode_packet
from healthhut.protocol import Kind, Quantity, Reading, Strip

frames_strategy = st.builds(
    HealthyPi5Frame,
    ecg=st.integers(-(2**31), 2**31 - 1),
    bioz=st.integers(-(2**31), 2**31 - 1),
    bioz_skip=st.integers(0, 255),
    ppg_red=st.integers(-(2**31), 2**31 - 1),
    ppg_ir=st.integers(-(2**31), 2**31 - 1),
    temperature_centi=st.integers(-0x8000, 0x7FFF),
    spo2=st.integers(0, 255),
    heart_rate=st.integers(0, 255),
    respiration_rate=st.integers(0, 255),
)


@settings(max_examples=500, database=None, deadline=None)
@given(frames_strategy)
def test_parse_inverts_encode(frame: HealthyPi5Frame) -> None:
    data = encode_packet(frame)
    assert len(data) == PACKET_LEN
    assert parse_packet(data) == frame


@settings(max_examples=500, database=None, deadline=None)
@given(st.binary(min_size=22, max_size=22))
def test_encode_inverts_parse(payload: bytes) -> None:
    data = b"\x0a\xfa\x16\x00\x02" + payload + b"\x00\x0b"
    assert encode_packet(parse_packet(data)) == data


def test_encode_packet_bytes() -> None:
    # The layout of openview_build() in ProtoCentral's HealthyPi 5 firmware, written out by hand.
    frame = HealthyPi5Frame(-2, 300, 0, 98000, 151000, 3650, 98, 64, 16)
    assert encode_packet(frame) == bytes.fromhex(
        "0a fa 16 00 02  fe ff ff ff  2c 01 00 00  00  d0 7e 01 00  d8 4d 02 00  42 0e  62 40 10  00 0b"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("ecg", 2**31), ("bioz_skip", 256), ("ppg_ir", -(2**31) - 1), ("temperature_centi", 0x8000), ("spo2", -1)],
)
def test_encode_rejects_values_that_do_not_fit(field: str, value: int) -> None:
    changes: dict[str, Any] = {field: value}
    frame = replace(HealthyPi5Frame(0, 0, 0, 0, 0, 0, 0, 0, 0), **changes)
    with pytest.raises(ValueError, match=f"{field} must be in -?[0-9]+..[0-9]+, not {value}"):
        encode_packet(frame)


def test_round_trip_through_the_decoder() -> None:
    frames = [HealthyPi5Frame(i * 1000 - 2000, -5000, 0, 98000 - i, 151000 - 2 * i, 3650, 98, 64, 16) for i in range(4)]
    decoder = HealthyPi5Decoder(strip_samples=4, numerics_every=4)
    readings = decoder.feed(b"".join(encode_packet(frame) for frame in frames))
    assert (decoder.frames_ok, decoder.frame_errors, decoder.packets_unsupported) == (4, 0, 0)
    assert decoder.last_frame == frames[-1]
    assert readings == [
        Reading(Kind.ECG, strip=Strip(128.0, "uV", (-2000, -1000, 0, 1000), gain=1e6 / 2**17 / 80, channel="ecg")),
        Reading(
            Kind.PPG, strip=Strip(128.0, "1", (-32765, -32766, -32767, -32768), offset=97997 + 32768, channel="red")
        ),
        Reading(
            Kind.PPG, strip=Strip(128.0, "1", (-32762, -32764, -32766, -32768), offset=150994 + 32768, channel="ir")
        ),
        Reading(Kind.HEART_RATE, {"heart_rate": Quantity(64, "/min")}),
        Reading(Kind.SPO2, {"spo2": Quantity(98, "%")}),
        Reading(Kind.BODY_TEMPERATURE, {"temperature": Quantity(36.5, "Cel")}),
    ]
