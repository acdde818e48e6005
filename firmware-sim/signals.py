"""Synthetic physiological waveforms for the simulator: a PPG pulse train with beat-to-beat variation."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class PpgSample:
    """One sample: ``value`` about 0..1 (noise may overshoot a little); ``peak`` marks a beat's peak."""

    value: float
    peak: bool


class PpgGenerator:
    """A PPG pulse train sampled at ``fs``. The phase carries over between calls to :meth:`take`.

    Each beat draws its own period and amplitude around ``rate_per_min``, as a real pulse varies from
    beat to beat; a changed rate takes effect at the next beat.
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
    ) -> None:
        if fs <= 0 or rate_per_min <= 0:
            raise ValueError("fs and rate_per_min must be positive")
        self.fs = fs
        self.rate_per_min = rate_per_min
        self.period_jitter = period_jitter
        self.amplitude_jitter = amplitude_jitter
        self.noise = noise
        self._rng = rng
        self._phase = 0.0
        self._period_s, self._amplitude = self._new_beat()

    def _new_beat(self) -> tuple[float, float]:
        period = 60.0 / self.rate_per_min * (1 + self._rng.gauss(0, self.period_jitter))
        amplitude = 1 + self._rng.gauss(0, self.amplitude_jitter)
        # Floors keep a wild draw from producing a beat too short to sample or a negative pulse.
        return max(period, 4 / self.fs), max(amplitude, 0.5)

    def take(self, n: int) -> list[PpgSample]:
        samples: list[PpgSample] = []
        for _ in range(n):
            step = 1 / (self.fs * self._period_s)
            value = self._amplitude * pulse_shape(self._phase) + self._rng.gauss(0, self.noise)
            # The sample nearest the systolic peak is the beat's peak: the half-open intervals tile the
            # beat, so there is exactly one.
            peak = self._phase - step / 2 <= SYSTOLIC_PHASE < self._phase + step / 2
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


@dataclass(frozen=True, slots=True)
class EcgSample:
    """One sample in µV; ``r_peak`` marks the sample nearest a beat's R peak."""

    value_uv: float
    r_peak: bool


class EcgGenerator:
    """A synthetic ECG sampled at ``fs``: P-QRS-T as sums of Gaussians at ``rate_per_min``.

    Each beat draws its own RR interval around the set rate. The previous beat's waves are added too, so
    that a T wave that runs past the next beat's start joins it without a step.
    """

    def __init__(
        self,
        fs: float,
        rate_per_min: float,
        rng: random.Random,
        *,
        rr_jitter: float = 0.03,
        noise_uv: float = 8.0,
    ) -> None:
        if fs <= 0 or rate_per_min <= 0:
            raise ValueError("fs and rate_per_min must be positive")
        self.fs = fs
        self.rate_per_min = rate_per_min
        self.rr_jitter = rr_jitter
        self.noise_uv = noise_uv
        self._rng = rng
        self._t = 0.0
        self._rr = self._new_rr()
        self._previous_rr: float | None = None

    def _new_rr(self) -> float:
        rr = 60.0 / self.rate_per_min * (1 + self._rng.gauss(0, self.rr_jitter))
        # A floor keeps a wild draw from putting two R peaks closer than a refractory period.
        return max(rr, 0.25)

    @staticmethod
    def _beat(t: float, rr: float) -> float:
        total = 0.0
        for wave in ECG_WAVES:
            scale = math.sqrt(rr) if wave.scales_with_rr else 1.0
            at = ECG_R_AT_S + (wave.at_s - ECG_R_AT_S) * scale
            total += wave.amplitude_uv * math.exp(-0.5 * ((t - at) / (wave.width_s * scale)) ** 2)
        return total

    def take(self, n: int) -> list[EcgSample]:
        samples: list[EcgSample] = []
        step = 1 / self.fs
        for _ in range(n):
            value = self._beat(self._t, self._rr)
            if self._previous_rr is not None:
                value += self._beat(self._t + self._previous_rr, self._previous_rr)
            r_peak = self._t - step / 2 <= ECG_R_AT_S < self._t + step / 2
            samples.append(EcgSample(value + self._rng.gauss(0, self.noise_uv), r_peak))
            self._t += step
            if self._t >= self._rr:
                self._t -= self._rr
                self._previous_rr, self._rr = self._rr, self._new_rr()
        return samples
