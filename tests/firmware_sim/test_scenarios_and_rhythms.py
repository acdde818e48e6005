"""Clinical scenarios and heart rhythms: AF that the gateway's own detector calls AF, pauses, and a regular sinus."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from healthhut.drivers.healthypi import HealthyPiDecoder
from healthhut.firmware_sim.encoders.healthypi import SAMPLE_RATE_HZ, HealthyPiStream
from healthhut.firmware_sim.scenarios import SCENARIOS, Scenario, scenario
from healthhut.firmware_sim.signals import (
    AF_MIN_RR_S,
    DEFAULT_PAUSE_S,
    BeatClock,
    EcgGenerator,
    PpgGenerator,
    Rhythm,
)
from healthhut.gateway.dsp.ecg import detect_r_peaks
from healthhut.gateway.dsp.rhythm import irregularity
from healthhut.protocol import Kind


def rr_intervals(clock: BeatClock, count: int) -> list[float]:
    return [clock.next_rr() for _ in range(count)]


def test_the_scenario_table_holds_what_the_brief_asks() -> None:
    expected = {
        "normal-adult": {"systolic": 120, "diastolic": 80, "pulse_rate": 72, "spo2": 97},
        "hypertensive-crisis": {"systolic": 185, "diastolic": 125},
        "hypotension": {"systolic": 85, "diastolic": 50},
        "hypoxaemia": {"spo2": 88},
        "fever": {"temperature": 39.2},
        "infant-normal": {"pulse_rate": 140},
        "hypoglycaemia": {"glucose": 3.2},
        "tachycardia": {"pulse_rate": 130},
        "atrial-fibrillation": {"rhythm": Rhythm.AF},
        "bradycardia": {"pulse_rate": 42},
        "sinus-pauses": {"pause_every": 8},
    }
    assert set(SCENARIOS) == set(expected)
    for name, values in expected.items():
        assert {key: getattr(SCENARIOS[name], key) for key in values} == values, name
    assert SCENARIOS["hypertensive-crisis"].mean_arterial == 145


def test_values_override_a_scenario_and_are_checked() -> None:
    fever = scenario("fever")
    assert fever.with_values(spo2=93, pulse_rate=None) == Scenario(**{**_fields(fever), "spo2": 93})
    with pytest.raises(ValueError, match=r"spo2 must be in 50\.\.100, not 101"):
        fever.with_values(spo2=101)
    with pytest.raises(ValueError, match="diastolic 130 must be below systolic 120"):
        fever.with_values(diastolic=130)
    with pytest.raises(ValueError, match="a scenario has no value colour"):
        fever.with_values(colour="red")
    with pytest.raises(KeyError, match="no scenario 'flu'; known: normal-adult"):
        scenario("flu")


def _fields(value: Scenario) -> dict[str, object]:
    return {name: getattr(value, name) for name in Scenario.__slots__}


def test_af_is_irregularly_irregular_to_the_gateways_detector_and_sinus_is_not() -> None:
    af = rr_intervals(BeatClock(110, random.Random(1), rhythm=Rhythm.AF), 64)
    sinus = rr_intervals(BeatClock(110, random.Random(1)), 64)
    assert irregularity(af).irregularly_irregular
    assert not irregularity(sinus).irregularly_irregular
    assert statistics.fmean(af) == pytest.approx(60 / 110, rel=0.1)
    assert min(af) >= AF_MIN_RR_S


def test_a_pause_replaces_every_nth_interval() -> None:
    intervals = rr_intervals(BeatClock(60, random.Random(2), jitter=0.0, pause_every=4), 12)
    assert intervals == [1.0, 1.0, 1.0, DEFAULT_PAUSE_S] * 3
    with pytest.raises(ValueError, match="at least 2"):
        BeatClock(60, random.Random(2), pause_every=1)


def test_the_ecg_of_a_pause_is_a_flat_line_between_normal_beats() -> None:
    fs = 250.0
    samples = EcgGenerator(fs, 60, random.Random(3), rr_jitter=0.0, noise_uv=0.0, pause_every=3).take(int(8 * fs))
    peaks = [i for i, s in enumerate(samples) if s.r_peak]
    gaps = [(b - a) / fs for a, b in itertools.pairwise(peaks)]
    assert gaps == [1.0, 1.0, DEFAULT_PAUSE_S, 1.0, 1.0]
    pause_start = peaks[2]
    # Half a second after the R wave the T wave is over; the rest of the pause is baseline.
    assert max(abs(s.value_uv) for s in samples[pause_start + int(0.6 * fs) : peaks[3] - int(0.3 * fs)]) < 5


def test_the_pulse_of_a_pause_is_one_normal_pulse_and_a_flat_line() -> None:
    fs = 60.0
    samples = PpgGenerator(fs, 60, random.Random(4), period_jitter=0, amplitude_jitter=0, noise=0, pause_every=2).take(
        int(6 * fs)
    )
    peaks = [i for i, s in enumerate(samples) if s.peak]
    assert [(b - a) / fs for a, b in itertools.pairwise(peaks)] == pytest.approx([1.0, DEFAULT_PAUSE_S, 1.0], abs=0.02)
    # After the pulse of the beat before the pause (1.5 mean intervals at most), the line stays at zero.
    assert max(s.value for s in samples[peaks[1] + int(1.4 * fs) : peaks[2] - int(0.2 * fs)]) == pytest.approx(0.0)


def test_the_ecg_in_af_has_no_p_wave_and_the_gateways_r_peak_detector_finds_irregular_beats() -> None:
    fs = SAMPLE_RATE_HZ
    stream = HealthyPiStream(100, 95, seed=7, rhythm=Rhythm.AF)
    decoder = HealthyPiDecoder(strip_samples=int(60 * fs))
    [ecg] = [r for r in decoder.feed(stream.frames(int(60 * fs))) if r.kind is Kind.ECG]
    assert ecg.strip is not None
    peaks = detect_r_peaks(ecg.strip.raw, fs)
    rr = [(b - a) / fs for a, b in itertools.pairwise(peaks)]
    assert 60 / statistics.fmean(rr) == pytest.approx(100, rel=0.1)
    assert irregularity(rr).irregularly_irregular
    sinus = EcgGenerator(250.0, 60, random.Random(0), rr_jitter=0.0, noise_uv=0.0).take(250)
    fibrillating = EcgGenerator(250.0, 60, random.Random(0), rr_jitter=0.0, noise_uv=0.0, rhythm=Rhythm.AF).take(250)
    # At 70 ms, where the P wave peaks in sinus rhythm, AF shows only its small f waves.
    p_at = int(0.07 * 250)
    assert sinus[p_at].value_uv > 140
    assert abs(fibrillating[p_at].value_uv) < 60


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_plays_on_the_serial_devices(name: str) -> None:
    from healthhut.firmware_sim.players import PLAYERS

    resident = SCENARIOS[name]
    for player in (PLAYERS["contec-cms50"], PLAYERS["contec-cms50"].for_protocol("9-byte"), PLAYERS["healthypi"]):
        source = player.new_source(resident, 1)
        if hasattr(source, "receive"):
            source.receive(player.serial_link.start_command)
        assert len(source.frames(60)) == 60 * player.frame_size
