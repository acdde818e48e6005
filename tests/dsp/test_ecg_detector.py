"""R-peak detection: EC57 accuracy on MIT-BIH record 100, chunking invariance, fixed latency, robustness."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from scipy import signal as sps

from healthhut.gateway.dsp._detector import _ENVELOPE
from healthhut.gateway.dsp.ecg import EcgDetector, detect_r_peaks
from healthhut.gateway.dsp.filters import qrs_derivative_sos
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


def pushes(detector: EcgDetector, pieces: list[np.ndarray]) -> list[list[int]]:
    """What every push returned, then what the flush returned."""
    return [detector.push(p).tolist() for p in pieces] + [detector.flush().tolist()]


def weak_beats(record_100: tuple[np.ndarray, np.ndarray, float]) -> tuple[np.ndarray, np.ndarray]:
    """Two minutes of record 100 with every fifth beat shrunk to 55 % about its baseline (a tapered 200 ms
    stretch): such a beat stays under the threshold, and the search-back recovers it."""
    signal, reference, fs = record_100
    x = signal[: round(120 * fs)].copy()
    half = round(0.1 * fs)
    taper = 1 - 0.45 * np.hanning(2 * half)
    beats = reference[(reference > half) & (reference < x.size - half)]
    for r in beats[::5]:
        stretch = x[r - half : r + half]
        baseline = np.median(stretch)
        x[r - half : r + half] = baseline + (stretch - baseline) * taper
    return x, beats


@pytest.mark.parametrize("case", ["muscle noise", "weak beats"])
def test_waiting_to_process_changes_no_push(
    record_100: tuple[np.ndarray, np.ndarray, float], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    # A push only stores its samples while no peak can fall due; each push must still return exactly what
    # filtering and examining every push returns. Muscle noise brings noise peaks and the threshold decay,
    # weak beats the search-back, whose recovered beats may be due as soon as they are found.
    fs = record_100[2]
    x = noisy_stretch(record_100, 300)[0] if case == "muscle noise" else weak_beats(record_100)[0]
    rng = np.random.default_rng(SEED)
    print("seed", SEED)
    cuts = np.cumsum(rng.integers(1, 200, size=x.size))
    chunkings = [np.split(x, cuts[cuts < x.size]), np.array_split(x, x.size // 90)]
    waited = [pushes(EcgDetector(fs), pieces) for pieces in chunkings]
    monkeypatch.setattr(EcgDetector, "_needs_processing", lambda self: True)
    assert [pushes(EcgDetector(fs), pieces) for pieces in chunkings] == waited
    assert sum(map(len, waited[1])) > 140


def test_search_back_recovers_weak_beats(
    record_100: tuple[np.ndarray, np.ndarray, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, beats = weak_beats(record_100)
    fs = record_100[2]
    found = detect_r_peaks(x, fs)
    score = score_beats(beats, found, fs, start_s=0)
    assert score.false_negatives <= 1  # the last beat, too close to the end to be confirmed
    assert score.false_positives == 0
    monkeypatch.setattr(EcgDetector, "_search_back_between", lambda self, p: None)
    assert found.size - detect_r_peaks(x, fs).size >= 20


def test_block_scan_finds_the_candidates_of_the_sample_by_sample_scan(
    record_100: tuple[np.ndarray, np.ndarray, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fast scan looks only at block maxima; the reference examines every local maximum. Both must put
    # the same candidates, in the same order, to the decision rules: beats, noise peaks, T waves.
    fs = record_100[2]
    signals = [noisy_stretch(record_100, 300)[0], signal_with_pause(record_100), weak_beats(record_100)[0]]
    considered: list[tuple[int, float]] = []
    consider = EcgDetector._consider

    def logged(self: EcgDetector, p: int, amplitude: float) -> None:
        considered.append((p, amplitude))
        consider(self, p, amplitude)

    def run(x: np.ndarray, chunk: int) -> tuple[list[int], list[tuple[int, float]]]:
        detector = EcgDetector(fs)
        peaks = [*(detector.push(x[i : i + chunk]) for i in range(0, x.size, chunk)), detector.flush()]
        found = (np.concatenate(peaks).tolist(), considered.copy())
        considered.clear()
        return found

    monkeypatch.setattr(EcgDetector, "_consider", logged)
    fast = [run(x, chunk) for x in signals for chunk in (90, x.size)]
    monkeypatch.setattr(EcgDetector, "_scan_blocks", EcgDetector._scan_exact)
    exact = [run(x, chunk) for x in signals for chunk in (90, x.size)]
    assert fast == exact
    assert sum(len(c) for _, c in fast) > sum(len(p) for p, _ in fast) + 50  # noise peaks were examined too


def signal_with_pause(record_100: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
    signal, _, fs = record_100
    rng = np.random.default_rng(SEED)
    x = signal[: round(60 * fs)].copy()
    x[round(20 * fs) : round(26 * fs)] = x[round(20 * fs)] + 0.005 * rng.standard_normal(round(6 * fs))
    return x


def test_the_envelope_is_the_moving_sum_of_the_squared_derivative_for_any_chunking(
    record_100: tuple[np.ndarray, np.ndarray, float],
) -> None:
    # The running sum is re-summed at fixed absolute indices, so 200 s (over 2^16 samples) stays exact.
    x, fs = noisy_stretch(record_100, 200)
    whole = EcgDetector(fs, history=x.size)
    whole.push(x)
    whole.flush()
    _, conditioned, derivative = whole.recent(0, x.size)
    qrs = qrs_derivative_sos(fs)
    reference, _ = sps.sosfilt(qrs, conditioned, zi=sps.sosfilt_zi(qrs) * conditioned[0])
    np.testing.assert_allclose(derivative, reference, rtol=0, atol=1e-9 * np.max(np.abs(reference)))
    moving_sum = np.convolve(derivative * derivative, np.ones(round(0.15 * fs)))[: x.size]
    np.testing.assert_allclose(envelope(whole), moving_sum, rtol=0, atol=1e-9 * moving_sum.max())
    chunked = EcgDetector(fs, history=x.size)
    for piece in np.array_split(x, 3001):
        chunked.push(piece)
    chunked.flush()
    np.testing.assert_array_equal(envelope(chunked), envelope(whole))


def envelope(detector: EcgDetector) -> np.ndarray:
    """The detector's envelope row from the first sample on (internal: the tests check how it is computed)."""
    return np.asarray(detector._buffer[_ENVELOPE, -detector._offset : detector.pushed - detector._offset])
