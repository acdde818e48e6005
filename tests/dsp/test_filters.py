"""Streaming filters: any chunking gives the whole-signal output, and the designs do what they claim."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from scipy import signal as sps

from healthhut.gateway.dsp.filters import (
    DERIVATIVE_SOS,
    ECG_BAND_HZ,
    PPG_BAND_HZ,
    QRS_BAND_HZ,
    FirFilter,
    SosFilter,
    butter_bandpass_sos,
    ecg_conditioning_sos,
    moving_average_taps,
    notch_sos,
    ppg_sos,
    qrs_derivative_sos,
    sosfilt_kernel,
    sosfilt_zi,
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
def test_streaming_filter_is_scipys_cascade_started_at_the_first_sample(fs: float) -> None:
    # The same compiled loop as scipy.signal.sosfilt, so the same numbers from the same state; the steady
    # start state (closed form here, a linear solve in SciPy) agrees to rounding.
    sos = ecg_conditioning_sos(fs)
    x = sample_signal(fs)
    reference, _ = sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos) * x[0])
    ours = SosFilter(sos).process(x)
    assert np.max(np.abs(ours - reference)) <= 1e-6 * np.max(np.abs(reference))
    np.testing.assert_array_equal(_kernel_output(sos, x), sps.sosfilt(sos, x))


def _kernel_output(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    y = x[None].copy()
    sosfilt_kernel(np.ascontiguousarray(sos), y, np.zeros((1, sos.shape[0], 2)))
    return y[0]


RATES = [50.0, 60.0, 100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 300.0, 360.0, 500.0, 512.0, 1000.0, 2000.0, 8000.0]


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("band", [ECG_BAND_HZ, QRS_BAND_HZ, PPG_BAND_HZ])
def test_band_pass_design_is_scipys_butterworth(fs: float, band: tuple[float, float]) -> None:
    # Closed form in numpy so that scipy.signal need not be imported; same sections, same order, same gain.
    high = min(band[1], 0.9 * fs / 2)
    reference = sps.butter(2, [band[0], high], btype="bandpass", output="sos", fs=fs)
    np.testing.assert_allclose(butter_bandpass_sos(fs, *band), reference, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sosfilt_zi(reference), sps.sosfilt_zi(reference), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_notch_design_is_scipys_iirnotch(fs: float, mains_hz: float) -> None:
    ours = notch_sos(fs, mains_hz)
    if mains_hz >= 0.95 * fs / 2:
        assert ours.shape == (0, 6)
        return
    b, a = sps.iirnotch(mains_hz, 30.0, fs=fs)
    np.testing.assert_allclose(ours, sps.tf2sos(b, a), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sosfilt_zi(ours), sps.sosfilt_zi(ours), rtol=1e-9, atol=1e-12)


def test_derivative_sections_are_pan_tompkins_five_point_derivative() -> None:
    taps = np.polymul(*(np.array(section[:3]) for section in DERIVATIVE_SOS))
    np.testing.assert_array_equal(taps, [0.25, 0.125, 0.0, -0.125, -0.25])
    np.testing.assert_allclose(DERIVATIVE_SOS, sps.tf2sos(taps, [1.0]), atol=1e-15)


def test_the_waveform_path_imports_neither_scipy_signal_nor_its_dependencies() -> None:
    # scipy.signal loads stats, optimize and interpolate (about a second and 77 MiB on SciPy 1.17).
    probe = (
        "import json, sys; import healthhut.gateway.dsp.ecg, healthhut.gateway.dsp.ppg; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('scipy.'))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True).stdout)
    assert "scipy.signal._sosfilt" in loaded
    assert [m for m in loaded if m.startswith(("scipy.signal", "scipy.stats", "scipy.optimize", "scipy.linalg"))] == [
        "scipy.signal._sosfilt"
    ]


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
