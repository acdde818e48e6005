"""The CMS50 live codec: its captures fed whole, byte by byte and in garbage; cut frames; fuzzing."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from healthhut.drivers import DecodeError, SerialLink, SerialSettings, get_driver
from healthhut.drivers.contec_cms50 import DRIVER, Cms50Config, Cms50Decoder, Cms50Frame, parse_frame
from healthhut.protocol import Flag, Kind, Quantity, Reading, Strip

CAPTURES = Path(__file__).resolve().parents[2] / "drivers" / "contec_cms50" / "captures"
README = CAPTURES.parent / "README.md"
# The 9-byte protocol's captures share the folder, named 9byte-* (tests/drivers/test_contec_cms50_v2.py).
CAPTURE_NAMES = sorted(path.stem for path in CAPTURES.glob("*.hex") if not path.stem.startswith("9byte-"))
# The README says the expected readings are those of this decoder.
CAPTURE_STRIP_SAMPLES = 30
# Counted by hand from the comments in the .hex files; every other capture has none.
CAPTURE_FRAME_ERRORS = {"apneaboard-upload-switch": 28, "constructed-defects": 4}
# Captures of whole, back-to-back frames, where garbage can go between any two frames.
ALIGNED_CAPTURES = ["constructed-edges", "constructed-finger-out", "constructed-steady"]


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


def frame_bytes(
    *,
    pleth: int = 50,
    spo2: int = 97,
    pulse_rate: int = 72,
    signal: int = 6,
    status_bits: int = 0,
    bar_bits: int = 0,
) -> bytes:
    """A frame packed by hand from the README table, independent of the simulator's encoder."""
    status = 0x80 | signal | status_bits
    bar = bar_bits | (0x40 if pulse_rate & 0x80 else 0)
    return bytes((status, pleth, bar, pulse_rate & 0x7F, spo2))


def spo2_reading(spo2: int, pulse_rate: int, *flags: Flag) -> Reading:
    values = {"spo2": Quantity(spo2, "%"), "pulse_rate": Quantity(pulse_rate, "/min")}
    return Reading(kind=Kind.SPO2, values=values, flags=frozenset(flags))


def feed_all(decoder: Cms50Decoder, chunks: Iterable[bytes]) -> list[Reading]:
    return [reading for chunk in chunks for reading in decoder.feed(chunk)]


def random_chunks(data: bytes, rng: random.Random) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        size = rng.randint(1, 7)
        yield data[start : start + size]
        start += size


def new_seed() -> int:
    return int(os.environ.get("HEALTHHUT_SEED", random.randrange(2**32)))


# --- captures


def test_every_capture_has_expectations_and_provenance() -> None:
    readme = README.read_text()
    assert CAPTURE_NAMES, f"no captures in {CAPTURES}"
    for name in CAPTURE_NAMES:
        assert (CAPTURES / f"{name}.json").is_file(), name
        first = (CAPTURES / f"{name}.hex").read_text().splitlines()[0]
        assert first.startswith("# ") and ("REAL" in first or "CONSTRUCTED" in first), name
        assert f"`{name}`" in readme, f"README.md, Captures, does not say where {name} came from"
        for obj in json.loads((CAPTURES / f"{name}.json").read_text()):
            assert obj["flags"] == sorted(obj["flags"]), name


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_whole(name: str) -> None:
    decoder = Cms50Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    assert decoder.feed(load_hex(CAPTURES / f"{name}.hex")) == expected_readings(name)
    assert decoder.frame_errors == CAPTURE_FRAME_ERRORS.get(name, 0)


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_byte_by_byte(name: str) -> None:
    data = load_hex(CAPTURES / f"{name}.hex")
    decoder = Cms50Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    assert feed_all(decoder, (data[i : i + 1] for i in range(len(data)))) == expected_readings(name)
    assert decoder.frame_errors == CAPTURE_FRAME_ERRORS.get(name, 0)


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_fed_in_random_chunks(name: str) -> None:
    seed = new_seed()
    decoder = Cms50Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    readings = feed_all(decoder, random_chunks(load_hex(CAPTURES / f"{name}.hex"), random.Random(seed)))
    assert readings == expected_readings(name), f"seed={seed}"
    assert decoder.frame_errors == CAPTURE_FRAME_ERRORS.get(name, 0), f"seed={seed}"


def garbage_errors(garbage: bytes, *, synced: bool) -> int:
    """Frame errors a stretch of garbage between two frames must cost (README, Quirks)."""
    sync_bytes = sum(1 for byte in garbage if byte & 0x80)
    stray_run = bool(garbage) and not garbage[0] & 0x80 and synced
    return sync_bytes + stray_run


@pytest.mark.parametrize("name", ALIGNED_CAPTURES)
def test_capture_wrapped_in_random_garbage(name: str) -> None:
    seed = new_seed()
    rng = random.Random(seed)
    data = load_hex(CAPTURES / f"{name}.hex")
    noisy, errors = bytearray(), 0
    for start in range(0, len(data), 5):
        # At most 4 bytes: five random bytes can form a valid-looking frame, and without a checksum
        # nothing can tell it from a real one. That is the protocol's limit, not the decoder's.
        garbage = rng.randbytes(rng.randint(0, 4))
        errors += garbage_errors(garbage, synced=start > 0)
        noisy += garbage + data[start : start + 5]
    decoder = Cms50Decoder(strip_samples=CAPTURE_STRIP_SAMPLES)
    assert feed_all(decoder, random_chunks(bytes(noisy), rng)) == expected_readings(name), f"seed={seed}"
    assert decoder.frame_errors == errors, f"seed={seed}"
    assert decoder.frames_ok == len(data) // 5, f"seed={seed}"


# --- cut and broken frames


@pytest.mark.parametrize("cut", range(1, 5))
def test_frame_cut_in_the_middle_then_resumed(cut: int) -> None:
    frame = frame_bytes(spo2=95, pulse_rate=130)
    decoder = Cms50Decoder()
    assert decoder.feed(frame[:cut]) == []
    assert decoder.feed(frame[cut:]) == [spo2_reading(95, 130)]
    assert (decoder.frames_ok, decoder.frame_errors) == (1, 0)


@pytest.mark.parametrize("sent", range(1, 5))
def test_device_unplugged_mid_frame(sent: int) -> None:
    decoder = Cms50Decoder()
    assert decoder.feed(frame_bytes(spo2=96, pulse_rate=70)) == [spo2_reading(96, 70)]
    assert decoder.feed(frame_bytes(spo2=96, pulse_rate=71)[:sent]) == []
    assert decoder.feed(frame_bytes(spo2=97, pulse_rate=72)) == [spo2_reading(97, 72)]
    assert (decoder.frames_ok, decoder.frame_errors) == (2, 1)


def test_byte_with_bit7_inside_a_frame_starts_the_next_frame() -> None:
    broken = bytes((0x86, 0x20, 0x85, 0x30, 0x00))
    decoder = Cms50Decoder()
    # 85 30 00 is kept as the start of a frame: the two bytes that follow complete it.
    assert decoder.feed(broken + bytes((0x48, 0x61))) == [
        Reading(kind=Kind.SPO2, values={"spo2": Quantity(97, "%"), "pulse_rate": Quantity(72, "/min")})
    ]
    assert decoder.last_frame == Cms50Frame(5, False, False, False, 0x30, 0, False, False, 72, 97)
    assert (decoder.frames_ok, decoder.frame_errors) == (1, 1)


def test_stray_bytes_count_once_per_run_and_not_before_the_first_sync() -> None:
    decoder = Cms50Decoder()
    decoder.feed(b"\x01\x02\x03")
    assert decoder.frame_errors == 0
    decoder.feed(frame_bytes() + b"\x01\x02\x03\x04\x05\x06\x07")
    assert decoder.frame_errors == 1
    decoder.feed(frame_bytes() + b"\x01")
    assert decoder.frame_errors == 2


# --- numerics and flags


@pytest.mark.parametrize(("spo2", "pulse_rate"), [(127, 255), (0, 0), (127, 0), (0, 255), (101, 255), (126, 0)])
def test_invalid_numerics_give_no_spo2_reading(spo2: int, pulse_rate: int) -> None:
    decoder = Cms50Decoder(strip_samples=2)
    frames = frame_bytes(pleth=7, spo2=spo2, pulse_rate=pulse_rate) * 2
    strip = Strip(fs=60.0, unit="1", raw=(7, 7), channel="pleth")
    assert decoder.feed(frames) == [Reading(kind=Kind.PPG, strip=strip)]


def test_one_valid_value_makes_a_reading_flagged_value_unavailable() -> None:
    decoder = Cms50Decoder()
    readings = decoder.feed(frame_bytes(spo2=127, pulse_rate=88) + frame_bytes(spo2=93, pulse_rate=255))
    assert readings == [
        Reading(Kind.SPO2, {"pulse_rate": Quantity(88, "/min")}, frozenset({Flag.VALUE_UNAVAILABLE})),
        Reading(Kind.SPO2, {"spo2": Quantity(93, "%")}, frozenset({Flag.VALUE_UNAVAILABLE})),
    ]


@pytest.mark.parametrize(
    ("status_bits", "bar_bits", "flags"),
    [
        (0x10, 0, {Flag.FINGER_OUT}),
        (0, 0x10, {Flag.PROBE_ERROR}),
        (0, 0x20, {Flag.SEARCHING}),
        (0x10, 0x30, {Flag.FINGER_OUT, Flag.PROBE_ERROR, Flag.SEARCHING}),
        (0x60, 0x0F, set()),  # beep, SpO2 dropping and the bar graph are not quality flags
    ],
)
def test_frame_bits_become_flags(status_bits: int, bar_bits: int, flags: set[Flag]) -> None:
    frame = frame_bytes(spo2=94, pulse_rate=101, status_bits=status_bits, bar_bits=bar_bits)
    assert Cms50Decoder().feed(frame) == [spo2_reading(94, 101, *flags)]


def test_strips_hold_exactly_strip_samples_and_the_union_of_flags() -> None:
    decoder = Cms50Decoder(strip_samples=4)
    frames = [
        frame_bytes(pleth=10, spo2=0, pulse_rate=0, status_bits=0x10),
        frame_bytes(pleth=11, spo2=0, pulse_rate=0, bar_bits=0x20),
        frame_bytes(pleth=12),
        frame_bytes(pleth=13),
        frame_bytes(pleth=14, bar_bits=0x10),
        frame_bytes(pleth=15),
        frame_bytes(pleth=16),
        frame_bytes(pleth=17),
        frame_bytes(pleth=18),
    ]
    strips = [reading for reading in decoder.feed(b"".join(frames)) if reading.kind is Kind.PPG]
    assert strips == [
        Reading(
            Kind.PPG,
            flags=frozenset({Flag.FINGER_OUT, Flag.SEARCHING}),
            strip=Strip(60.0, "1", (10, 11, 12, 13), channel="pleth"),
        ),
        Reading(Kind.PPG, flags=frozenset({Flag.PROBE_ERROR}), strip=Strip(60.0, "1", (14, 15, 16, 17))),
    ]
    assert decoder.frames_ok == 9


def test_last_frame_reports_device_state() -> None:
    decoder = Cms50Decoder()
    assert decoder.last_frame is None
    decoder.feed(frame_bytes(pleth=99, spo2=92, pulse_rate=140, signal=3, status_bits=0x60, bar_bits=0x07))
    assert decoder.last_frame == Cms50Frame(
        signal_strength=3,
        searching_too_long=False,
        spo2_dropping=True,
        beep=True,
        pleth=99,
        bar_graph=7,
        probe_error=False,
        searching=False,
        pulse_rate=140,
        spo2=92,
    )


def test_strip_samples_must_be_positive() -> None:
    with pytest.raises(ValueError, match="strip_samples"):
        Cms50Decoder(strip_samples=0)


# --- parse_frame


def test_parse_frame_reads_every_field() -> None:
    assert parse_frame(bytes.fromhex("ef 01 7f 7e 01")) == Cms50Frame(
        signal_strength=15,
        searching_too_long=False,
        spo2_dropping=True,
        beep=True,
        pleth=1,
        bar_graph=15,
        probe_error=True,
        searching=True,
        pulse_rate=254,
        spo2=1,
    )
    assert parse_frame(bytes.fromhex("90 00 00 00 00")) == replace(
        parse_frame(bytes.fromhex("80 00 00 00 00")), searching_too_long=True
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "5 bytes, not 0"),
        (bytes.fromhex("86 10 00 48"), "5 bytes, not 4"),
        (bytes.fromhex("86 10 00 48 61 00"), "5 bytes, not 6"),
        (bytes.fromhex("06 10 00 48 61"), r"byte 1 \(0x06\) lacks the sync bit"),
        (bytes.fromhex("86 10 80 48 61"), r"byte 3 \(0x80\) has bit 7 set"),
        (bytes.fromhex("86 10 00 48 e1"), r"byte 5 \(0xe1\) has bit 7 set"),
    ],
)
def test_parse_frame_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_frame(data)


# --- driver and config


def test_driver_is_registered_with_its_line_settings() -> None:
    assert get_driver("contec-cms50") is DRIVER
    assert DRIVER.transport == "serial"
    assert DRIVER.serial == SerialLink(
        settings=SerialSettings(baudrate=19200, bytesize=8, parity="O", stopbits=1, xonxoff=False),
        start_command=b"\xf6\xf6\xf6",
    )
    decoder = DRIVER.new_decoder()
    assert isinstance(decoder, Cms50Decoder)
    assert decoder.strip_samples == 600


def test_config_validates_and_sizes_the_strip() -> None:
    config = DRIVER.config_model.model_validate(
        {"driver": "contec-cms50", "name": "oxi-1", "path": "/dev/ttyUSB0", "strip_seconds": 2.5}
    )
    assert config == Cms50Config(driver="contec-cms50", name="oxi-1", path="/dev/ttyUSB0", strip_seconds=2.5)
    assert config.report_interval_s == 1.0
    assert config.protocol == "5-byte"
    decoder = DRIVER.decoder(config)
    assert isinstance(decoder, Cms50Decoder) and decoder.strip_samples == 150
    assert DRIVER.serial_link(config) == DRIVER.serial
    with pytest.raises(ValidationError):
        config.name = "other"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"driver": "omron-hem"}, "driver"),
        ({"name": "-bad"}, "name"),
        ({"name": "has space"}, "name"),
        ({"path": ""}, "path"),
        ({"strip_seconds": 0}, "strip_seconds"),
        ({"strip_seconds": 61}, "strip_seconds"),
        ({"report_interval_s": 0.05}, "report_interval_s"),
        ({"protocol": "7-byte"}, "protocol"),
        ({"protocol": 9}, "protocol"),
    ],
)
def test_config_rejects(change: dict[str, Any], field: str) -> None:
    entry = {"driver": "contec-cms50", "name": "oxi-1", "path": "/dev/ttyUSB0", **change}
    with pytest.raises(ValidationError) as caught:
        Cms50Config.model_validate(entry)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


# --- fuzzing


def feed_never_raises(chunks: list[bytes]) -> None:
    decoder = Cms50Decoder(strip_samples=3)
    readings = feed_all(decoder, chunks)
    total = sum(len(chunk) for chunk in chunks)
    assert decoder.frames_ok * 5 <= total
    assert all(isinstance(reading, Reading) for reading in readings)


def parse_raises_only_decode_error(data: bytes) -> None:
    try:
        parse_frame(data)
    except DecodeError:
        return
    assert len(data) == 5


@settings(max_examples=300, database=None, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12))
def test_fuzz_decoder_never_raises(chunks: list[bytes]) -> None:
    feed_never_raises(chunks)


@settings(max_examples=300, database=None, deadline=None)
@given(st.binary(max_size=8))
def test_fuzz_parse_frame_raises_only_decode_error(data: bytes) -> None:
    parse_raises_only_decode_error(data)


SLOW = pytest.mark.skipif(os.environ.get("HEALTHHUT_SLOW") != "1", reason="long fuzzing: HEALTHHUT_SLOW=1")


@pytest.mark.slow
@SLOW
@settings(max_examples=100_000, database=None, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12), st.binary(max_size=8))
def test_fuzz_long(chunks: list[bytes], data: bytes) -> None:
    feed_never_raises(chunks)
    parse_raises_only_decode_error(data)
