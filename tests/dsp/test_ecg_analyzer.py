"""The per-strip ECG summary: heart rate, rhythm findings, quality flags, on real records and synthetic strips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import wfdb

from healthhut.gateway.dsp.ecg import EcgAnalyzer, EcgDetector, EcgSummary, analyze_ecg
from healthhut.gateway.dsp.rhythm import RhythmFinding, RhythmLimits
from healthhut.gateway.dsp.scoring import BEAT_SYMBOLS
from healthhut.protocol import Flag
from tests.conftest import data_dir

FS = 250.0
SEED = 2015
# Gaussian waves of one lead II beat relative to the R peak: (offset s, amplitude µV, width s).
WAVES = (
    (-0.20, 120.0, 0.025),
    (-0.035, -100.0, 0.010),
    (0.0, 1100.0, 0.011),
    (0.035, -250.0, 0.011),
    (0.28, 300.0, 0.045),
)


def synthetic_ecg(r_times: np.ndarray, duration: float, noise_uv: float = 8.0, seed: int = SEED) -> np.ndarray:
    """A clean single-lead ECG in µV with beats at ``r_times`` (s), amplifier noise and breathing wander."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration * FS)) / FS
    x = np.zeros(t.size)
    for r in r_times:
        for offset, amplitude, width in WAVES:
            centre = r + offset
            lo, hi = max(0, int((centre - 5 * width) * FS)), min(t.size, int((centre + 5 * width) * FS) + 1)
            x[lo:hi] += amplitude * np.exp(-0.5 * ((t[lo:hi] - centre) / width) ** 2)
    return np.asarray(x + noise_uv * rng.standard_normal(t.size) + 50 * np.sin(2 * np.pi * 0.25 * t))


def beat_times(rr: np.ndarray, start: float = 0.5) -> np.ndarray:
    return start + np.concatenate(([0.0], np.cumsum(rr)))


def sinus_rr(n: int = 40, seed: int = SEED) -> np.ndarray:
    """75 /min with respiratory sinus arrhythmia (period five beats) and a little jitter."""
    rng = np.random.default_rng(seed)
    return 0.8 + 0.03 * np.sin(np.arange(n) * 2 * np.pi / 5) + 0.005 * rng.standard_normal(n)


def strip(rr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = beat_times(rr)
    return synthetic_ecg(r, r[-1] + 1.0), r


def test_a_sinus_strip_is_clean_regular_and_fit() -> None:
    x, r = strip(sinus_rr())
    summary = analyze_ecg(x, FS)
    assert summary.heart_rate == pytest.approx(75.0, abs=1.0)
    assert summary.rhythm == frozenset()
    assert summary.flags == frozenset()
    assert summary.fit_for_alerting
    assert summary.signal_quality == 1.0
    assert len(summary.r_peaks) == r.size
    assert np.max(np.abs(np.array(summary.r_peaks) / FS - r)) < 0.01
    assert len(summary.rr_intervals_ms) == r.size - 1


@pytest.mark.parametrize(
    ("gap_s", "findings"), [(3.0, {RhythmFinding.PAUSE}), (5.0, {RhythmFinding.PAUSE, RhythmFinding.ASYSTOLE})]
)
def test_a_pause_is_found_and_measured(gap_s: float, findings: set[RhythmFinding]) -> None:
    rr = sinus_rr()
    rr[18] = gap_s
    summary = analyze_ecg(strip(rr)[0], FS)
    assert summary.rhythm == frozenset(findings)
    assert summary.longest_pause_s == pytest.approx(gap_s, abs=0.02)
    assert summary.fit_for_alerting


def test_a_2_4_s_gap_is_not_a_pause() -> None:
    rr = sinus_rr()
    rr[18] = 2.4
    summary = analyze_ecg(strip(rr)[0], FS)
    assert summary.rhythm == frozenset()
    assert summary.longest_pause_s is None


def test_asystole_to_the_end_of_the_strip_is_reported_and_fit() -> None:
    r = beat_times(sinus_rr())
    summary = analyze_ecg(synthetic_ecg(r[r < 15], 30.0), FS)
    assert summary.rhythm == frozenset({RhythmFinding.PAUSE, RhythmFinding.ASYSTOLE})
    assert summary.longest_pause_s is not None and summary.longest_pause_s > 14.0
    assert summary.flags == frozenset()
    assert summary.fit_for_alerting


def test_a_flat_lead_is_lead_off_not_a_pause() -> None:
    x, _ = strip(sinus_rr())
    start = round(15 * FS)
    x[start : start + round(3 * FS)] = x[start]
    summary = analyze_ecg(x, FS)
    assert summary.rhythm == frozenset()
    assert summary.flags == frozenset({Flag.LEAD_OFF, Flag.LOW_SIGNAL_QUALITY})
    assert not summary.fit_for_alerting


def test_a_clipped_input_is_lead_off_when_the_rails_are_known() -> None:
    x, _ = strip(sinus_rr())
    x[round(12 * FS) : round(12.2 * FS)] = 5000.0
    summary = analyze_ecg(x, FS, rails=(-5000.0, 5000.0))
    assert Flag.LEAD_OFF in summary.flags
    assert not summary.fit_for_alerting


def test_bradycardia_and_tachycardia() -> None:
    brady = analyze_ecg(strip(np.full(25, 1.4))[0], FS)
    tachy = analyze_ecg(strip(np.full(60, 0.5))[0], FS)
    assert brady.heart_rate == pytest.approx(42.9, abs=0.5)
    assert brady.rhythm == frozenset({RhythmFinding.BRADYCARDIA})
    assert tachy.heart_rate == pytest.approx(120.0, abs=0.5)
    assert tachy.rhythm == frozenset({RhythmFinding.TACHYCARDIA})
    # Limits are configurable, e.g. for children, whose resting rates are higher.
    child = analyze_ecg(strip(np.full(60, 0.5))[0], FS, limits=RhythmLimits(tachycardia_bpm=140.0))
    assert child.rhythm == frozenset()


def test_an_irregularly_irregular_strip_suggests_af() -> None:
    rng = np.random.default_rng(SEED)
    summary = analyze_ecg(strip(rng.uniform(0.4, 1.1, 45))[0], FS)
    assert summary.rhythm == frozenset({RhythmFinding.POSSIBLE_AF})
    assert summary.flags == frozenset({Flag.IRREGULAR_PULSE})
    assert summary.fit_for_alerting
    assert all(segment.irregularly_irregular for segment in summary.irregularity)


def test_chunked_analysis_gives_the_same_summary() -> None:
    rr = sinus_rr(60)
    rr[30] = 3.2
    x, _ = strip(rr)
    whole = analyze_ecg(x, FS)
    rng = np.random.default_rng(SEED)
    analyzer = EcgAnalyzer(FS)
    cuts = np.cumsum(rng.integers(1, 200, size=x.size))
    streamed = [analyzer.push(piece) for piece in np.split(x, cuts[cuts < x.size])]
    summary = analyzer.finish()
    assert summary == whole
    assert list(np.concatenate(streamed)) == list(summary.r_peaks)[: sum(p.size for p in streamed)]
    with pytest.raises(RuntimeError, match="finished"):
        analyzer.push(x[:10])


def test_windows_are_graded_at_the_same_pushes_when_the_detector_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    # The detector stores short chunks until a beat may fall due; window grading must not notice.
    rr = sinus_rr(60)
    rr[30] = 3.2
    x, _ = strip(rr)

    def graded_after_each_push() -> tuple[list[int], list[list[int]], EcgSummary]:
        analyzer = EcgAnalyzer(FS)
        counts, peaks = [], []
        for start in range(0, x.size, 62):
            peaks.append(analyzer.push(x[start : start + 62]).tolist())
            counts.append(len(analyzer.windows))
        return counts, peaks, analyzer.finish()

    waited = graded_after_each_push()
    monkeypatch.setattr(EcgDetector, "_needs_processing", lambda self: True)
    assert graded_after_each_push() == waited
    assert waited[0][-1] == 5


def test_record_100_is_a_clean_regular_strip() -> None:
    path = str(data_dir() / "mitdb" / "100")
    record = wfdb.rdrecord(path)
    annotation = wfdb.rdann(path, "atr")
    reference = [s for s, sym in zip(annotation.sample, annotation.symbol, strict=True) if sym in BEAT_SYMBOLS]
    summary = analyze_ecg(record.p_signal[:, record.sig_name.index("MLII")] * 1000.0, record.fs)
    reference_rate = 60.0 / float(np.median(np.diff(reference)) / record.fs)
    print(
        f"record 100: {summary.heart_rate:.1f} /min (reference {reference_rate:.1f}), quality {summary.signal_quality}"
    )
    assert summary.heart_rate == pytest.approx(reference_rate, abs=0.5)
    # 33 atrial premature beats in 30 minutes are not atrial fibrillation.
    assert summary.rhythm == frozenset()
    assert summary.flags == frozenset()
    assert summary.signal_quality == 1.0


@pytest.mark.parametrize("lead", ["II", "V"])
def test_cinc_2015_a103l_false_asystole_alarm_gives_no_pause(lead: str) -> None:
    # The bedside monitor called asystole; experts judged it false: the ECG is noise and a flat lead.
    record = wfdb.rdrecord(str(data_dir() / "cinc2015" / "a103l"))
    summary = analyze_ecg(record.p_signal[:, record.sig_name.index(lead)] * 1000.0, record.fs)
    print(f"a103l {lead}: {summary.rhythm=}, {summary.flags=}, {summary.longest_pause_s=}")
    assert RhythmFinding.PAUSE not in summary.rhythm
    assert RhythmFinding.ASYSTOLE not in summary.rhythm
    assert summary.longest_pause_s is None
    # The noisy part is called out, so the strip does not alert either way.
    assert Flag.LOW_SIGNAL_QUALITY in summary.flags
    assert not summary.fit_for_alerting
    assert summary.heart_rate == pytest.approx(127, abs=3)


def test_the_summary_is_frozen() -> None:
    summary = analyze_ecg(strip(sinus_rr(12))[0], FS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.heart_rate = 0.0  # type: ignore[misc]
