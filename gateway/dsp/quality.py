"""Signal quality indices for ECG and PPG windows: kSQI, pSQI, basSQI, template matching, flat line, clipping."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike

from healthhut.gateway.dsp._buffers import block_starts
from healthhut.gateway.dsp.filters import FloatArray

# Li, Mark & Clifford, Physiol Meas 29:15 (2008) define the indices; the grading bands are those of
# Zhao & Zhang, Front Physiol 9:727 (2018): kSQI > 5 optimal; pSQI 0.5-0.8 optimal, 0.4-0.5 suspicious;
# basSQI >= 0.95 optimal, 0.9-0.95 suspicious, below 0.9 unqualified.
KSQI_OPTIMAL = 5.0
PSQI_OPTIMAL = (0.5, 0.8)
PSQI_SUSPICIOUS_LOW = 0.4
BASSQI_OPTIMAL = 0.95
BASSQI_SUSPICIOUS = 0.9
# Orphanidou et al., IEEE JBHI 19(3):832 (2015): mean correlation of each beat with the window's average
# beat must reach 0.66 for ECG and 0.86 for PPG.
ECG_TEMPLATE_MIN = 0.66
PPG_TEMPLATE_MIN = 0.86
# Orphanidou's feasibility rules, applied to PPG windows (rate 40-180 /min, no pulse interval over 3 s,
# longest/shortest interval below 2.2). ECG windows skip them: they would veto exactly the pauses,
# bradycardias and irregular rhythms the rhythm analysis must report.
RATE_FEASIBLE_BPM = (40.0, 180.0)
MAX_INTERVAL_S = 3.0
MAX_INTERVAL_RATIO = 2.2
# Pulse amplitude varies with breathing by tens of percent; an excursion twice the window's median pulse is
# movement (pulse amplitude consistency as a PPG quality measure: Sukor, Redmond & Lovell, Physiol Meas
# 32:369, 2011).
MAX_AMPLITUDE_RATIO = 2.0
# Level statistics are taken per 100 ms block.
BLOCK_S = 0.1
# A lead that is off, or an input stuck at one level, reads flat: under 10 µV peak to peak for half a
# second. Any attached skin electrode shows more than that (amplifier noise alone is allowed up to
# 30 µV p-p by IEC 60601-2-25, and a P wave is 50-250 µV); a diastolic TP segment is shorter than 0.5 s
# at rates above 60 /min and still carries noise and drift above 10 µV.
FLAT_SPAN_S = 0.5
FLAT_UV = 10.0


class Grade(StrEnum):
    """Zhao & Zhang's simple heuristic fusion of pSQI, kSQI and basSQI."""

    EXCELLENT = "excellent"
    BARELY_ACCEPTABLE = "barely_acceptable"
    UNACCEPTABLE = "unacceptable"


@dataclass(frozen=True, slots=True)
class EcgWindowQuality:
    """Quality of one ECG window (samples ``start``..``stop`` of the stream)."""

    start: int
    stop: int
    beats: int
    ksqi: float
    psqi: float
    bassqi: float
    template_correlation: float
    grade: Grade
    lead_problem_s: float  # flat or clipped time inside the window
    usable: bool


@dataclass(frozen=True, slots=True)
class PpgWindowQuality:
    """Quality of one PPG window: Orphanidou's feasibility rules, template matching, pulse amplitude spread.

    ``amplitude_ratio`` is the largest pulse-to-pulse excursion over the median one.
    """

    start: int
    stop: int
    pulses: int
    pulse_rate: float | None
    template_correlation: float
    amplitude_ratio: float
    feasible: bool
    lead_problem_s: float
    usable: bool

    @property
    def motion(self) -> bool:
        """Pulses are there but their shape or size is disturbed: the finger or probe moved."""
        return (
            self.pulses >= 2
            and self.lead_problem_s == 0.0
            and (bool(self.template_correlation < PPG_TEMPLATE_MIN) or self.amplitude_ratio > MAX_AMPLITUDE_RATIO)
        )


def kurtosis(x: ArrayLike) -> float:
    """Pearson (non-excess) kurtosis; a clean ECG, peaky with its QRS complexes, scores above 5."""
    v = np.asarray(x, dtype=np.float64)
    if not v.size:
        return 0.0
    # Means written as sum / count: what ndarray.mean computes, without its per-call overhead. The powers
    # are taken in place: one temporary array instead of three.
    work = np.subtract(v, np.add.reduce(v) / v.size)
    np.multiply(work, work, out=work)
    variance = float(np.add.reduce(work)) / v.size
    if variance <= 0:
        return 0.0
    np.multiply(work, work, out=work)
    return float(np.add.reduce(work)) / v.size / (variance * variance)


def spectral_sqis(x: ArrayLike, fs: float) -> tuple[float, float]:
    """pSQI = P(5-15 Hz) / P(5-40 Hz) and basSQI = 1 - P(0-1 Hz) / P(0-40 Hz) of an unfiltered window.

    Band powers come from one Hann-windowed periodogram of the window (0.1 Hz bins for 10 s): each band
    sums many bins, so averaging segments as Welch does buys nothing here and costs a tenfold.
    """
    v = np.asarray(x, dtype=np.float64)
    if v.size < 2:
        return 0.0, 0.0
    window, (qrs_band, wide_band, total_band, base_band) = _periodogram_plan(v.size, fs)
    top = max(qrs_band[1], wide_band[1], total_band[1], base_band[1])  # no band reaches beyond this bin
    # ``v.mean()`` written as sum / count: the same value, without its per-call overhead.
    work = np.subtract(v, np.add.reduce(v) / v.size)
    spectrum = np.fft.rfft(np.multiply(work, window, out=work))[:top]
    # |X|^2 = re^2 + im^2, squared in place on the interleaved (re, im) pairs.
    pairs = spectrum.view(np.float64)
    np.multiply(pairs, pairs, out=pairs)
    # Band power from running sums: the power of bins a..b-1 is cumulative[b - 1] - cumulative[a - 1].
    cumulative = np.add.accumulate(pairs[0::2] + pairs[1::2])

    def band(edges: tuple[int, int]) -> float:
        lo, hi = edges
        return (float(cumulative[hi - 1]) if hi else 0.0) - (float(cumulative[lo - 1]) if lo else 0.0)

    qrs, wide = band(qrs_band), band(wide_band)
    psqi = qrs / wide if wide > 0 else 0.0
    total = band(total_band)
    bassqi = 1.0 - band(base_band) / total if total > 0 else 0.0
    return psqi, bassqi


@functools.lru_cache(maxsize=16)
def _periodogram_plan(size: int, fs: float) -> tuple[FloatArray, tuple[tuple[int, int], ...]]:
    """The Hann window and the bin ranges of the 5-15, 5-40, 0-40 and 0-1 Hz bands for a window length."""
    window = np.hanning(size)
    window.flags.writeable = False
    freqs = np.fft.rfftfreq(size, 1.0 / fs)
    bands = tuple(
        (int(np.searchsorted(freqs, lo, side="left")), int(np.searchsorted(freqs, hi, side="right")))
        for lo, hi in ((5, 15), (5, 40), (0, 40), (0, 1))
    )
    return window, bands


def grade(ksqi: float, psqi: float, bassqi: float) -> Grade:
    """Zhao & Zhang (2018) simple fusion: two unqualified indices, or one plus two suspicious, fail."""
    classes = [
        2 if PSQI_OPTIMAL[0] < psqi < PSQI_OPTIMAL[1] else 1 if PSQI_SUSPICIOUS_LOW < psqi <= PSQI_OPTIMAL[0] else 0,
        2 if ksqi > KSQI_OPTIMAL else 0,
        2 if bassqi >= BASSQI_OPTIMAL else 1 if bassqi >= BASSQI_SUSPICIOUS else 0,
    ]
    unqualified, suspicious, optimal = classes.count(0), classes.count(1), classes.count(2)
    if unqualified >= 2 or (unqualified == 1 and suspicious == 2):
        return Grade.UNACCEPTABLE
    if optimal >= 2 and unqualified == 0:
        return Grade.EXCELLENT
    return Grade.BARELY_ACCEPTABLE


def template_correlation(x: ArrayLike, beats: ArrayLike, half_width: int) -> float:
    """Mean correlation of each beat (``beat +- half_width`` samples) with the average beat (Orphanidou).

    Beats too close to the window's edges are left out. NaN when fewer than two beats fit.
    """
    v = np.asarray(x, dtype=np.float64)
    if half_width < 1:
        return float("nan")
    # A window holds a few dozen beats at most: a list is quicker to filter than an array.
    inside = [i for i in np.asarray(beats, dtype=np.int64).tolist() if half_width <= i < v.size - half_width]
    if len(inside) < 2:
        return float("nan")
    width = 2 * half_width + 1
    # Every stretch of ``width`` samples as a row of a strided view (no copy); the beats' rows are taken.
    if not v.flags.c_contiguous:
        v = np.ascontiguousarray(v)
    stretches = np.ndarray((v.size - width + 1, width), np.float64, v, 0, (v.itemsize, v.itemsize))
    segments = stretches[np.array(inside) - half_width]
    template = np.add.reduce(segments, axis=0) / len(inside)
    seg_c = np.subtract(segments, np.add.reduce(segments, axis=1, keepdims=True) / width, out=segments)
    tpl_c = template - np.add.reduce(template) / width
    covariance = seg_c @ tpl_c
    spread = np.add.reduce(np.multiply(seg_c, seg_c, out=seg_c), axis=1)
    denominator = np.sqrt(spread * float(np.add.reduce(tpl_c * tpl_c)), out=spread)
    with np.errstate(invalid="ignore", divide="ignore"):
        r: FloatArray = np.divide(covariance, denominator, out=covariance)
    total = float(np.add.reduce(r))
    if not math.isfinite(total):  # a flat beat or template: count it as uncorrelated
        r[~np.isfinite(r)] = 0.0
        total = float(np.add.reduce(r))
    return total / r.size


def block_extremes(x: FloatArray, size: int) -> tuple[FloatArray, FloatArray]:
    """Minimum and maximum of each block of ``size`` samples (the last block may be short)."""
    starts = block_starts(x.size, size)
    return np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)


def flat_blocks(lows: FloatArray, highs: FloatArray, span: int, level: float) -> np.ndarray:
    """Blocks inside any run of ``span`` consecutive blocks whose joint peak-to-peak is below ``level``."""
    out = np.zeros(lows.size, dtype=bool)
    if lows.size < span or not (highs - lows < level).any():  # a flat run needs flat blocks
        return out
    # Running minimum and maximum over each run of ``span`` blocks (span is a handful: 5 at 100 ms blocks).
    runs = lows.size - span + 1
    low, high = lows[:runs].copy(), highs[:runs].copy()
    for k in range(1, span):
        np.minimum(low, lows[k : k + runs], out=low)
        np.maximum(high, highs[k : k + runs], out=high)
    for start in np.flatnonzero(high - low < level):
        out[start : start + span] = True
    return out


def lead_problem_blocks(
    lows: FloatArray, highs: FloatArray, fs: float, block: int, flat_level: float, rails: tuple[float, float] | None
) -> np.ndarray:
    """Blocks that are part of a flat stretch (``FLAT_SPAN_S``) or touch the input's known ``rails``.

    Without known rails clipping is not guessed from the data: coarse quantisation makes plateaus at a
    window's extremes common, and saturation lasting longer than FLAT_SPAN_S reads flat anyway.
    """
    span = max(1, round(FLAT_SPAN_S * fs / block))
    problem = flat_blocks(lows, highs, span, flat_level)
    if rails is not None:
        problem |= (lows <= rails[0]) | (highs >= rails[1])
    return problem


def assess_ecg_window(
    raw: ArrayLike,
    conditioned: ArrayLike,
    beats: ArrayLike,
    fs: float,
    start: int,
    *,
    flat_uv: float = FLAT_UV,
    rails: tuple[float, float] | None = None,
    blocks: tuple[FloatArray, FloatArray] | None = None,
) -> EcgWindowQuality:
    """Grade one ECG window. ``raw`` (µV) and ``conditioned`` cover the same samples; ``beats`` index into them.

    ``blocks`` are the raw window's ``block_extremes`` when the caller has them already.
    """
    raw_v = np.asarray(raw, dtype=np.float64)
    cond = np.asarray(conditioned, dtype=np.float64)
    b = np.asarray(beats, dtype=np.int64)
    ksqi = kurtosis(cond)
    psqi, bassqi = spectral_sqis(raw_v, fs)
    window_grade = grade(ksqi, psqi, bassqi)
    block = max(1, round(BLOCK_S * fs))
    lows, highs = block_extremes(raw_v, block) if blocks is None else blocks
    lead_problem_s = float(lead_problem_blocks(lows, highs, fs, block, flat_uv, rails).sum()) * block / fs
    # Orphanidou: the template spans the median RR, centred on the R peak.
    intervals = [after - before for before, after in itertools.pairwise(b.tolist())]
    rr_median = _median(intervals) if intervals else 0.0
    correlation = template_correlation(cond, b, int(rr_median) // 2) if b.size >= 2 else float("nan")
    usable = window_grade is not Grade.UNACCEPTABLE and bool(correlation >= ECG_TEMPLATE_MIN) and lead_problem_s == 0.0
    return EcgWindowQuality(
        start=start,
        stop=start + raw_v.size,
        beats=int(b.size),
        ksqi=ksqi,
        psqi=psqi,
        bassqi=bassqi,
        template_correlation=correlation,
        grade=window_grade,
        lead_problem_s=lead_problem_s,
        usable=usable,
    )


def _median(values: list[int]) -> float:
    """np.median of a short list of integers, without numpy's overhead."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return float(ordered[half]) if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def assess_ppg_window(
    pleth: ArrayLike,
    filtered: ArrayLike,
    pulses: ArrayLike,
    fs: float,
    start: int,
    *,
    flat_level: float | None = None,
    rails: tuple[float, float] | None = None,
) -> PpgWindowQuality:
    """Grade one PPG window by Orphanidou's rules: feasible pulse intervals and a consistent pulse shape."""
    raw_v = np.asarray(pleth, dtype=np.float64)
    filt = np.asarray(filtered, dtype=np.float64)
    p = np.asarray(pulses, dtype=np.int64)
    rate: float | None = None
    feasible = False
    correlation = float("nan")
    amplitude_ratio = float("nan")
    if p.size >= 2:
        excursions = np.array([np.ptp(filt[a:b]) for a, b in itertools.pairwise(p.tolist())])
        median = float(np.median(excursions))
        amplitude_ratio = float(excursions.max()) / median if median > 0 else float("inf")
        intervals = np.diff(p) / fs
        rate = 60.0 / float(intervals.mean())
        feasible = (
            RATE_FEASIBLE_BPM[0] <= rate <= RATE_FEASIBLE_BPM[1]
            and float(intervals.max()) < MAX_INTERVAL_S
            and float(intervals.max() / intervals.min()) < MAX_INTERVAL_RATIO
        )
        correlation = template_correlation(filt, p, int(np.median(np.diff(p))) // 2)
    # Pleth units vary by device: unless told, a flat stretch spans under a thousandth of the window's range.
    if flat_level is None:
        flat_level = max(1e-3 * float(np.ptp(raw_v)), 1e-12) if raw_v.size else 1e-12
    block = max(1, round(BLOCK_S * fs))
    lows, highs = block_extremes(raw_v, block)
    lead_problem_s = float(lead_problem_blocks(lows, highs, fs, block, flat_level, rails).sum()) * block / fs
    usable = (
        feasible
        and bool(correlation >= PPG_TEMPLATE_MIN)
        and amplitude_ratio <= MAX_AMPLITUDE_RATIO
        and lead_problem_s == 0.0
    )
    return PpgWindowQuality(
        start=start,
        stop=start + raw_v.size,
        pulses=int(p.size),
        pulse_rate=rate,
        template_correlation=correlation,
        amplitude_ratio=amplitude_ratio,
        feasible=feasible,
        lead_problem_s=lead_problem_s,
        usable=usable,
    )
