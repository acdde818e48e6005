"""The HealthyPi 5 OpenView codec: captures whole, byte by byte and in garbage; cut packets; board choice; fuzzing."""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from healthhut.drivers import DecodeError, get_driver
from healthhut.drivers.healthypi import DRIVER, HealthyPi5Decoder, HealthyPi5Frame, HealthyPiConfig, HealthyPiDecoder
from healthhut.drivers.healthypi.codec_v5 import (
    PACKET_LEN,
    ecg_uv_per_count,
    fit_int16_scaled,
    numerics_readings,
    parse_packet,
)
from healthhut.protocol import Kind, Quantity, Reading, Strip
from tests.drivers.test_healthypi import (
    CAPTURES,
    README,
    expected_readings,
    feed_all,
    load_hex,
    new_seed,
    random_chunks,
)

CAPTURE_NAMES = sorted(path.stem for path in CAPTURES.glob("v5-*.hex"))
# The README says the expected readings are those of this decoder.
STRIP_SAMPLES, NUMERICS_EVERY = 10, 5
# (frame errors, good packets, unsupported packets), counted from the comments in the .hex files.
CAPTURE_COUNTS = {
    "v5-constructed-defects": (5, 10, 2),
    "v5-constructed-ecg-range": (0, 10, 0),
    "v5-constructed-startup": (0, 20, 0),
    "v5-constructed-zephyr-waveforms": (0, 10, 0),
}
ALIGNED_CAPTURES = ["v5-constructed-ecg-range", "v5-constructed-startup", "v5-constructed-zephyr-waveforms"]
# 1 V / (2^17 · 80 V/V), the MAX30001 ECG LSB at the gain ProtoCentral's Arduino firmware sets.
UV_80 = 0.095367431640625


def packet(
    *,
    ecg: int = 100,
    bioz: int = -5000,
    skip: int = 0,
    red: int = 98000,
    ir: int = 151000,
    temp: int = 3312,
    spo2: int = 97,
    hr: int = 72,
    rr: int = 14,
) -> bytes:
    """A data packet packed by hand from the README table, independent of the simulator's encoder."""
    payload = struct.pack("<iiBiihBBB", ecg, bioz, skip, red, ir, temp, spo2, hr, rr)
    return b"\x0a\xfa\x16\x00\x02" + payload + b"\x00\x0b"


def decoder() -> HealthyPi5Decoder:
    return HealthyPi5Decoder(strip_samples=STRIP_SAMPLES, numerics_every=NUMERICS_EVERY)


def counts(dec: HealthyPi5Decoder) -> tuple[int, int, int]:
    return dec.frame_errors, dec.frames_ok, dec.packets_unsupported


# --- captures


def test_every_v5_capture_has_expectations_and_provenance() -> None:
    readme = README.read_text()
    assert sorted(CAPTURE_COUNTS) == CAPTURE_NAMES
    for name in CAPTURE_NAMES:
        first = (CAPTURES / f"{name}.hex").read_text().splitlines()[0]
        assert first.startswith("# ") and ("REAL" in first or "CONSTRUCTED" in first), name
        assert f"`{name}`" in readme, f"README.md, Captures, does not say where {name} came from"


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_whole(name: str) -> None:
    dec = decoder()
    assert dec.feed(load_hex(CAPTURES / f"{name}.hex")) == expected_readings(name)
    assert counts(dec) == CAPTURE_COUNTS[name]


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_byte_by_byte(name: str) -> None:
    data = load_hex(CAPTURES / f"{name}.hex")
    dec = decoder()
    assert feed_all(dec, (data[i : i + 1] for i in range(len(data)))) == expected_readings(name)
    assert counts(dec) == CAPTURE_COUNTS[name]


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_in_random_chunks(name: str) -> None:
    seed = new_seed()
    dec = decoder()
    readings = feed_all(dec, random_chunks(load_hex(CAPTURES / f"{name}.hex"), random.Random(seed)))
    assert readings == expected_readings(name), f"seed={seed}"
    assert counts(dec) == CAPTURE_COUNTS[name], f"seed={seed}"


@pytest.mark.parametrize("name", ALIGNED_CAPTURES)
def test_capture_wrapped_in_random_garbage(name: str) -> None:
    seed = new_seed()
    rng = random.Random(seed)
    data = load_hex(CAPTURES / f"{name}.hex")
    noisy, errors = bytearray(), 0
    for start in range(0, len(data), PACKET_LEN):
        # At most 6 bytes cannot hold a whole packet (7 bytes at least), and any start it holds fails at
        # the next good packet's bytes, so each non-empty stretch costs one error.
        garbage = rng.randbytes(rng.randint(0, 6))
        errors += bool(garbage) and start > 0
        noisy += garbage + data[start : start + PACKET_LEN]
    dec = decoder()
    assert feed_all(dec, random_chunks(bytes(noisy), rng)) == expected_readings(name), f"seed={seed}"
    assert counts(dec) == (errors, len(data) // PACKET_LEN, 0), f"seed={seed}"


def test_startup_capture_decodes_to_these_readings() -> None:
    # Written out by hand from the capture's comments, so the JSON is not the only witness.
    readings = decoder().feed(load_hex(CAPTURES / "v5-constructed-startup.hex"))
    ecg = [120, 310, 520, 260, -900, 11200, -2600, 180, 640, 900]
    # Packet 5 has no numbers yet; packet 10 closes the first strips, then has SpO2 only.
    assert readings[0] == Reading(Kind.ECG, strip=Strip(128.0, "uV", tuple(ecg), gain=UV_80, channel="ecg"))
    assert [r.kind for r in readings[1:3]] == [Kind.PPG, Kind.PPG]
    assert readings[3] == Reading(Kind.SPO2, {"spo2": Quantity(97, "%")})
    assert readings[-3:] == [
        Reading(Kind.HEART_RATE, {"heart_rate": Quantity(72, "/min")}),
        Reading(Kind.SPO2, {"spo2": Quantity(97, "%")}),
        Reading(Kind.BODY_TEMPERATURE, {"temperature": Quantity(33.12, "Cel")}),
    ]


def test_zephyr_stream_of_waveforms_gives_strips_only() -> None:
    dec = decoder()
    readings = dec.feed(load_hex(CAPTURES / "v5-constructed-zephyr-waveforms.hex"))
    assert [r.kind for r in readings] == [Kind.ECG, Kind.PPG, Kind.PPG]
    assert dec.last_frame is not None and dec.last_frame.bioz_skip == 0xFF


# --- cut packets and other boards


@pytest.mark.parametrize("cut", range(1, PACKET_LEN))
def test_packet_cut_in_the_middle_then_resumed(cut: int) -> None:
    dec = HealthyPi5Decoder(strip_samples=100, numerics_every=1)
    data = packet(hr=88)
    assert dec.feed(data[:cut]) == []
    assert [r.kind for r in dec.feed(data[cut:])] == [Kind.HEART_RATE, Kind.SPO2, Kind.BODY_TEMPERATURE]
    assert counts(dec) == (0, 1, 0)


@pytest.mark.parametrize("sent", range(1, PACKET_LEN))
def test_device_unplugged_mid_packet(sent: int) -> None:
    dec = HealthyPi5Decoder(strip_samples=100, numerics_every=1)
    heart_rate = [Reading(Kind.HEART_RATE, {"heart_rate": Quantity(hr, "/min")}) for hr in (70, 72)]
    assert dec.feed(packet(hr=70))[:1] == heart_rate[:1]
    assert dec.feed(packet(hr=71)[:sent]) == []
    assert dec.feed(packet(hr=72))[:1] == heart_rate[1:]
    assert counts(dec) == (1, 2, 0)


def test_each_board_counts_the_others_packets_as_unsupported() -> None:
    v4 = b"\x0a\xfa\x14\x00\x02" + struct.pack("<hhiiHBBBBBB", 3, 0, -180000, -140000, 3300, 0, 97, 70, 80, 120, 0)
    v4 += b"\x00\x0b"
    v5 = HealthyPi5Decoder(strip_samples=100, numerics_every=1)
    assert v5.feed(packet() + v4 + packet()) != []
    assert counts(v5) == (1, 2, 1)
    old = HealthyPiDecoder(strip_samples=100, numerics_every=1)
    assert old.feed(v4 + packet() + v4) != []
    assert (old.frame_errors, old.frames_ok, old.packets_unsupported) == (1, 2, 1)


# --- values and strips


def test_numbers_become_spot_readings_and_zero_is_no_value() -> None:
    assert numerics_readings(HealthyPi5Frame(0, 0, 0, 0, 0, 3650, 98, 61, 15)) == [
        Reading(Kind.HEART_RATE, {"heart_rate": Quantity(61, "/min")}),
        Reading(Kind.SPO2, {"spo2": Quantity(98, "%")}),
        Reading(Kind.BODY_TEMPERATURE, {"temperature": Quantity(36.5, "Cel")}),
    ]
    assert numerics_readings(HealthyPi5Frame(0, 0, 0, 0, 0, 0, 0, 0, 0)) == []


@pytest.mark.parametrize(("hr", "spo2", "temp"), [(255, 101, 5001), (255, 255, -1), (255, 200, -32768)])
def test_values_the_firmware_cannot_mean_are_left_out(hr: int, spo2: int, temp: int) -> None:
    assert numerics_readings(HealthyPi5Frame(0, 0, 0, 0, 0, temp, spo2, hr, 0)) == []


@pytest.mark.parametrize(("gain", "uv"), [(20, 4 * UV_80), (40, 2 * UV_80), (80, UV_80), (160, UV_80 / 2)])
def test_ecg_scale_follows_the_max30001_gain(gain: int, uv: float) -> None:
    assert ecg_uv_per_count(gain) == uv
    dec = HealthyPi5Decoder(strip_samples=2, numerics_every=100, ecg_gain=gain)
    assert dec.feed(packet(ecg=-10486) + packet(ecg=10486))[0] == Reading(
        Kind.ECG, strip=Strip(128.0, "uV", (-10486, 10486), gain=uv, channel="ecg")
    )
    with pytest.raises(ValueError, match="one of"):
        ecg_uv_per_count(100)


@pytest.mark.parametrize(
    "values", [[0], [32767, -32768], [32768], [-131072, 131071], [2**31 - 1, -(2**31)], [5, -5, 70000]]
)
def test_fit_int16_scaled_keeps_every_sample_within_one_step(values: list[int]) -> None:
    raw, step = fit_int16_scaled(values)
    assert all(-0x8000 <= r <= 0x7FFF for r in raw)
    assert all(0 <= v - r * step < step for r, v in zip(raw, values, strict=True))
    assert step == 1 or any(not -0x8000 <= v >> (step.bit_length() - 2) <= 0x7FFF for v in values)


def test_ppg_strips_are_red_then_ir_in_counts() -> None:
    dec = HealthyPi5Decoder(strip_samples=2, numerics_every=100)
    readings = dec.feed(packet(red=98000, ir=151000) + packet(red=97750, ir=150500))
    assert readings[1:] == [
        Reading(Kind.PPG, strip=Strip(128.0, "1", (-32518, -32768), offset=97750.0 + 32768, channel="red")),
        Reading(Kind.PPG, strip=Strip(128.0, "1", (-32268, -32768), offset=150500.0 + 32768, channel="ir")),
    ]


def test_decoder_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HealthyPi5Decoder(strip_samples=0)
    with pytest.raises(ValueError, match="at least 1"):
        HealthyPi5Decoder(numerics_every=0)
    with pytest.raises(ValueError, match="ECG gain"):
        HealthyPi5Decoder(ecg_gain=12)


# --- parse_packet


def test_parse_packet_reads_every_field() -> None:
    data = bytes.fromhex(
        "0a fa 16 00 02  ff ff 01 00  00 00 fe ff  ff  d0 7e 01 00  d8 4d 02 00  f0 0c  61 48 0e  00 0b"
    )
    assert parse_packet(data) == HealthyPi5Frame(
        ecg=131071,
        bioz=-131072,
        bioz_skip=0xFF,
        ppg_red=98000,
        ppg_ir=151000,
        temperature_centi=3312,
        spo2=97,
        heart_rate=72,
        respiration_rate=14,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\xfa\x16", "at least 7 bytes, not 3"),
        (bytes.fromhex("0a fb 00 00 02 00 0b"), "starts with 0a fa, not 0a fb"),
        (bytes.fromhex("0a fa 01 00 02 00 0b"), "says 1 payload bytes, so 8 in all, not 7"),
        (bytes.fromhex("0a fa 00 00 02 00 0c"), "ends with 00 0b, not 00 0c"),
        (bytes.fromhex("0a fa 00 00 03 00 0b"), "type 0x03 is not the data packet"),
        (bytes.fromhex("0a fa 01 00 02 ff 00 0b"), "has 22 payload bytes, not 1"),
    ],
)
def test_parse_packet_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_packet(data)


# --- driver option


def test_board_option_picks_the_decoder_and_its_rate() -> None:
    assert get_driver("healthypi") is DRIVER
    v4 = DRIVER.config_model.model_validate({"driver": "healthypi", "name": "hpi-1", "path": "/dev/serial0"})
    v5 = DRIVER.config_model.model_validate(
        {"driver": "healthypi", "name": "hpi-5", "path": "/dev/ttyACM0", "board": "v5", "strip_seconds": 4}
    )
    assert isinstance(DRIVER.decoder(v4), HealthyPiDecoder)
    dec = DRIVER.decoder(v5)
    assert isinstance(dec, HealthyPi5Decoder)
    assert (dec.strip_samples, dec.numerics_every, dec.ecg_uv_per_count) == (512, 128, UV_80)
    gain = HealthyPiConfig(driver="healthypi", name="hpi-5", path="/dev/ttyACM0", board="v5", ecg_gain=160)
    v5_160 = DRIVER.decoder(gain)
    assert isinstance(v5_160, HealthyPi5Decoder) and v5_160.ecg_uv_per_count == UV_80 / 2
    assert DRIVER.serial_link(v5) == DRIVER.serial_link(v4) == DRIVER.serial


@pytest.mark.parametrize(
    ("change", "loc"),
    [({"board": "v6"}, ("board",)), ({"board": "v5", "ecg_gain": 100}, ("ecg_gain",)), ({"ecg_gain": 80}, ())],
)
def test_board_options_are_checked(change: dict[str, Any], loc: tuple[str, ...]) -> None:
    entry = {"driver": "healthypi", "name": "hpi-1", "path": "/dev/serial0", **change}
    with pytest.raises(ValidationError) as caught:
        HealthyPiConfig.model_validate(entry)
    assert [error["loc"][: len(loc)] for error in caught.value.errors()] == [loc]
    if not loc:
        assert 'ecg_gain applies to board = "v5" only' in str(caught.value)


# --- fuzzing


def feed_never_raises(chunks: list[bytes]) -> None:
    dec = HealthyPi5Decoder(strip_samples=3, numerics_every=2)
    readings = feed_all(dec, chunks)
    assert dec.frames_ok * PACKET_LEN <= sum(len(chunk) for chunk in chunks)
    assert all(isinstance(reading, Reading) for reading in readings)
    # A decoder holds back at most one unfinished packet's worth of bytes.
    assert len(dec._buffer) <= 5 + 255 + 2


def parse_raises_only_decode_error(data: bytes) -> None:
    try:
        parse_packet(data)
    except DecodeError:
        return
    assert len(data) == PACKET_LEN


packet_like = st.builds(
    lambda head, payload, tail: head + payload + tail,
    st.sampled_from([b"", b"\x0a\xfa", b"\x0a\xfa\x16\x00\x02", b"\x0a\xfa\x16\x00", b"\x0a\xfa\x14\x00\x02"]),
    st.binary(max_size=26),
    st.sampled_from([b"", b"\x00\x0b", b"\x0b"]),
)


@settings(max_examples=300, database=None, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), packet_like), max_size=12))
def test_fuzz_decoder_never_raises(chunks: list[bytes]) -> None:
    feed_never_raises(chunks)


@settings(max_examples=300, database=None, deadline=None)
@given(st.one_of(st.binary(max_size=32), packet_like))
def test_fuzz_parse_packet_raises_only_decode_error(data: bytes) -> None:
    parse_raises_only_decode_error(data)


SLOW = pytest.mark.skipif(os.environ.get("HEALTHHUT_SLOW") != "1", reason="long fuzzing: HEALTHHUT_SLOW=1")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 100,000 inputs take minutes, beyond the suite's 120 s per test
@SLOW
@settings(max_examples=100_000, database=None, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), packet_like), max_size=12), st.binary(max_size=32))
def test_fuzz_long(chunks: list[bytes], data: bytes) -> None:
    feed_never_raises(chunks)
    parse_raises_only_decode_error(data)
