"""Trend: systolic more than 20 % above the subject's own 30-day median."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthhut.collector.alerting import Evidence, Severity, rise_over_baseline

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
# Seven readings over the last three weeks; their median is 130.
HISTORY = [
    (NOW - timedelta(days=d), v)
    for d, v in [(1, 128.0), (4, 135.0), (7, 130.0), (10, 126.0), (13, 131.0), (16, 129.0), (20, 140.0)]
]


@pytest.mark.parametrize(
    ("current", "fires"),
    [
        (156.0, False),  # exactly 20 % above 130 is not more than 20 %
        (156.4, True),
        (157.0, True),
        (140.0, False),
    ],
)
def test_rise_of_more_than_20_percent(current: float, fires: bool) -> None:
    assert (rise_over_baseline(current, HISTORY, NOW) is not None) == fires


def test_result_carries_the_reading_and_the_baseline() -> None:
    result = rise_over_baseline(165.0, HISTORY, NOW)
    assert result is not None
    assert (result.rule, result.severity, result.needs_repeat) == ("trend.systolic_rise", Severity.WARNING, True)
    assert result.evidence == (
        Evidence("systolic", 165.0, "mm[Hg]"),
        Evidence("systolic_baseline_median", 130.0, "mm[Hg]"),
    )
    assert result.message == "收缩压 165 mmHg，较本人 30 天中位数 130 升高 27%（>20%）"
    assert result.message_en == "Systolic 165 mmHg: 27 % above the subject's 30-day median of 130 (> 20 %)"


def test_readings_older_than_30_days_are_not_the_baseline() -> None:
    # Nine old readings of 100 would put the median at 100 and make 135 a 35 % rise; within 30 days it is none.
    old = [(NOW - timedelta(days=d), 100.0) for d in (31, 35, 40, 45, 50, 55, 60, 70, 80)]
    assert rise_over_baseline(135.0, old + HISTORY, NOW) is None
    assert rise_over_baseline(135.0, old + HISTORY, NOW, window=timedelta(days=90)) is not None


def test_too_few_readings_make_no_baseline() -> None:
    assert rise_over_baseline(200.0, HISTORY[:4], NOW) is None
    assert rise_over_baseline(200.0, HISTORY[:5], NOW) is not None


def test_the_current_reading_is_not_part_of_its_own_baseline() -> None:
    with_now = [*HISTORY[:4], (NOW, 200.0)]
    assert rise_over_baseline(200.0, with_now, NOW) is None
