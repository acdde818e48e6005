"""The CMS50 simulator: byte-exact inverse of the driver's parser, and a live stream the driver decodes."""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers.contec_cms50 import Cms50Decoder, Cms50Frame, parse_frame
from healthhut.firmware_sim.encoders.contec_cms50 import (
    ACQUIRE_FRAMES,
    FINGER_OUT_FRAME,
    Cms50Stream,
    encode_frame,
)
from healthhut.firmware_sim.signals import SYSTOLIC_PHASE, PpgGenerator, pulse_shape
from healthhut.protocol import Flag, Kind, Quantity, Reading

FPS = 60

frames_strategy = st.builds(
    Cms50Frame,
    signal_strength=st.integers(0, 15),
    searching_too_long=st.booleans(),
    spo2_dropping=st.booleans(),
    beep=st.booleans(),
    pleth=st.integers(0, 127),
    bar_graph=st.integers(0, 15),
    probe_error=st.booleans(),
    searching=st.booleans(),
    pulse_rate=st.integers(0, 255),
    spo2=st.integers(0, 127),
)
# Every byte string the protocol allows: a sync byte, then four bytes with bit 7 clear.
wire_frames = st.tuples(st.integers(0x80, 0xFF), *[st.integers(0, 0x7F)] * 4).map(bytes)


def frames_of(data: bytes) -> list[Cms50Frame]:
    return [parse_frame(data[i : i + 5]) for i in range(0, len(data), 5)]


def number(quantity: Quantity) -> float:
    assert not isinstance(quantity.value, tuple)
    return quantity.value


def spo2_readings(readings: list[Reading]) -> list[Reading]:
    return [reading for reading in readings if reading.kind is Kind.SPO2]


# --- encode_frame


@settings(max_examples=500, database=None, deadline=None)
@given(frames_strategy)
def test_parse_inverts_encode(frame: Cms50Frame) -> None:
    assert parse_frame(encode_frame(frame)) == frame


@settings(max_examples=500, database=None, deadline=None)
@given(wire_frames)
def test_encode_inverts_parse(data: bytes) -> None:
    assert encode_frame(parse_frame(data)) == data


def test_encode_frame_bytes() -> None:
    frame = Cms50Frame(7, False, False, True, 64, 6, False, True, 130, 98)
    assert encode_frame(frame) == bytes.fromhex("c7 40 66 02 62")
    assert encode_frame(FINGER_OUT_FRAME) == bytes.fromhex("90 00 60 7f 7f")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("signal_strength", 16),
        ("signal_strength", -1),
        ("pleth", 128),
        ("bar_graph", 16),
        ("pulse_rate", 256),
        ("pulse_rate", -1),
        ("spo2", 128),
    ],
)
def test_encode_frame_rejects_values_that_do_not_fit(field: str, value: int) -> None:
    changes: dict[str, Any] = {field: value}
    frame = replace(parse_frame(bytes.fromhex("86 40 06 48 61")), **changes)
    with pytest.raises(ValueError, match=f"{field} must be in 0..[0-9]+, not {value}"):
        encode_frame(frame)


# --- Cms50Stream


def test_stream_is_deterministic_for_a_seed_and_continuous_across_calls() -> None:
    whole = Cms50Stream(97, 72, seed=5).frames(300)
    stream = Cms50Stream(97, 72, seed=5)
    pieces = stream.frames(1) + stream.frames(59) + stream.frames(0) + stream.frames(240)
    assert pieces == whole
    assert len(whole) == 300 * 5
    assert Cms50Stream(97, 72, seed=6).frames(300) != whole


def test_decoder_reproduces_the_numerics_the_stream_was_set_to() -> None:
    decoder = Cms50Decoder()
    readings = decoder.feed(Cms50Stream(96, 84, seed=11).frames(30 * FPS))
    numerics = spo2_readings(readings)
    assert len(numerics) == 30 * FPS
    spo2 = [number(reading.values["spo2"]) for reading in numerics]
    pulse = [number(reading.values["pulse_rate"]) for reading in numerics]
    assert set(spo2) <= {95, 96, 97}
    assert set(pulse) <= set(range(82, 87))
    assert abs(statistics.mean(spo2) - 96) < 0.5
    assert abs(statistics.mean(pulse) - 84) < 1.0
    assert all(reading.flags == frozenset() for reading in readings)
    assert [len(r.strip.raw) for r in readings if r.strip is not None] == [600, 600, 600]
    assert (decoder.frames_ok, decoder.frame_errors) == (30 * FPS, 0)


def test_numerics_change_at_most_once_a_second() -> None:
    frames = frames_of(Cms50Stream(97, 72, seed=3).frames(10 * FPS))
    for second in range(10):
        shown = {(f.spo2, f.pulse_rate, f.signal_strength) for f in frames[second * FPS : (second + 1) * FPS]}
        assert len(shown) == 1
        assert 4 <= frames[second * FPS].signal_strength <= 8


def test_pleth_and_beep_follow_the_set_pulse_rate() -> None:
    stream = Cms50Stream(97, 72, seed=8)
    first = frames_of(stream.frames(60 * FPS))
    stream.pulse_rate = 120
    second = frames_of(stream.frames(60 * FPS))
    assert abs(sum(f.beep for f in first) - 72) <= 3
    # The new rate starts at the next beat, so allow that one beat.
    assert abs(sum(f.beep for f in second) - 120) <= 4
    # The beep marks the top of the pulse, and the bar graph rises with it.
    for frames in (first, second):
        at_beep = statistics.mean(f.pleth for f in frames if f.beep)
        assert at_beep > statistics.mean(f.pleth for f in frames) + 30
        assert statistics.mean(f.bar_graph for f in frames if f.beep) >= 6
    assert {f.pulse_rate for f in second[FPS:]} <= set(range(118, 123))


def test_pleth_uses_the_seven_bit_range() -> None:
    pleth = [f.pleth for f in frames_of(Cms50Stream(97, 72, seed=2).frames(10 * FPS))]
    assert min(pleth) < 20
    assert max(pleth) > 90
    assert all(0 <= p <= 127 for p in pleth)


def test_finger_out_sends_the_sentinels_and_finger_in_searches_first() -> None:
    stream = Cms50Stream(95, 66, seed=4)
    decoder = Cms50Decoder(strip_samples=FPS)
    assert len(spo2_readings(decoder.feed(stream.frames(FPS)))) == FPS
    stream.finger_out()
    assert not stream.finger_present
    readings = decoder.feed(stream.frames(2 * FPS))
    assert spo2_readings(readings) == []
    assert [r.flags for r in readings] == [frozenset({Flag.FINGER_OUT, Flag.SEARCHING})] * 2
    assert decoder.last_frame == FINGER_OUT_FRAME
    stream.finger_in()
    searching = frames_of(stream.frames(ACQUIRE_FRAMES))
    assert all(f.searching and (f.spo2, f.pulse_rate) == (127, 255) and not f.beep for f in searching)
    assert len({f.pleth for f in searching}) > 10  # the waveform comes back before the numbers
    readings = spo2_readings(decoder.feed(stream.frames(FPS)))
    assert len(readings) == FPS
    assert all(r.flags == frozenset() for r in readings)


def test_set_points_are_validated() -> None:
    stream = Cms50Stream(97, 72, seed=1)
    for bad_spo2 in (0, 101):
        with pytest.raises(ValueError, match="spo2"):
            stream.spo2 = bad_spo2
    for bad_pulse in (0, 255):
        with pytest.raises(ValueError, match="pulse_rate"):
            stream.pulse_rate = bad_pulse
    with pytest.raises(ValueError, match="pulse_rate"):
        Cms50Stream(97, 300)
    with pytest.raises(ValueError):
        stream.frames(-1)


# --- signals


def test_pulse_shape_joins_beats_and_peaks_at_the_systolic_phase() -> None:
    assert pulse_shape(0.0) == pytest.approx(0.0, abs=1e-12)
    assert pulse_shape(1.0) == pytest.approx(0.0, abs=1e-12)
    peak = max(range(1001), key=lambda i: pulse_shape(i / 1000)) / 1000
    assert peak == pytest.approx(SYSTOLIC_PHASE, abs=0.01)
    assert pulse_shape(peak) == pytest.approx(1.0, abs=1e-3)
    # The dicrotic wave: after the notch the shape rises again.
    tail = [pulse_shape(i / 100) for i in range(30, 60)]
    assert any(b > a for a, b in itertools.pairwise(tail))


def test_ppg_generator_marks_one_peak_per_beat() -> None:
    generator = PpgGenerator(60.0, 60.0, random.Random(0), period_jitter=0.0, amplitude_jitter=0.0, noise=0.0)
    samples = generator.take(600)
    peaks = [i for i, s in enumerate(samples) if s.peak]
    assert len(peaks) == 10
    assert {b - a for a, b in itertools.pairwise(peaks)} == {60}
    assert all(samples[i].value == max(s.value for s in samples[i - 5 : i + 6]) for i in peaks[1:-1])
