"""Streaming QRS detector (Pan-Tompkins energy envelope, Hamilton decision rules) with a fixed latency."""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from healthhut.gateway.dsp.filters import (
    FloatArray,
    ecg_conditioning_sos,
    qrs_derivative_sos,
    sosfilt_kernel,
    sosfilt_zi,
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
# The 150 ms integration is a running sum (add the newest squared sample, drop the oldest). Its rounding
# error would drift without bound over days, so at every multiple of this many samples (absolute index,
# hence the same for any chunking) the sum is recomputed from its window.
RESUM_EVERY = 1 << 16
# A large push is processed in pieces of at most this many samples, which bounds the buffers.
PIECE = 8192

# Rows of the sample buffer: the input, the conditioned ECG, the QRS-band derivative, its square (the
# energy), and the energy summed over the 150 ms integration window (the envelope).
_RAW, _CONDITIONED, _DERIVATIVE, _ENERGY, _ENVELOPE = range(5)


class _Candidate(NamedTuple):
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

    Samples are filtered and examined in batches: a push only stores its samples while no R peak can
    become due before the next push (see ``_needs_processing``), so most pushes of a short chunk cost a
    copy. ``recent`` returns filtered samples from ``history`` samples before the reported horizon (the
    newest sample minus the latency) on.
    """

    def __init__(self, fs: float, mains_hz: float = 50.0, *, history: int = 0) -> None:
        if not fs > 0:
            raise ValueError("fs must be positive")
        self.fs = float(fs)
        self._conditioning_sos = np.ascontiguousarray(ecg_conditioning_sos(fs, mains_hz))
        self._qrs_sos = np.ascontiguousarray(qrs_derivative_sos(fs))
        self._conditioning_zi_unit = sosfilt_zi(self._conditioning_sos)[None]
        self._qrs_zi_unit = sosfilt_zi(self._qrs_sos)[None]
        self._conditioning_zi: FloatArray | None = None
        self._qrs_zi: FloatArray | None = None
        self._window = max(1, round(INTEGRATION_S * fs))
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
        # History needed behind the scan frontier: the noise-floor memory, the first-beat look-back, the
        # R-peak search window or the slope window, whichever reaches furthest.
        self._behind = max(self._floor_memory, self._first_lookback, self._search_back, self._window) + 2
        # Samples are held in one buffer of rows addressed by absolute index minus ``_offset``. It starts
        # with zeros standing for the samples before the first (the integrator's initial history).
        self._history = max(0, history) + self.latency_samples
        retain = max(self._history, self._behind + 2 * self.latency_samples)
        # Room for two more retained spans: dropping old samples copies what is retained, so the more room
        # behind it, the rarer (and cheaper per sample) that copy.
        self._set_buffer(np.zeros((5, self._window + 1 + retain + max(2 * retain, PIECE))))
        self._offset = -(self._window + 1)
        self._n = 0  # samples pushed so far
        self._done = 0  # samples filtered so far
        self._next_scan = self._settle  # first envelope index not yet examined as a candidate
        self._qrs_levels: deque[float] = deque(maxlen=LEVEL_MEMORY)
        self._noise_levels: deque[float] = deque(maxlen=LEVEL_MEMORY)
        # Their medians, updated with them (``_record``, ``_add_noise``); the noise level is 0 while none is known.
        self._qrs_level = 0.0
        self._noise_level = 0.0
        self._rr_recent: deque[int] = deque(maxlen=LEVEL_MEMORY)
        self._rr_regular: deque[int] = deque(maxlen=LEVEL_MEMORY)
        self._rr_mean = self._rr_average()  # kept up to date by _record
        self._last: _Candidate | None = None
        self._missed: list[_Candidate] = []  # rejected since the last beat, above the search-back level
        self._pending: list[int] = []
        self._due_from = _NEVER  # the sample count from which the first pending peak is due
        self._closed = False
        self._wake = 0  # the sample count from which a push must process (see ``_needs_processing``)

    def _set_buffer(self, buffer: FloatArray) -> None:
        self._buffer = buffer
        self._capacity = buffer.shape[1]
        # Row views, kept with the buffer: indexing a row of the 2-D buffer on every use costs more.
        self._raw, self._conditioned, self._derivative, self._energy, self._envelope = buffer
        # One-row 2-D views, as the section loop takes them.
        self._conditioned_rows = buffer[_CONDITIONED : _CONDITIONED + 1]
        self._derivative_rows = buffer[_DERIVATIVE : _DERIVATIVE + 1]
        # Where each refractory-long block of a span of the buffer starts (``_scan_blocks``).
        self._block_starts = np.arange(0, self._capacity + self._refractory, self._refractory)

    @property
    def latency_s(self) -> float:
        return self.latency_samples / self.fs

    @property
    def pushed(self) -> int:
        """Samples pushed so far."""
        return self._n

    def push(self, chunk: ArrayLike) -> IndexArray:
        """Feed samples; return the R peaks (absolute indices) that became final with this chunk."""
        if self._closed:
            raise RuntimeError("the detector was flushed; make a new one for a new signal")
        # A 1-D float64 array is stored as it is (the store copies it); anything else is converted first.
        x = chunk if type(chunk) is np.ndarray and chunk.dtype is _FLOAT64 and chunk.ndim == 1 else _samples(chunk)
        size = x.size
        if size > PIECE:
            for start in range(0, size, PIECE):
                self._store(x[start : start + PIECE])
                self._process()
        elif size:
            # ``_store`` inlined: most pushes of a short chunk do nothing else.
            n = self._n
            end = n - self._offset
            if end + size > self._capacity:
                self._make_room(size)
                end = n - self._offset
            self._raw[end : end + size] = x
            self._n = n + size
            if self._needs_processing():
                self._process()
        if self._n < self._due_from:
            return _NO_PEAKS
        return self._emit(self._n - 1 - self.latency_samples)

    def flush(self) -> IndexArray:
        """Decide the candidates at the end of a finite signal and return every peak still held back."""
        if not self._closed:
            self._filter()
            self._scan_exact(self._n - 2)
            self._closed = True
        return self._emit(None)

    def recent(self, start: int, stop: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Input, conditioned ECG and QRS-band derivative of samples ``start..stop-1``, all filtered already.

        Views into the detector's buffer: valid until the next push. Samples more than ``history`` before
        the reported horizon may be gone.
        """
        if start < max(0, self._offset) or stop > self._done or start > stop:
            held = max(0, self._offset)
            raise IndexError(f"samples {start}..{stop} are not held and filtered (have {held}..{self._done})")
        a, b = start - self._offset, stop - self._offset
        return self._raw[a:b], self._conditioned[a:b], self._derivative[a:b]

    # -- samples ------------------------------------------------------------------------------------

    def _store(self, x: FloatArray) -> None:
        if not x.size:
            return
        end = self._n - self._offset
        if end + x.size > self._capacity:
            self._make_room(x.size)
            end = self._n - self._offset
        # Only the input row: ``_filter`` copies it into the rows it filters in place, a batch at a time.
        self._raw[end : end + x.size] = x
        self._n += x.size

    def _make_room(self, size: int) -> None:
        """Drop samples nothing will read again; grow the buffer if that is not enough.

        The energy and envelope rows are read only near the scan frontier; the input, conditioned and
        derivative rows also by ``recent``, up to ``history`` back. Each row keeps only what it needs (the
        rest of the energy and envelope rows is stale and never read).
        """
        detection_from = min(self._done - self._window - 1, self._next_scan - self._behind - self._refractory)
        drop = max(0, min(detection_from, self._n - self._history) - self._offset)
        held = self._n - self._offset - drop
        capacity = self._capacity
        if held + size > capacity:
            capacity = 2 * (held + size)
        buffer = self._buffer
        fresh = np.zeros((5, capacity)) if capacity != self._capacity else buffer
        fresh[:_ENERGY, :held] = buffer[:_ENERGY, drop : drop + held]
        skip = min(held, max(0, detection_from - self._offset - drop))
        fresh[_ENERGY:, skip:held] = buffer[_ENERGY:, drop + skip : drop + held]
        self._set_buffer(fresh)
        self._offset += drop

    def _needs_processing(self) -> bool:
        """Whether this push may complete an R peak, so the new samples must be filtered and examined now.

        Every R peak still unknown comes either from an envelope peak not yet examined, at or after
        ``_next_scan``, and lies at most ``_search_back`` before it, or is a held-back missed candidate that a
        later beat recovers. While all of those lie after the last sample this push must report on, the
        samples can wait: the peaks and their timing are exactly those of examining every push. Only
        ``_process`` changes what that earliest sample is, so it sets ``_wake`` once for the pushes after it.
        """
        return self._n >= self._wake

    def _earliest_unknown(self) -> int:
        """The earliest sample at which an R peak not yet found may lie (before the first beat, far enough back
        that every push processes)."""
        if not self._qrs_levels:  # before the first beat the look-ahead is longer: no waiting
            return -self.latency_samples
        earliest = self._next_scan - self._search_back
        if self._last is not None:
            # ``_locate`` places a new R peak at least a refractory period after the last one.
            earliest = max(earliest, self._last.r_peak + self._refractory)
        if self._missed:
            earliest = min(earliest, *(missed.r_peak for missed in self._missed))
        return earliest

    def _process(self) -> None:
        self._filter()
        # Until the first QRS is known, a candidate waits for the whole hold time to be compared with.
        lookahead = self._refractory + (self._hold if not self._qrs_levels else 0)
        last = self._n - lookahead - 1
        if self._next_scan - self._refractory >= 1 and last + self._refractory <= self._n - 1:
            self._scan_blocks(last)
        else:
            self._scan_exact(last)
        self._wake = self._earliest_unknown() + 1 + self.latency_samples

    def _filter(self) -> None:
        """Condition, differentiate, square and integrate the samples pushed since the last call."""
        off = self._offset
        a, b = self._done - off, self._n - off
        if a >= b:
            return
        # The section loop filters (n_signals, n_samples) in place: one-row views of the buffer.
        conditioned = self._conditioned
        conditioned[a:b] = self._raw[a:b]
        if self._conditioning_zi is None:
            self._conditioning_zi = self._conditioning_zi_unit * conditioned[a]
        if self._conditioning_sos.shape[0]:
            sosfilt_kernel(self._conditioning_sos, self._conditioned_rows[:, a:b], self._conditioning_zi)
        slope = self._derivative[a:b]
        slope[:] = conditioned[a:b]
        if self._qrs_zi is None:
            self._qrs_zi = self._qrs_zi_unit * slope[0]
        sosfilt_kernel(self._qrs_sos, self._derivative_rows[:, a:b], self._qrs_zi)
        energy = self._energy[a:b]
        np.multiply(slope, slope, energy)
        # The envelope is the energy's running sum over the integration window (Pan-Tompkins' moving average
        # times its width; the detector is scale-free): add the newest sample, drop the oldest. The sum so
        # far is the envelope sample before ``a`` (zero before the first sample), so one accumulation from
        # there adds it in.
        w = self._window
        np.subtract(energy, self._energy[a - w : b - w], self._envelope[a:b])
        start = self._done
        if self._n < (start // RESUM_EVERY + 1) * RESUM_EVERY:  # the usual case: no re-sum point inside
            running = self._envelope[a - 1 : b]
            np.add.accumulate(running, 0, None, running)
            self._done = self._n
            return
        while start < self._n:
            stop = min(self._n, (start // RESUM_EVERY + 1) * RESUM_EVERY)
            i, j = start - off, stop - off
            running = self._envelope[i - 1 : j]
            np.add.accumulate(running, 0, None, running)
            if stop % RESUM_EVERY == 0:
                running[-1] = self._energy[j - w : j].sum()
            start = stop
        self._done = self._n

    # -- candidates ---------------------------------------------------------------------------------

    def _scan_exact(self, last: int) -> None:
        """Examine envelope samples ``_next_scan .. last`` as QRS candidates: local maxima that dominate
        +-refractory (ties to the earlier one); windows are cut at the first and the newest sample."""
        start = max(self._next_scan, 1)
        last = min(last, self._n - 2)
        if last < start:
            return
        env, off, r = self._envelope, self._offset, self._refractory
        i0, i1 = start - off, last - off
        mid = env[i0 : i1 + 1]
        maxima = i0 + np.flatnonzero((mid > env[i0 - 1 : i1]) & (mid >= env[i0 + 1 : i1 + 2]))
        first, end = -off, self._n - off
        for i in maxima.tolist():
            peak = float(env[i])
            if i > first and peak <= _largest(env[max(first, i - r) : i]):
                continue
            if peak < _largest(env[i + 1 : min(end, i + r + 1)]):
                continue
            self._consider(i + off, peak)
        self._next_scan = last + 1

    def _scan_blocks(self, last: int) -> None:
        """As ``_scan_exact`` (same candidates, same order) where the +-refractory windows are whole.

        A dominant sample is the first maximum of any block of ``refractory`` samples around it, so only
        block maxima are candidates, and mostly the neighbouring blocks' maxima settle whether they
        dominate; the envelope is read directly only where they cannot.
        """
        start = self._next_scan
        if last < start:
            return
        env, off, r = self._envelope, self._offset, self._refractory
        count = (last - start) // r + 1  # blocks holding start..last; block 0 is the one before them
        span = env[start - r - off : start + count * r - off]
        where = span.reshape(count + 1, r).argmax(1)
        firsts = where.tolist()
        where += self._block_starts[: count + 1]
        peaks = span[where].tolist()
        block = start - r
        for k in range(1, count + 1):
            block += r  # the first sample of block k: start + (k - 1) * r
            first = firsts[k]
            p = block + first
            if p > last:
                break
            peak = peaks[k]
            # Everything before p in its block is below it and everything after is not above it, so only
            # the neighbouring blocks' parts inside +-r can overrule it: all of the block before when its
            # maximum is at or after p's place in its block (``firsts[k - 1] >= first``), all of the block
            # after when its maximum is at or before it.
            if peaks[k - 1] >= peak and (firsts[k - 1] >= first or _largest(env[p - r - off : block - off]) >= peak):
                continue
            if k < count:
                if peaks[k + 1] > peak and (
                    firsts[k + 1] <= first or _largest(env[block + r - off : p + r + 1 - off]) > peak
                ):
                    continue
            elif _largest(env[block + r - off : p + r + 1 - off]) > peak:
                continue
            self._consider(p, peak)
        self._next_scan = last + 1

    def _consider(self, p: int, amplitude: float) -> None:
        """Classify the dominant envelope peak ``p``: QRS, missed-beat candidate or noise."""
        i = p - self._offset
        # The steepest QRS-band slope in the integration window; sqrt of a rounded square is exact.
        energy = self._energy[i - self._window + 1 : i + 1]
        slope = math.sqrt(energy.item(energy.argmax()))
        if not self._qrs_levels:
            if self._first_beat(i, amplitude):
                self._accept_new(p, amplitude, slope)
            else:
                self._add_noise(amplitude)
            return
        last = self._last
        if last is not None:
            gap = p - last.envelope_peak
            is_t_wave = gap < self._t_wave and slope < T_WAVE_SLOPE_RATIO * last.slope
        else:
            gap, is_t_wave = p, False
        # Hamilton's threshold between the noise-peak and the QRS-peak level.
        noise_level = self._noise_level
        primary = noise_level + THRESHOLD_COEFF * (self._qrs_level - noise_level)
        # ``_overdue_threshold`` only when the beat is overdue: mostly it is not.
        overdue = gap - OVERDUE_RR_RATIO * self._rr_mean
        threshold = self._overdue_threshold(primary, overdue, p) if overdue > 0 else primary
        if amplitude >= threshold and not is_t_wave:
            if amplitude < SEARCH_BACK_RATIO * primary:
                # Found only after the threshold decayed past the search-back level: the learnt QRS
                # level is wrong (artefact, or the QRS shrank), so learn it again from this beat.
                self._qrs_levels.clear()
            self._accept_new(p, amplitude, slope)
            return
        self._add_noise(amplitude)
        if amplitude >= SEARCH_BACK_RATIO * primary and not is_t_wave:
            r = self._locate(p)
            if r is not None:
                self._missed.append(_Candidate(p, r, amplitude, slope))

    def _add_noise(self, amplitude: float) -> None:
        levels = self._noise_levels
        levels.append(amplitude)
        self._noise_level = _median(levels)

    def _overdue_threshold(self, primary: float, overdue: float, p: int) -> float:
        """The threshold for a candidate ``overdue`` samples past 166 % of the mean RR (``overdue > 0``)."""
        decayed = primary * math.pow(SEARCH_BACK_RATIO, 1.0 + overdue / self._halving)
        i = p - self._offset
        recent = self._envelope[max(-self._offset, i - self._floor_memory) : i + 1]
        floor = NOISE_FLOOR_RATIO * float(np.percentile(recent, FLOOR_PERCENTILE))
        return max(decayed, floor)

    def _first_beat(self, i: int, amplitude: float) -> bool:
        # Before any QRS is known a candidate must reach half the largest envelope around it: from one second
        # before (after the filters settled) to the end of the hold time after it, which holds at least one
        # QRS at any rate above 50 /min. That rules out the T wave or noise a strip may start with.
        lo = max(self._settle - self._offset, i - self._first_lookback)
        hi = min(self._n - self._offset, i + self._refractory + self._hold + 1)
        return amplitude >= 0.5 * float(_largest(self._envelope[lo:hi]))

    def _rr_average(self) -> float:
        if not self._rr_recent:
            return DEFAULT_RR_S * self.fs
        recent = sum(self._rr_recent) / len(self._rr_recent)
        if not self._rr_regular:
            return recent
        return min(recent, sum(self._rr_regular) / len(self._rr_regular))

    def _locate(self, p: int) -> int | None:
        """The R peak: the largest deviation of the conditioned ECG in the window behind envelope peak ``p``."""
        lo = max(p - self._search_back, 0)
        last = self._last
        if last is not None and last.r_peak + self._refractory > lo:
            lo = last.r_peak + self._refractory
        if lo > p:
            return None
        off = self._offset
        segment = self._conditioned[lo - off : p - off + 1]
        # The median as np.median computes it, without its overhead: the middle value, or the mean of two.
        size = segment.size
        half = size // 2
        ordered = segment.copy()
        if size % 2:
            ordered.partition(half)
            median = ordered.item(half)
        else:
            ordered.partition((half - 1, half))
            median = (ordered.item(half - 1) + ordered.item(half)) / 2
        # The sample farthest from the median is the maximum or the minimum; the earlier one on a tie.
        top, bottom = int(segment.argmax()), int(segment.argmin())
        above, below = segment.item(top) - median, median - segment.item(bottom)
        if above > below or (above == below and top < bottom):
            return lo + top
        return lo + bottom

    def _accept_new(self, p: int, amplitude: float, slope: float) -> None:
        last = self._last
        if last is not None and self._missed and p - last.envelope_peak > OVERDUE_RR_RATIO * self._rr_mean:
            self._search_back_between(p)
        self._missed.clear()
        r = self._locate(p)
        if r is None:
            self._add_noise(amplitude)
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
            recent, regular = self._rr_recent, self._rr_regular
            recent.append(rr)
            # ``_rr_average`` written out: this runs once per beat.
            recent_mean = sum(recent) / len(recent)
            average = min(recent_mean, sum(regular) / len(regular)) if regular else recent_mean
            if not regular or RR_REGULAR[0] * average <= rr <= RR_REGULAR[1] * average:
                regular.append(rr)
                average = min(recent_mean, sum(regular) / len(regular))
            self._rr_mean = average
        levels = self._qrs_levels
        levels.append(beat.amplitude)
        self._qrs_level = _median(levels)
        self._last = beat
        pending = self._pending
        bisect.insort(pending, beat.r_peak)
        self._due_from = pending[0] + 1 + self.latency_samples

    def _emit(self, until: int | None) -> IndexArray:
        pending = self._pending
        count = len(pending) if until is None else bisect.bisect_right(pending, until)
        out = np.array(pending[:count], dtype=np.int64)
        del pending[:count]
        self._due_from = pending[0] + 1 + self.latency_samples if pending else _NEVER
        return out


def _largest(values: FloatArray) -> float:
    """The largest of ``values`` (NaN if there is one), as ``max`` gives it: ``argmax`` costs a fifth of a reduction."""
    return values.item(values.argmax())


_FLOAT64 = np.dtype(np.float64)
_NEVER = 1 << 62  # a sample count no signal reaches
# What a push returns when it confirms no peak: one shared empty array (it has no element to change).
_NO_PEAKS: IndexArray = np.empty(0, dtype=np.int64)


def _samples(chunk: ArrayLike) -> FloatArray:
    """A chunk as a 1-D float64 array."""
    x = np.asarray(chunk, dtype=np.float64)
    return x if x.ndim == 1 else x.ravel()


def _median(values: deque[float]) -> float:
    """statistics.median of a few values, without its overhead."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2
