"""The HealthyPi OpenView codec: captures whole, byte by byte and in garbage; cut packets; fuzzing."""

from __future__ import annotations

import json
import os
import random
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from healthhut.drivers import DecodeError, SerialLink, SerialSettings, get_driver
from healthhut.drivers.healthypi import DRIVER, HealthyPiConfig, HealthyPiDecoder, HealthyPiFrame, parse_packet
from healthhut.drivers.healthypi.codec import ECG_UV_PER_COUNT, OpenViewStream, fit_int16, numerics_readings
from healthhut.protocol import Flag, Kind, Quantity, Reading, Strip

CAPTURES = Path(__file__).resolve().parents[2] / "drivers" / "healthypi" / "captures"
README = CAPTURES.parent / "README.md"
# The HealthyPi 5 captures (v5-*) are test_healthypi5.py's.
CAPTURE_NAMES = sorted(path.stem for path in CAPTURES.glob("*.hex") if not path.stem.startswith("v5-"))
# The README says the expected readings are those of this decoder.
STRIP_SAMPLES, NUMERICS_EVERY = 10, 5
# (frame errors, good packets, unsupported packets), counted from the comments in the .hex files.
CAPTURE_COUNTS = {
    "constructed-defects": (6, 10, 2),
    "constructed-lead-off": (0, 20, 0),
    "constructed-ppg-range": (0, 10, 0),
    "constructed-startup": (0, 20, 0),
}
ALIGNED_CAPTURES = ["constructed-lead-off", "constructed-ppg-range", "constructed-startup"]
PACKET_LEN = 27


def load_hex(path: Path) -> bytes:
    return bytes.fromhex(" ".join(line.split("#", 1)[0] for line in path.read_text().splitlines()))


def reading_from_json(obj: dict[str, Any]) -> Reading:
    strip = None
    if "strip" in obj:
        s = obj["strip"]
        strip = Strip(s["fs"], s["unit"], tuple(s["raw"]), gain=s["gain"], offset=s["offset"], channel=s["channel"])
    return Reading(
        kind=Kind(obj["kind"]),
        values={name: Quantity(value, unit) for name, (value, unit) in obj["values"].items()},
        flags=frozenset(Flag(flag) for flag in obj["flags"]),
        strip=strip,
    )


def expected_readings(name: str) -> list[Reading]:
    return [reading_from_json(obj) for obj in json.loads((CAPTURES / f"{name}.json").read_text())]


def packet(
    *,
    ecg: int = 10,
    resp: int = 0,
    ir: int = -180000,
    red: int = -140000,
    temp: int = 3310,
    rr: int = 14,
    spo2: int = 97,
    hr: int = 72,
    status: int = 0,
) -> bytes:
    """A data packet packed by hand from the README table, independent of the simulator's encoder."""
    payload = struct.pack("<hhiiHBBBBBB", ecg, resp, ir, red, temp, rr, spo2, hr, 80, 120, status)
    return b"\x0a\xfa\x14\x00\x02" + payload + b"\x00\x0b"


def decoder() -> HealthyPiDecoder:
    return HealthyPiDecoder(strip_samples=STRIP_SAMPLES, numerics_every=NUMERICS_EVERY)


def feed_all(dec: OpenViewStream, chunks: Iterable[bytes]) -> list[Reading]:
    return [reading for chunk in chunks for reading in dec.feed(chunk)]


def random_chunks(data: bytes, rng: random.Random) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        size = rng.randint(1, 40)
        yield data[start : start + size]
        start += size


def new_seed() -> int:
    seed = int(os.environ.get("HEALTHHUT_SEED", random.randrange(2**32)))
    print(f"HEALTHHUT_SEED={seed}")
    return seed


def counts(dec: HealthyPiDecoder) -> tuple[int, int, int]:
    return dec.frame_errors, dec.frames_ok, dec.packets_unsupported


# --- captures


def test_every_capture_has_expectations_and_provenance() -> None:
    readme = README.read_text()
    assert sorted(CAPTURE_COUNTS) == CAPTURE_NAMES
    for name in CAPTURE_NAMES:
        first = (CAPTURES / f"{name}.hex").read_text().splitlines()[0]
        assert first.startswith("# ") and ("REAL" in first or "CONSTRUCTED" in first), name
        assert f"`{name}`" in readme, f"README.md, Captures, does not say where {name} came from"
        for obj in json.loads((CAPTURES / f"{name}.json").read_text()):
            assert obj["flags"] == sorted(obj["flags"]), name


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
        # Garbage of at most 6 bytes cannot hold a whole packet (7 bytes at least), and any start it
        # holds fails at the next good packet's bytes, so each non-empty stretch costs one error.
        garbage = rng.randbytes(rng.randint(0, 6))
        errors += bool(garbage) and start > 0
        noisy += garbage + data[start : start + PACKET_LEN]
    dec = decoder()
    assert feed_all(dec, random_chunks(bytes(noisy), rng)) == expected_readings(name), f"seed={seed}"
    assert counts(dec) == (errors, len(data) // PACKET_LEN, 0), f"seed={seed}"


# --- cut packets and defects


@pytest.mark.parametrize("cut", range(1, PACKET_LEN))
def test_packet_cut_in_the_middle_then_resumed(cut: int) -> None:
    dec = HealthyPiDecoder(strip_samples=100, numerics_every=1)
    data = packet(hr=88)
    assert dec.feed(data[:cut]) == []
    assert [r.kind for r in dec.feed(data[cut:])] == [Kind.HEART_RATE, Kind.SPO2, Kind.BODY_TEMPERATURE]
    assert counts(dec) == (0, 1, 0)


@pytest.mark.parametrize("sent", range(1, PACKET_LEN))
def test_device_unplugged_mid_packet(sent: int) -> None:
    dec = HealthyPiDecoder(strip_samples=100, numerics_every=1)
    heart_rate = [Reading(Kind.HEART_RATE, {"heart_rate": Quantity(hr, "/min")}) for hr in (70, 72)]
    assert dec.feed(packet(hr=70))[:1] == heart_rate[:1]
    assert dec.feed(packet(hr=71)[:sent]) == []
    assert dec.feed(packet(hr=72))[:1] == heart_rate[1:]
    assert counts(dec) == (1, 2, 0)


def test_start_bytes_inside_a_payload_do_not_derail_the_stream() -> None:
    # An ECG sample of -1526 is 0a fa on the wire: the start bytes, inside a good packet's payload.
    data = packet(ecg=-1526, resp=0x0A00) * 3
    dec = HealthyPiDecoder(strip_samples=3, numerics_every=100)
    readings = dec.feed(data)
    assert readings[0] == Reading(
        Kind.ECG, strip=Strip(125.0, "uV", (-1526,) * 3, gain=ECG_UV_PER_COUNT, channel="ecg")
    )
    assert counts(dec) == (0, 3, 0)


# --- values, flags, strips


def test_numbers_become_spot_readings_and_zero_is_no_value() -> None:
    assert numerics_readings(HealthyPiFrame(0, 0, 0, 0, 3650, 15, 98, 61, 80, 120, 0)) == [
        Reading(Kind.HEART_RATE, {"heart_rate": Quantity(61, "/min")}),
        Reading(Kind.SPO2, {"spo2": Quantity(98, "%")}),
        Reading(Kind.BODY_TEMPERATURE, {"temperature": Quantity(36.5, "Cel")}),
    ]
    assert numerics_readings(HealthyPiFrame(0, 0, 0, 0, 0, 0, 0, 0, 80, 120, 0)) == []


@pytest.mark.parametrize(("hr", "spo2", "temp"), [(251, 101, 5001), (255, 255, 0xFFFF)])
def test_values_the_firmware_cannot_send_are_left_out(hr: int, spo2: int, temp: int) -> None:
    assert numerics_readings(HealthyPiFrame(0, 0, 0, 0, temp, 0, spo2, hr, 80, 120, 0)) == []


@pytest.mark.parametrize("status", [0x01, 0x02, 0x04, 0x08, 0x10, 0x1F])
def test_any_lead_off_bit_flags_the_ecg(status: int) -> None:
    dec = HealthyPiDecoder(strip_samples=2, numerics_every=1)
    readings = dec.feed(packet(status=status) + packet())
    assert readings[0] == Reading(Kind.HEART_RATE, {"heart_rate": Quantity(72, "/min")}, frozenset({Flag.LEAD_OFF}))
    assert [r.flags for r in readings if r.kind is Kind.ECG] == [frozenset({Flag.LEAD_OFF})]
    assert dec.last_frame is not None and not dec.last_frame.lead_off


def test_status_bits_above_the_lead_off_bits_are_not_lead_off() -> None:
    dec = HealthyPiDecoder(strip_samples=1, numerics_every=100)
    assert dec.feed(packet(status=0xE0))[0].flags == frozenset()


def test_ecg_strip_is_in_microvolts() -> None:
    # 2.42 V / (12 · 2^23) per ADS1292R count, times 2^8 · 2^2 for the firmware's two shifts.
    assert pytest.approx(24.6175130208, rel=1e-10) == ECG_UV_PER_COUNT
    dec = HealthyPiDecoder(strip_samples=2, numerics_every=100)
    ecg = dec.feed(packet(ecg=-32768) + packet(ecg=32767))[0]
    assert ecg.strip == Strip(125.0, "uV", (-32768, 32767), gain=ECG_UV_PER_COUNT, channel="ecg")


@pytest.mark.parametrize(
    "values",
    [[5], [-180000, -180010, -179000], [-(2**21), 2**21 - 1, 0], [-(2**31), 2**31 - 1], [7, 7 + 65535]],
)
def test_fit_int16_keeps_every_sample_within_one_gain_step(values: list[int]) -> None:
    raw, gain, offset = fit_int16(values)
    assert all(-0x8000 <= r <= 0x7FFF for r in raw)
    assert all(0 <= v - (r * gain + offset) < gain for r, v in zip(raw, values, strict=True))
    span = max(values) - min(values)
    assert span // gain <= 0xFFFF
    assert gain == 1.0 or span // (gain / 2) > 0xFFFF  # the smallest gain that fits


def test_ppg_strips_are_red_then_ir_in_counts() -> None:
    dec = HealthyPiDecoder(strip_samples=2, numerics_every=100)
    readings = dec.feed(packet(ir=-180000, red=-140000) + packet(ir=-180500, red=-140250))
    assert readings[1:] == [
        Reading(Kind.PPG, strip=Strip(125.0, "1", (-32518, -32768), offset=-140250.0 + 32768, channel="red")),
        Reading(Kind.PPG, strip=Strip(125.0, "1", (-32268, -32768), offset=-180500.0 + 32768, channel="ir")),
    ]


def test_decoder_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HealthyPiDecoder(strip_samples=0)
    with pytest.raises(ValueError, match="at least 1"):
        HealthyPiDecoder(numerics_every=0)


# --- parse_packet


def test_parse_packet_reads_every_field() -> None:
    data = bytes.fromhex("0a fa 14 00 02  ff 7f 00 80  ff ff 1f 00 00 00 e0 ff  ee 0c  0e 61 48 50 78 0c  00 0b")
    assert parse_packet(data) == HealthyPiFrame(
        ecg=32767,
        respiration=-32768,
        ppg_ir=2**21 - 1,
        ppg_red=-(2**21),
        temperature_centi=3310,
        respiration_rate=14,
        spo2=97,
        heart_rate=72,
        bp_systolic_placeholder=80,
        bp_diastolic_placeholder=120,
        lead_status=0x0C,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\xfa\x14", "at least 7 bytes, not 3"),
        (bytes.fromhex("0a fb 00 00 02 00 0b"), "starts with 0a fa, not 0a fb"),
        (bytes.fromhex("0a fa 01 00 02 00 0b"), "says 1 payload bytes, so 8 in all, not 7"),
        (bytes.fromhex("0a fa 00 00 02 00 0c"), "ends with 00 0b, not 00 0c"),
        (bytes.fromhex("0a fa 00 00 03 00 0b"), "type 0x03 is not the data packet"),
        (bytes.fromhex("0a fa 01 00 02 ff 00 0b"), "has 20 payload bytes, not 1"),
    ],
)
def test_parse_packet_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_packet(data)


# --- driver and config


def test_driver_is_registered_with_its_line_settings() -> None:
    assert get_driver("healthypi") is DRIVER
    assert DRIVER.transport == "serial"
    assert DRIVER.serial == SerialLink(settings=SerialSettings(baudrate=115200, bytesize=8, parity="N", stopbits=1))
    dec = DRIVER.new_decoder()
    assert isinstance(dec, HealthyPiDecoder) and dec.strip_samples == 1250 and dec.numerics_every == 125


def test_config_validates_and_sizes_the_strip() -> None:
    config = DRIVER.config_model.model_validate(
        {"driver": "healthypi", "name": "hpi-1", "path": "/dev/serial0", "strip_seconds": 4}
    )
    assert config == HealthyPiConfig(driver="healthypi", name="hpi-1", path="/dev/serial0", strip_seconds=4)
    dec = DRIVER.decoder(config)
    assert isinstance(dec, HealthyPiDecoder) and dec.strip_samples == 500
    assert DRIVER.serial_link(config) == DRIVER.serial
    with pytest.raises(ValidationError):
        config.name = "other"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"driver": "contec-cms50"}, "driver"),
        ({"name": "-bad"}, "name"),
        ({"path": ""}, "path"),
        ({"strip_seconds": 0}, "strip_seconds"),
        ({"strip_seconds": 61}, "strip_seconds"),
        ({"report_interval_s": 0.01}, "report_interval_s"),
    ],
)
def test_config_rejects(change: dict[str, Any], field: str) -> None:
    entry = {"driver": "healthypi", "name": "hpi-1", "path": "/dev/serial0", **change}
    with pytest.raises(ValidationError) as caught:
        HealthyPiConfig.model_validate(entry)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


# --- fuzzing


def feed_never_raises(chunks: list[bytes]) -> None:
    dec = HealthyPiDecoder(strip_samples=3, numerics_every=2)
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
    st.sampled_from([b"", b"\x0a\xfa", b"\x0a\xfa\x14\x00\x02", b"\x0a\xfa\x14\x00"]),
    st.binary(max_size=24),
    st.sampled_from([b"", b"\x00\x0b", b"\x0b"]),
)


@settings(max_examples=300, database=None, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), packet_like), max_size=12))
def test_fuzz_decoder_never_raises(chunks: list[bytes]) -> None:
    feed_never_raises(chunks)


@settings(max_examples=300, database=None, deadline=None)
@given(st.one_of(st.binary(max_size=30), packet_like))
def test_fuzz_parse_packet_raises_only_decode_error(data: bytes) -> None:
    parse_raises_only_decode_error(data)


SLOW = pytest.mark.skipif(os.environ.get("HEALTHHUT_SLOW") != "1", reason="long fuzzing: HEALTHHUT_SLOW=1")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 100,000 inputs take minutes, beyond the suite's 120 s per test
@SLOW
@settings(max_examples=100_000, database=None, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), packet_like), max_size=12), st.binary(max_size=30))
def test_fuzz_long(chunks: list[bytes], data: bytes) -> None:
    feed_never_raises(chunks)
    parse_raises_only_decode_error(data)
