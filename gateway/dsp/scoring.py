"""Beat-by-beat comparison of detected beats with reference annotations, as ANSI/AAMI EC57 scores it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# MIT-BIH/WFDB annotation codes that mark a beat (WFDB ``ecgcodes``); rhythm changes (+), noise (~),
# comments (") and the like are not beats and are not scored.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
# EC57: a detection matches a reference beat within 150 ms; the first 5 minutes are a learning period.
MATCH_WINDOW_S = 0.150
LEARNING_PERIOD_S = 300.0


@dataclass(frozen=True, slots=True)
class BeatScore:
    true_positives: int
    false_negatives: int
    false_positives: int

    @property
    def sensitivity(self) -> float:
        found = self.true_positives + self.false_negatives
        return self.true_positives / found if found else float("nan")

    @property
    def positive_predictivity(self) -> float:
        claimed = self.true_positives + self.false_positives
        return self.true_positives / claimed if claimed else float("nan")


def score_beats(
    reference: ArrayLike,
    detected: ArrayLike,
    fs: float,
    *,
    window_s: float = MATCH_WINDOW_S,
    start_s: float = LEARNING_PERIOD_S,
) -> BeatScore:
    """Match each reference beat (in time order) to the nearest unused detection within ``window_s``.

    Reference beats before ``start_s`` are not scored; nor are detections that fall before it by more
    than the window (those can only match learning-period beats).
    """
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    det = np.sort(np.asarray(detected, dtype=np.int64))
    tolerance = window_s * fs
    start = start_s * fs
    ref = ref[ref >= start]
    det = det[det >= start - tolerance]
    used = np.zeros(det.size, dtype=bool)
    matched = 0
    for beat in ref.tolist():
        lo = int(np.searchsorted(det, beat - tolerance, side="left"))
        hi = int(np.searchsorted(det, beat + tolerance, side="right"))
        free = [k for k in range(lo, hi) if not used[k]]
        if free:
            best = min(free, key=lambda k: abs(int(det[k]) - beat))
            used[best] = True
            matched += 1
    # A detection just before the scored period that matched nothing belongs to the learning period.
    extra = int(np.count_nonzero(~used & (det >= start)))
    return BeatScore(true_positives=matched, false_negatives=int(ref.size) - matched, false_positives=extra)
