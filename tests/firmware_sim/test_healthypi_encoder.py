"""The HealthyPi simulator: exact inverse of the driver's parser, and a stream the driver decodes as set."""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers import available_drivers
from healthhut.drivers.healthypi import ECG_UV_PER_COUNT, HealthyPiDecoder, HealthyPiFrame, parse_packet
from healthhut.firmware_sim.cli import main
from healthhut.firmware_sim.encoders.healthypi import (
    LEADS_OFF_STATUS,
    HealthyPiStream,
    encode_packet,
    ratio_of_ratios,
)
from healthhut.firmware_sim.players import PLAYERS
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.firmware_sim.signals import EcgGenerator
from healthhut.protocol import Flag, Kind, Quantity, Reading

FS = 125
PACKET = 27

frames_strategy = st.builds(
    HealthyPiFrame,
    ecg=st.integers(-0x8000, 0x7FFF),
    respiration=st.integers(-0x8000, 0x7FFF),
    ppg_ir=st.integers(-(2**31), 2**31 - 1),
    ppg_red=st.integers(-(2**31), 2**31 - 1),
    temperature_centi=st.integers(0, 0xFFFF),
    respiration_rate=st.integers(0, 255),
    spo2=st.integers(0, 255),
    heart_rate=st.integers(0, 255),
    bp_systolic_placeholder=st.integers(0, 255),
    bp_diastolic_placeholder=st.integers(0, 255),
    lead_status=st.integers(0, 255),
)


def frames_of(data: bytes) -> list[HealthyPiFrame]:
    return [parse_packet(data[i : i + PACKET]) for i in range(0, len(data), PACKET)]


def number(quantity: Quantity) -> float:
    assert not isinstance(quantity.value, tuple)
    return quantity.value


def of_kind(readings: list[Reading], kind: Kind) -> list[Reading]:
    return [reading for reading in readings if reading.kind is kind]


# --- encode_packet


@settings(max_examples=500, database=None, deadline=None)
@given(frames_strategy)
def test_parse_inverts_encode(frame: HealthyPiFrame) -> None:
    assert parse_packet(encode_packet(frame)) == frame


@settings(max_examples=500, database=None, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_encode_inverts_parse(payload: bytes) -> None:
    data = b"\x0a\xfa\x14\x00\x02" + payload + b"\x00\x0b"
    assert encode_packet(parse_packet(data)) == data


def test_encode_packet_bytes() -> None:
    frame = HealthyPiFrame(-2, 300, 150_000, -5, 3650, 16, 98, 64, 80, 120, 0x0C)
    assert encode_packet(frame) == bytes.fromhex(
        "0a fa 14 00 02  fe ff 2c 01  f0 49 02 00 fb ff ff ff  42 0e  10 62 40 50 78 0c  00 0b"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("ecg", 0x8000), ("respiration", -0x8001), ("ppg_ir", 2**31), ("temperature_centi", -1), ("spo2", 256)],
)
def test_encode_rejects_values_that_do_not_fit(field: str, value: int) -> None:
    changes: dict[str, Any] = {field: value}
    frame = replace(HealthyPiFrame(0, 0, 0, 0, 0, 0, 0, 0, 80, 120, 0), **changes)
    with pytest.raises(ValueError, match=f"{field} must be in -?[0-9]+..[0-9]+, not {value}"):
        encode_packet(frame)


# --- HealthyPiStream


def test_stream_is_deterministic_for_a_seed_and_continuous_across_calls() -> None:
    whole = HealthyPiStream(72, 97, seed=5).frames(400)
    stream = HealthyPiStream(72, 97, seed=5)
    assert stream.frames(1) + stream.frames(124) + stream.frames(0) + stream.frames(275) == whole
    assert len(whole) == 400 * PACKET
    assert HealthyPiStream(72, 97, seed=6).frames(400) != whole


def test_numbers_appear_on_the_firmware_schedule() -> None:
    frames = frames_of(HealthyPiStream(80, 96, respiration_rate=12, temperature=36.8, seed=2).frames(30 * FS))
    first = {
        name: next(i for i, f in enumerate(frames) if getattr(f, name))
        for name in ("heart_rate", "spo2", "temperature_centi", "respiration_rate")
    }
    # Heart rate: a 2 s window, then 5 R peaks at 80/min (0.75 s apart).
    assert 250 + 4 * 0.75 * FS <= first["heart_rate"] <= 250 + 6 * 0.75 * FS
    assert first["spo2"] == 1999
    assert first["temperature_centi"] == 1250
    assert abs(first["respiration_rate"] - (2 * 5 * FS - 1)) <= 2  # two breaths of 5 s
    last = frames[-1]
    assert abs(last.heart_rate - 80) <= 1 and abs(last.spo2 - 96) <= 1 and abs(last.respiration_rate - 12) <= 1
    assert abs(last.temperature_centi - 3680) <= 5
    assert {(f.bp_systolic_placeholder, f.bp_diastolic_placeholder, f.lead_status) for f in frames} == {(80, 120, 0)}


def test_decoder_reads_what_the_stream_was_set_to() -> None:
    decoder = HealthyPiDecoder(strip_samples=10 * FS)
    readings = decoder.feed(HealthyPiStream(66, 95, temperature=36.2, seed=3).frames(40 * FS))
    assert (decoder.frames_ok, decoder.frame_errors) == (40 * FS, 0)
    heart = [number(r.values["heart_rate"]) for r in of_kind(readings, Kind.HEART_RATE)]
    spo2 = [number(r.values["spo2"]) for r in of_kind(readings, Kind.SPO2)]
    temperature = [number(r.values["temperature"]) for r in of_kind(readings, Kind.BODY_TEMPERATURE)]
    assert len(heart) >= 34 and all(abs(hr - 66) <= 1 for hr in heart)
    assert len(spo2) == 25 and all(abs(s - 95) <= 1 for s in spo2)
    assert len(temperature) == 30 and all(abs(t - 36.2) <= 0.05 for t in temperature)
    ecg = of_kind(readings, Kind.ECG)
    assert [(len(r.strip.raw), r.strip.unit, r.flags) for r in ecg if r.strip] == [(1250, "uV", frozenset())] * 4


def test_ecg_strip_has_the_set_rate_and_a_millivolt_r_wave() -> None:
    readings = HealthyPiDecoder(strip_samples=30 * FS).feed(HealthyPiStream(75, 97, seed=4).frames(30 * FS))
    strip = of_kind(readings, Kind.ECG)[0].strip
    assert strip is not None
    microvolts = [raw * strip.gain for raw in strip.raw]
    inner = range(1, len(microvolts) - 1)
    r_waves = [i for i in inner if microvolts[i] > 600 and microvolts[i - 1] <= microvolts[i] > microvolts[i + 1]]
    assert abs(len(r_waves) - 75 / 2) <= 2
    assert 800 < max(microvolts) < 1400


def test_ppg_ratio_of_ratios_gives_the_set_spo2() -> None:
    for spo2 in (99, 92, 85):
        frames = frames_of(HealthyPiStream(70, spo2, seed=spo2).frames(20 * FS))
        red = [f.ppg_red for f in frames]
        ir = [f.ppg_ir for f in frames]
        # AC_red / AC_ir as the slope of red against IR: the noise of each channel averages out.
        ac_ratio = statistics.covariance(red, ir) / statistics.variance(ir)
        ratio = ac_ratio * statistics.mean(ir) / statistics.mean(red)
        assert abs((110 - 25 * ratio) - spo2) < 1.5, spo2
        assert ratio_of_ratios(spo2) == pytest.approx((110 - spo2) / 25)


def test_leads_off_zero_the_ecg_and_flag_the_strip() -> None:
    stream = HealthyPiStream(70, 97, seed=7)
    decoder = HealthyPiDecoder(strip_samples=2 * FS, numerics_every=FS)
    decoder.feed(stream.frames(16 * FS))  # SpO2 is there from 16 s on
    stream.leads_off()
    assert not stream.leads_attached
    off = stream.frames(4 * FS)
    assert {(f.ecg, f.respiration, f.heart_rate, f.respiration_rate, f.lead_status) for f in frames_of(off)} == {
        (0, 0, 0, 0, LEADS_OFF_STATUS)
    }
    readings = decoder.feed(off)
    assert [r.flags for r in of_kind(readings, Kind.ECG)] == [frozenset({Flag.LEAD_OFF})] * 2
    assert of_kind(readings, Kind.HEART_RATE) == []
    assert len(of_kind(readings, Kind.SPO2)) == 4  # the PPG side goes on
    stream.leads_on()
    assert all(f.lead_status == 0 for f in frames_of(stream.frames(FS)))


@pytest.mark.parametrize("kwargs", [{"heart_rate": 20}, {"spo2": 101}, {"respiration_rate": 2}, {"temperature": 51.0}])
def test_set_points_are_validated(kwargs: dict[str, Any]) -> None:
    settings_: dict[str, Any] = {"heart_rate": 70, "spo2": 97, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        HealthyPiStream(**settings_)


def test_ecg_generator_beats_at_the_set_rate() -> None:
    generator = EcgGenerator(250.0, 60.0, random.Random(0), rr_jitter=0.0, noise_uv=0.0)
    samples = generator.take(2500)
    peaks = [i for i, s in enumerate(samples) if s.r_peak]
    assert len(peaks) == 10
    assert {b - a for a, b in itertools.pairwise(peaks)} == {250}
    assert all(samples[i].value_uv == max(s.value_uv for s in samples[i - 5 : i + 6]) for i in peaks)


# --- players


def test_players_offer_healthypi_and_the_nine_byte_cms50() -> None:
    healthypi = PLAYERS["healthypi"]
    assert healthypi.frames_per_second == FS
    resident = SCENARIOS["normal-adult"].with_values(spo2=97, pulse_rate=70)
    assert len(healthypi.new_source(resident, 1).frames(3)) == 3 * PACKET
    cms50 = PLAYERS["contec-cms50"]
    assert cms50.for_protocol(None) is cms50 and cms50.for_protocol("5-byte") is cms50
    nine = cms50.for_protocol("9-byte")
    assert nine.frames_per_second == 60 and nine.default_protocol == "9-byte"
    assert nine.new_source(resident, 1).frames(60) == b""  # it waits for the start command
    with pytest.raises(KeyError, match="has no protocol '7-byte'; it has: 5-byte, 9-byte"):
        cms50.for_protocol("7-byte")
    assert abs(ECG_UV_PER_COUNT - 24.6175) < 1e-4


def test_cli_lists_the_players_and_refuses_an_unknown_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing if not line.startswith(" ")] == available_drivers()
    assert any("--protocol 9-byte" in line for line in listing)
    with pytest.raises(SystemExit) as caught:
        main(["play", "healthypi", "--protocol", "9-byte"])
    assert caught.value.code == 2
    assert "healthypi has no board '9-byte'" in capsys.readouterr().err
