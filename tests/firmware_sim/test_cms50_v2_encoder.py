"""The CMS50 9-byte simulator: exact inverse of the driver's parser, a stream that obeys the host, a pty."""

from __future__ import annotations

import os
import statistics
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers.contec_cms50 import SERIAL_LINKS, Cms50V2Decoder, Cms50V2Frame, parse_realtime
from healthhut.drivers.contec_cms50.codec_v2 import (
    INFORM_CONNECTED_COMMAND,
    START_REALTIME_COMMAND,
    STOP_REALTIME_COMMAND,
)
from healthhut.firmware_sim.encoders.contec_cms50_v2 import (
    ACQUIRE_FRAMES,
    FINGER_OUT_FRAME,
    KEEPALIVE_TIMEOUT_FRAMES,
    Cms50V2Stream,
    HostCommandReader,
    encode_realtime,
)
from healthhut.firmware_sim.links import PtyLink
from healthhut.protocol import Flag, Kind, Quantity, Reading

FPS = 60

frames_strategy = st.builds(
    Cms50V2Frame,
    signal_strength=st.integers(0, 15),
    searching_too_long=st.booleans(),
    spo2_dropping=st.booleans(),
    beep=st.booleans(),
    probe_error=st.booleans(),
    pleth=st.integers(0, 127),
    searching=st.booleans(),
    bar_graph=st.integers(0, 15),
    pi_invalid=st.booleans(),
    reserved=st.integers(0, 7),
    pulse_rate=st.integers(0, 255),
    spo2=st.integers(0, 255),
    perfusion_index_raw=st.integers(0, 0xFFFF),
)
# Every byte string the protocol allows as real-time data: 01, then eight bytes with bit 7 set.
wire_packets = st.tuples(st.just(0x01), *[st.integers(0x80, 0xFF)] * 8).map(bytes)


def frames_of(data: bytes) -> list[Cms50V2Frame]:
    return [parse_realtime(data[i : i + 9]) for i in range(0, len(data), 9)]


def number(quantity: Quantity) -> float:
    assert not isinstance(quantity.value, tuple)
    return quantity.value


def spo2_readings(readings: list[Reading]) -> list[Reading]:
    return [reading for reading in readings if reading.kind is Kind.SPO2]


def started(stream: Cms50V2Stream) -> Cms50V2Stream:
    stream.receive(START_REALTIME_COMMAND)
    return stream


# --- encode_realtime


@settings(max_examples=500, database=None, deadline=None)
@given(frames_strategy)
def test_parse_inverts_encode(frame: Cms50V2Frame) -> None:
    assert parse_realtime(encode_realtime(frame)) == frame


@settings(max_examples=500, database=None, deadline=None)
@given(wire_packets)
def test_encode_inverts_parse(data: bytes) -> None:
    assert encode_realtime(parse_realtime(data)) == data


def test_finger_out_frame_is_what_the_real_device_sends() -> None:
    # The last packets of AndreasZachariae's recording (captures/9byte-andreaszachariae-finger-out).
    assert encode_realtime(FINGER_OUT_FRAME) == bytes.fromhex("01 e1 84 c0 90 80 80 ff ff")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("signal_strength", 16),
        ("pleth", 128),
        ("bar_graph", -1),
        ("reserved", 8),
        ("pulse_rate", 256),
        ("spo2", 256),
        ("perfusion_index_raw", 0x10000),
    ],
)
def test_encode_rejects_values_that_do_not_fit(field: str, value: int) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=f"{field} must be in 0..[0-9]+, not {value}"):
        encode_realtime(replace(FINGER_OUT_FRAME, **changes))


# --- host commands


def test_host_command_reader_resynchronises_on_type_bytes() -> None:
    reader = HostCommandReader()
    noisy = b"\x81\x7d\x81" + START_REALTIME_COMMAND + b"\x01\xff" + INFORM_CONNECTED_COMMAND[:4]
    assert reader.feed(noisy) == [0xA1]
    assert reader.feed(INFORM_CONNECTED_COMMAND[4:]) == [0xAF]
    assert reader.feed(bytes.fromhex("04 80 f5 f3 e5 f2 a0 a0 a0") + STOP_REALTIME_COMMAND) == [0xA2]


def test_stream_waits_for_the_start_command() -> None:
    stream = Cms50V2Stream(97, 72, seed=1)
    assert not stream.streaming
    assert stream.frames(FPS) == b""
    stream.receive(START_REALTIME_COMMAND[:5])
    assert stream.frames(1) == b""
    stream.receive(START_REALTIME_COMMAND[5:])
    assert len(stream.frames(FPS)) == FPS * 9


def test_stream_stops_without_keepalive_and_on_stop() -> None:
    stream = started(Cms50V2Stream(97, 72, seed=2))
    assert len(stream.frames(KEEPALIVE_TIMEOUT_FRAMES - 1)) == (KEEPALIVE_TIMEOUT_FRAMES - 1) * 9
    stream.receive(INFORM_CONNECTED_COMMAND)
    assert len(stream.frames(KEEPALIVE_TIMEOUT_FRAMES)) == KEEPALIVE_TIMEOUT_FRAMES * 9
    assert not stream.streaming
    assert stream.frames(10) == b""
    # The gateway's keep-alive restarts a stream that stopped.
    stream.receive(SERIAL_LINKS["9-byte"].keepalive)
    assert len(stream.frames(10)) == 90
    stream.receive(STOP_REALTIME_COMMAND)
    assert stream.frames(10) == b""


def test_stream_without_require_start_streams_at_once_and_never_times_out() -> None:
    stream = Cms50V2Stream(97, 72, seed=3, require_start=False)
    assert len(stream.frames(2 * KEEPALIVE_TIMEOUT_FRAMES)) == 2 * KEEPALIVE_TIMEOUT_FRAMES * 9


def test_stream_is_deterministic_for_a_seed_and_continuous_across_calls() -> None:
    whole = started(Cms50V2Stream(97, 72, seed=5)).frames(300)
    stream = started(Cms50V2Stream(97, 72, seed=5))
    assert stream.frames(1) + stream.frames(59) + stream.frames(0) + stream.frames(240) == whole
    assert started(Cms50V2Stream(97, 72, seed=6)).frames(300) != whole


# --- what the driver makes of it


def test_decoder_reproduces_the_numerics_the_stream_was_set_to() -> None:
    decoder = Cms50V2Decoder()
    readings = decoder.feed(started(Cms50V2Stream(96, 130, seed=11)).frames(20 * FPS))
    numerics = spo2_readings(readings)
    assert len(numerics) == 20 * FPS
    spo2 = [number(r.values["spo2"]) for r in numerics]
    pulse = [number(r.values["pulse_rate"]) for r in numerics]
    assert set(spo2) <= {95, 96, 97} and abs(statistics.mean(spo2) - 96) < 0.5
    assert set(pulse) <= set(range(128, 133)) and abs(statistics.mean(pulse) - 130) < 1.0
    assert all(reading.flags == frozenset() for reading in readings)
    assert [len(r.strip.raw) for r in readings if r.strip is not None] == [600, 600]
    assert (decoder.frames_ok, decoder.frame_errors, decoder.packets_other) == (20 * FPS, 0, 0)


def test_beeps_follow_the_pulse_rate() -> None:
    frames = frames_of(Cms50V2Stream(97, 90, seed=8, require_start=False).frames(60 * FPS))
    assert abs(sum(f.beep for f in frames) - 90) <= 3
    assert statistics.mean(f.pleth for f in frames if f.beep) > statistics.mean(f.pleth for f in frames) + 30


def test_finger_out_then_in_looks_like_the_real_capture() -> None:
    stream = started(Cms50V2Stream(95, 66, seed=4))
    decoder = Cms50V2Decoder(strip_samples=FPS)
    assert len(spo2_readings(decoder.feed(stream.frames(FPS)))) == FPS
    stream.finger_out()
    readings = decoder.feed(stream.frames(2 * FPS))
    assert spo2_readings(readings) == []
    assert [r.flags for r in readings] == [frozenset({Flag.PROBE_ERROR, Flag.FINGER_OUT})] * 2
    stream.finger_in()
    acquiring = frames_of(stream.frames(ACQUIRE_FRAMES))
    # As in the real capture: the waveform runs while pulse rate and SpO2 stay 0, with no status bit.
    assert all((f.pulse_rate, f.spo2, f.searching, f.probe_error) == (0, 0, False, False) for f in acquiring)
    assert len({f.pleth for f in acquiring}) > 10
    assert len(spo2_readings(decoder.feed(stream.frames(FPS)))) == FPS


def test_set_points_are_validated() -> None:
    stream = Cms50V2Stream(97, 72, seed=1)
    with pytest.raises(ValueError, match="spo2"):
        stream.spo2 = 101
    with pytest.raises(ValueError, match="pulse_rate"):
        stream.pulse_rate = 0
    with pytest.raises(ValueError):
        stream.frames(-1)


# --- over a pty, as the gateway sees it


def read_available(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_pty_link_carries_the_start_command_and_the_stream() -> None:
    stream = Cms50V2Stream(97, 72, seed=9)
    with PtyLink() as link:
        gateway = os.open(link.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            stream.receive(link.read())
            link.write(stream.frames(FPS))
            assert read_available(gateway) == b""
            os.write(gateway, SERIAL_LINKS["9-byte"].start_command)
            stream.receive(link.read())
            assert link.write(stream.frames(10)) == 90
            readings = Cms50V2Decoder().feed(read_available(gateway))
        finally:
            os.close(gateway)
    assert len(readings) == 10
    assert all(abs(number(r.values["pulse_rate"]) - 72) <= 2 for r in readings)
