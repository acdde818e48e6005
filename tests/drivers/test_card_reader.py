"""The RDM630/RDM6300 card reader: its frame decoder on the documented frames (whole, byte by byte, in
random chunks, wrapped in random garbage, cut by an unplug, fuzzed), the hold-off that turns a card left on
the reader into one read, and its config."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from healthhut.drivers import get_driver
from healthhut.drivers.card_reader import CardDecoder, CardReaderConfig, encode_frame
from healthhut.drivers.card_reader.codec import CodeFormat
from tests.conftest import ROOT

CAPTURES = ROOT / "drivers" / "card_reader" / "captures"
NAMES = sorted(path.stem for path in CAPTURES.glob("*.hex"))
SLOW = os.environ.get("HEALTHHUT_SLOW") == "1"
CARDS = ["62E3086CED", "01000734E0", "100086F444", "0A0B0C0D0E", "FFFFFFFFFF", "0000000000"]


def load_hex(path: Path) -> bytes:
    return bytes.fromhex(" ".join(line.split("#", 1)[0] for line in path.read_text().splitlines()))


def expected(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text())
    return result


def new_seed() -> int:
    seed = int(os.environ.get("HEALTHHUT_SEED", random.randrange(2**32)))
    print(f"HEALTHHUT_SEED={seed}")
    return seed


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_there_are_captures() -> None:
    assert NAMES == [
        "hobbycomponents-fob",
        "seeed-datasheet-62e3086ced",
        "seeed-forum-bad-checksums",
        "seeed-wiki-example",
    ]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("code", ["hex", "decimal"])
def test_captures_whole_and_one_byte_at_a_time(name: str, code: CodeFormat) -> None:
    data = load_hex(CAPTURES / f"{name}.hex")
    want = expected(name)
    whole = CardDecoder(code)
    assert {"codes": whole.feed(data), "errors": whole.errors} == {"codes": want[code], "errors": want["errors"]}
    assert whole.frame_errors == len(want["errors"]) and whole.skipped_bytes == 0
    one = CardDecoder(code)
    codes = [c for i in range(len(data)) for c in one.feed(data[i : i + 1])]
    assert {"codes": codes, "errors": one.errors} == {"codes": want[code], "errors": want["errors"]}


def test_encode_frame_is_the_datasheets_frame() -> None:
    # Source 4 of the README quotes the whole frame of the datasheets' example card.
    assert encode_frame("62E3086CED") == bytes.fromhex("02 36 32 45 33 30 38 36 43 45 44 30 38 03")
    assert encode_frame("62e3086ced") == encode_frame("62E3086CED")
    for bad in ("62E3086CE", "62E3086CEDA", "62E3086CEG", "62E3086CÉ0"):
        with pytest.raises(ValueError, match="10 hex digits"):
            encode_frame(bad)


def test_frames_in_random_chunks_wrapped_in_random_garbage() -> None:
    seed = new_seed()
    rng = random.Random(seed)
    clock = Clock()
    decoder = CardDecoder(clock=clock)
    cards = [rng.choice(CARDS) for _ in range(200)]
    found: list[str] = []
    for card in cards:
        clock.now += 2.0  # each card a fresh read, past the hold-off of the one before
        noise = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        data = noise + encode_frame(card) + bytes(rng.randrange(256) for _ in range(rng.randint(0, 3)))
        while data:
            cut = rng.randint(1, len(data))
            found += decoder.feed(data[:cut])
            data = data[cut:]
    assert found == cards, f"seed={seed}"
    assert decoder.repeats == 0, f"seed={seed}"


def test_damaged_frames_are_dropped_whole_and_never_quoted() -> None:
    good = encode_frame("62E3086CED")
    clock = Clock()
    decoder = CardDecoder(clock=clock)
    # Line noise before any frame (not a read), then a frame cut short by the next STX (a reader reset).
    assert decoder.feed(b"\x81\x00noise" + good[:7] + good) == ["62E3086CED"]
    clock.now += 2.0  # the card has gone: what follows are failed reads
    damaged = (
        b"\x02"
        + b"1" * 20  # no ETX where it belongs
        + b"\x03"  # and a stray ETX
        + b"\x0262E3086C\x03"  # too short
        + b"\x0262E3086CEZ08\x03"  # not hex
        + b"\x0262E3086CED09\x03"  # a bad checksum
    )
    assert decoder.feed(damaged) == []
    assert decoder.errors == [
        "a frame cut short",
        "a frame without its end marker",
        "a frame of the wrong length",
        "a frame with characters that are not hex digits",
        "a frame with a bad checksum",
    ]
    assert decoder.frame_errors == 5 and decoder.noisy_repeats == 0
    # What a frame held is never in an error: neither its digits nor any part of the card number.
    assert not any(part in error.upper() for error in decoder.errors for part in ("62E3", "3086", "08"))


def test_a_card_left_on_the_reader_is_one_read() -> None:
    clock = Clock()
    decoder = CardDecoder(clock=clock, holdoff_s=1.5)
    frame = encode_frame("62E3086CED")
    reads = []
    for _ in range(200):  # ten seconds on the reader, a frame every 50 ms
        reads += decoder.feed(frame)
        clock.now += 0.05
    assert (reads, decoder.repeats) == (["62E3086CED"], 199)
    clock.now += 1.0  # lifted for a second (less than the hold-off) and put back: the same read
    assert decoder.feed(frame) == []
    clock.now += 1.6  # lifted for longer than the hold-off: a new read
    assert decoder.feed(frame) == ["62E3086CED"]
    # Another card in between: each change of card is a read.
    other = encode_frame("01000734E0")
    clock.now += 0.1
    assert decoder.feed(other) + decoder.feed(frame) + decoder.feed(other) == ["01000734E0", "62E3086CED", "01000734E0"]


def test_a_damaged_repeat_of_a_card_being_held_is_not_a_failed_read() -> None:
    clock = Clock()
    decoder = CardDecoder(clock=clock)
    frame = encode_frame("62E3086CED")
    assert decoder.feed(frame) == ["62E3086CED"]
    clock.now += 0.05
    bad = frame[:11] + b"09\x03"  # a corrupted repeat at the edge of the field
    assert decoder.feed(bad) == []
    assert (decoder.frame_errors, decoder.noisy_repeats) == (0, 1)
    clock.now += 2.0  # the card has gone: a damaged frame now is a failed read, for the kiosk
    assert decoder.feed(bad) == []
    assert (decoder.frame_errors, decoder.errors) == (1, ["a frame with a bad checksum"])


def test_an_unplug_mid_frame_loses_only_that_frame() -> None:
    frame = encode_frame("62E3086CED")
    first = CardDecoder()
    assert first.feed(frame + frame[:6]) == ["62E3086CED"]
    # The gateway makes a new decoder for each connection: the rest of the cut frame arrives as noise.
    second = CardDecoder()
    assert second.feed(frame[6:] + encode_frame("01000734E0")) == ["01000734E0"]
    assert (second.frame_errors, second.skipped_bytes) == (0, len(frame) - 6)


def test_the_decimal_code_is_the_number_printed_on_the_card() -> None:
    # The Hobby Components fob is printed 0008844356 (README, Sources 3).
    assert CardDecoder("decimal").feed(encode_frame("100086F444")) == ["0008844356"]
    assert CardDecoder("decimal").feed(encode_frame("FFFFFFFFFF")) == ["4294967295"]
    assert CardDecoder("hex").feed(encode_frame("0a0b0c0d0e")) == ["0A0B0C0D0E"]


@settings(max_examples=100_000 if SLOW else 300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from([encode_frame(card) for card in CARDS]), max_size=12))
def test_fuzz_never_raises_and_yields_only_card_codes(chunks: list[bytes]) -> None:
    hexadecimal, decimal = CardDecoder("hex"), CardDecoder("decimal")
    for chunk in chunks:
        for code in hexadecimal.feed(chunk):
            assert len(code) == 10 and all(ch in "0123456789ABCDEF" for ch in code)
        for code in decimal.feed(chunk):
            assert len(code) == 10 and code.isdigit() and int(code) < 2**32


def test_config_and_driver() -> None:
    spec = get_driver("card-reader")
    assert (spec.name, spec.transport, spec.role) == ("card-reader", "serial", "identity")
    config = spec.config_model.model_validate({"driver": "card-reader", "name": "reader-1", "path": "/dev/ttyUSB0"})
    assert config == CardReaderConfig(driver="card-reader", name="reader-1", path="/dev/ttyUSB0")
    link = spec.serial_link(config)
    assert link is not None and (link.settings.baudrate, link.settings.parity, link.settings.stopbits) == (9600, "N", 1)
    decoder = spec.decoder(config)
    assert isinstance(decoder, CardDecoder) and (decoder.code, decoder.holdoff_s) == ("hex", 1.5)
    decimal = spec.decoder(config.model_copy(update={"code": "decimal", "holdoff_s": 3.0}))
    assert isinstance(decimal, CardDecoder) and (decimal.code, decimal.holdoff_s) == ("decimal", 3.0)
    for wrong in ({"baud": 9600}, {"code": "octal"}, {"holdoff_s": 0}):
        with pytest.raises(ValidationError):
            CardReaderConfig.model_validate({"driver": "card-reader", "name": "r", "path": "/dev/x", **wrong})
