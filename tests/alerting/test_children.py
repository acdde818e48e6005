"""Children's heart rate against Fleming et al. (Lancet 2011) centiles, and NICE NG143 for under-fives."""

from __future__ import annotations

import pytest

from healthhut.collector.alerting import Severity, SubjectProfile, evaluate
from healthhut.protocol import Kind
from tests.alerting.observations import observation

# Fleming S et al., Lancet 2011;377:1011-18, heart-rate centiles (beats/min) by age band, as published:
# (band start in months, band end in months (exclusive), 1st, 10th, 90th, 99th centile).
PUBLISHED = [
    (0, 3, 107, 123, 164, 181),  # 0-3 months
    (3, 6, 104, 120, 159, 175),  # 3-6 months
    (6, 9, 98, 114, 152, 168),  # 6-9 months
    (9, 12, 93, 109, 145, 161),  # 9-12 months
    (12, 18, 88, 103, 140, 156),  # 12-18 months
    (18, 24, 82, 98, 135, 149),  # 18-24 months
    (24, 36, 76, 92, 128, 142),  # 2-3 years
    (36, 48, 70, 86, 123, 136),  # 3-4 years
    (48, 72, 65, 81, 117, 131),  # 4-6 years
    (72, 96, 59, 74, 111, 123),  # 6-8 years
    (96, 144, 52, 67, 103, 115),  # 8-12 years
    (144, 180, 47, 62, 96, 108),  # 12-15 years
    (180, 216, 43, 58, 92, 104),  # 15-18 years
]
ALERT, WATCH = "child.heart_rate", "child.heart_rate_watch"


def heart_rate_rules(rate: float, age_months: int, kind: Kind = Kind.HEART_RATE) -> list[tuple[str, Severity]]:
    results = evaluate(observation(kind, heart_rate=rate), SubjectProfile(age_months=age_months))
    return [(r.rule, r.severity) for r in results]


def _cases() -> list[tuple[int, float, list[tuple[str, Severity]]]]:
    cases: list[tuple[int, float, list[tuple[str, Severity]]]] = []
    for start, end, p1, p10, p90, p99 in PUBLISHED:
        for age in (start, end - 1):
            cases += [
                (age, p99 + 1, [(ALERT, Severity.WARNING)]),
                (age, p99, [(WATCH, Severity.INFO)]),
                (age, p90 + 1, [(WATCH, Severity.INFO)]),
                (age, p90, []),
                (age, p10, []),
                (age, p10 - 1, [(WATCH, Severity.INFO)]),
                (age, p1, [(WATCH, Severity.INFO)]),
                (age, p1 - 1, [(ALERT, Severity.WARNING)]),
            ]
    return cases


@pytest.mark.parametrize(("age_months", "rate", "expected"), _cases())
def test_fleming_centile_bands(age_months: int, rate: float, expected: list[tuple[str, Severity]]) -> None:
    assert heart_rate_rules(rate, age_months) == expected


def test_the_oximeter_pulse_is_read_against_the_same_centiles() -> None:
    # 2-3 years: 99th centile 142.
    results = evaluate(observation(Kind.SPO2, spo2=98.0, pulse_rate=150.0), SubjectProfile(age_months=30))
    assert [(r.rule, r.evidence[0].name) for r in results] == [(ALERT, "pulse_rate")]


def test_child_heart_rate_message() -> None:
    (result,) = evaluate(observation(Kind.HEART_RATE, heart_rate=190.0), SubjectProfile(age_months=2))
    assert result.message == "2 月龄儿童心率 190 次/分：高于第 99 百分位（181）"
    assert result.message_en == "Child 2 months old, heart rate 190 /min: above the 99th centile for age (181)"
    assert result.needs_repeat


@pytest.mark.parametrize(
    ("age_months", "rate", "expected"),
    [
        # 150 /min is ordinary at 3 months (10th-90th: 120-159) and a NEWS2 red cell at 40 years.
        (3, 150, []),
        (40 * 12, 150, [("news2.pulse", Severity.WARNING)]),
        # 130 /min: a watch at 2-3 years (90th 128, 99th 142), NEWS2 score 2 (no per-reading result) for adults.
        (30, 130, [(WATCH, Severity.INFO)]),
        (40 * 12, 130, []),
        # 17 years 11 months is still a child (15-18 years: 99th 104); 18 years is an adult.
        (215, 105, [(ALERT, Severity.WARNING)]),
        (216, 105, []),
    ],
)
def test_children_and_adults_read_the_same_rate_differently(
    age_months: int, rate: float, expected: list[tuple[str, Severity]]
) -> None:
    assert heart_rate_rules(rate, age_months) == expected


@pytest.mark.parametrize(
    ("age_months", "spo2", "rule"),
    [
        (0, 95, "nice.spo2_amber"),
        (59, 95, "nice.spo2_amber"),
        (59, 96, None),
        (24, 90.0, "nice.spo2_amber"),
        (60, 95, None),  # NG143 is for under-fives
    ],
)
def test_nice_spo2_amber_under_five(age_months: int, spo2: float, rule: str | None) -> None:
    results = evaluate(observation(Kind.SPO2, spo2=spo2), SubjectProfile(age_months=age_months))
    assert [r.rule for r in results] == ([] if rule is None else [rule])


def test_nice_spo2_is_in_air_only() -> None:
    on_oxygen = SubjectProfile(age_months=24, on_supplemental_oxygen=True)
    assert evaluate(observation(Kind.SPO2, spo2=93.0), on_oxygen) == []


@pytest.mark.parametrize(
    ("age_months", "temperature", "rule", "severity"),
    [
        (0, 38.0, "nice.fever_red", Severity.URGENT),
        (2, 38.0, "nice.fever_red", Severity.URGENT),
        (2, 37.9, None, None),
        (2, 37.95, "nice.fever_red", Severity.URGENT),  # 0.1 °C resolution: 37.95 is 38.0
        (3, 38.0, None, None),
        (3, 38.9, None, None),
        (3, 39.0, "nice.fever_amber", Severity.WARNING),
        (5, 39.0, "nice.fever_amber", Severity.WARNING),
        (6, 39.5, None, None),
        (40, 40.0, None, None),  # fever alone is neither red nor amber from 6 months
    ],
)
def test_nice_fever(age_months: int, temperature: float, rule: str | None, severity: Severity | None) -> None:
    results = evaluate(
        observation(Kind.BODY_TEMPERATURE, temperature=temperature), SubjectProfile(age_months=age_months)
    )
    assert [(r.rule, r.severity) for r in results] == ([] if rule is None else [(rule, severity)])


def test_infant_fever_message() -> None:
    (result,) = evaluate(observation(Kind.BODY_TEMPERATURE, temperature=38.4), SubjectProfile(age_months=1))
    assert result.message == "体温 38.4 °C，3 月龄以下婴儿发热（≥38 °C）：NICE 红色（高风险）"
    assert result.message_en == "Temperature 38.4 °C, infant under 3 months with fever (>= 38 °C): NICE red (high risk)"


def test_a_profile_rejects_an_impossible_age() -> None:
    with pytest.raises(ValueError, match="age_months"):
        SubjectProfile(age_months=-1)
    with pytest.raises(ValueError, match="age_months"):
        SubjectProfile.from_years(1200)
