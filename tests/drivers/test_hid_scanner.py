"""The keyboard-style (HID) scanner: its input_event decoder on real event transcripts and on typed codes
(whole, byte by byte, 16- and 24-byte records, among unrelated events, cut off, fuzzed), its key table
checked against the kernel's header, and its config."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from healthhut.drivers import get_driver
from healthhut.drivers.hid_scanner import HidScannerConfig, KeyDecoder, encode_scan, pack_events
from healthhut.drivers.hid_scanner.codec import (
    EV_KEY,
    EV_MSC,
    EV_SYN,
    KEY_ENTER,
    KEY_KPENTER,
    KEY_LEFTALT,
    KEY_LEFTSHIFT,
    KEY_NUMLOCK,
    KEY_RIGHTSHIFT,
    KEY_TAB,
    KEYPAD,
    MSC_SCAN,
    SYN_DROPPED,
    SYN_REPORT,
    US_KEYS,
    KeyEvent,
    key_strokes,
    native_event_size,
    unpack_events,
)

SLOW = os.environ.get("HEALTHHUT_SLOW") == "1"
HEADER = Path("/usr/include/linux/input-event-codes.h")
CODES = ["11010519491231002X", "H1234567890", "QR:310105200001011234", "a-Z_0 ~!@#$%^&*()+={}[]|\\:;\"'<>,.?/`"]
SYN = KeyEvent(EV_SYN, SYN_REPORT, 0)


def new_seed() -> int:
    seed = int(os.environ.get("HEALTHHUT_SEED", random.randrange(2**32)))
    print(f"HEALTHHUT_SEED={seed}")
    return seed


def typed(codes: list[str], size: int | None = None, *, start: float = 1_700_000_000.0, step: float = 0.004) -> bytes:
    """The records of ``codes`` typed one packet every ``step`` seconds from ``start``."""
    packets = [packet for code in codes for packet in encode_scan(code)]
    return b"".join(pack_events(packet, start + i * step, size) for i, packet in enumerate(packets))


def transcript(events: list[tuple[float, int, int]], size: int | None = None) -> bytes:
    """Key events as python-evdev prints them (time, key, 1 down or 0 up), each followed by SYN_REPORT."""
    return b"".join(pack_events([KeyEvent(EV_KEY, key, value), SYN], at, size) for at, key, value in events)


def enter(at: float, size: int | None = None) -> bytes:
    return b"".join(pack_events(packet, at, size) for packet in key_strokes(28))


def test_a_keystroke_is_what_a_real_usb_keyboard_delivers() -> None:
    # evtest on a USB keyboard, "a" pressed and released, quoted in Stack Overflow question 78951349
    # ("Where do the values for MSC_SCAN in evdev come from?"):
    #   Event: time 1725511187.487035, type 4 (EV_MSC), code 4 (MSC_SCAN), value 70004
    #   Event: time 1725511187.487035, type 1 (EV_KEY), code 30 (KEY_A), value 1
    #   Event: time 1725511187.487035, -------------- SYN_REPORT ------------
    #   Event: time 1725511187.543033, type 4 (EV_MSC), code 4 (MSC_SCAN), value 70004
    #   Event: time 1725511187.543033, type 1 (EV_KEY), code 30 (KEY_A), value 0
    #   Event: time 1725511187.543033, -------------- SYN_REPORT ------------
    evtest = [
        (1725511187.487035, [KeyEvent(EV_MSC, MSC_SCAN, 0x70004), KeyEvent(EV_KEY, 30, 1), SYN]),
        (1725511187.543033, [KeyEvent(EV_MSC, MSC_SCAN, 0x70004), KeyEvent(EV_KEY, 30, 0), SYN]),
    ]
    assert [list(packet) for packet in key_strokes(30)] == [events for _, events in evtest]
    for size in (16, 24):
        data = b"".join(pack_events(events, at, size) for at, events in evtest)
        assert len(data) == 6 * size
        assert unpack_events(data, size) == [event for _, events in evtest for event in events]
        # The 24-byte record as the kernel lays it out: tv_sec, tv_usec, type, code, value, little-endian.
        if size == 24:
            assert data[:24] == bytes.fromhex("1336d96600000000 7b6e070000000000 0400 0400 04000700")
        assert KeyDecoder(size).feed(data + enter(1725511187.6, size)) == ["a"]


@pytest.mark.parametrize("size", [16, 24])
def test_codes_whole_and_one_byte_at_a_time(size: int) -> None:
    data = typed(CODES, size)
    assert KeyDecoder(size).feed(data) == CODES
    decoder = KeyDecoder(size)
    assert [code for i in range(len(data)) for code in decoder.feed(data[i : i + 1])] == CODES
    assert decoder.frame_errors == 0


def test_the_default_record_size_is_this_processes() -> None:
    assert native_event_size() == (24 if struct_long_bytes() == 8 else 16)
    assert KeyDecoder().feed(typed(CODES)) == CODES
    with pytest.raises(ValueError, match="16 bytes"):
        KeyDecoder(32)


def struct_long_bytes() -> int:
    import ctypes

    return ctypes.sizeof(ctypes.c_long)


def test_codes_survive_unrelated_events_and_random_chunks() -> None:
    seed = new_seed()
    rng = random.Random(seed)
    noise_keys = [k for k in (*US_KEYS, *KEYPAD, 1, 14, 29, 58, 59) if k not in (42, 54, 56)]

    def noise() -> list[KeyEvent]:
        return [
            rng.choice(
                [
                    KeyEvent(EV_MSC, MSC_SCAN, rng.randrange(2**31)),
                    KeyEvent(0x11, rng.randrange(16), rng.randint(0, 1)),  # EV_LED
                    KeyEvent(0x02, rng.randrange(16), rng.randint(-9, 9)),  # EV_REL
                    KeyEvent(EV_KEY, rng.choice(noise_keys), 0),  # the release of a key not held
                    SYN,
                ]
            )
            for _ in range(rng.randint(0, 3))
        ]

    codes = [rng.choice(CODES) for _ in range(40)]
    data = b""
    at = 1_700_000_000.0
    for code in codes:
        for packet in encode_scan(code):
            data += pack_events([*noise(), *packet, *noise()], at)
            at += 0.004
        data += pack_events(key_strokes(15)[0], at)  # the Tab of an "Enter+Tab" suffix, ignored
        at += 0.5
    decoder = KeyDecoder()
    found: list[str] = []
    while data:
        cut = rng.randint(1, min(len(data), 200))
        found += decoder.feed(data[:cut])
        data = data[cut:]
    assert found == codes, f"seed={seed}"
    assert decoder.frame_errors == 0, f"seed={seed}"


def test_bad_scans_are_dropped_whole_and_never_quoted() -> None:
    code = "11010519491231002X"
    good = encode_scan(code)
    press_f1 = key_strokes(59)  # KEY_F1: in no code
    repeat = [(KeyEvent(EV_KEY, 3, 1), SYN), (KeyEvent(EV_KEY, 3, 2), SYN), (KeyEvent(EV_KEY, 3, 0), SYN)]
    dropped = [(KeyEvent(EV_SYN, SYN_DROPPED, 0),), (KeyEvent(EV_KEY, 4, 1), SYN)]
    alt_bell = [  # Alt+007 on the keypad: BEL, not printable
        (KeyEvent(EV_KEY, 56, 1), SYN),
        *key_strokes(82),
        *key_strokes(82),
        *key_strokes(71),
        (KeyEvent(EV_KEY, 56, 0), SYN),
    ]
    scans = [
        good[:8] + press_f1 + good[8:],
        good[:8] + repeat + good[8:],
        good[:8] + dropped + good[8:],
        good[:8] + alt_bell + good[8:],
        encode_scan("9" * 65),
        good,
    ]
    packets = [packet for scan in scans for packet in scan]
    data = b"".join(pack_events(packet, 1_700_000_000 + i * 0.004) for i, packet in enumerate(packets))
    decoder = KeyDecoder()
    assert decoder.feed(data) == [code]
    assert decoder.errors == [
        "a scan with a key that is not part of a code",
        "a scan with a key held down",
        "a scan with keystrokes lost",
        "a scan with a character that is not printable ASCII",
        "a scan longer than 64 characters",
    ]
    assert decoder.frame_errors == 5
    assert not any(code[:4] in error or "999" in error for error in decoder.errors)


def test_a_scan_cut_off_is_not_joined_to_the_next() -> None:
    first, second = typed(["11010519491231002X"]), typed(["H1234567890"], start=1_700_000_005.0)
    cut = first[: len(first) // 2 - len(first) // 2 % 24]  # whole records: the kernel gives no less
    # The gateway makes a new decoder for each connection: an unplug loses the half scan and nothing else.
    assert KeyDecoder().feed(cut) == []
    assert KeyDecoder().feed(second) == ["H1234567890"]
    # The same decoder, the scan's Enter lost: the pause before the next scan ends it as an error.
    decoder = KeyDecoder()
    assert decoder.feed(cut + second) == ["H1234567890"]
    assert decoder.errors == ["a scan interrupted for more than 1 s"]


def test_a_honeywell_ms7580_prefix_of_control_keys_is_a_frame_error() -> None:
    # A Honeywell MS7580 in keyboard emulation, read with python-evdev, as printed in Stack Overflow question
    # 19732978 ("How can I get a String from HID device in Python with evdev?"): "1", "2", then Ctrl+Shift+J,
    # "d", "b". The question prints EV_KEY events only: the SYN_REPORT after each, and the Enter, are ours.
    events = [
        (1383327570.147000, 2, 1),
        (1383327570.147990, 2, 0),
        (1383327570.148997, 3, 1),
        (1383327570.150010, 3, 0),
        (1383327570.151009, 29, 1),  # KEY_LEFTCTRL
        (1383327570.151009, 42, 1),  # KEY_LEFTSHIFT
        (1383327570.152017, 36, 1),  # KEY_J
        (1383327570.153005, 36, 0),
        (1383327570.154004, 29, 0),
        (1383327570.155005, 32, 1),  # KEY_D
        (1383327570.155993, 32, 0),
        (1383327570.157002, 48, 1),  # KEY_B
        (1383327570.158015, 48, 0),
    ]
    decoder = KeyDecoder()
    assert decoder.feed(transcript(events) + enter(1383327570.159)) == []
    assert decoder.errors == ["a scan with a key that is not part of a code"]


def test_a_datalogic_scanner_in_alt_mode_types_keypad_codes() -> None:
    # A Datalogic Gryphon GFS4400 on a Raspberry Pi, read with python-evdev, as printed in Stack Overflow
    # question 43558559 ("Python, evdev, usb barcode reader: how to decode the input data"): barcode
    # 4878000177..., typed as Num Lock, then Alt held over keypad 0 5 2 ("4") and 0 5 6 ("8"). The question
    # stops there; the SYN_REPORTs and the Enter are ours.
    events = [
        (1491586389.048072, 69, 1),  # KEY_NUMLOCK
        (1491586389.049084, 69, 0),
        (1491586389.050085, 56, 1),  # KEY_LEFTALT
        (1491586389.051081, 82, 1),  # KEY_KP0
        (1491586389.052082, 82, 0),
        (1491586389.052082, 76, 1),  # KEY_KP5
        (1491586389.053084, 76, 0),
        (1491586389.053084, 80, 1),  # KEY_KP2
        (1491586389.054079, 80, 0),
        (1491586389.055084, 56, 0),
        (1491586389.056080, 56, 1),
        (1491586389.057088, 82, 1),
        (1491586389.058079, 82, 0),
        (1491586389.058079, 76, 1),
        (1491586389.059087, 76, 0),
        (1491586389.059087, 77, 1),  # KEY_KP6
        (1491586389.060041, 77, 0),
        (1491586389.061046, 56, 0),
    ]
    for size in (16, 24):
        decoder = KeyDecoder(size)
        assert decoder.feed(transcript(events, size) + enter(1491586389.062, size)) == ["48"]
        assert decoder.frame_errors == 0


def test_keypad_digits_tab_terminator_and_an_empty_enter() -> None:
    keypad = [
        *key_strokes(79),
        *key_strokes(80),
        *key_strokes(82),
        *key_strokes(83),
        *key_strokes(96),
    ]  # 1 2 0 . KPEnter
    assert KeyDecoder().feed(b"".join(pack_events(p, 1.0) for p in keypad)) == ["120."]
    tab_scan = b"".join(pack_events(p, 1.0) for p in encode_scan("H123", "TAB"))
    assert KeyDecoder(terminator="TAB").feed(tab_scan) == ["H123"]
    assert KeyDecoder().feed(enter(1.0) + enter(1.1)) == []  # Enter alone is no scan, and no error either


def test_the_key_table_is_the_kernels() -> None:
    if not HEADER.exists():
        pytest.skip(f"{HEADER} is not installed (Debian package linux-libc-dev)")
    codes = dict(re.findall(r"^#define (KEY_\w+)\s+(\d+)\b", HEADER.read_text(), re.MULTILINE))
    names = {
        **{ch: f"KEY_{ch.upper()}" for ch in "abcdefghijklmnopqrstuvwxyz0123456789"},
        **{"-": "KEY_MINUS", "=": "KEY_EQUAL", "[": "KEY_LEFTBRACE", "]": "KEY_RIGHTBRACE", ";": "KEY_SEMICOLON"},
        **{"'": "KEY_APOSTROPHE", "`": "KEY_GRAVE", "\\": "KEY_BACKSLASH", ",": "KEY_COMMA", ".": "KEY_DOT"},
        **{"/": "KEY_SLASH", " ": "KEY_SPACE"},
    }
    assert {plain: f"{key}" for key, (plain, _) in US_KEYS.items()} == {ch: codes[name] for ch, name in names.items()}
    assert {key: ch for key, ch in KEYPAD.items()} == {
        **{int(codes[f"KEY_KP{d}"]): d for d in "0123456789"},
        **{int(codes[name]): ch for name, ch in [("KEY_KPASTERISK", "*"), ("KEY_KPMINUS", "-")]},
        **{int(codes[name]): ch for name, ch in [("KEY_KPPLUS", "+"), ("KEY_KPDOT", "."), ("KEY_KPSLASH", "/")]},
    }
    ours = {"KEY_ENTER": KEY_ENTER, "KEY_KPENTER": KEY_KPENTER, "KEY_TAB": KEY_TAB, "KEY_NUMLOCK": KEY_NUMLOCK}
    ours |= {"KEY_LEFTSHIFT": KEY_LEFTSHIFT, "KEY_RIGHTSHIFT": KEY_RIGHTSHIFT, "KEY_LEFTALT": KEY_LEFTALT}
    assert {name: int(codes[name]) for name in ours} == ours


@settings(max_examples=100_000 if SLOW else 300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([EV_SYN, EV_KEY, EV_MSC, 0x11]), st.integers(0, 120), st.integers(-1, 3)),
        max_size=300,
    ),
    st.sampled_from([16, 24]),
)
def test_fuzz_never_raises_and_yields_only_clean_codes(events: list[tuple[int, int, int]], size: int) -> None:
    decoder = KeyDecoder(size)
    data = pack_events([KeyEvent(*event) for event in events], 1.0, size)
    for code in decoder.feed(data[:7]) + decoder.feed(data[7:]):
        assert 0 < len(code) <= 64 and code.isascii() and code.isprintable()


def test_config_and_driver() -> None:
    spec = get_driver("hid-scanner")
    assert (spec.name, spec.transport, spec.role, spec.serial) == ("hid-scanner", "evdev", "identity", None)
    raw = {"driver": "hid-scanner", "name": "hid-1", "path": "/dev/input/by-id/usb-x-event-kbd"}
    config = spec.config_model.model_validate(raw)
    assert config == HidScannerConfig(driver="hid-scanner", name="hid-1", path="/dev/input/by-id/usb-x-event-kbd")
    decoder = spec.decoder(config)
    assert isinstance(decoder, KeyDecoder) and (decoder.event_size, decoder.max_gap_s) == (native_event_size(), 1.0)
    small = spec.decoder(config.model_copy(update={"event_size": 16, "terminator": "TAB"}))
    assert isinstance(small, KeyDecoder) and small.event_size == 16 and small.terminators == {15}
    for wrong in ({"event_size": 32}, {"terminator": "CR"}, {"grab": False}):
        with pytest.raises(ValidationError):
            HidScannerConfig.model_validate({**raw, **wrong})
