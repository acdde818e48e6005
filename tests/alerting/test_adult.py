"""Blood pressure against the Chinese hypertension guideline (2018 / 2024 revision), glucose against ADA levels."""

from __future__ import annotations

import pytest

from healthhut.collector.alerting import Action, Audience, Evidence, RuleResult, Severity, SubjectProfile, evaluate
from healthhut.protocol import Kind
from tests.alerting.observations import observation

ADULT = SubjectProfile.from_years(68)


def bp_rules(systolic: float, diastolic: float, profile: SubjectProfile = ADULT) -> list[tuple[str, Severity]]:
    results = evaluate(observation(Kind.BLOOD_PRESSURE, systolic=systolic, diastolic=diastolic), profile)
    return [(r.rule, r.severity) for r in results if r.rule.startswith("bp.")]


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [
        # Grade 3: SBP >= 180 and/or DBP >= 110. Grade 2 (160-179 / 100-109) does not alert here.
        (179, 109, []),
        (180, 80, [("bp.grade_3", Severity.URGENT)]),
        (150, 110, [("bp.grade_3", Severity.URGENT)]),
        (180, 110, [("bp.grade_3", Severity.URGENT)]),
        # Possible crisis: above 180 and/or above 120.
        (180, 120, [("bp.grade_3", Severity.URGENT)]),
        (181, 80, [("bp.possible_crisis", Severity.EMERGENCY)]),
        (160, 121, [("bp.possible_crisis", Severity.EMERGENCY)]),
        (185, 125, [("bp.possible_crisis", Severity.EMERGENCY)]),
        # Hypotension: systolic <= 90.
        (91, 60, []),
        (90, 60, [("bp.hypotension", Severity.URGENT)]),
        (78, 45, [("bp.hypotension", Severity.URGENT)]),
        # Whole mmHg: 179.5 is 180.
        (179.4, 70, []),
        (179.5, 70, [("bp.grade_3", Severity.URGENT)]),
    ],
)
def test_blood_pressure_bands(systolic: float, diastolic: float, expected: list[tuple[str, Severity]]) -> None:
    assert bp_rules(systolic, diastolic) == expected


def test_possible_crisis_alerts_at_once_with_the_values_and_both_languages() -> None:
    results = evaluate(observation(Kind.BLOOD_PRESSURE, systolic=185.0, diastolic=125.0, pulse_rate=88.0), ADULT)
    assert results == [
        RuleResult(
            rule="bp.possible_crisis",
            kind=Kind.BLOOD_PRESSURE,
            severity=Severity.EMERGENCY,
            audience=Audience.CLINICIAN,
            action=Action.NOTIFY,
            evidence=(Evidence("systolic", 185.0, "mm[Hg]"), Evidence("diastolic", 125.0, "mm[Hg]")),
            message="收缩压 185 mmHg，舒张压 125 mmHg：疑似高血压危象",
            message_en="Systolic 185 mmHg, diastolic 125 mmHg: possible hypertensive crisis",
        )
    ]
    assert results[0].alerts_at_once
    assert not results[0].needs_repeat


def test_grade_3_waits_for_a_confirming_repeat() -> None:
    (result,) = evaluate(
        observation(Kind.BLOOD_PRESSURE, systolic=182.0, diastolic=100.0), SubjectProfile.from_years(70)
    )
    # 182 is above 180: that is the possible-crisis band, not grade 3.
    assert result.rule == "bp.possible_crisis"
    (grade3,) = evaluate(observation(Kind.BLOOD_PRESSURE, systolic=172.0, diastolic=112.0), ADULT)
    assert (grade3.rule, grade3.needs_repeat, grade3.alerts_at_once) == ("bp.grade_3", True, False)


def test_hypotension_also_scores_the_news2_red_cell() -> None:
    rules = [r.rule for r in evaluate(observation(Kind.BLOOD_PRESSURE, systolic=88.0, diastolic=55.0), ADULT)]
    assert sorted(rules) == ["bp.hypotension", "news2.systolic"]


def test_adult_blood_pressure_rules_do_not_apply_to_children() -> None:
    assert bp_rules(185, 125, SubjectProfile.from_years(12)) == []


@pytest.mark.parametrize(
    ("mmol_l", "rule", "severity"),
    [
        (3.9, None, None),
        (3.8, "glucose.hypo_level_1", Severity.WARNING),
        (3.0, "glucose.hypo_level_1", Severity.WARNING),
        (2.9, "glucose.hypo_level_2", Severity.EMERGENCY),
        (1.8, "glucose.hypo_level_2", Severity.EMERGENCY),
        (13.9, None, None),
        (14.0, "glucose.high", Severity.WARNING),
        (25.0, "glucose.high", Severity.WARNING),
        (6.1, None, None),
    ],
)
def test_glucose_levels(mmol_l: float, rule: str | None, severity: Severity | None) -> None:
    results = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=mmol_l), ADULT)
    assert [(r.rule, r.severity) for r in results] == ([] if rule is None else [(rule, severity)])


@pytest.mark.parametrize(
    ("mg_dl", "rule"),
    [
        # ADA defines the levels in mg/dL: level 1 < 70, level 2 < 54. A meter that reads mg/dL is converted
        # by the codec (1 mmol/L = 18.016 mg/dL); the 0.1 mmol/L resolution keeps the ADA boundaries.
        (70, None),
        (69, "glucose.hypo_level_1"),
        (54, "glucose.hypo_level_1"),
        (53, "glucose.hypo_level_2"),
        (252, "glucose.high"),
    ],
)
def test_glucose_levels_hold_for_meters_reading_mg_dl(mg_dl: float, rule: str | None) -> None:
    results = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=mg_dl / 18.016), ADULT)
    assert [r.rule for r in results] == ([] if rule is None else [rule])


def test_level_2_hypoglycaemia_message() -> None:
    (result,) = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=2.6), ADULT)
    assert result.message == "血糖 2.6 mmol/L：2 级低血糖（<3.0 mmol/L）"
    assert result.message_en == "Glucose 2.6 mmol/L: level 2 hypoglycaemia (< 3.0 mmol/L)"
    assert result.alerts_at_once
