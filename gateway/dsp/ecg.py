"""ECG path: streaming R-peak detection, then heart rate, RR intervals, quality and rhythm findings per strip."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from healthhut.gateway.dsp._buffers import block_stats
from healthhut.gateway.dsp._detector import EcgDetector, IndexArray
from healthhut.gateway.dsp.filters import FloatArray
from healthhut.gateway.dsp.quality import (
    BASSQI_SUSPICIOUS,
    BLOCK_S,
    FLAT_UV,
    EcgWindowQuality,
    assess_ecg_window,
    lead_problem_blocks,
)
from healthhut.gateway.dsp.rhythm import (
    Irregularity,
    RhythmFinding,
    RhythmLimits,
    irregular_segments,
    rate_findings,
)
from healthhut.protocol import Flag

__all__ = ["EcgAnalyzer", "EcgDetector", "EcgSummary", "analyze_ecg", "detect_r_peaks"]

# Li et al. (2008) and Orphanidou et al. (2015) grade 10 s windows. A trailing part shorter than 5 s holds
# too few beats for a template and too little of the 0-1 Hz band, so it joins the window before it.
WINDOW_S = 10.0
MIN_WINDOW_S = 5.0
# A gap is only a pause when nothing QRS-like happens inside it. Pan & Tompkins call a wave a T wave when
# its slope is under half the QRS slope; inside a pause every slope must stay under 0.3 of the strip's
# median QRS slope, leaving room for P waves (a tenth to a fifth of the QRS slope) but not for a missed,
# smaller QRS or for artefact. The T wave of the beat before (QT up to 0.5 s) and the onset of the beat
# after (QRS onset plus filter delay, 0.15 s) are left out of that check.
PAUSE_QUIET_SLOPE = 0.3
PAUSE_SKIP_AFTER_S = 0.5
PAUSE_SKIP_BEFORE_S = 0.15
BEAT_SLOPE_SPAN_S = (-0.05, 0.15)
# A strip is called irregularly irregular when the irregular segments hold at least half its analysed
# intervals, so that one segment of frequent ectopy in a long strip does not suggest AF.
AF_MIN_SHARE = 0.5
UNFIT_FLAGS = frozenset({Flag.LEAD_OFF, Flag.LOW_SIGNAL_QUALITY, Flag.MOTION_ARTIFACT})


def detect_r_peaks(signal: ArrayLike, fs: float, mains_hz: float = 50.0) -> IndexArray:
    """R-peak sample indices of a whole signal: the streaming detector fed at once, then flushed."""
    detector = EcgDetector(fs, mains_hz)
    return np.concatenate((detector.push(signal), detector.flush())).astype(np.int64)


@dataclass(frozen=True, slots=True)
class EcgSummary:
    """What one ECG strip says, with the flags that qualify it.

    ``heart_rate`` (/min) and ``rr_intervals_ms`` come only from beats inside usable windows; the rate is
    60 / median RR, so one ectopic beat or one missed or extra detection does not move a short strip's rate.
    ``signal_quality`` is the usable share of the analysed time (0..1). Rhythm findings have no protocol
    flag yet; they are ``rhythm``. ``fit_for_alerting`` is False when a flag says the numbers are not to be
    trusted (lead off, poor quality, motion) or when there is no heart rate.
    """

    fs: float
    duration_s: float
    r_peaks: tuple[int, ...]
    heart_rate: float | None
    rr_intervals_ms: tuple[float, ...]
    signal_quality: float
    windows: tuple[EcgWindowQuality, ...]
    rhythm: frozenset[RhythmFinding]
    longest_pause_s: float | None
    irregularity: tuple[Irregularity, ...]
    flags: frozenset[Flag]
    fit_for_alerting: bool
    latency_s: float


class EcgAnalyzer:
    """Streaming ECG pipeline for one strip: filters, R-peak detection and window quality as samples arrive.

    Feed samples in µV with ``push``; it returns the R peaks confirmed so far (as ``EcgDetector.push``).
    ``finish()`` ends the strip and returns its ``EcgSummary``. ``rails`` are the input's clipping limits
    in µV when the device states them. Memory grows with the strip (beats and 100 ms blocks): meant for
    measurement strips of seconds to tens of minutes, not for endless monitoring.
    """

    def __init__(
        self,
        fs: float,
        *,
        mains_hz: float = 50.0,
        rails: tuple[float, float] | None = None,
        limits: RhythmLimits | None = None,
        flat_uv: float = FLAT_UV,
    ) -> None:
        self.fs = float(fs)
        self._rails = rails
        self._limits = limits or RhythmLimits()
        self._flat_uv = flat_uv
        # Windows hold a whole number of blocks, so block statistics line up across windows.
        self._block = max(1, round(BLOCK_S * fs))
        self._window = self._block * max(1, round(WINDOW_S / BLOCK_S))
        self._min_window = max(1, round(MIN_WINDOW_S * fs))
        self._piece = self._window  # big chunks go through a window at a time so the history stays bounded
        # Behind the reported horizon the detector keeps the last graded window, the one being filled and a
        # piece: the last window may be graded again with the strip's tail.
        self.detector = EcgDetector(fs, mains_hz, history=2 * self._window + self._piece + self._block)
        self._latency = self.detector.latency_samples
        self._beats: list[int] = []
        self._windows: list[EcgWindowQuality] = []
        self._blocks: list[tuple[FloatArray, FloatArray, FloatArray]] = []  # per window: lows, highs, slopes
        self._next_window = 0
        self._grade_from = self._window + self._latency  # samples pushed when the next window can be graded
        self._summary: EcgSummary | None = None

    @property
    def latency_s(self) -> float:
        return self.detector.latency_s

    @property
    def windows(self) -> tuple[EcgWindowQuality, ...]:
        """Window qualities assessed so far (each once its beats are final)."""
        return tuple(self._windows)

    def push(self, chunk_uv: ArrayLike) -> IndexArray:
        if self._summary is not None:
            raise RuntimeError("the strip is finished; make a new analyser for a new strip")
        x = np.asarray(chunk_uv, dtype=np.float64)  # the detector keeps its own copy
        if x.ndim != 1:
            x = x.ravel()
        if x.size <= self._piece:
            return self._push_piece(x)
        found = [self._push_piece(x[i : i + self._piece]) for i in range(0, x.size, self._piece)]
        return np.concatenate(found)

    def _push_piece(self, piece: FloatArray) -> IndexArray:
        detector = self.detector
        peaks = detector.push(piece)
        if peaks.size:
            self._beats.extend(peaks.tolist())
        # A window is graded once every beat inside it has been reported; its samples are filtered by then.
        if detector.pushed >= self._grade_from:
            self._assess_ready_windows(final=False)
        return peaks

    def finish(self) -> EcgSummary:
        """End the strip: decide the last beats, grade the last windows and summarise."""
        if self._summary is None:
            self._beats.extend(self.detector.flush().tolist())
            self._assess_ready_windows(final=True)
            self._summary = self._summarise()
        return self._summary

    # -- windows -------------------------------------------------------------------------------------

    def _assess_ready_windows(self, *, final: bool) -> None:
        n = self.detector.pushed
        # Every beat before this sample has been reported, so a window ending here can be graded.
        horizon = n if final else n - self._latency
        while self._next_window + self._window <= horizon:
            self._assess(self._next_window, self._next_window + self._window)
            self._next_window += self._window
        self._grade_from = self._next_window + self._window + self._latency
        if not final:
            return
        tail = n - self._next_window
        if tail <= 0:
            return
        if tail >= self._min_window or not self._windows:
            self._assess(self._next_window, n)
        else:
            last = self._windows.pop()
            self._blocks.pop()
            self._assess(last.start, n)
        self._next_window = n

    def _assess(self, start: int, stop: int) -> None:
        raw, conditioned, derivative = self.detector.recent(start, stop)
        beats = self._beats  # ascending: each push reports peaks after those of the pushes before
        inside = np.array(beats[bisect.bisect_left(beats, start) : bisect.bisect_left(beats, stop)], dtype=np.int64)
        lows, highs, slopes = block_stats(raw, derivative, self._block)
        self._windows.append(
            assess_ecg_window(
                raw,
                conditioned,
                inside - start,
                self.fs,
                start,
                flat_uv=self._flat_uv,
                rails=self._rails,
                blocks=(lows, highs),
            )
        )
        self._blocks.append((lows, highs, slopes))

    # -- summary -------------------------------------------------------------------------------------

    def _summarise(self) -> EcgSummary:
        fs = self.fs
        beats = np.asarray(self._beats, dtype=np.int64)
        windows = self._windows
        usable_beat = np.zeros(beats.size, dtype=bool)
        for w in windows:
            if w.usable:
                usable_beat |= (beats >= w.start) & (beats < w.stop)
        rr = np.diff(beats) / fs
        usable_rr = usable_beat[:-1] & usable_beat[1:] if beats.size > 1 else np.zeros(0, dtype=bool)
        good_rr = rr[usable_rr]
        heart_rate = 60.0 / float(np.median(good_rr)) if good_rr.size else None

        rhythm = rate_findings(heart_rate, self._limits)
        irregularity = tuple(irregular_segments(_runs(rr, usable_rr)))
        analysed = sum(s.intervals for s in irregularity)
        irregular = sum(s.intervals for s in irregularity if s.irregularly_irregular)
        if analysed and irregular >= AF_MIN_SHARE * analysed:
            rhythm.add(RhythmFinding.POSSIBLE_AF)
        pauses = self._pauses(beats, usable_beat)
        longest_pause = max(((after - first) / fs for first, after in pauses), default=None)
        if longest_pause is not None:
            rhythm.add(RhythmFinding.PAUSE)
            if longest_pause >= self._limits.asystole_s:
                rhythm.add(RhythmFinding.ASYSTOLE)

        # A window with no beats inside a confirmed pause is a clean record of no activity, not bad signal.
        def in_pause(w: EcgWindowQuality) -> bool:
            return w.beats < 2 and w.lead_problem_s == 0 and any(a <= w.start and w.stop <= b for a, b in pauses)

        good = [w.usable or in_pause(w) for w in windows]
        analysed_s = sum(w.stop - w.start for w in windows) / fs
        usable_s = sum(w.stop - w.start for w, ok in zip(windows, good, strict=True) if ok) / fs
        flags: set[Flag] = set()
        if any(w.lead_problem_s > 0 for w in windows):
            flags.add(Flag.LEAD_OFF)
        if not all(good) or not windows:
            flags.add(Flag.LOW_SIGNAL_QUALITY)
        # Zhao & Zhang (2018): an unqualified baseline index points at electrode motion or poor contact;
        # a flat or clipped lead explains a bad window by itself.
        if any(
            not ok and w.lead_problem_s == 0 and w.bassqi < BASSQI_SUSPICIOUS
            for w, ok in zip(windows, good, strict=True)
        ):
            flags.add(Flag.MOTION_ARTIFACT)
        if RhythmFinding.POSSIBLE_AF in rhythm:
            flags.add(Flag.IRREGULAR_PULSE)
        return EcgSummary(
            fs=fs,
            duration_s=self.detector.pushed / fs,
            r_peaks=tuple(beats.tolist()),
            heart_rate=heart_rate,
            rr_intervals_ms=tuple((good_rr * 1000.0).tolist()),
            signal_quality=usable_s / analysed_s if analysed_s else 0.0,
            windows=tuple(windows),
            rhythm=frozenset(rhythm),
            longest_pause_s=longest_pause,
            irregularity=irregularity,
            flags=frozenset(flags),
            fit_for_alerting=heart_rate is not None and not flags & UNFIT_FLAGS,
            latency_s=self.latency_s,
        )

    def _pauses(self, beats: IndexArray, usable_beat: np.ndarray) -> list[tuple[int, int]]:
        """Gaps of at least ``pause_s`` after a usable beat, with a connected lead and no QRS-like activity.

        A gap that holds a flat or clipped stretch, or any steep wave, is not a pause: it is a lead
        problem, artefact or a missed beat. A strip may end inside a pause. Returns (first, after) samples.
        """
        if not usable_beat.any() or not self._blocks:
            return []
        fs, size = self.fs, self._block
        end = self.detector.pushed
        followers = np.append(beats[1:], end)
        gaps = np.flatnonzero(usable_beat & ((followers - beats) / fs >= self._limits.pause_s))
        if not gaps.size:
            return []
        lows = np.concatenate([b[0] for b in self._blocks])
        highs = np.concatenate([b[1] for b in self._blocks])
        slopes = np.concatenate([b[2] for b in self._blocks])
        first_block = self._windows[0].start // size
        problem = lead_problem_blocks(lows, highs, fs, size, self._flat_uv, self._rails)
        quiet_limit = PAUSE_QUIET_SLOPE * float(np.median(self._beat_slopes(slopes, first_block, beats[usable_beat])))
        pauses = []
        for first, after in zip(beats[gaps].tolist(), followers[gaps].tolist(), strict=True):
            lo, hi = first // size - first_block, -(-after // size) - first_block
            if lo < 0 or problem[lo:hi].any():
                continue
            quiet_from = -(-(first + round(PAUSE_SKIP_AFTER_S * fs)) // size) - first_block
            quiet_to = (after - round(PAUSE_SKIP_BEFORE_S * fs)) // size - first_block if after < end else slopes.size
            if quiet_to > quiet_from and float(slopes[quiet_from:quiet_to].max()) >= quiet_limit:
                continue
            pauses.append((first, after))
        return pauses

    def _beat_slopes(self, slopes: FloatArray, first_block: int, beats: IndexArray) -> FloatArray:
        """Each beat's steepest QRS-band slope: the largest block slope from 50 ms before to 150 ms after it."""
        size = self._block
        lo = np.maximum(0, (beats + round(BEAT_SLOPE_SPAN_S[0] * self.fs)) // size - first_block)
        hi = np.minimum(slopes.size, (beats + round(BEAT_SLOPE_SPAN_S[1] * self.fs)) // size + 1 - first_block)
        width = int((hi - lo).max(initial=0))
        if width <= 0:
            return np.zeros(beats.size)
        blocks = lo[:, None] + np.arange(width)
        inside = blocks < hi[:, None]
        values = np.where(inside, slopes[np.minimum(blocks, slopes.size - 1)], -np.inf).max(axis=1)
        return np.where(hi > lo, values, 0.0)


def analyze_ecg(
    signal_uv: ArrayLike,
    fs: float,
    *,
    mains_hz: float = 50.0,
    rails: tuple[float, float] | None = None,
    limits: RhythmLimits | None = None,
) -> EcgSummary:
    """Summarise a whole ECG strip (µV) with the streaming analyser."""
    analyzer = EcgAnalyzer(fs, mains_hz=mains_hz, rails=rails, limits=limits)
    analyzer.push(signal_uv)
    return analyzer.finish()


def _runs(rr: FloatArray, usable: np.ndarray) -> list[np.ndarray]:
    """Maximal runs of consecutive usable RR intervals."""
    runs: list[np.ndarray] = []
    padded = np.concatenate(([False], usable, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    for start, stop in zip(edges[0::2], edges[1::2], strict=True):
        runs.append(rr[start:stop])
    return runs
