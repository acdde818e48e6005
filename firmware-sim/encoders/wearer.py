"""The resident wearing a HealthyPi board, as both board generations' streams see them: ECG leads on or
off, and movement that shows on the PPG light and on the ECG baseline."""

from __future__ import annotations

import random

from healthhut.firmware_sim.signals import EcgGenerator, MotionArtifact


class Wearer:
    """Mixed into a HealthyPi stream, which gives ``_rng`` and ``_ecg`` and calls :meth:`_wear` from its
    ``__init__``; the stream reads ``_leads_on``, ``_moving`` and the two motion sources per sample."""

    _rng: random.Random
    _ecg: EcgGenerator
    _r_peaks: int
    _shown_hr: int

    def _wear(self) -> None:
        self._leads_on = True
        # Made when the resident first moves, so that a still resident's stream is what it always was.
        self._finger_motion: MotionArtifact | None = None
        self._electrode_motion: MotionArtifact | None = None
        self._moving = False

    @property
    def leads_attached(self) -> bool:
        return self._leads_on

    def leads_off(self) -> None:
        self._leads_on = False

    def leads_on(self) -> None:
        if not self._leads_on:
            self._leads_on = True
            # The firmware's heart-rate search starts over after 3 s without a peak.
            self._r_peaks = 0
            self._shown_hr = 0

    @property
    def moving(self) -> bool:
        return self._moving

    def start_moving(self) -> None:
        if self._finger_motion is None or self._electrode_motion is None:
            self._finger_motion = MotionArtifact(self._ecg.fs, self._rng)
            self._electrode_motion = MotionArtifact(self._ecg.fs, self._rng)
        self._moving = True

    def stop_moving(self) -> None:
        self._moving = False
