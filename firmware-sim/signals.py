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
