"""Streaming QRS detector (Pan-Tompkins energy envelope, Hamilton decision rules) with a fixed latency."""

from __future__ import annotations

from collections import deque

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

# Pan & Tompkins (1985): 150 ms integration window, 200 ms refractory period, T-wave test within 360 ms
# of the previous QRS (a candidate whose steepest slope is under half that of the previous QRS is a T wave),
# search-back threshold half the primary one once 166 % of the average RR has passed.
INTEGRATION_S = 0.150
REFRACTORY_S = 0.200
T_WAVE_WINDOW_S = 0.360
T_WAVE_SLOPE_RATIO = 0.5
OVERDUE_RR_RATIO = 1.66
# Hamilton (CinC 29:101, 2002; Hamilton & Tompkins, IEEE TBME 33:1157, 1986): the detection threshold sits
# at 0.3125 of the way from the noise-peak level to the QRS-peak level, each the mean of the last eight.
# A median of eight is used here: one artefact spike then cannot hold the threshold up for eight beats.
THRESHOLD_COEFF = 0.3125
LEVEL_MEMORY = 8
# RR intervals within 92-116 % of the running mean count as regular (Pan & Tompkins' RR AVERAGE2).
RR_REGULAR = (0.92, 1.16)
DEFAULT_RR_S = 1.0
# The R peak lies within the integration window that produced the envelope peak, plus the QRS filter's
# group delay (about 20 ms at 10 Hz); 250 ms covers both with room for a wide QRS.
SEARCH_BACK_S = 0.250


class EcgDetector:
    """R-peak detector fed chunk by chunk; every peak is returned exactly ``latency_samples`` after it.

    ``push(chunk)`` returns the absolute sample indices (from the first sample ever pushed) of the
    R peaks that this chunk confirmed. The decision for a peak at sample ``r`` uses only samples up to
    ``r + latency_samples``, so any chunking gives the same peaks. ``flush()`` decides what is left at
    the end of a finite signal. The detector is scale-free: any unit works.
    """

    def __init__(self, fs: float, mains_hz: float = 50.0) -> None:
        if fs <= 0:
            raise ValueError("fs must be positive")
        self.fs = float(fs)
        self._conditioning = SosFilter(ecg_conditioning_sos(fs, mains_hz))
        self._qrs = SosFilter(qrs_derivative_sos(fs))
        self._window = max(1, round(INTEGRATION_S * fs))
        self._integrator = FirFilter(moving_average_taps(self._window))
        self._refractory = max(1, round(REFRACTORY_S * fs))
        self._t_wave = round(T_WAVE_WINDOW_S * fs)
        self._search_back = round(SEARCH_BACK_S * fs)
        # Envelope peaks must dominate +-refractory; the R peak is searched up to search_back before them.
        self.latency_samples = self._refractory + self._search_back
        keep = self._refractory * 2 + self._search_back + self._window + 4
        self._keep = keep
        self._base = 0  # absolute index of the first sample held in the history buffers
        self._n = 0  # samples pushed so far
        self._conditioned: FloatArray = np.empty(0)
        self._slope: FloatArray = np.empty(0)
        self._envelope: FloatArray = np.empty(0)
        self._next_scan = 1  # first envelope index not yet examined as a candidate
        self._qrs_levels: deque[float] = deque(maxlen=LEVEL_MEMORY)
        self._noise_levels: deque[float] = deque(maxlen=LEVEL_MEMORY)
        self._rr_recent: deque[int] = deque(maxlen=LEVEL_MEMORY)
        self._rr_regular: deque[int] = deque(maxlen=LEVEL_MEMORY)
        self._last_envelope_peak = -(10**9)
        self._last_slope = 0.0
        self._last_r = -(10**9)
        self._pending: deque[int] = deque()
        self._closed = False

    @property
    def latency_s(self) -> float:
        return self.latency_samples / self.fs

    @property
    def samples_seen(self) -> int:
        return self._n

    def push(self, chunk: ArrayLike) -> IndexArray:
        """Feed samples; return the R peaks (absolute indices) that became final with this chunk."""
        conditioned = self.condition(chunk)
        return self.push_conditioned(conditioned)

    def condition(self, chunk: ArrayLike) -> FloatArray:
        """Band-pass and notch a chunk; feed the result to ``push_conditioned``."""
        if self._closed:
            raise RuntimeError("the detector was flushed; make a new one for a new signal")
        return self._conditioning.process(chunk)

    def push_conditioned(self, conditioned: FloatArray) -> IndexArray:
        """As ``push``, for a chunk already passed through ``condition`` (the analyser shares it)."""
        if conditioned.size:
            slope = self._qrs.process(conditioned)
            envelope = self._integrator.process(slope * slope)
            self._append(conditioned, np.abs(slope), envelope)
            self._scan(self._n - self._refractory - 1)
            self._trim()
        return self._emit(self._n - 1 - self.latency_samples)

    def flush(self) -> IndexArray:
        """Decide the candidates at the end of a finite signal and return the peaks still held back."""
        if not self._closed:
            self._scan(self._n - 1)
            # The signal may end on the rising edge of a QRS's envelope: that last sample is its peak.
            n = self._n - self._base
            if n >= 2 and self._envelope[n - 1] > self._envelope[n - 2]:
                self._consider(self._n - 1)
            self._closed = True
        return self._emit(None)

    # -- internals ---------------------------------------------------------------------------------

    def _append(self, conditioned: FloatArray, slope: FloatArray, envelope: FloatArray) -> None:
        self._conditioned = np.concatenate((self._conditioned, conditioned))
        self._slope = np.concatenate((self._slope, slope))
        self._envelope = np.concatenate((self._envelope, envelope))
        self._n += conditioned.size

    def _trim(self) -> None:
        excess = self._conditioned.size - self._keep
        if excess > 0:
            self._conditioned = self._conditioned[excess:]
            self._slope = self._slope[excess:]
            self._envelope = self._envelope[excess:]
            self._base += excess

    def _scan(self, last: int) -> None:
        """Examine envelope samples from ``_next_scan`` up to ``last`` (inclusive) as QRS candidates."""
        start = self._next_scan
        if last < start:
            return
        env = self._envelope
        base = self._base
        # Local maxima need one sample either side; the final sample of a flushed signal has none after it.
        stop = min(last, self._n - 2)
        if stop >= start:
            i0, i1 = start - base, stop - base
            mid = env[i0 : i1 + 1]
            rising = mid > env[i0 - 1 : i1]
            not_falling_after = mid >= env[i0 + 1 : i1 + 2]
            for rel in np.flatnonzero(rising & not_falling_after):
                p = start + int(rel)
                self._consider(p)
        self._next_scan = last + 1

    def _consider(self, p: int) -> None:
        env = self._envelope
        base = self._base
        i = p - base
        amplitude = float(env[i])
        before = env[max(0, i - self._refractory) : i]
        after = env[i + 1 : i + self._refractory + 1]
        # Only the dominant envelope peak within +-refractory can be a QRS; ties go to the earlier one.
        if (before.size and amplitude <= float(before.max())) or (after.size and amplitude < float(after.max())):
            return
        slope = float(self._slope[max(0, i - self._window + 1) : i + 1].max())
        gap = p - self._last_envelope_peak
        threshold = self._threshold(gap)
        if threshold is None:
            is_qrs = self._first_beat(i, amplitude)
        elif amplitude >= threshold:
            is_qrs = not (gap < self._t_wave and slope < T_WAVE_SLOPE_RATIO * self._last_slope)
        else:
            is_qrs = False
        if is_qrs:
            r = self._locate(p)
            if r is None:
                is_qrs = False
            else:
                self._accept(p, r, amplitude, slope)
        if not is_qrs:
            self._noise_levels.append(amplitude)

    def _threshold(self, gap: int) -> float | None:
        if not self._qrs_levels:
            return None
        qrs_level = float(np.median(self._qrs_levels))
        noise_level = float(np.median(self._noise_levels)) if self._noise_levels else 0.0
        threshold = noise_level + THRESHOLD_COEFF * (qrs_level - noise_level)
        if gap > OVERDUE_RR_RATIO * self._rr_average():
            threshold *= 0.5
        return threshold

    def _first_beat(self, i: int, amplitude: float) -> bool:
        # Before any QRS is known the candidate must stand out against everything seen so far,
        # including the refractory look-ahead, which rules out most low T waves and noise.
        seen = self._envelope[: i + self._refractory + 1]
        return amplitude >= 0.5 * float(seen.max())

    def _rr_average(self) -> float:
        if self._rr_regular:
            return float(np.mean(self._rr_regular))
        if self._rr_recent:
            return float(np.mean(self._rr_recent))
        return DEFAULT_RR_S * self.fs

    def _locate(self, p: int) -> int | None:
        """The R peak: the largest deviation of the conditioned ECG in the window behind envelope peak ``p``."""
        lo = max(p - self._search_back, self._last_r + self._refractory, self._base)
        if lo > p:
            return None
        segment = self._conditioned[lo - self._base : p - self._base + 1]
        deviation = np.abs(segment - np.median(segment))
        return lo + int(np.argmax(deviation))

    def _accept(self, p: int, r: int, amplitude: float, slope: float) -> None:
        if self._last_r >= 0:
            rr = r - self._last_r
            self._rr_recent.append(rr)
            average = self._rr_average()
            if RR_REGULAR[0] * average <= rr <= RR_REGULAR[1] * average or not self._rr_regular:
                self._rr_regular.append(rr)
        self._qrs_levels.append(amplitude)
        self._last_envelope_peak = p
        self._last_slope = slope
        self._last_r = r
        self._pending.append(r)

    def _emit(self, until: int | None) -> IndexArray:
        out: list[int] = []
        while self._pending and (until is None or self._pending[0] <= until):
            out.append(self._pending.popleft())
        return np.asarray(out, dtype=np.int64)
