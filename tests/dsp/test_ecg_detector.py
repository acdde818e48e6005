"""R-peak detection: EC57 accuracy on MIT-BIH record 100, chunking invariance, fixed latency, robustness."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from healthhut.gateway.dsp.ecg import EcgDetector, detect_r_peaks
from healthhut.gateway.dsp.scoring import BEAT_SYMBOLS, score_beats
from tests.conftest import data_dir

SEED = 1985  # Pan & Tompkins


def mitdb_100() -> tuple[np.ndarray, np.ndarray, float]:
    """Lead MLII in mV, the reference beats (beat annotations only) and the sampling rate."""
    path = str(data_dir() / "mitdb" / "100")
    record = wfdb.rdrecord(path)
    annotation = wfdb.rdann(path, "atr")
    beats = np.array([s for s, sym in zip(annotation.sample, annotation.symbol, strict=True) if sym in BEAT_SYMBOLS])
    return record.p_signal[:, record.sig_name.index("MLII")], beats, float(record.fs)


@pytest.fixture(scope="module")
def record_100() -> tuple[np.ndarray, np.ndarray, float]:
    return mitdb_100()


def test_record_100_meets_ec57_sensitivity_and_positive_predictivity(
    record_100: tuple[np.ndarray, np.ndarray, float],
) -> None:
    signal, reference, fs = record_100
    score = score_beats(reference, detect_r_peaks(signal, fs), fs)
    print(f"record 100 from 5 min: {score}, Se {score.sensitivity:.4%}, +P {score.positive_predictivity:.4%}")
    assert score.sensitivity >= 0.999
    assert score.positive_predictivity >= 0.999


def noisy_stretch(record_100: tuple[np.ndarray, np.ndarray, float], seconds: float) -> tuple[np.ndarray, float]:
    """Record 100 with muscle-like noise, so that the detector's search-back and decay rules run too."""
    signal, _, fs = record_100
    x = signal[: round(seconds * fs)]
    rng = np.random.default_rng(SEED)
    return x + 0.15 * rng.standard_normal(x.size) * (1 + np.sin(np.arange(x.size) / fs)), fs


def test_any_chunking_gives_the_same_peaks(record_100: tuple[np.ndarray, np.ndarray, float]) -> None:
    x, fs = noisy_stretch(record_100, 300)
    whole = detect_r_peaks(x, fs)
    rng = np.random.default_rng(SEED)
    print("seed", SEED)
    for largest in (7, 400, 5000):
        detector = EcgDetector(fs)
        cuts = np.cumsum(rng.integers(1, largest, size=x.size))
        pieces = np.split(x, cuts[cuts < x.size])
        chunked = np.concatenate([*(detector.push(p) for p in pieces), detector.flush()])
        np.testing.assert_array_equal(chunked, whole)


def test_one_sample_at_a_time_gives_the_same_peaks(record_100: tuple[np.ndarray, np.ndarray, float]) -> None:
    x, fs = noisy_stretch(record_100, 60)
    whole = detect_r_peaks(x, fs)
    detector = EcgDetector(fs)
    stretch = round(20 * fs)
    found = [detector.push(x[i : i + 1]) for i in range(stretch)]
    found += [detector.push(x[stretch:]), detector.flush()]
    np.testing.assert_array_equal(np.concatenate(found), whole)


def test_every_peak_comes_back_exactly_latency_samples_after_it(
    record_100: tuple[np.ndarray, np.ndarray, float],
) -> None:
    signal, _, fs = record_100
    detector = EcgDetector(fs)
    delays = []
    for i in range(round(30 * fs)):
        delays += [i - int(peak) for peak in detector.push(signal[i : i + 1])]
    assert len(delays) >= 30
    assert set(delays) == {detector.latency_samples}
    assert detector.latency_s == pytest.approx(1.45, abs=0.01)


def test_detection_does_not_depend_on_the_unit(record_100: tuple[np.ndarray, np.ndarray, float]) -> None:
    signal, _, fs = record_100
    x = signal[: round(120 * fs)]
    np.testing.assert_array_equal(detect_r_peaks(x * 1000.0, fs), detect_r_peaks(x, fs))


def test_a_shrunken_qrs_is_found_again_within_a_few_seconds(
    record_100: tuple[np.ndarray, np.ndarray, float],
) -> None:
    # A re-seated electrode: from 30 s on the ECG is a fifth of its size (a twenty-fifth in energy).
    signal, reference, fs = record_100
    x = signal[: round(60 * fs)].copy()
    x[round(30 * fs) :] *= 0.2
    peaks = detect_r_peaks(x, fs)
    after = reference[(reference > 34 * fs) & (reference < 59 * fs)]
    score = score_beats(after, peaks[(peaks > 33.9 * fs) & (peaks < 58.8 * fs)], fs, start_s=0)
    assert score.false_negatives == 0
    assert score.false_positives == 0


def test_a_quiet_trace_gets_no_beats(record_100: tuple[np.ndarray, np.ndarray, float]) -> None:
    # Asystole on a connected lead: 10 s of 5 µV noise after 20 s of ECG (in mV).
    signal, _, fs = record_100
    rng = np.random.default_rng(SEED)
    quiet = signal[round(20 * fs)] + 0.005 * rng.standard_normal(round(10 * fs))
    peaks = detect_r_peaks(np.concatenate((signal[: round(20 * fs)], quiet)), fs)
    assert not np.any(peaks > 20.2 * fs)


def test_60_hz_mains_is_removed_when_configured(record_100: tuple[np.ndarray, np.ndarray, float]) -> None:
    signal, reference, fs = record_100
    x = signal[: round(600 * fs)]
    t = np.arange(x.size) / fs
    hum = 1.0 * np.sin(2 * np.pi * 60 * t)  # about twice the QRS amplitude
    score = score_beats(reference[reference < x.size], detect_r_peaks(x + hum, fs, mains_hz=60.0), fs)
    assert score.sensitivity >= 0.999
    assert score.positive_predictivity >= 0.999


def test_the_detector_refuses_a_bad_rate_and_use_after_flush() -> None:
    with pytest.raises(ValueError, match="fs"):
        EcgDetector(0)
    detector = EcgDetector(250)
    detector.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        detector.push(np.zeros(10))
