"""PPG path: streaming systolic-peak detection, pulse rate, perfusion index, and SpO2 by ratio of ratios."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from healthhut.gateway.dsp._buffers import History
from healthhut.gateway.dsp.filters import (
    FirFilter,
    FloatArray,
    SosFilter,
    moving_average_taps,
    ppg_sos,
    sosfilt_kernel,
)
from healthhut.gateway.dsp.quality import PpgWindowQuality, assess_ppg_window
from healthhut.protocol import Flag

IndexArray = NDArray[np.int64]

__all__ = [
    "LINEAR_110_25",
    "MAXIM_RD117",
    "PpgAnalyzer",
    "PpgSummary",
    "PulseDetector",
    "Spo2Calibration",
    "Spo2Estimate",
    "analyze_ppg",
    "detect_pulses",
    "estimate_spo2",
    "perfusion_index",
]

# Elgendi et al., PLoS ONE 8(10):e76585 (2013), systolic peaks by "two event-related moving averages":
# clip the 0.5-8 Hz band-passed pleth at zero and square it; a block of interest is where its 111 ms
# moving average exceeds the 667 ms one plus beta times the mean; blocks narrower than 111 ms are noise;
# the peak is the block's maximum.
PEAK_WINDOW_S = 0.111
BEAT_WINDOW_S = 0.667
BETA = 0.02
# Elgendi takes the mean over the whole record; a stream uses an exponential mean with a 10 s time constant.
MEAN_TAU_S = 10.0
# A block is decided at the latest this long after it opens (systolic upstrokes last 0.1-0.3 s; a longer
# block is artefact), which bounds the latency.
MAX_BLOCK_S = 0.6
# Two systolic peaks closer than 0.27 s (over 220 /min) are one pulse: the larger is kept.
MIN_PULSE_INTERVAL_S = 0.27
# Lima et al., Crit Care Med 30(6):1210 (2002): perfusion index of healthy adults ranges 0.3-10 %
# (median 1.4 %). Below 0.3 % the pulse is weaker than in any healthy adult, and SpO2 is unreliable.
LOW_PERFUSION_PI = 0.3
WINDOW_S = 10.0
MIN_WINDOW_S = 5.0
# Red and IR pulsations of arterial blood are in phase; below this correlation something other than the
# arterial pulse (motion, ambient light) dominates one of them and the ratio is not trusted.
SPO2_MIN_CORRELATION = 0.9
UNFIT_FLAGS = frozenset({Flag.LOW_SIGNAL_QUALITY, Flag.MOTION_ARTIFACT, Flag.LOW_PERFUSION})


def _odd(n: float) -> int:
    return 2 * max(0, round((n - 1) / 2)) + 1


class PulseDetector:
    """Systolic-peak detector fed chunk by chunk (Elgendi 2013, made causal with a fixed delay).

    ``push`` returns the absolute indices of the pulses confirmed by this chunk: the peak at ``k`` comes
    back from the push that delivers sample ``k + latency_samples``, so any chunking gives the same pulses.
    Expects systole upwards (as oximeters display the pleth): negate raw photodiode intensity first.
    """

    def __init__(self, fs: float) -> None:
        if not fs > 0:
            raise ValueError("fs must be positive")
        self.fs = float(fs)
        self._filter = SosFilter(ppg_sos(fs))
        w1, w2 = _odd(PEAK_WINDOW_S * fs), _odd(BEAT_WINDOW_S * fs)
        self._w1 = w1
        self._h1, self._h2 = (w1 - 1) // 2, (w2 - 1) // 2
        self._ma_peak = FirFilter(moving_average_taps(w1))
        self._ma_beat = FirFilter(moving_average_taps(w2))
        alpha = 1.0 - np.exp(-1.0 / (MEAN_TAU_S * fs))
        self._alpha = float(alpha)
        # The exponential mean m[n] = alpha e[n] + (1 - alpha) m[n-1] as one first-order section.
        self._mean_sos = np.array([[self._alpha, 0.0, 0.0, 1.0, self._alpha - 1.0, 0.0]])
        self._mean_state: FloatArray | None = None
        self._max_block = max(w1, round(MAX_BLOCK_S * fs))
        self._min_interval = round(MIN_PULSE_INTERVAL_S * fs)
        self.latency_samples = self._max_block + self._h2 + self._min_interval + 1
        self._keep = self._max_block + self._h2 + w2 + 4
        self._n = 0
        self._base = 0
        self._filtered: FloatArray = np.empty(0)
        self._peak_avg: FloatArray = np.empty(0)  # causal moving averages, centred h1 / h2 samples earlier
        self._beat_avg: FloatArray = np.empty(0)
        self._limit: FloatArray = np.empty(0)
        self._next_t = 0  # first centre time not yet classified
        self._block_start: int | None = None
        self._block_overlong = False
        self._pending: list[int] = []
        self._closed = False

    @property
    def latency_s(self) -> float:
        return self.latency_samples / self.fs

    def filter(self, chunk: ArrayLike) -> FloatArray:
        """Band-pass a chunk (0.5-8 Hz); feed the result to ``push_filtered``."""
        if self._closed:
            raise RuntimeError("the detector was flushed; make a new one for a new signal")
        return self._filter.process(chunk)

    def push(self, chunk: ArrayLike) -> IndexArray:
        return self.push_filtered(self.filter(chunk))

    def push_filtered(self, filtered: FloatArray) -> IndexArray:
        if filtered.size:
            clipped = np.maximum(filtered, 0.0)
            energy = clipped * clipped
            peak_avg = self._ma_peak.process(energy)
            beat_avg = self._ma_beat.process(energy)
            # Exponential mean of the energy, started at the first value; the section carries its state exactly.
            if self._mean_state is None:
                self._mean_state = np.array([[[(1.0 - self._alpha) * float(energy[0]), 0.0]]])
            means = energy[None].copy()
            sosfilt_kernel(self._mean_sos, means, self._mean_state)
            self._filtered = np.concatenate((self._filtered, filtered))
            self._peak_avg = np.concatenate((self._peak_avg, peak_avg))
            self._beat_avg = np.concatenate((self._beat_avg, beat_avg))
            self._limit = np.concatenate((self._limit, beat_avg + BETA * means[0]))
            self._n += filtered.size
            self._classify(self._n - 1 - self._h2)
            self._trim()
        return self._emit(self._n - 1 - self.latency_samples)

    def flush(self) -> IndexArray:
        if not self._closed:
            self._closed = True
            if self._block_start is not None and not self._block_overlong:
                self._decide(self._block_start, min(self._next_t, self._n))
            self._block_start = None
        return self._emit(None)

    def _classify(self, last_t: int) -> None:
        """Blocks of interest for centre times ``_next_t .. last_t``."""
        first_t = self._next_t
        if last_t < first_t:
            return
        ts = np.arange(first_t, last_t + 1)
        inside = self._peak_avg[ts + self._h1 - self._base] > self._limit[ts + self._h2 - self._base]
        previous = self._block_start is not None
        changes = np.flatnonzero(np.diff(np.concatenate(([previous], inside)).astype(np.int8)))
        for c in changes:
            t = first_t + int(c)
            if self._block_start is None:
                self._block_start, self._block_overlong = t, False
            else:
                if not self._block_overlong:
                    self._decide(self._block_start, t)
                self._block_start = None
        # A block that stays open too long is decided on its first MAX_BLOCK_S, then ignored to its end.
        start = self._block_start
        if start is not None and not self._block_overlong and last_t + 1 - start >= self._max_block:
            self._decide(start, start + self._max_block)
            self._block_overlong = True
        self._next_t = last_t + 1

    def _decide(self, start: int, stop: int) -> None:
        if stop - start < self._w1:
            return
        segment = self._filtered[start - self._base : stop - self._base]
        peak = start + int(np.argmax(segment))
        if self._pending:
            previous = self._pending[-1]
            if peak - previous < self._min_interval:
                if segment.max() > self._filtered[previous - self._base]:
                    self._pending[-1] = peak
                return
        bisect.insort(self._pending, peak)

    def _trim(self) -> None:
        needed = self._next_t
        if self._block_start is not None and not self._block_overlong:
            needed = min(needed, self._block_start)
        if self._pending:
            needed = min(needed, self._pending[-1])
        excess = min(self._filtered.size - self._keep, needed - self._base)
        if excess > 0:
            self._filtered = self._filtered[excess:]
            self._peak_avg = self._peak_avg[excess:]
            self._beat_avg = self._beat_avg[excess:]
            self._limit = self._limit[excess:]
            self._base += excess

    def _emit(self, until: int | None) -> IndexArray:
        count = len(self._pending) if until is None else bisect.bisect_right(self._pending, until)
        out = np.asarray(self._pending[:count], dtype=np.int64)
        del self._pending[:count]
        return out


def detect_pulses(signal: ArrayLike, fs: float) -> IndexArray:
    """Systolic-peak indices of a whole pleth signal: the streaming detector fed at once, then flushed."""
    detector = PulseDetector(fs)
    return np.concatenate((detector.push(signal), detector.flush())).astype(np.int64)


def perfusion_index(raw: ArrayLike, fs: float, pulses: ArrayLike | None = None) -> float | None:
    """AC/DC of a raw photodiode channel in %, AC the median pulse amplitude (peak to trough, 0.5-8 Hz).

    None when there are fewer than two pulses or no positive DC level.
    """
    x = np.asarray(raw, dtype=np.float64)
    dc = float(x.mean()) if x.size else 0.0
    if dc == 0.0:
        return None
    filtered = SosFilter(ppg_sos(fs)).process(x - x[0])
    if pulses is None:
        # Intensity falls in systole, so the pulse peaks are those of the negated signal.
        pulses = detect_pulses(-x if dc > 0 else x, fs)
    p = np.asarray(pulses, dtype=np.int64)
    if p.size < 2:
        return None
    return 100.0 * _median_pulse_amplitude(filtered, p) / abs(dc)


def _median_pulse_amplitude(filtered: FloatArray, pulses: IndexArray) -> float:
    """Median peak-to-trough excursion of the band-passed pleth from one pulse to the next."""
    return float(np.median([np.ptp(filtered[a:b]) for a, b in itertools.pairwise(pulses.tolist())]))


@dataclass(frozen=True, slots=True)
class Spo2Calibration:
    """SpO2 (%) = sum of ``coefficients[i] * R**i`` for R between ``full_ratio`` and ``max_ratio``.

    At or below ``full_ratio`` the curve has reached 100 % and SpO2 reads 100 %, as oximeters display it.
    Above ``max_ratio`` (SpO2 under 50 %) or below ``min_ratio`` the ratio is out of range: under about
    half the full-saturation ratio the red pulsation is too small to be arterial blood (a red LED or
    ambient light fault).
    """

    name: str
    coefficients: tuple[float, ...]
    full_ratio: float
    max_ratio: float
    min_ratio: float = 0.2

    def spo2(self, ratio: float) -> float:
        if ratio <= self.full_ratio:
            return 100.0
        return min(100.0, float(sum(c * ratio**i for i, c in enumerate(self.coefficients))))


# The generic empirical linear curve SpO2 = 110 - 25 R of pulse-oximetry teaching and application material
# (ratio of ratios and its empirical calibration: Webster (ed.), Design of Pulse Oximeters, IOP 1997).
# R = 0.4 gives 100 %, R = 2.4 gives 50 %, the lower plausibility limit.
LINEAR_110_25 = Spo2Calibration("linear 110-25R", (110.0, -25.0), full_ratio=0.4, max_ratio=2.4)
# Maxim Integrated MAXREFDES117 reference firmware (algorithm.h): -45.060 R^2 + 30.354 R + 94.845, for
# the MAX30102 module it was fitted to. Its maximum, 100 %, is at R = 0.34; it reaches 50 % near R = 1.36.
MAXIM_RD117 = Spo2Calibration(
    "Maxim MAXREFDES117 quadratic", (94.845, 30.354, -45.060), full_ratio=0.34, max_ratio=1.36
)


@dataclass(frozen=True, slots=True)
class Spo2Estimate:
    """Ratio-of-ratios SpO2 of a red/IR stretch. ``spo2`` is None when the ratio cannot be trusted."""

    spo2: float | None
    ratio: float | None
    correlation: float
    perfusion_index: float | None
    calibration: str
    flags: frozenset[Flag]


def estimate_spo2(
    red: ArrayLike,
    ir: ArrayLike,
    fs: float,
    calibration: Spo2Calibration = LINEAR_110_25,
) -> Spo2Estimate:
    """SpO2 from raw red and IR photodiode channels (same samples, positive DC) by the ratio of ratios.

    R = (AC_red / DC_red) / (AC_ir / DC_ir), with the AC ratio taken as the least-squares slope of the
    DC-normalised, band-passed red pulsation against the IR one: noise in a single peak or trough then
    does not set R. Each sensor needs its own calibration (ISO 80601-2-61 requires a controlled
    desaturation study); the default curve is the generic textbook one.
    """
    r = np.asarray(red, dtype=np.float64)
    i = np.asarray(ir, dtype=np.float64)
    if r.shape != i.shape or r.size < round(2 * fs):
        raise ValueError("red and ir must be equal-length stretches of at least 2 s")
    dc_red, dc_ir = float(r.mean()), float(i.mean())
    flags: set[Flag] = set()
    pi = perfusion_index(i, fs)
    if dc_red <= 0 or dc_ir <= 0:
        return Spo2Estimate(None, None, 0.0, pi, calibration.name, frozenset({Flag.LOW_SIGNAL_QUALITY}))
    # Skip the filter's start-up second; both channels go through identical filters.
    skip = min(round(fs), r.size // 4)
    ac_red = SosFilter(ppg_sos(fs)).process(r - r[0])[skip:] / dc_red
    ac_ir = SosFilter(ppg_sos(fs)).process(i - i[0])[skip:] / dc_ir
    power_ir = float(ac_ir @ ac_ir)
    power_red = float(ac_red @ ac_red)
    if power_ir <= 0 or power_red <= 0:
        return Spo2Estimate(None, None, 0.0, pi, calibration.name, frozenset({Flag.LOW_SIGNAL_QUALITY}))
    cross = float(ac_red @ ac_ir)
    ratio = cross / power_ir
    correlation = cross / float(np.sqrt(power_ir * power_red))
    if pi is not None and pi < LOW_PERFUSION_PI:
        flags.add(Flag.LOW_PERFUSION)
    if correlation < SPO2_MIN_CORRELATION:
        flags.add(Flag.MOTION_ARTIFACT)
    if not calibration.min_ratio <= ratio <= calibration.max_ratio:
        flags.add(Flag.OUT_OF_RANGE)
    trusted = not flags & {Flag.MOTION_ARTIFACT, Flag.OUT_OF_RANGE}
    spo2 = calibration.spo2(ratio) if trusted else None
    return Spo2Estimate(spo2, ratio, correlation, pi, calibration.name, frozenset(flags))


@dataclass(frozen=True, slots=True)
class PpgSummary:
    """What one PPG strip says: pulses, pulse rate (/min, 60 / median interval of usable windows), perfusion
    index (%, raw intensity input only), quality and flags."""

    fs: float
    duration_s: float
    pulses: tuple[int, ...]
    pulse_rate: float | None
    pulse_intervals_ms: tuple[float, ...]
    perfusion_index: float | None
    signal_quality: float
    windows: tuple[PpgWindowQuality, ...]
    flags: frozenset[Flag]
    fit_for_alerting: bool
    latency_s: float


class PpgAnalyzer:
    """Streaming PPG pipeline for one strip: band-pass, pulse detection and window quality.

    ``raw_intensity=True`` says the samples are raw photodiode intensity with their DC level (HealthyPi
    red/IR channels): pulses are found on the negated signal and the perfusion index is reported.
    Otherwise the samples are a display pleth (systole up, arbitrary offset) and there is no perfusion
    index. ``rails`` are the input's clipping limits when known (0 and 127 for a CMS50 pleth).
    """

    def __init__(self, fs: float, *, raw_intensity: bool = False, rails: tuple[float, float] | None = None) -> None:
        self.fs = float(fs)
        self.detector = PulseDetector(fs)
        self._sign = -1.0 if raw_intensity else 1.0
        self._raw_intensity = raw_intensity
        self._rails = rails
        self._window = max(1, round(WINDOW_S * fs))
        self._min_window = max(1, round(MIN_WINDOW_S * fs))
        self._piece = max(1, round(fs))
        capacity = 2 * self._window + self.detector.latency_samples + 2 * self._piece
        self._raw = History(capacity)
        self._filtered = History(capacity)
        self._pulses: list[int] = []
        self._windows: list[PpgWindowQuality] = []
        self._perfusion: list[float] = []
        self._next_window = 0
        self._summary: PpgSummary | None = None

    @property
    def latency_s(self) -> float:
        return self.detector.latency_s

    def push(self, chunk: ArrayLike) -> IndexArray:
        if self._summary is not None:
            raise RuntimeError("the strip is finished; make a new analyser for a new strip")
        x = np.asarray(chunk, dtype=np.float64).ravel()
        found: list[IndexArray] = []
        for start in range(0, x.size, self._piece):
            piece = x[start : start + self._piece]
            filtered = self.detector.filter(self._sign * piece)
            pulses = self.detector.push_filtered(filtered)
            self._raw.append(piece)
            self._filtered.append(filtered)
            if pulses.size:
                self._pulses.extend(int(p) for p in pulses)
                found.append(pulses)
            self._assess_ready_windows(final=False)
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)

    def finish(self) -> PpgSummary:
        if self._summary is None:
            self._pulses.extend(int(p) for p in self.detector.flush())
            self._assess_ready_windows(final=True)
            self._summary = self._summarise()
        return self._summary

    def _assess_ready_windows(self, *, final: bool) -> None:
        n = self._raw.end
        horizon = n if final else n - self.detector.latency_samples
        while self._next_window + self._window <= horizon:
            self._assess(self._next_window, self._next_window + self._window)
            self._next_window += self._window
        if not final:
            return
        tail = n - self._next_window
        if tail <= 0:
            return
        if tail >= self._min_window or not self._windows:
            self._assess(self._next_window, n)
        elif self._windows[-1].start >= self._raw.start:
            last = self._windows.pop()
            if self._raw_intensity and self._perfusion:
                self._perfusion.pop()
            self._assess(last.start, n)
        self._next_window = n

    def _assess(self, start: int, stop: int) -> None:
        pulses = np.asarray(self._pulses, dtype=np.int64)
        inside = pulses[(pulses >= start) & (pulses < stop)] - start
        raw = self._raw.get(start, stop)
        filtered = self._filtered.get(start, stop)
        quality = assess_ppg_window(raw, filtered, inside, self.fs, start, rails=self._rails)
        self._windows.append(quality)
        if self._raw_intensity:
            dc = float(raw.mean())
            if inside.size >= 2 and dc != 0.0:
                self._perfusion.append(100.0 * _median_pulse_amplitude(filtered, inside) / abs(dc))
            else:
                self._perfusion.append(float("nan"))

    def _summarise(self) -> PpgSummary:
        fs = self.fs
        pulses = np.asarray(self._pulses, dtype=np.int64)
        usable = np.zeros(pulses.size, dtype=bool)
        for w in self._windows:
            if w.usable:
                usable |= (pulses >= w.start) & (pulses < w.stop)
        intervals = np.diff(pulses) / fs
        good = intervals[usable[:-1] & usable[1:]] if pulses.size > 1 else np.empty(0)
        rate = 60.0 / float(np.median(good)) if good.size else None
        pi_values = [p for p, w in zip(self._perfusion, self._windows, strict=False) if w.usable and np.isfinite(p)]
        pi = float(np.median(pi_values)) if pi_values else None
        analysed = sum(w.stop - w.start for w in self._windows)
        usable_time = sum(w.stop - w.start for w in self._windows if w.usable)
        flags: set[Flag] = set()
        if any(not w.usable for w in self._windows) or not self._windows:
            flags.add(Flag.LOW_SIGNAL_QUALITY)
        # Pulses at a plausible rate whose shape or size keeps changing are moved, not missing
        # (Orphanidou et al. 2015; Sukor et al. 2011; Lim et al., Physiol Meas 39:105005, 2018).
        if any(w.motion for w in self._windows):
            flags.add(Flag.MOTION_ARTIFACT)
        if pi is not None and pi < LOW_PERFUSION_PI:
            flags.add(Flag.LOW_PERFUSION)
        return PpgSummary(
            fs=fs,
            duration_s=self._raw.end / fs,
            pulses=tuple(int(p) for p in pulses),
            pulse_rate=rate,
            pulse_intervals_ms=tuple(float(v) for v in good * 1000.0),
            perfusion_index=pi,
            signal_quality=usable_time / analysed if analysed else 0.0,
            windows=tuple(self._windows),
            flags=frozenset(flags),
            fit_for_alerting=rate is not None and not flags & UNFIT_FLAGS,
            latency_s=self.latency_s,
        )


def analyze_ppg(
    pleth: ArrayLike, fs: float, *, raw_intensity: bool = False, rails: tuple[float, float] | None = None
) -> PpgSummary:
    """Summarise a whole PPG strip with the streaming analyser."""
    analyzer = PpgAnalyzer(fs, raw_intensity=raw_intensity, rails=rails)
    analyzer.push(pleth)
    return analyzer.finish()
