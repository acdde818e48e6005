"""Streaming filters: any chunking gives the whole-signal output, and the designs do what they claim."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import signal as sps

from healthhut.gateway.dsp.filters import (
    FirFilter,
    SosFilter,
    ecg_conditioning_sos,
    moving_average_taps,
    ppg_sos,
    qrs_derivative_sos,
)

SEED = 20240601


def random_chunks(x: np.ndarray, rng: np.random.Generator, largest: int) -> list[np.ndarray]:
    cuts = np.cumsum(rng.integers(1, largest, size=x.size))
    cuts = cuts[cuts < x.size]
    return np.split(x, cuts)


def sample_signal(fs: float, seconds: float = 20.0) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    t = np.arange(round(seconds * fs)) / fs
    # A DC offset, wander, a 10 Hz tone, mains and noise: every part of the response is exercised.
    return np.asarray(
        1500
        + 300 * np.sin(2 * np.pi * 0.2 * t)
        + 200 * np.sin(2 * np.pi * 10 * t)
        + 80 * np.sin(2 * np.pi * 50 * t)
        + 20 * rng.standard_normal(t.size)
    )


@pytest.mark.parametrize("fs", [125.0, 250.0, 360.0, 1000.0])
@pytest.mark.parametrize("design", [ecg_conditioning_sos, qrs_derivative_sos, ppg_sos])
def test_chunked_output_equals_whole_signal_output(fs: float, design: Callable[[float], np.ndarray]) -> None:
    sos = design(fs)
    x = sample_signal(fs)
    whole = SosFilter(sos).process(x)
    rng = np.random.default_rng(SEED)
    print("seed", SEED)
    for largest in (3, 50, 2000):
        streaming = SosFilter(sos)
        chunked = np.concatenate([streaming.process(c) for c in random_chunks(x, rng, largest)])
        np.testing.assert_array_equal(chunked, whole)
    one_by_one = SosFilter(sos)
    stretch = x[: round(2 * fs)]
    np.testing.assert_array_equal(np.concatenate([one_by_one.process(v[None]) for v in stretch]), whole[: stretch.size])


@pytest.mark.parametrize("fs", [125.0, 360.0, 1000.0, 2000.0])
def test_streaming_filter_matches_scipy_cascade_started_at_the_first_sample(fs: float) -> None:
    # Whether it runs as one direct-form lfilter or as sections, the result is the SOS cascade's.
    sos = ecg_conditioning_sos(fs)
    x = sample_signal(fs)
    reference, _ = sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos) * x[0])
    ours = SosFilter(sos).process(x)
    assert np.max(np.abs(ours - reference)) <= 1e-6 * np.max(np.abs(reference))


def test_fir_filter_chunked_equals_whole_and_lfilter() -> None:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal(5000)
    taps = moving_average_taps(54)
    whole = FirFilter(taps).process(x)
    streaming = FirFilter(taps)
    chunked = np.concatenate([streaming.process(c) for c in random_chunks(x, rng, 100)])
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_allclose(whole, sps.lfilter(taps, 1.0, x), rtol=0, atol=1e-12)


def gain_at(sos: np.ndarray, fs: float, hz: float) -> float:
    _, h = sps.sosfreqz(sos, worN=[hz], fs=fs)
    return float(np.abs(h[0]))


@pytest.mark.parametrize("fs", [250.0, 360.0, 500.0])
def test_ecg_conditioning_passes_the_ecg_band_and_removes_wander_and_mains(fs: float) -> None:
    sos = ecg_conditioning_sos(fs)
    assert 0.95 < gain_at(sos, fs, 10.0) <= 1.0
    assert gain_at(sos, fs, 0.5) == pytest.approx(1 / np.sqrt(2), abs=0.05)  # the -3 dB edge
    assert gain_at(sos, fs, 0.05) < 0.02
    assert gain_at(sos, fs, 50.0) < 0.01


def test_mains_notch_is_configurable_to_60_hz() -> None:
    fs = 360.0
    fifty, sixty = ecg_conditioning_sos(fs, 50.0), ecg_conditioning_sos(fs, 60.0)
    assert gain_at(sixty, fs, 60.0) < 0.01
    assert gain_at(sixty, fs, 50.0) > 0.3
    assert gain_at(fifty, fs, 60.0) > 0.3


def test_notch_is_left_out_when_mains_is_not_below_nyquist() -> None:
    # 100 Hz sampling cannot represent 50 Hz mains; the 40 Hz low-pass edge is pulled under Nyquist.
    assert ecg_conditioning_sos(100.0).shape == (2, 6)
    assert ecg_conditioning_sos(125.0).shape == (3, 6)


def test_a_constant_input_produces_no_start_up_transient() -> None:
    out = SosFilter(ecg_conditioning_sos(360.0)).process(np.full(1000, 1234.5))
    assert np.max(np.abs(out)) < 1e-9 * 1234.5
