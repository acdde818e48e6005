"""hut-sim plays the HealthyPi 5 (board = "v5"): a 128 Hz stream the v5 decoder reads as set, the player and the
CLI that choose it, and the stream over a real pty."""

from __future__ import annotations

import itertools
import os
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from healthhut.drivers.healthypi import HealthyPi5Decoder, HealthyPi5Frame
from healthhut.drivers.healthypi.codec_v5 import PACKET_LEN, parse_packet
from healthhut.firmware_sim.catalog import playable
from healthhut.firmware_sim.cli import main
from healthhut.firmware_sim.encoders.healthypi5 import HealthyPi5Stream
from healthhut.firmware_sim.faults import Fault
from healthhut.firmware_sim.players import PLAYERS
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.protocol import Kind, Reading
from tests.firmware_sim.test_cli import hut_sim, open_when_there, read_until_gone

FS = 128


def frames_of(data: bytes) -> list[HealthyPi5Frame]:
    return [parse_packet(data[i : i + PACKET_LEN]) for i in range(0, len(data), PACKET_LEN)]


def numbers(readings: list[Reading], kind: Kind, name: str) -> list[float]:
    out = []
    for reading in readings:
        if reading.kind is kind:
            value = reading.values[name].value
            assert not isinstance(value, tuple)
            out.append(value)
    return out


def r_waves(readings: list[Reading]) -> tuple[list[int], list[float]]:
    """Indices of the R waves in the first ECG strip, and its samples in µV."""
    strip = next(r.strip for r in readings if r.kind is Kind.ECG and r.strip is not None)
    assert strip.fs == FS and strip.unit == "uV" and strip.channel == "ecg"
    microvolts = [raw * strip.gain for raw in strip.raw]
    inner = range(1, len(microvolts) - 1)
    peaks = [i for i in inner if microvolts[i] > 600 and microvolts[i - 1] <= microvolts[i] > microvolts[i + 1]]
    return peaks, microvolts


def test_stream_is_deterministic_for_a_seed_and_continuous_across_calls() -> None:
    whole = HealthyPi5Stream(72, 97, seed=5).frames(400)
    stream = HealthyPi5Stream(72, 97, seed=5)
    assert stream.frames(1) + stream.frames(127) + stream.frames(0) + stream.frames(272) == whole
    assert len(whole) == 400 * PACKET_LEN
    assert HealthyPi5Stream(72, 97, seed=6).frames(400) != whole


def test_numbers_appear_as_the_firmware_gives_them() -> None:
    frames = frames_of(HealthyPi5Stream(80, 96, respiration_rate=12, temperature=36.8, seed=2).frames(20 * FS))
    first = {
        name: next(i for i, f in enumerate(frames) if getattr(f, name))
        for name in ("heart_rate", "spo2", "temperature_centi", "respiration_rate")
    }
    # Temperature once a second; SpO2 after 4 s of PPG; heart rate on the 4th beat (0.75 s apart at 80/min,
    # the first R wave 0.2 s in); the respiration rate after 10 s and 3 breaths (5 s each at 12/min): at 15 s.
    assert first["temperature_centi"] == FS - 1
    assert first["spo2"] == 4 * FS - 1
    assert abs(first["heart_rate"] - (0.2 + 3 * 0.75) * FS) <= 0.2 * FS  # each beat jitters by 3 %
    assert abs(first["respiration_rate"] - 15 * FS) <= 2
    last = frames[-1]
    assert abs(last.heart_rate - 80) <= 1 and abs(last.spo2 - 96) <= 1 and abs(last.respiration_rate - 12) <= 1
    assert abs(last.temperature_centi - 3680) <= 3
    assert {f.bioz_skip for f in frames} == {0}
    # BioZ is read at 64 Hz and held between reads.
    assert all(frames[i].bioz == frames[i + 1].bioz for i in range(0, len(frames) - 1, 2))


def test_decoder_reads_what_the_stream_was_set_to() -> None:
    decoder = HealthyPi5Decoder(strip_samples=10 * FS)
    readings = decoder.feed(HealthyPi5Stream(66, 95, temperature=36.2, seed=3).frames(30 * FS))
    assert (decoder.frames_ok, decoder.frame_errors, decoder.packets_unsupported) == (30 * FS, 0, 0)
    heart = numbers(readings, Kind.HEART_RATE, "heart_rate")
    spo2 = numbers(readings, Kind.SPO2, "spo2")
    temperature = numbers(readings, Kind.BODY_TEMPERATURE, "temperature")
    assert len(heart) >= 26 and all(abs(hr - 66) <= 1 for hr in heart)
    assert len(spo2) == 27 and all(abs(s - 95) <= 1 for s in spo2)
    assert len(temperature) == 30 and all(abs(t - 36.2) <= 0.035 for t in temperature)
    strips = [(r.kind, r.strip.channel, len(r.strip.raw)) for r in readings if r.strip is not None]
    assert strips == [(Kind.ECG, "ecg", 1280), (Kind.PPG, "red", 1280), (Kind.PPG, "ir", 1280)] * 3


def test_ecg_has_the_set_rate_and_a_millivolt_r_wave_at_the_boards_gain() -> None:
    readings = HealthyPi5Decoder(strip_samples=30 * FS).feed(HealthyPi5Stream(75, 97, seed=4).frames(30 * FS))
    peaks, microvolts = r_waves(readings)
    assert abs(len(peaks) - 75 / 2) <= 2
    assert abs(statistics.median(b - a for a, b in itertools.pairwise(peaks)) - 60 / 75 * FS) <= 3
    assert 800 < max(microvolts) < 1400


def test_ppg_ratio_of_ratios_gives_the_set_spo2() -> None:
    for spo2 in (99, 90):
        frames = frames_of(HealthyPi5Stream(70, spo2, seed=spo2).frames(20 * FS))
        red = [f.ppg_red for f in frames]
        ir = [f.ppg_ir for f in frames]
        ratio = statistics.covariance(red, ir) / statistics.variance(ir) * statistics.mean(ir) / statistics.mean(red)
        assert abs((110 - 25 * ratio) - spo2) < 1.5, spo2


@pytest.mark.parametrize("kwargs", [{"heart_rate": 20}, {"spo2": 101}, {"respiration_rate": 2}, {"ecg_gain": 50}])
def test_set_points_are_validated(kwargs: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"heart_rate": 70, "spo2": 97, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs)).replace("ecg_", "ECG ")):
        HealthyPi5Stream(**settings)


def test_the_player_is_the_healthypis_v5_board() -> None:
    healthypi = PLAYERS["healthypi"]
    v5 = healthypi.for_protocol("v5")
    assert healthypi.for_protocol("v4") is healthypi and healthypi.for_protocol(None) is healthypi
    assert (v5.frames_per_second, v5.frame_size, v5.default_protocol, v5.setting) == (FS, 29, "v5", "board")
    resident = SCENARIOS["normal-adult"]
    assert len(v5.new_source(resident, 1).frames(3)) == 3 * PACKET_LEN
    spot = HealthyPi5Decoder(numerics_every=1).feed(v5.spot_frame(resident, random.Random(1)))
    assert [r.kind for r in spot] == [Kind.HEART_RATE, Kind.SPO2, Kind.BODY_TEMPERATURE]
    assert abs(numbers(spot, Kind.HEART_RATE, "heart_rate")[0] - resident.pulse_rate) <= 1
    assert v5.faults == frozenset({Fault.UNPLUG_MID_FRAME, Fault.GARBAGE, Fault.OUT_OF_RANGE})
    with pytest.raises(KeyError, match="healthypi has no board 'v6'; it has: v4, v5"):
        healthypi.for_protocol("v6")
    assert playable("healthypi").protocols.keys() == {"v5"} and playable("healthypi").setting == "board"


def test_list_and_help_show_the_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert any(
        line.strip().startswith("--board v5: ProtoCentral HealthyPi 5") for line in capsys.readouterr().out.splitlines()
    )
    with pytest.raises(SystemExit):
        main(["play", "--help"])
    assert "hut-sim play healthypi --board v5 " in capsys.readouterr().out


def test_played_over_a_pty_the_v5_decoder_reads_the_heart_rate_and_ecg_asked_for(tmp_path: Path) -> None:
    link = tmp_path / "healthypi5"
    with hut_sim(
        "play", "healthypi", "--board", "v5", "--link", str(link), "--pulse-rate", "64", "--spo2", "95",
        "--seed", "8", "--duration", "30",
    ) as sim:  # fmt: skip
        assert sim.stdout is not None
        assert sim.stdout.readline().strip() == str(link)
        fd = open_when_there(link)
        try:
            data, unplugged = read_until_gone(fd, within=7.0)
        finally:
            os.close(fd)
    assert not unplugged
    decoder = HealthyPi5Decoder(strip_samples=5 * FS, numerics_every=FS // 2)
    readings = decoder.feed(data)
    # Seven seconds at 128 packets/s, whole packets from the first one read on; none of the v4's.
    assert abs(decoder.frames_ok - 7 * FS) <= 0.1 * 7 * FS
    assert (decoder.frame_errors, decoder.packets_unsupported) == (0, 0)
    heart = numbers(readings, Kind.HEART_RATE, "heart_rate")
    assert heart and all(abs(hr - 64) <= 1 for hr in heart)
    spo2 = numbers(readings, Kind.SPO2, "spo2")
    assert spo2 and all(abs(s - 95) <= 1 for s in spo2)
    peaks, microvolts = r_waves(readings)
    assert abs(len(peaks) - 64 / 60 * 5) <= 1.5
    assert abs(statistics.median(b - a for a, b in itertools.pairwise(peaks)) - 60 / 64 * FS) <= 4
    assert 800 < max(microvolts) < 1400
