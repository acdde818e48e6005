"""EC57 beat-by-beat scoring: matching window, learning period, one match per beat."""

from __future__ import annotations

from healthhut.gateway.dsp.scoring import BeatScore, score_beats

FS = 100.0


def test_detections_within_150_ms_match_and_the_rest_are_errors() -> None:
    reference = [1000, 1100, 1200, 1300]
    detected = [1014, 1100, 1216, 1250]  # 140 ms late, exact, 160 ms late, unmatched extra
    assert score_beats(reference, detected, FS, start_s=0) == BeatScore(
        true_positives=2, false_negatives=2, false_positives=2
    )


def test_each_detection_matches_at_most_one_beat_and_the_nearest_wins() -> None:
    reference = [1000, 1010]
    assert score_beats(reference, [1004], FS, start_s=0) == BeatScore(1, 1, 0)
    assert score_beats([1000], [995, 1001], FS, start_s=0) == BeatScore(1, 0, 1)


def test_the_learning_period_is_not_scored() -> None:
    reference = [100, 200, 30_000, 30_100]
    detected = [150, 29_995, 30_100, 30_500]
    score = score_beats(reference, detected, FS)
    assert score == BeatScore(true_positives=2, false_negatives=0, false_positives=1)
    assert score.sensitivity == 1.0
    assert score.positive_predictivity == 2 / 3
