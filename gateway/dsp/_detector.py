"""Streaming QRS detector (Pan-Tompkins energy envelope, Hamilton decision rules) with a fixed latency."""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from healthhut.gateway.dsp.filters import (
    FirFilter,
    FloatArray,
    SosFilter,
    ecg_conditioning_sos,
    moving_average_taps,
    qrs_derivative_sos,
)

IndexArray = NDArray[np.int64]

# Pan & Tompkins (IEEE TBME 32(3):230, 1985): 150 ms integration window, 200 ms refractory period,
# T-wave test within 360 ms of the previous QRS (a candidate whose steepest slope is under half that of
# the previous QRS is a T wave), search-back at half the threshold once 166 % of the mean RR has passed.
INTEGRATION_S = 0.150
REFRACTORY_S = 0.200
T_WAVE_WINDOW_S = 0.360
T_WAVE_SLOPE_RATIO = 0.5
OVERDUE_RR_RATIO = 1.66
SEARCH_BACK_RATIO = 0.5
# Hamilton (CinC 29:101, 2002; Hamilton & Tompkins, IEEE TBME 33:1157, 1986): the threshold sits 0.3125 of
# the way from the noise-peak level to the QRS-peak level, each the mean of the last eight peaks. A median
# of eight is used here, so that one artefact cannot hold the threshold up for eight beats.
THRESHOLD_COEFF = 0.3125
LEVEL_MEMORY = 8
# RR intervals within 92-116 % of the mean count as regular (Pan & Tompkins' RR AVERAGE2).
RR_REGULAR = (0.92, 1.16)
DEFAULT_RR_S = 1.0
# The R peak lies inside the integration window that produced the envelope peak, shifted by the QRS
# filter's group delay (about 20 ms around 10 Hz); 250 ms covers both with room for a wide QRS.
SEARCH_BACK_S = 0.250
# Pan-Tompkins search-back looks back for a missed beat when the next one arrives. To keep a fixed
# latency every peak is held for this long, so a missed beat up to 1.45 s before the beat that reveals it
# (RR up to about 1.2 s, 50 /min) can still be reported on time. Slower rhythms rely on the decay below.
HOLD_S = 1.0
# Once a beat is overdue the threshold keeps halving every second, so the detector recovers from a level
# learnt on an artefact or from a drop in QRS amplitude (a re-seated electrode). It never falls below
# twenty times the 10th percentile of the envelope over the last two seconds: for band-limited Gaussian
# noise through this chain the largest envelope peak of the next two seconds stays under 17 times that
# level in 99.9 % of cases (10 min simulated), so a quiet asystolic trace is not filled with false beats.
OVERDUE_HALVING_S = 1.0
NOISE_FLOOR_RATIO = 20.0
FLOOR_PERCENTILE = 10.0
FLOOR_MEMORY_S = 2.0
# The band-pass filters start from the steady state for the first sample; noise on that sample still rings
# for a few tens of milliseconds. Candidates whose integration window reaches into that time are ignored.
SETTLE_S = 0.2
FIRST_BEAT_LOOKBACK_S = 1.0


@dataclass(frozen=True, slots=True)
class _Candidate:
    envelope_peak: int
    r_peak: int
    amplitude: float
    slope: float


class EcgDetector:
    """R-peak detector fed chunk by chunk; every peak is returned exactly ``latency_samples`` after it.

    ``push(chunk)`` returns the absolute sample indices (counted from the first sample ever pushed) of the
    R peaks that this chunk confirmed: the peak at sample ``r`` comes back from the push that delivers
    sample ``r + latency_samples``. Decisions use only samples up to then, so any chunking, down to one
    sample, gives the same peaks. ``flush()`` decides what is left at the end of a finite signal. The
    detector is scale-free: any amplitude unit works.
    """

    def __init__(self, fs: float, mains_hz: float = 50.0) -> None:
        if not fs > 0:
            raise ValueError("fs must be positive")
        self.fs = float(fs)
        self._conditioning = SosFilter(ecg_conditioning_sos(fs, mains_hz))
        self._qrs = SosFilter(qrs_derivative_sos(fs))
        self._window = max(1, round(INTEGRATION_S * fs))
        self._integrator = FirFilter(moving_average_taps(self._window))
        self._refractory = max(2, round(REFRACTORY_S * fs))
        self._t_wave = round(T_WAVE_WINDOW_S * fs)
        self._search_back = round(SEARCH_BACK_S * fs)
        self._settle = round(SETTLE_S * fs) + self._window
        self._halving = OVERDUE_HALVING_S * fs
        self._floor_memory = round(FLOOR_MEMORY_S * fs)
        #: Every peak is returned by the push that delivers the sample this many samples after it.
        self.latency_samples = self._refractory + self._search_back + round(HOLD_S * fs)
        self._hold = round(HOLD_S * fs)
        self._first_lookback = round(FIRST_BEAT_LOOKBACK_S * fs)
        # History needed behind the scan frontier: the noise-floor memory or the first-beat look-back, plus
        # the look-ahead of a first beat, plus the R-peak search window.
        behind = max(self._floor_memory, self._first_lookback, self._search_back + self._window)
        self._keep = behind + 2 * self._refractory + self._hold + 4
        self._base = 0  # absolute index of the first sample held in the history buffers
        self._n = 0  # samples pushed so far
        self._conditioned: FloatArray = np.empty(0)
        self._slope: FloatArray = np.empty(0)
        self._envelope: FloatArray = np.empty(0)
        self._next_scan = self._settle  # first envelope index not yet examined as a candidate
        self._qrs_levels: deque[float] = deque(maxlen=LEVEL_MEMORY)
        self._noise_levels: deque[float] = deque(maxlen=LEVEL_MEMORY)
        self._rr_recent: deque[int] = deque(maxlen=LEVEL_MEMORY)
        self._rr_regular: deque[int] = deque(maxlen=LEVEL_MEMORY)
        self._last: _Candidate | None = None
        self._missed: list[_Candidate] = []  # rejected since the last beat, above the search-back level
        self._pending: list[int] = []
        self._closed = False

    @property
    def latency_s(self) -> float:
        return self.latency_samples / self.fs

    def push(self, chunk: ArrayLike) -> IndexArray:
        """Feed samples; return the R peaks (absolute indices) that became final with this chunk."""
        return self.push_conditioned(self.condition(chunk))

    def condition(self, chunk: ArrayLike) -> FloatArray:
        """Band-pass (0.5-40 Hz) and notch a chunk; feed the result to ``push_conditioned``."""
        if self._closed:
            raise RuntimeError("the detector was flushed; make a new one for a new signal")
        return self._conditioning.process(chunk)

    def push_conditioned(self, conditioned: FloatArray) -> IndexArray:
        """As ``push``, for a chunk already passed through ``condition``."""
        return self.step(conditioned)[0]

    def step(self, conditioned: FloatArray) -> tuple[IndexArray, FloatArray]:
        """As ``push_conditioned``, also returning the chunk's QRS-band slope magnitude (for the analyser)."""
        if not conditioned.size:
            return self._emit(self._n - 1 - self.latency_samples), np.empty(0)
        derivative = self._qrs.process(conditioned)
        slope = np.abs(derivative)
        envelope = self._integrator.process(derivative * derivative)
        self._conditioned = np.concatenate((self._conditioned, conditioned))
        self._slope = np.concatenate((self._slope, slope))
        self._envelope = np.concatenate((self._envelope, envelope))
        self._n += conditioned.size
        # Until the first QRS is known, a candidate waits for the whole hold time to be compared with.
        lookahead = self._refractory + (self._hold if not self._qrs_levels else 0)
        self._scan(self._n - lookahead - 1)
        self._trim()
        return self._emit(self._n - 1 - self.latency_samples), slope

    def flush(self) -> IndexArray:
        """Decide the candidates at the end of a finite signal and return every peak still held back."""
        if not self._closed:
            self._scan(self._n - 2)
            self._closed = True
        return self._emit(None)

    # -- internals ---------------------------------------------------------------------------------

    def _trim(self) -> None:
        excess = self._conditioned.size - self._keep
        if excess > 0:
            self._conditioned = self._conditioned[excess:]
            self._slope = self._slope[excess:]
            self._envelope = self._envelope[excess:]
            self._base += excess

    def _scan(self, last: int) -> None:
        """Examine envelope samples ``_next_scan .. last`` as QRS candidates (local maxima)."""
        start = max(self._next_scan, 1)
        last = min(last, self._n - 2)
        if last < start:
            return
        env = self._envelope
        i0, i1 = start - self._base, last - self._base
        mid = env[i0 : i1 + 1]
        maxima = i0 + np.flatnonzero((mid > env[i0 - 1 : i1]) & (mid >= env[i0 + 1 : i1 + 2]))
        r = self._refractory
        for i in maxima.tolist():
            # Only the dominant envelope peak within +-refractory can be a QRS; ties go to the earlier one.
            peak = env[i]
            if i > 0 and peak <= env[max(0, i - r) : i].max():
                continue
            if peak < env[i + 1 : i + r + 1].max():
                continue
            self._consider(self._base + i)
        self._next_scan = last + 1

    def _consider(self, p: int) -> None:
        """Classify the dominant envelope peak ``p``: QRS, missed-beat candidate or noise."""
        env = self._envelope
        i = p - self._base
        amplitude = float(env[i])
        slope = float(self._slope[max(0, i - self._window + 1) : i + 1].max())
        if not self._qrs_levels:
            if self._first_beat(i, amplitude):
                self._accept_new(p, amplitude, slope)
            else:
                self._noise_levels.append(amplitude)
            return
        last = self._last
        gap = p - last.envelope_peak if last is not None else p
        primary = self._primary_threshold()
        threshold = self._overdue_threshold(primary, gap, p)
        is_t_wave = last is not None and gap < self._t_wave and slope < T_WAVE_SLOPE_RATIO * last.slope
        if amplitude >= threshold and not is_t_wave:
            if amplitude < SEARCH_BACK_RATIO * primary:
                # Found only after the threshold decayed past the search-back level: the learnt QRS
                # level is wrong (artefact, or the QRS shrank), so learn it again from this beat.
                self._qrs_levels.clear()
            self._accept_new(p, amplitude, slope)
            return
        self._noise_levels.append(amplitude)
        if amplitude >= SEARCH_BACK_RATIO * primary and not is_t_wave:
            r = self._locate(p)
            if r is not None:
                self._missed.append(_Candidate(p, r, amplitude, slope))

    def _primary_threshold(self) -> float:
        qrs_level = statistics.median(self._qrs_levels)
        noise_level = statistics.median(self._noise_levels) if self._noise_levels else 0.0
        return noise_level + THRESHOLD_COEFF * (qrs_level - noise_level)

    def _overdue_threshold(self, primary: float, gap: int, p: int) -> float:
        overdue = gap - OVERDUE_RR_RATIO * self._rr_average()
        if overdue <= 0:
            return primary
        decayed = primary * math.pow(SEARCH_BACK_RATIO, 1.0 + overdue / self._halving)
        i = p - self._base
        recent = self._envelope[max(0, i - self._floor_memory) : i + 1]
        floor = NOISE_FLOOR_RATIO * float(np.percentile(recent, FLOOR_PERCENTILE))
        return max(decayed, floor)

    def _first_beat(self, i: int, amplitude: float) -> bool:
        # Before any QRS is known a candidate must reach half the largest envelope around it: from one second
        # before (after the filters settled) to the end of the hold time after it, which holds at least one
        # QRS at any rate above 50 /min. That rules out the T wave or noise a strip may start with.
        lo = max(0, self._settle - self._base, i - self._first_lookback)
        seen = self._envelope[lo : i + self._refractory + self._hold + 1]
        return amplitude >= 0.5 * float(seen.max())

    def _rr_average(self) -> float:
        if not self._rr_recent:
            return DEFAULT_RR_S * self.fs
        recent = sum(self._rr_recent) / len(self._rr_recent)
        if not self._rr_regular:
            return recent
        return min(recent, sum(self._rr_regular) / len(self._rr_regular))

    def _locate(self, p: int) -> int | None:
        """The R peak: the largest deviation of the conditioned ECG in the window behind envelope peak ``p``."""
        lo = max(p - self._search_back, self._base)
        if self._last is not None:
            lo = max(lo, self._last.r_peak + self._refractory)
        if lo > p:
            return None
        segment = self._conditioned[lo - self._base : p - self._base + 1]
        deviation = np.abs(segment - np.median(segment))
        return lo + int(np.argmax(deviation))

    def _accept_new(self, p: int, amplitude: float, slope: float) -> None:
        last = self._last
        if last is not None and self._missed and p - last.envelope_peak > OVERDUE_RR_RATIO * self._rr_average():
            self._search_back_between(p)
        self._missed.clear()
        r = self._locate(p)
        if r is None:
            self._noise_levels.append(amplitude)
            return
        self._record(_Candidate(p, r, amplitude, slope))

    def _search_back_between(self, p: int) -> None:
        """Pan-Tompkins search-back: the largest missed candidate since the last beat becomes a beat."""
        deadline = p + self._refractory - self.latency_samples  # still reportable at the fixed latency
        usable = [c for c in self._missed if c.r_peak >= deadline and p - c.envelope_peak >= self._refractory]
        if usable:
            self._record(max(usable, key=lambda c: c.amplitude))

    def _record(self, beat: _Candidate) -> None:
        last = self._last
        if last is not None:
            rr = beat.r_peak - last.r_peak
            self._rr_recent.append(rr)
            average = self._rr_average()
            if not self._rr_regular or RR_REGULAR[0] * average <= rr <= RR_REGULAR[1] * average:
                self._rr_regular.append(rr)
        self._qrs_levels.append(beat.amplitude)
        self._last = beat
        bisect.insort(self._pending, beat.r_peak)

    def _emit(self, until: int | None) -> IndexArray:
        count = len(self._pending) if until is None else bisect.bisect_right(self._pending, until)
        out = np.asarray(self._pending[:count], dtype=np.int64)
        del self._pending[:count]
        return out
