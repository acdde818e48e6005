"""Rhythm findings from RR intervals: irregularly irregular rhythm (possible AF), pauses, brady- and tachycardia."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike


class RhythmFinding(StrEnum):
    """Rhythm findings of a strip. The protocol's Flag vocabulary has no names for these (yet)."""

    POSSIBLE_AF = "possible_af"
    PAUSE = "pause"
    ASYSTOLE = "asystole"
    BRADYCARDIA = "bradycardia"
    TACHYCARDIA = "tachycardia"


@dataclass(frozen=True, slots=True)
class RhythmLimits:
    """Thresholds of the rhythm findings (adult defaults; see README for sources).

    Bradycardia below 50 /min as the 2018 ACC/AHA/HRS bradycardia guideline (Kusumoto et al., Circulation
    140:e382, 2019); tachycardia above 100 /min, the conventional upper limit of resting sinus rate. A pause
    is 2.5 s without a QRS (the product's requirement); asystole is 4 s, as in the PhysioNet/CinC 2015
    alarm definitions (Clifford et al., CinC 42:273, 2015). Children's rates are higher: the collector's
    age-banded rules decide what alerts, these findings only describe the strip.
    """

    bradycardia_bpm: float = 50.0
    tachycardia_bpm: float = 100.0
    pause_s: float = 2.5
    asystole_s: float = 4.0


# Dash et al., Ann Biomed Eng 37(9):1701 (2009): AF when RMSSD/mean RR > 0.1, Shannon entropy of the RR
# histogram > 0.7 (16 bins) and the turning-point ratio lies where a random sequence's would. They trim
# the 8 longest and 8 shortest of 128 intervals (1/16 each side) so that ectopic beats do not count.
NRMSSD_MIN = 0.1
SHANNON_MIN = 0.7
SHANNON_BINS = 16
TRIM_FRACTION = 1 / 16
# A turning-point count of a random sequence of n values has mean 2(n-2)/3 and variance (16n-29)/90
# (Kendall & Stuart); Dash et al. accept counts within the 95 % interval of that.
TPR_Z = 1.96
# Dash et al. used 128 beats; a 30 s strip at 60 /min has about 30. Fewer than 20 intervals say nothing
# reliable about irregularity; longer series are split into segments of at most 64.
AF_MIN_INTERVALS = 20
AF_SEGMENT_INTERVALS = 64


@dataclass(frozen=True, slots=True)
class Irregularity:
    """Dash et al.'s three statistics on one run of RR intervals."""

    intervals: int
    nrmssd: float
    shannon_entropy: float
    turning_point_ratio: float
    tpr_random_range: tuple[float, float]

    @property
    def irregularly_irregular(self) -> bool:
        low, high = self.tpr_random_range
        return (
            self.nrmssd > NRMSSD_MIN and self.shannon_entropy > SHANNON_MIN and low <= self.turning_point_ratio <= high
        )


def trimmed(rr: ArrayLike) -> np.ndarray:
    """RR intervals without the longest and shortest sixteenth (Dash et al.'s outlier removal)."""
    v = np.sort(np.asarray(rr, dtype=np.float64))
    k = int(v.size * TRIM_FRACTION)
    return v[k : v.size - k] if k else v


def normalized_rmssd(rr: ArrayLike) -> float:
    """RMSSD divided by the mean RR, on the trimmed intervals kept in their original order."""
    v = np.asarray(rr, dtype=np.float64)
    kept = _keep_untrimmed(v)
    if kept.size < 3:
        return 0.0
    return float(np.sqrt(np.mean(np.diff(kept) ** 2)) / kept.mean())


def shannon_entropy(rr: ArrayLike) -> float:
    """Entropy of the trimmed RR histogram in 16 equal bins, normalised by log(16) to 0..1."""
    v = trimmed(rr)
    if v.size < 2 or v.max() == v.min():
        return 0.0
    counts, _ = np.histogram(v, bins=SHANNON_BINS)
    p = counts[counts > 0] / v.size
    return float(-(p * np.log(p)).sum() / math.log(SHANNON_BINS))


def turning_points(rr: ArrayLike) -> int:
    """Samples that are a strict local peak or trough of their two neighbours."""
    v = np.asarray(rr, dtype=np.float64)
    if v.size < 3:
        return 0
    a, b, c = v[:-2], v[1:-1], v[2:]
    return int(np.count_nonzero(((b > a) & (b > c)) | ((b < a) & (b < c))))


def tpr_random_range(n: int) -> tuple[float, float]:
    """The 95 % range of the turning-point ratio of ``n`` independent random values."""
    mean = 2 * (n - 2) / 3
    sd = math.sqrt((16 * n - 29) / 90)
    return (mean - TPR_Z * sd) / n, (mean + TPR_Z * sd) / n


def irregularity(rr: ArrayLike) -> Irregularity:
    v = np.asarray(rr, dtype=np.float64)
    return Irregularity(
        intervals=int(v.size),
        nrmssd=normalized_rmssd(v),
        shannon_entropy=shannon_entropy(v),
        turning_point_ratio=turning_points(v) / v.size if v.size else 0.0,
        tpr_random_range=tpr_random_range(int(v.size)),
    )


def irregular_segments(runs: list[np.ndarray]) -> list[Irregularity]:
    """Irregularity of every segment (20-64 intervals) of the given runs of consecutive good RR intervals."""
    out: list[Irregularity] = []
    for run in runs:
        count = max(1, round(run.size / AF_SEGMENT_INTERVALS))
        for segment in np.array_split(run, count):
            if segment.size >= AF_MIN_INTERVALS:
                out.append(irregularity(segment))
    return out


def rate_findings(heart_rate: float | None, limits: RhythmLimits) -> set[RhythmFinding]:
    found: set[RhythmFinding] = set()
    if heart_rate is None:
        return found
    if heart_rate < limits.bradycardia_bpm:
        found.add(RhythmFinding.BRADYCARDIA)
    if heart_rate > limits.tachycardia_bpm:
        found.add(RhythmFinding.TACHYCARDIA)
    return found


def _keep_untrimmed(v: np.ndarray) -> np.ndarray:
    k = int(v.size * TRIM_FRACTION)
    if not k:
        return v
    order = np.argsort(v, kind="stable")
    keep = np.ones(v.size, dtype=bool)
    keep[order[:k]] = False
    keep[order[v.size - k :]] = False
    return v[keep]
