"""Synthetic physiological signals for the simulator: heart rhythms (sinus, AF, pauses), PPG and ECG."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum


class Rhythm(StrEnum):
    SINUS = "sinus"
    # Atrial fibrillation: an irregularly irregular ventricular response and no P waves.
    AF = "af"


# AF intervals are drawn independently and uniformly within ±35 % of the mean: a coefficient of variation near
# 0.2 and a normalised RMSSD near 0.28, well inside what Dash et al.'s detector (nRMSSD > 0.1, high entropy,
# random turning points) calls AF, as real AF is.
AF_RR_SPREAD = 0.35
# The AV node's refractory period keeps even fast AF above about 0.3 s between beats.
AF_MIN_RR_S = 0.3
# A sinus pause long enough for the gateway's 2.5 s pause finding, short of its 4 s asystole.
DEFAULT_PAUSE_S = 3.0


class BeatClock:
    """Successive RR intervals (s) at ``rate_per_min``: sinus with a small jitter, or AF; and, with
    ``pause_every``, a sinus pause of ``pause_s`` in place of every ``pause_every``-th interval.

    ``rate_per_min`` may be changed at any time; it applies from the next interval.
    """

    def __init__(
        self,
        rate_per_min: float,
        rng: random.Random,
        *,
        rhythm: Rhythm = Rhythm.SINUS,
        jitter: float = 0.03,
        pause_every: int | None = None,
        pause_s: float = DEFAULT_PAUSE_S,
        floor_s: float = 0.25,
    ) -> None:
        if rate_per_min <= 0:
            raise ValueError("rate_per_min must be positive")
        if pause_every is not None and pause_every < 2:
            raise ValueError(f"pause_every counts beats between pauses and must be at least 2, not {pause_every}")
        self.rate_per_min = rate_per_min
        self.rhythm = rhythm
        self.jitter = jitter
        self.pause_every = pause_every
        self.pause_s = pause_s
        self.floor_s = floor_s
        self._rng = rng
        self._beats = 0

    @property
    def mean_rr_s(self) -> float:
        return 60.0 / self.rate_per_min

    def next_rr(self) -> float:
        self._beats += 1
        if self.pause_every is not None and self._beats % self.pause_every == 0:
            return self.pause_s
        mean = self.mean_rr_s
        if self.rhythm is Rhythm.AF:
            return max(mean * (1 + self._rng.uniform(-AF_RR_SPREAD, AF_RR_SPREAD)), AF_MIN_RR_S, self.floor_s)
        # A floor keeps a wild draw from producing a beat too short to sample, or inside a refractory period.
        return max(mean * (1 + self._rng.gauss(0, self.jitter)), self.floor_s)


# Shape of one beat as a sum of two Gaussians over the beat's phase (0..1): the systolic peak early in
# the beat, the smaller dicrotic wave after the notch. Widths are fractions of the beat period.
SYSTOLIC_PHASE = 0.18
_SYSTOLIC_WIDTH = 0.07
_DICROTIC_PHASE = 0.45
_DICROTIC_WIDTH = 0.09
_DICROTIC_HEIGHT = 0.35


def _gaussians(phase: float) -> float:
    systolic = math.exp(-0.5 * ((phase - SYSTOLIC_PHASE) / _SYSTOLIC_WIDTH) ** 2)
    dicrotic = math.exp(-0.5 * ((phase - _DICROTIC_PHASE) / _DICROTIC_WIDTH) ** 2)
    return systolic + _DICROTIC_HEIGHT * dicrotic


_START, _END = _gaussians(0.0), _gaussians(1.0)
_PEAK = max(_gaussians(i / 1000) - _START * (1 - i / 1000) - _END * i / 1000 for i in range(1001))


def pulse_shape(phase: float) -> float:
    """One beat at ``phase`` in [0, 1]: 0 at both ends, so that beats join without a step; 1 at the peak."""
    baseline = _START * (1 - phase) + _END * phase
    return (_gaussians(phase) - baseline) / _PEAK


# An interval longer than this many mean RR intervals is a pause: its beat has a normal pulse (and P-QRS-T),
# one mean interval long, and the rest is a flat line. Shorter ones stretch the beat, as a slower beat does.
MAX_SHAPE_RR = 1.5


@dataclass(frozen=True, slots=True)
class PpgSample:
    """One sample: ``value`` about 0..1 (noise may overshoot a little); ``peak`` marks a beat's peak."""

    value: float
    peak: bool


class PpgGenerator:
    """A PPG pulse train sampled at ``fs``. The phase carries over between calls to :meth:`take`.

    Each beat draws its own period and amplitude around ``rate_per_min``, as a real pulse varies from
    beat to beat; a changed rate takes effect at the next beat. In AF a beat after a short interval is
    weaker (less time to fill the ventricle), so the pulse height varies with the rhythm.
    """

    def __init__(
        self,
        fs: float,
        rate_per_min: float,
        rng: random.Random,
        *,
        period_jitter: float = 0.03,
        amplitude_jitter: float = 0.05,
        noise: float = 0.01,
        rhythm: Rhythm = Rhythm.SINUS,
        pause_every: int | None = None,
    ) -> None:
        if fs <= 0 or rate_per_min <= 0:
            raise ValueError("fs and rate_per_min must be positive")
        self.fs = fs
        self.amplitude_jitter = amplitude_jitter
        self.noise = noise
        self._rng = rng
        self._beats = BeatClock(
            rate_per_min, rng, rhythm=rhythm, jitter=period_jitter, pause_every=pause_every, floor_s=4 / fs
        )
        self._phase = 0.0
        self._period_s, self._amplitude = self._new_beat()

    @property
    def rate_per_min(self) -> float:
        return self._beats.rate_per_min

    @rate_per_min.setter
    def rate_per_min(self, value: float) -> None:
        self._beats.rate_per_min = value

    @property
    def period_jitter(self) -> float:
        return self._beats.jitter

    def _new_beat(self) -> tuple[float, float]:
        period = self._beats.next_rr()
        amplitude = 1 + self._rng.gauss(0, self.amplitude_jitter)
        if self._beats.rhythm is Rhythm.AF:
            amplitude *= min(max(period / self._beats.mean_rr_s, 0.5), 1.3)
        # A floor keeps a wild draw from producing a negative pulse.
        return period, max(amplitude, 0.5)

    def take(self, n: int) -> list[PpgSample]:
        samples: list[PpgSample] = []
        for _ in range(n):
            step = 1 / (self.fs * self._period_s)
            # A pause is a normal pulse followed by a flat line, not one pulse stretched over seconds.
            mean = self._beats.mean_rr_s
            shape_share = 1.0 if self._period_s <= MAX_SHAPE_RR * mean else mean / self._period_s
            within = self._phase / shape_share
            shape = pulse_shape(within) if within < 1 else 0.0
            value = self._amplitude * shape + self._rng.gauss(0, self.noise)
            # The sample nearest the systolic peak is the beat's peak: the half-open intervals tile the
            # beat, so there is exactly one.
            peak = self._phase - step / 2 <= SYSTOLIC_PHASE * shape_share < self._phase + step / 2
            samples.append(PpgSample(value, peak))
            self._phase += step
            if self._phase >= 1:
                self._phase -= 1
                self._period_s, self._amplitude = self._new_beat()
        return samples


@dataclass(frozen=True, slots=True)
class EcgWave:
    """One wave of a beat as a Gaussian: where it peaks after the beat starts, how wide, how high (µV)."""

    name: str
    at_s: float
    width_s: float
    amplitude_uv: float
    # The T wave moves with the heart rate (QT shortens as RR does, Bazett's √RR); P and QRS do not.
    scales_with_rr: bool = False


# A lead II-like beat at RR = 1 s: the R peak 0.2 s after the beat starts, so that P fits before it.
ECG_WAVES = (
    EcgWave("P", 0.07, 0.025, 150.0),
    EcgWave("Q", 0.18, 0.010, -100.0),
    EcgWave("R", 0.20, 0.012, 1100.0),
    EcgWave("S", 0.22, 0.010, -250.0),
    EcgWave("T", 0.46, 0.045, 300.0, scales_with_rr=True),
)
ECG_R_AT_S = 0.20
# Bazett's √RR stretches the T wave only up to this RR; longer intervals are pauses or slow rhythms whose QT
# has stopped lengthening.
MAX_QT_RR_S = 1.5
# Fibrillatory waves in lead II are typically under 0.1 mV.
F_WAVE_UV = 50.0


@dataclass(frozen=True, slots=True)
class EcgSample:
    """One sample in µV; ``r_peak`` marks the sample nearest a beat's R peak."""

    value_uv: float
    r_peak: bool


class EcgGenerator:
    """A synthetic ECG sampled at ``fs``: P-QRS-T as sums of Gaussians at ``rate_per_min``.

    Each beat draws its own RR interval around the set rate (see :class:`BeatClock` for the rhythms and
    pauses). The previous beat's waves are added too, so that a T wave that runs past the next beat's start
    joins it without a step. In AF there are no P waves but fibrillatory f waves: a low, fast (5-7 Hz)
    undulation of the baseline.
    """

    def __init__(
        self,
        fs: float,
        rate_per_min: float,
        rng: random.Random,
        *,
        rr_jitter: float = 0.03,
        noise_uv: float = 8.0,
        rhythm: Rhythm = Rhythm.SINUS,
        pause_every: int | None = None,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> None:
        if fs <= 0 or rate_per_min <= 0:
            raise ValueError("fs and rate_per_min must be positive")
        self.fs = fs
        self.noise_uv = noise_uv
        self._rng = rng
        self._beats = BeatClock(
            rate_per_min, rng, rhythm=rhythm, jitter=rr_jitter, pause_every=pause_every, pause_s=pause_s
        )
        self._waves = tuple(w for w in ECG_WAVES if not (rhythm is Rhythm.AF and w.name == "P"))
        self._t = 0.0
        self._elapsed = 0.0
        self._rr = self._beats.next_rr()
        self._previous_rr: float | None = None

    @property
    def rate_per_min(self) -> float:
        return self._beats.rate_per_min

    @rate_per_min.setter
    def rate_per_min(self, value: float) -> None:
        self._beats.rate_per_min = value

    @property
    def rr_jitter(self) -> float:
        return self._beats.jitter

    def _beat(self, t: float, rr: float) -> float:
        total = 0.0
        # QT follows the heart rate, but not into a pause: the T wave of the beat before one is a normal T wave.
        mean = self._beats.mean_rr_s
        scale_rr = min(rr if rr <= MAX_SHAPE_RR * mean else mean, MAX_QT_RR_S)
        for wave in self._waves:
            scale = math.sqrt(scale_rr) if wave.scales_with_rr else 1.0
            at = ECG_R_AT_S + (wave.at_s - ECG_R_AT_S) * scale
            total += wave.amplitude_uv * math.exp(-0.5 * ((t - at) / (wave.width_s * scale)) ** 2)
        return total

    def _f_waves(self) -> float:
        t = self._elapsed
        return F_WAVE_UV * (0.6 * math.sin(2 * math.pi * 5.3 * t) + 0.4 * math.sin(2 * math.pi * 6.9 * t + 1.0))

    def take(self, n: int) -> list[EcgSample]:
        samples: list[EcgSample] = []
        step = 1 / self.fs
        af = self._beats.rhythm is Rhythm.AF
        for _ in range(n):
            value = self._beat(self._t, self._rr)
            if self._previous_rr is not None:
                value += self._beat(self._t + self._previous_rr, self._previous_rr)
            if af:
                value += self._f_waves()
            r_peak = self._t - step / 2 <= ECG_R_AT_S < self._t + step / 2
            samples.append(EcgSample(value + self._rng.gauss(0, self.noise_uv), r_peak))
            self._t += step
            self._elapsed += step
            if self._t >= self._rr:
                self._t -= self._rr
                self._previous_rr, self._rr = self._rr, self._beats.next_rr()
        return samples


# Body movement is low-frequency and overlaps the cardiac band: electrode motion and baseline wander in
# ECG records sit mostly below a few hertz (MIT-BIH Noise Stress Test Database, Moody, Muldrow & Mark,
# Computers in Cardiology 11:381, 1984), and a moving finger's PPG artefact lies in 0.1-5 Hz with an
# amplitude of several pulses (Maeda, Sekine & Tamura, J Med Syst 35:969, 2011).
MOTION_BAND_HZ = (0.2, 3.0)
MOTION_COMPONENTS = 3
# A fidgeting resident moves for 1-3 s, keeps still for 1-3 s, and moves again, each time differently.
MOTION_STRETCH_S = (1.0, 3.0)
# Consecutive stretches are crossfaded, so that the limb moves rather than jumps.
MOTION_CROSSFADE_S = 0.25

Movement = tuple[tuple[float, float, float], ...]  # (frequency Hz, amplitude, phase) of each component


class MotionArtifact:
    """Irregular body movement sampled at ``fs``: a displacement in -1..1, smooth and without a period.

    Stretches of movement and of stillness alternate, each 1-3 s long (``MOTION_STRETCH_S``). A movement
    is a sum of ``MOTION_COMPONENTS`` sinusoids whose frequencies (``MOTION_BAND_HZ``), amplitudes and
    phases are drawn anew each time. An encoder scales it to its own units (counts of light, µV of baseline).
    """

    def __init__(self, fs: float, rng: random.Random) -> None:
        if fs <= 0:
            raise ValueError("fs must be positive")
        self.fs = fs
        self._rng = rng
        self._t = 0.0
        self._previous: Movement = ()
        self._current = self._movement()
        self._length = self._stretch_samples()
        self._done = 0

    def _movement(self) -> Movement:
        low, high = MOTION_BAND_HZ
        rng = self._rng
        return tuple(
            (rng.uniform(low, high), rng.uniform(0.3, 1.0), rng.uniform(0, 2 * math.pi))
            for _ in range(MOTION_COMPONENTS)
        )

    def _stretch_samples(self) -> int:
        return max(1, round(self._rng.uniform(*MOTION_STRETCH_S) * self.fs))

    @staticmethod
    def _displacement(movement: Movement, t: float) -> float:
        if not movement:
            return 0.0
        total = sum(amplitude for _, amplitude, _ in movement)
        return sum(a * math.sin(2 * math.pi * f * t + p) for f, a, p in movement) / total

    def take(self, n: int) -> list[float]:
        out: list[float] = []
        fade = max(1, round(MOTION_CROSSFADE_S * self.fs))
        for _ in range(n):
            value = self._displacement(self._current, self._t)
            if self._done < fade:
                weight = self._done / fade
                value = weight * value + (1 - weight) * self._displacement(self._previous, self._t)
            out.append(value)
            self._t += 1 / self.fs
            self._done += 1
            if self._done >= self._length:
                # Movement gives way to stillness, and stillness to a new movement.
                self._previous, self._current = self._current, () if self._current else self._movement()
                self._length, self._done = self._stretch_samples(), 0
        return out
