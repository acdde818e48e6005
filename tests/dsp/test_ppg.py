"""PPG path: pulse detection and rate (BIDMC against ECG), perfusion index, SpO2 by ratio of ratios, flags."""

from __future__ import annotations

import numpy as np
import pytest

from healthhut.gateway.dsp.ecg import analyze_ecg
from healthhut.gateway.dsp.ppg import (
    LINEAR_110_25,
    MAXIM_RD117,
    PpgAnalyzer,
    PulseDetector,
    analyze_ppg,
    detect_pulses,
    estimate_spo2,
    perfusion_index,
)
from healthhut.protocol import Flag
from tests.conftest import data_dir

FS = 100.0
SEED = 1974  # Aoyagi's pulse oximeter


def pulse_wave(beats: np.ndarray, duration: float, fs: float = FS) -> np.ndarray:
    """A unit-height pleth, systole upwards: a systolic and a dicrotic wave per beat."""
    t = np.arange(round(duration * fs)) / fs
    x = np.zeros(t.size)
    for beat in beats:
        for offset, amplitude, width in ((0.18, 1.0, 0.07), (0.42, 0.35, 0.09)):
            centre = beat + offset
            lo, hi = max(0, int((centre - 5 * width) * fs)), min(t.size, int((centre + 5 * width) * fs) + 1)
            x[lo:hi] += amplitude * np.exp(-0.5 * ((t[lo:hi] - centre) / width) ** 2)
    return x


def regular_beats(n: int = 40, rr: float = 0.8) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(SEED)
    beats = 0.3 + np.concatenate(([0.0], np.cumsum(rr + 0.02 * rng.standard_normal(n))))
    return beats, float(beats[-1] + 0.5)


def bidmc_01() -> tuple[np.ndarray, np.ndarray, float]:
    """Subject 01: PLETH and lead II. The ECG is normalised; 1 unit is taken as 1 mV (QRS about 0.5)."""
    data = np.genfromtxt(data_dir() / "bidmc" / "bidmc_01_Signals.csv", delimiter=",", skip_header=1)
    fs = 1.0 / float(np.median(np.diff(data[:, 0])))
    return data[:, 2], data[:, 5] * 1000.0, fs


def test_bidmc_pulse_rate_agrees_with_heart_rate_in_8_s_windows_of_good_quality() -> None:
    pleth, ecg, fs = bidmc_01()
    window = round(8 * fs)
    compared = []
    for start in range(0, pleth.size - window + 1, window):
        heart = analyze_ecg(ecg[start : start + window], fs)
        pulse = analyze_ppg(pleth[start : start + window], fs)
        if heart.fit_for_alerting and pulse.fit_for_alerting:
            assert heart.heart_rate is not None and pulse.pulse_rate is not None
            compared.append(abs(heart.heart_rate - pulse.pulse_rate))
    print(
        f"{len(compared)} of {pleth.size // window} windows good in both; largest difference {max(compared):.2f} /min"
    )
    assert len(compared) >= 0.8 * (pleth.size // window)
    assert max(compared) <= 3.0


@pytest.mark.parametrize("fs", [60.0, 100.0, 125.0])  # CMS50 pleth, HealthyPi-like, BIDMC
def test_pulses_are_found_where_they_are(fs: float) -> None:
    beats, duration = regular_beats()
    rng = np.random.default_rng(SEED)
    pleth = 60 + 40 * pulse_wave(beats, duration, fs) + 0.5 * rng.standard_normal(round(duration * fs))
    pulses = detect_pulses(pleth, fs) / fs
    systolic = beats + 0.18
    # Every systolic peak (the last may be cut off by the end of the strip), and nothing else.
    nearest = np.abs(pulses[:, None] - systolic[None, :]).min(axis=1)
    assert np.max(nearest) < 0.03
    assert systolic.size - 1 <= pulses.size <= systolic.size


def test_any_chunking_gives_the_same_pulses() -> None:
    pleth, _, fs = bidmc_01()
    whole = detect_pulses(pleth, fs)
    rng = np.random.default_rng(SEED)
    print("seed", SEED)
    for largest in (5, 300):
        detector = PulseDetector(fs)
        cuts = np.cumsum(rng.integers(1, largest, size=pleth.size))
        pieces = np.split(pleth, cuts[cuts < pleth.size])
        np.testing.assert_array_equal(np.concatenate([*(detector.push(p) for p in pieces), detector.flush()]), whole)
    detector = PulseDetector(fs)
    stretch = round(15 * fs)
    found = [detector.push(pleth[i : i + 1]) for i in range(stretch)]
    np.testing.assert_array_equal(np.concatenate([*found, detector.push(pleth[stretch:]), detector.flush()]), whole)


def test_every_pulse_comes_back_exactly_latency_samples_after_it() -> None:
    beats, duration = regular_beats(20)
    pleth = pulse_wave(beats, duration)
    detector = PulseDetector(FS)
    delays = []
    for i in range(pleth.size):
        delays += [i - int(p) for p in detector.push(pleth[i : i + 1])]
    assert len(delays) >= 15
    assert set(delays) == {detector.latency_samples}


def raw_channels(modulation_ir: float, ratio: float, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Raw photodiode intensities: light falls in systole by ``modulation`` of its DC level."""
    beats, duration = regular_beats(30)
    wave = pulse_wave(beats, duration)
    rng = np.random.default_rng(seed)
    ir = 80_000 * (1 - modulation_ir * wave) + 20 * rng.standard_normal(wave.size)
    red = 50_000 * (1 - ratio * modulation_ir * wave) + 20 * rng.standard_normal(wave.size)
    return red, ir


@pytest.mark.parametrize(("ratio", "spo2"), [(0.35, 100.0), (0.6, 95.0), (1.0, 85.0), (1.6, 70.0)])
def test_spo2_follows_the_documented_linear_calibration(ratio: float, spo2: float) -> None:
    red, ir = raw_channels(0.02, ratio)
    estimate = estimate_spo2(red, ir, FS)
    assert estimate.ratio == pytest.approx(ratio, abs=0.01)
    assert estimate.spo2 == pytest.approx(spo2, abs=0.5)
    assert estimate.calibration == LINEAR_110_25.name
    assert estimate.flags == frozenset()


def test_a_sensor_specific_calibration_can_be_given() -> None:
    red, ir = raw_channels(0.02, 0.6)
    estimate = estimate_spo2(red, ir, FS, calibration=MAXIM_RD117)
    assert estimate.spo2 == pytest.approx(-45.060 * 0.36 + 30.354 * 0.6 + 94.845, abs=0.5)


def test_a_ratio_outside_the_calibration_gives_no_spo2() -> None:
    estimate = estimate_spo2(*raw_channels(0.02, 3.0), FS)
    assert estimate.spo2 is None
    assert estimate.flags == frozenset({Flag.OUT_OF_RANGE})


def test_uncorrelated_channels_are_motion_not_saturation() -> None:
    red, _ = raw_channels(0.02, 0.6)
    _, ir = raw_channels(0.02, 0.6)
    beats, duration = regular_beats(30, rr=0.55)  # the IR pulsation at another rate: not the same arteries
    ir = 80_000 * (1 - 0.02 * pulse_wave(beats, duration * 2)[: ir.size])
    estimate = estimate_spo2(red, ir, FS)
    assert estimate.spo2 is None
    assert Flag.MOTION_ARTIFACT in estimate.flags


def test_perfusion_index_and_low_perfusion() -> None:
    _, ir = raw_channels(0.02, 0.6)
    assert perfusion_index(ir, FS) == pytest.approx(2.0, abs=0.1)
    summary = analyze_ppg(ir, FS, raw_intensity=True)
    assert summary.perfusion_index == pytest.approx(2.0, abs=0.1)
    assert summary.flags == frozenset()
    _, weak = raw_channels(0.002, 0.6)
    low = analyze_ppg(weak, FS, raw_intensity=True)
    assert low.perfusion_index == pytest.approx(0.2, abs=0.02)
    assert low.flags == frozenset({Flag.LOW_PERFUSION})
    assert not low.fit_for_alerting
    assert estimate_spo2(*raw_channels(0.002, 0.6), FS).flags == frozenset({Flag.LOW_PERFUSION})


def test_a_display_pleth_has_a_rate_and_no_perfusion_index() -> None:
    beats, duration = regular_beats()
    summary = analyze_ppg(60 + 40 * pulse_wave(beats, duration), FS, rails=(0.0, 127.0))
    assert summary.pulse_rate == pytest.approx(75.0, abs=1.0)
    assert summary.perfusion_index is None
    assert summary.flags == frozenset()
    assert summary.fit_for_alerting


def test_motion_is_flagged_and_unfit() -> None:
    beats, duration = regular_beats()
    rng = np.random.default_rng(SEED)
    t = np.arange(round(duration * FS)) / FS
    moves = sum(
        60 * np.exp(-0.5 * ((t - c) / 0.3) ** 2) * np.sin(2 * np.pi * rng.uniform(0.7, 2.5) * (t - c))
        for c in rng.uniform(2, duration - 2, 12)
    )
    summary = analyze_ppg(60 + 40 * pulse_wave(beats, duration) + moves, FS)
    assert Flag.MOTION_ARTIFACT in summary.flags
    assert not summary.fit_for_alerting


def test_a_flat_pleth_has_no_rate_and_is_unfit() -> None:
    summary = analyze_ppg(np.full(round(20 * FS), 64.0), FS)
    assert summary.pulse_rate is None
    assert summary.flags == frozenset({Flag.LOW_SIGNAL_QUALITY})
    assert not summary.fit_for_alerting


def test_chunked_ppg_analysis_gives_the_same_summary() -> None:
    _, ir = raw_channels(0.02, 0.6)
    whole = analyze_ppg(ir, FS, raw_intensity=True)
    analyzer = PpgAnalyzer(FS, raw_intensity=True)
    for start in range(0, ir.size, 37):
        analyzer.push(ir[start : start + 37])
    assert analyzer.finish() == whole
