"""Blood pressure against the Chinese hypertension guideline (2018 / 2024 revision), glucose against ADA levels,
and what the profile's diabetes and treated-hypertension flags change (the same reading with and without)."""

from __future__ import annotations

import pytest

from healthhut.collector.alerting import Action, Audience, Evidence, RuleResult, Severity, SubjectProfile, evaluate
from healthhut.collector.alerting.rules import evaluate_anonymous
from healthhut.protocol import Kind
from tests.alerting.observations import observation

ADULT = SubjectProfile.from_years(68)
DIABETIC = SubjectProfile.from_years(68, diabetes=True)


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
    # The ADA levels are for people with diabetes; without known diabetes 11.1-13.9 is a rule of its own.
    results = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=mmol_l), DIABETIC)
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
    results = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=mg_dl / 18.016), DIABETIC)
    assert [r.rule for r in results] == ([] if rule is None else [rule])


def test_level_2_hypoglycaemia_message() -> None:
    (result,) = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=2.6), ADULT)
    assert result.message == "血糖 2.6 mmol/L：2 级低血糖（<3.0 mmol/L）"
    assert result.message_en == "Glucose 2.6 mmol/L: level 2 hypoglycaemia (< 3.0 mmol/L)"
    assert result.alerts_at_once


# -- diabetes: a high glucose in a resident with no known diabetes is a possible new diagnosis -----------


@pytest.mark.parametrize(
    ("mmol_l", "without", "with_diabetes"),
    [
        # ADA: a random plasma glucose >= 200 mg/dL (11.1 mmol/L) is at the diagnostic threshold.
        (11.0, [], []),
        (11.1, [("glucose.diagnostic_threshold", Severity.INFO)], []),
        (12.4, [("glucose.diagnostic_threshold", Severity.INFO)], []),
        (13.9, [("glucose.diagnostic_threshold", Severity.INFO)], []),
        # Above 13.9 it is "very high" for everyone; without diabetes the message says more (below).
        (14.0, [("glucose.high", Severity.WARNING)], [("glucose.high", Severity.WARNING)]),
        # The low side does not depend on the flag.
        (3.8, [("glucose.hypo_level_1", Severity.WARNING)], [("glucose.hypo_level_1", Severity.WARNING)]),
        (2.9, [("glucose.hypo_level_2", Severity.EMERGENCY)], [("glucose.hypo_level_2", Severity.EMERGENCY)]),
        (6.1, [], []),
    ],
)
def test_the_diabetes_flag_decides_whether_a_high_glucose_is_a_possible_new_diagnosis(
    mmol_l: float, without: list[tuple[str, Severity]], with_diabetes: list[tuple[str, Severity]]
) -> None:
    reading = observation(Kind.BLOOD_GLUCOSE, glucose=mmol_l)
    assert [(r.rule, r.severity) for r in evaluate(reading, ADULT)] == without
    assert [(r.rule, r.severity) for r in evaluate(reading, DIABETIC)] == with_diabetes


@pytest.mark.parametrize(("mg_dl", "rule"), [(199, None), (200, "glucose.diagnostic_threshold")])
def test_the_diagnostic_threshold_holds_in_mg_dl(mg_dl: float, rule: str | None) -> None:
    results = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=mg_dl / 18.016), ADULT)
    assert [r.rule for r in results] == ([] if rule is None else [rule])


def test_a_glucose_at_the_diagnostic_threshold_says_to_confirm_it_in_a_laboratory() -> None:
    results = evaluate(observation(Kind.BLOOD_GLUCOSE, glucose=12.4), ADULT)
    assert results == [
        RuleResult(
            rule="glucose.diagnostic_threshold",
            kind=Kind.BLOOD_GLUCOSE,
            severity=Severity.INFO,
            audience=Audience.CLINICIAN,
            action=Action.NOTIFY,
            evidence=(Evidence("glucose", 12.4, "mmol/L"),),
            message="血糖 12.4 mmol/L：无糖尿病记录，随机血糖 ≥11.1 mmol/L 达糖尿病诊断切点，需化验静脉血浆血糖确认",
            message_en=(
                "Glucose 12.4 mmol/L: no diabetes on record: a random glucose >= 11.1 mmol/L is at the diagnostic "
                "threshold of diabetes; confirm with a laboratory plasma glucose"
            ),
        )
    ]
    assert results[0].needs_repeat


def test_a_very_high_glucose_without_known_diabetes_also_names_the_diagnostic_threshold() -> None:
    reading = observation(Kind.BLOOD_GLUCOSE, glucose=16.2)
    (without,) = evaluate(reading, ADULT)
    (known,) = evaluate(reading, DIABETIC)
    assert known.message == "血糖 16.2 mmol/L：血糖过高（>13.9 mmol/L）"
    assert without.message == (
        "血糖 16.2 mmol/L：血糖过高（>13.9 mmol/L）；无糖尿病记录，已达糖尿病诊断切点，需化验静脉血浆血糖确认"
    )
    assert without.message_en == (
        "Glucose 16.2 mmol/L: very high glucose (> 13.9 mmol/L); no diabetes on record: at the diagnostic "
        "threshold, confirm with a laboratory plasma glucose"
    )
    assert (without.rule, without.severity) == (known.rule, known.severity) == ("glucose.high", Severity.WARNING)


def test_an_anonymous_glucose_makes_no_diagnostic_claim() -> None:
    """Nobody signed in: whether diabetes is known is not known, so 12.4 raises nothing."""
    assert evaluate_anonymous(observation(Kind.BLOOD_GLUCOSE, glucose=12.4, subject=None)) == []


# -- treated hypertension: at or above the treatment target is hypertension not controlled ---------------

TREATED_55 = SubjectProfile.from_years(55, hypertension_treated=True)
TREATED_68 = SubjectProfile.from_years(68, hypertension_treated=True)


@pytest.mark.parametrize(
    ("profile", "systolic", "diastolic", "expected"),
    [
        # Under 65: target < 140/90 (中国高血压防治指南 2018; ESC/ESH 2018's first objective).
        (TREATED_55, 139, 89, []),
        (TREATED_55, 140, 70, [("bp.treated_above_target", Severity.INFO)]),
        (TREATED_55, 125, 90, [("bp.treated_above_target", Severity.INFO)]),
        (TREATED_55, 179, 109, [("bp.treated_above_target", Severity.INFO)]),
        (TREATED_55, 139.4, 70, []),
        (TREATED_55, 139.5, 70, [("bp.treated_above_target", Severity.INFO)]),
        # From 65: the first target is < 150/90.
        (TREATED_68, 149, 89, []),
        (TREATED_68, 150, 80, [("bp.treated_above_target", Severity.INFO)]),
        (TREATED_68, 135, 90, [("bp.treated_above_target", Severity.INFO)]),
        # Grade 3 and a possible crisis stay what they are (one alert, the more severe).
        (TREATED_55, 180, 80, [("bp.grade_3", Severity.URGENT)]),
        (TREATED_68, 185, 125, [("bp.possible_crisis", Severity.EMERGENCY)]),
        # Hypotension does not depend on the flag.
        (TREATED_55, 88, 55, [("bp.hypotension", Severity.URGENT)]),
    ],
)
def test_treated_hypertension_bands(
    profile: SubjectProfile, systolic: float, diastolic: float, expected: list[tuple[str, Severity]]
) -> None:
    assert bp_rules(systolic, diastolic, profile) == expected


@pytest.mark.parametrize(("systolic", "diastolic"), [(150, 92), (165, 85), (142, 80)])
def test_the_treatment_flag_turns_a_reading_above_target_into_an_alert(systolic: float, diastolic: float) -> None:
    untreated = SubjectProfile.from_years(55)
    assert bp_rules(systolic, diastolic, untreated) == []
    assert bp_rules(systolic, diastolic, TREATED_55) == [("bp.treated_above_target", Severity.INFO)]


def test_treated_above_target_says_uncontrolled_with_the_target_and_waits_for_a_repeat() -> None:
    results = evaluate(observation(Kind.BLOOD_PRESSURE, systolic=152.0, diastolic=86.0), TREATED_68)
    assert results == [
        RuleResult(
            rule="bp.treated_above_target",
            kind=Kind.BLOOD_PRESSURE,
            severity=Severity.INFO,
            audience=Audience.CLINICIAN,
            action=Action.NOTIFY,
            evidence=(Evidence("systolic", 152.0, "mm[Hg]"), Evidence("diastolic", 86.0, "mm[Hg]")),
            message="收缩压 152 mmHg，舒张压 86 mmHg：正在降压治疗，血压未达标（目标 <150/90 mmHg），高血压控制不佳",
            message_en=(
                "Systolic 152 mmHg, diastolic 86 mmHg: on treatment and not at target (< 150/90 mmHg): "
                "uncontrolled hypertension"
            ),
        )
    ]
    assert results[0].needs_repeat


def test_on_treatment_grade_3_is_told_as_not_controlled_rather_than_a_new_hypertension() -> None:
    reading = observation(Kind.BLOOD_PRESSURE, systolic=182.0, diastolic=112.0)
    (untreated,) = [r for r in evaluate(reading, SubjectProfile.from_years(55)) if r.rule.startswith("bp.")]
    (treated,) = [r for r in evaluate(reading, TREATED_55) if r.rule.startswith("bp.")]
    assert untreated.message == "收缩压 182 mmHg，舒张压 112 mmHg：疑似高血压危象"
    assert treated.message == "收缩压 182 mmHg，舒张压 112 mmHg：疑似高血压危象（正在降压治疗，血压未控制）"
    assert treated.message_en == (
        "Systolic 182 mmHg, diastolic 112 mmHg: possible hypertensive crisis (on treatment: not controlled)"
    )
    assert (treated.rule, treated.severity) == (untreated.rule, untreated.severity)


def test_the_treatment_flag_does_not_bring_adult_blood_pressure_rules_to_children() -> None:
    child = SubjectProfile.from_years(12, hypertension_treated=True)
    assert bp_rules(150, 95, child) == []
