"""RR statistics behind the AF suggestion (Dash et al. 2009) on sequences with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from healthhut.gateway.dsp.rhythm import (
    irregular_segments,
    irregularity,
    normalized_rmssd,
    shannon_entropy,
    tpr_random_range,
    turning_points,
)

SEED = 2009


def test_turning_points_count_strict_peaks_and_troughs() -> None:
    assert turning_points([1, 3, 2, 2, 1, 4, 5]) == 2  # 3 is a peak, 1 a trough; the plateau is neither
    assert turning_points([1, 2, 3, 4]) == 0


def test_tpr_random_range_brackets_two_thirds_and_narrows_with_length() -> None:
    low32, high32 = tpr_random_range(32)
    low128, high128 = tpr_random_range(128)
    assert low32 < low128 < 2 / 3 < high128 < high32
    # 95 % of random sequences fall inside it.
    rng = np.random.default_rng(SEED)
    ratios = [turning_points(rng.random(64)) / 64 for _ in range(2000)]
    low, high = tpr_random_range(64)
    inside = np.mean([low <= r <= high for r in ratios])
    assert 0.93 <= inside <= 0.98


def test_normalized_rmssd_of_a_known_sequence() -> None:
    rr = np.array([0.8, 0.9] * 7 + [0.8])  # alternating: every difference is 0.1; too short to trim
    assert normalized_rmssd(rr) == pytest.approx(0.1 / rr.mean(), rel=1e-9)
    assert normalized_rmssd(np.full(32, 0.8)) == 0.0


def test_ectopic_outliers_are_trimmed_before_rmssd() -> None:
    rr = np.full(32, 0.8)
    rr[10], rr[11] = 0.5, 1.1  # one premature beat and its compensatory pause
    assert normalized_rmssd(rr) == 0.0


def test_shannon_entropy_is_zero_for_one_bin_and_high_for_uniform_spread() -> None:
    assert shannon_entropy(np.full(40, 0.8)) == 0.0
    assert shannon_entropy(np.linspace(0.5, 1.2, 64)) > 0.95


def test_random_intervals_are_irregularly_irregular_and_sinus_is_not() -> None:
    rng = np.random.default_rng(SEED)
    af = irregularity(rng.uniform(0.4, 1.1, 64))
    sinus = irregularity(0.8 + 0.03 * np.sin(np.arange(64) * 2 * np.pi / 5) + 0.004 * rng.standard_normal(64))
    assert af.irregularly_irregular
    assert not sinus.irregularly_irregular
    assert sinus.nrmssd < 0.1


def test_runs_split_into_segments_and_short_runs_are_skipped() -> None:
    rng = np.random.default_rng(SEED)
    runs = [rng.uniform(0.5, 1.0, 130), rng.uniform(0.5, 1.0, 12)]
    segments = irregular_segments(runs)
    assert [s.intervals for s in segments] == [65, 65]
