"""The CMS50 9-byte codec (firmware 4.6+): real captures whole, byte by byte and in garbage; cut packets; fuzz."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers import DecodeError, SerialLink, SerialSettings, get_driver
from healthhut.drivers.contec_cms50 import DRIVER, Cms50Config, Cms50V2Decoder, Cms50V2Frame, parse_realtime
from healthhut.drivers.contec_cms50.codec_v2 import (
    DATA_LENGTHS,
    INFORM_CONNECTED_COMMAND,
    START_REALTIME_COMMAND,
    STOP_REALTIME_COMMAND,
    parse_packet,
)
from healthhut.protocol import Flag, Kind, Quantity, Reading, Strip

CAPTURES = Path(__file__).resolve().parents[2] / "drivers" / "contec_cms50" / "captures"
README = CAPTURES.parent / "README.md"
CAPTURE_NAMES = sorted(path.stem for path in CAPTURES.glob("9byte-*.hex"))
CAPTURE_STRIP_SAMPLES = 30
# (frame errors, real-time packets, other packets), counted from the comments in the .hex files.
CAPTURE_COUNTS = {
    "9byte-andreaszachariae-finger-out": (0, 30, 0),
    "9byte-andreaszachariae-numerics": (0, 30, 0),
    "9byte-constructed-edges": (3, 14, 1),
    "9byte-headrotor-session": (6, 7, 5),
    "9byte-titinho11-steady": (0, 102, 0),
}
# Captures of whole, back-to-back real-time packets, where garbage can go between any two packets.
ALIGNED_CAPTURES = ["9byte-andreaszachariae-finger-out", "9byte-andreaszachariae-numerics"]


def load_hex(path: Path) -> bytes:
    return bytes.fromhex(" ".join(line.split("#", 1)[0] for line in path.read_text().splitlines()))


def reading_from_json(obj: dict[str, Any]) -> Reading:
    strip = None
    if "strip" in obj:
        fields = obj["strip"]
        strip = Strip(fields["fs"], fields["unit"], tuple(fields["raw"]), channel=fields["channel"])
    return Reading(
        kind=Kind(obj["kind"]),
        values={name: Quantity(value, unit) for name, (value, unit) in obj["values"].items()},
        flags=frozenset(Flag(flag) for flag in obj["flags"]),
        strip=strip,
    )


def expected_readings(name: str) -> list[Reading]:
    return [reading_from_json(obj) for obj in json.loads((CAPTURES / f"{name}.json").read_text())]


def realtime(
    *,
    status: int = 0x05,
    wave: int = 60,
    bar: int = 0x15,
    pulse_rate: int = 72,
    spo2: int = 97,
    pi: int = 0xFFFF,
) -> bytes:
    """A real-time packet packed by hand from the README table, independent of the simulator's encoder."""
    data = [status, wave, bar, pulse_rate, spo2, pi & 0xFF, pi >> 8]
    high = 0x80 | sum(1 << index for index, byte in enumerate(data) if byte & 0x80)
    return bytes([0x01, high, *(byte | 0x80 for byte in data)])


def spo2_reading(spo2: int, pulse_rate: int, *flags: Flag) -> Reading:
    values = {"spo2": Quantity(spo2, "%"), "pulse_rate": Quantity(pulse_rate, "/min")}
    return Reading(kind=Kind.SPO2, values=values, flags=frozenset(flags))


def feed_all(decoder: Cms50V2Decoder, chunks: Iterable[bytes]) -> list[Reading]:
    return [reading for chunk in chunks for reading in decoder.feed(chunk)]


def random_chunks(data: bytes, rng: random.Random) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        size = rng.randint(1, 11)
        yield data[start : start + size]
        start += size


def new_seed() -> int:
    seed = int(os.environ.get("HEALTHHUT_SEED", random.randrange(2**32)))
    print(f"HEALTHHUT_SEED={seed}")
    return seed


def counts(decoder: Cms50V2Decoder) -> tuple[int, int, int]:
    return decoder.frame_errors, decoder.frames_ok, decoder.packets_other


# --- captures


def test_every_capture_has_expectations_and_provenance() -> None:
    readme = README.read_text()
    assert sorted(CAPTURE_COUNTS) == CAPTURE_NAMES
    assert sum("REAL" in (CAPTURES / f"{n}.hex").read_text().splitlines()[0] for n in CAPTURE_NAMES) >= 4
    for name in CAPTURE_NAMES:
        first = (CAPTURES / f"{name}.hex").read_text().splitlines()[0]
        assert first.startswith("# ") and ("REAL" in first or "CONSTRUCTED" in first), name
        assert f"`{name}`" in readme, f"README.md, Captures, does not say where {name} came from"
        for obj in json.loads((CAPTURES / f"{name}.json").read_text()):
            assert obj["flags"] == sorted(obj["flags"]), name


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_whole(name: str) -> None:
    decoder = Cms50V2Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    assert decoder.feed(load_hex(CAPTURES / f"{name}.hex")) == expected_readings(name)
    assert counts(decoder) == CAPTURE_COUNTS[name]


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_byte_by_byte(name: str) -> None:
    data = load_hex(CAPTURES / f"{name}.hex")
    decoder = Cms50V2Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    assert feed_all(decoder, (data[i : i + 1] for i in range(len(data)))) == expected_readings(name)
    assert counts(decoder) == CAPTURE_COUNTS[name]


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_in_random_chunks(name: str) -> None:
    seed = new_seed()
    decoder = Cms50V2Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    readings = feed_all(decoder, random_chunks(load_hex(CAPTURES / f"{name}.hex"), random.Random(seed)))
    assert readings == expected_readings(name), f"seed={seed}"
    assert counts(decoder) == CAPTURE_COUNTS[name], f"seed={seed}"


def test_real_capture_numbers_are_what_the_devices_showed() -> None:
    # titinho11's README: the display said HR 63 during the recording; the device sends a pulse rate of
    # 60 and SpO2 99 throughout. The CMS50D+ of AndreasZachariae settles on 83/min and 97 %.
    steady = [r for r in expected_readings("9byte-titinho11-steady") if r.kind is Kind.SPO2]
    assert {(r.values["spo2"].value, r.values["pulse_rate"].value) for r in steady} == {(99, 60)}
    assert Cms50V2Decoder().feed(bytes.fromhex("01 e0 85 d5 9a bd e3 ff ff")) == [spo2_reading(99, 61)]


NOT_A_TYPE = [byte for byte in range(256) if byte not in DATA_LENGTHS]


def garbage_errors(garbage: bytes, *, synced: bool) -> int:
    """Frame errors a stretch of garbage between two whole packets must cost (README, Quirks)."""
    errors, in_packet, in_error = 0, False, False
    for byte in garbage:
        if not byte & 0x80:
            errors += 1  # a type byte the protocol does not define
            synced, in_packet, in_error = True, True, True
        elif not in_packet and synced and not in_error:
            errors += 1
            in_error = True
    return errors


@pytest.mark.parametrize("name", ALIGNED_CAPTURES)
def test_capture_wrapped_in_random_garbage(name: str) -> None:
    seed = new_seed()
    rng = random.Random(seed)
    data = load_hex(CAPTURES / f"{name}.hex")
    noisy, errors = bytearray(), 0
    for start in range(0, len(data), 9):
        # Garbage holds no known type byte: one could begin a short packet (0C 80) that the garbage
        # completes, and nothing could tell it from a real one. Every other type byte costs one error.
        garbage = bytes(rng.choice(NOT_A_TYPE) for _ in range(rng.randint(0, 12)))
        errors += garbage_errors(garbage, synced=start > 0)
        noisy += garbage + data[start : start + 9]
    decoder = Cms50V2Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    assert feed_all(decoder, random_chunks(bytes(noisy), rng)) == expected_readings(name), f"seed={seed}"
    assert counts(decoder) == (errors, len(data) // 9, 0), f"seed={seed}"


# --- cut and broken packets


@pytest.mark.parametrize("cut", range(1, 9))
def test_packet_cut_in_the_middle_then_resumed(cut: int) -> None:
    packet = realtime(spo2=95, pulse_rate=130)
    decoder = Cms50V2Decoder()
    assert decoder.feed(packet[:cut]) == []
    assert decoder.feed(packet[cut:]) == [spo2_reading(95, 130)]
    assert counts(decoder) == (0, 1, 0)


@pytest.mark.parametrize("sent", range(1, 9))
def test_device_unplugged_mid_packet(sent: int) -> None:
    decoder = Cms50V2Decoder()
    assert decoder.feed(realtime(spo2=96, pulse_rate=70)) == [spo2_reading(96, 70)]
    assert decoder.feed(realtime(spo2=96, pulse_rate=71)[:sent]) == []
    assert decoder.feed(realtime(spo2=97, pulse_rate=72)) == [spo2_reading(97, 72)]
    assert counts(decoder) == (1, 2, 0)


def test_stray_bytes_count_once_per_run_and_not_before_the_first_type_byte() -> None:
    decoder = Cms50V2Decoder()
    decoder.feed(b"\x81\x82\x83")
    assert decoder.frame_errors == 0
    decoder.feed(realtime() + b"\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a")
    assert decoder.frame_errors == 1
    decoder.feed(realtime() + b"\xff")
    assert decoder.frame_errors == 2


def test_unknown_type_costs_one_error_with_the_bytes_that_follow_it() -> None:
    decoder = Cms50V2Decoder()
    readings = decoder.feed(realtime() + bytes.fromhex("13 80 a0 a0 a0 a0 a0 a0 a0") + realtime(pulse_rate=73))
    assert readings == [spo2_reading(97, 72), spo2_reading(97, 73)]
    assert counts(decoder) == (1, 2, 0)


def test_other_known_packets_pass_quietly() -> None:
    decoder = Cms50V2Decoder()
    replies = bytes.fromhex("0c 80  0d 80 81  0b 81 a1 85  04 80 f5 f3 e5 f2 a0 a0 a0")
    assert decoder.feed(replies + realtime()) == [spo2_reading(97, 72)]
    assert counts(decoder) == (0, 1, 4)


# --- numerics and flags


@pytest.mark.parametrize(("spo2", "pulse_rate"), [(0, 0), (127, 255), (0, 255), (101, 0), (255, 0)])
def test_invalid_numerics_give_no_spo2_reading(spo2: int, pulse_rate: int) -> None:
    decoder = Cms50V2Decoder(strip_samples=2)
    packets = realtime(wave=7, spo2=spo2, pulse_rate=pulse_rate) * 2
    assert decoder.feed(packets) == [Reading(kind=Kind.PPG, strip=Strip(60.0, "1", (7, 7), channel="pleth"))]


def test_pulse_rate_uses_all_eight_bits() -> None:
    decoder = Cms50V2Decoder()
    readings = decoder.feed(realtime(pulse_rate=128) + realtime(pulse_rate=254) + realtime(pulse_rate=255))
    assert readings == [
        spo2_reading(97, 128),
        spo2_reading(97, 254),
        Reading(Kind.SPO2, {"spo2": Quantity(97, "%")}, frozenset({Flag.VALUE_UNAVAILABLE})),
    ]


@pytest.mark.parametrize(
    ("status", "wave", "flags"),
    [
        (0x85, 60, {Flag.PROBE_ERROR, Flag.FINGER_OUT}),
        (0x15, 60, {Flag.FINGER_OUT}),
        (0x05, 60 | 0x80, {Flag.SEARCHING}),
        (0x95, 60 | 0x80, {Flag.PROBE_ERROR, Flag.FINGER_OUT, Flag.SEARCHING}),
        (0x65, 60, set()),  # beep and SpO2 dropping are not quality flags
    ],
)
def test_status_bits_become_flags(status: int, wave: int, flags: set[Flag]) -> None:
    packet = realtime(status=status, wave=wave, spo2=94, pulse_rate=101)
    assert Cms50V2Decoder().feed(packet) == [spo2_reading(94, 101, *flags)]


def test_strips_hold_exactly_strip_samples_and_the_union_of_flags() -> None:
    decoder = Cms50V2Decoder(strip_samples=3)
    packets = [
        realtime(wave=10, status=0x85, spo2=0, pulse_rate=0),
        realtime(wave=11 | 0x80, spo2=0, pulse_rate=0),
        realtime(wave=12),
        realtime(wave=13),
        realtime(wave=14),
        realtime(wave=15),
        realtime(wave=16),
    ]
    strips = [r for r in decoder.feed(b"".join(packets)) if r.kind is Kind.PPG]
    assert strips == [
        Reading(
            Kind.PPG,
            flags=frozenset({Flag.PROBE_ERROR, Flag.FINGER_OUT, Flag.SEARCHING}),
            strip=Strip(60.0, "1", (10, 11, 12), channel="pleth"),
        ),
        Reading(Kind.PPG, strip=Strip(60.0, "1", (13, 14, 15), channel="pleth")),
    ]


def test_last_frame_reports_device_state() -> None:
    decoder = Cms50V2Decoder()
    assert decoder.last_frame is None
    decoder.feed(realtime(status=0x63, wave=99, bar=0xE7, pulse_rate=140, spo2=92, pi=0x0123))
    assert decoder.last_frame == Cms50V2Frame(
        signal_strength=3,
        searching_too_long=False,
        spo2_dropping=True,
        beep=True,
        probe_error=False,
        pleth=99,
        searching=False,
        bar_graph=7,
        pi_invalid=False,
        reserved=7,
        pulse_rate=140,
        spo2=92,
        perfusion_index_raw=0x0123,
    )


def test_strip_samples_must_be_positive() -> None:
    with pytest.raises(ValueError, match="strip_samples"):
        Cms50V2Decoder(strip_samples=0)


# --- parse_packet and parse_realtime


def test_parse_realtime_reads_every_field() -> None:
    # 01 FF: every data byte had bit 7 set on the device.
    assert parse_realtime(bytes.fromhex("01 ff ff ff ff ff ff ff ff")) == Cms50V2Frame(
        15, True, True, True, True, 127, True, 15, True, 7, 255, 255, 0xFFFF
    )
    assert parse_realtime(bytes.fromhex("01 80 80 80 80 80 80 80 80")) == Cms50V2Frame(
        0, False, False, False, False, 0, False, 0, False, 0, 0, 0, 0
    )


def test_parse_packet_restores_bit_7_from_the_high_byte() -> None:
    assert parse_packet(bytes.fromhex("04 80 f5 f3 e5 f2 a0 a0 a0")) == (0x04, b"user   ")
    assert parse_packet(bytes.fromhex("0b 81 a1 85")) == (0x0B, bytes([0xA1, 0x05]))
    assert parse_packet(bytes.fromhex("0c 80")) == (0x0C, b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not 0 bytes"),
        (bytes.fromhex("81 80"), r"byte 1 \(0x81\) has bit 7 set"),
        (bytes.fromhex("7d 81 a1 80 80 80 80 80 80"), "type 0x7d is not a device packet type"),
        (bytes.fromhex("01 e0 85 bc 95 c8 e1 ff"), "is 9 bytes, not 8"),
        (bytes.fromhex("0c 80 80"), "is 2 bytes, not 3"),
        (bytes.fromhex("01 e0 85 3c 95 c8 e1 ff ff"), r"byte 4 \(0x3c\) lacks bit 7"),
        (bytes.fromhex("01 60 85 bc 95 c8 e1 ff ff"), r"byte 2 \(0x60\) lacks bit 7"),
    ],
)
def test_parse_packet_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_packet(data)


def test_parse_realtime_refuses_other_packets() -> None:
    with pytest.raises(DecodeError, match=r"type 0x0c is not real-time data"):
        parse_realtime(bytes.fromhex("0c 80"))


# --- driver, config and link


def test_host_commands_are_the_documented_bytes() -> None:
    assert bytes.fromhex("7d 81 a1 80 80 80 80 80 80") == START_REALTIME_COMMAND
    assert bytes.fromhex("7d 81 a2 80 80 80 80 80 80") == STOP_REALTIME_COMMAND
    assert bytes.fromhex("7d 81 af 80 80 80 80 80 80") == INFORM_CONNECTED_COMMAND


def test_nine_byte_config_gets_its_decoder_and_link() -> None:
    config = Cms50Config.model_validate(
        {"driver": "contec-cms50", "name": "oxi-2", "path": "/dev/ttyUSB0", "protocol": "9-byte", "strip_seconds": 2}
    )
    spec = get_driver("contec-cms50")
    assert spec is DRIVER
    decoder = spec.decoder(config)
    assert isinstance(decoder, Cms50V2Decoder) and decoder.strip_samples == 120
    assert spec.serial_link(config) == SerialLink(
        settings=SerialSettings(baudrate=115200, bytesize=8, parity="N", stopbits=1, xonxoff=False),
        start_command=bytes.fromhex("7d 81 a1 80 80 80 80 80 80"),
        keepalive=bytes.fromhex("7d 81 af 80 80 80 80 80 80 7d 81 a1 80 80 80 80 80 80"),
        keepalive_interval_s=5.0,
    )


# --- fuzzing


def feed_never_raises(chunks: list[bytes]) -> None:
    decoder = Cms50V2Decoder(strip_samples=3)
    readings = feed_all(decoder, chunks)
    assert decoder.frames_ok * 9 <= sum(len(chunk) for chunk in chunks)
    assert all(isinstance(reading, Reading) for reading in readings)


def parse_raises_only_decode_error(data: bytes) -> None:
    try:
        parse_packet(data)
        parse_realtime(data)
    except DecodeError:
        return
    assert len(data) == 9


packet_like = st.lists(st.one_of(st.integers(0, 0x16), st.integers(0x80, 0xFF), st.integers(0, 0xFF)), max_size=60).map(
    bytes
)


@settings(max_examples=300, database=None, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), packet_like), max_size=12))
def test_fuzz_decoder_never_raises(chunks: list[bytes]) -> None:
    feed_never_raises(chunks)


@settings(max_examples=300, database=None, deadline=None)
@given(st.one_of(st.binary(max_size=12), packet_like))
def test_fuzz_parsers_raise_only_decode_error(data: bytes) -> None:
    parse_raises_only_decode_error(data)


SLOW = pytest.mark.skipif(os.environ.get("HEALTHHUT_SLOW") != "1", reason="long fuzzing: HEALTHHUT_SLOW=1")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 100,000 inputs take minutes, beyond the suite's 120 s per test
@SLOW
@settings(max_examples=100_000, database=None, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), packet_like), max_size=12), st.binary(max_size=12))
def test_fuzz_long(chunks: list[bytes], data: bytes) -> None:
    feed_never_raises(chunks)
    parse_raises_only_decode_error(data)
