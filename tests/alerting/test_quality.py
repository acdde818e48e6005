"""Quality gating: a reading in doubt never reaches a clinician; the hut is asked to measure again."""

from __future__ import annotations

import pytest

from healthhut.collector.alerting import Action, Audience, Severity, SubjectProfile, evaluate
from healthhut.protocol import Finding, Flag, Kind
from tests.alerting.observations import HUT, PSEUDONYM, observation

ADULT = SubjectProfile.from_years(66)
# Readings that would each raise an emergency or a warning if they were trusted.
ALARMING = {
    Kind.BLOOD_PRESSURE: {"systolic": 210.0, "diastolic": 130.0},
    Kind.SPO2: {"spo2": 82.0, "pulse_rate": 150.0},
    Kind.ECG: {"heart_rate": 30.0},
    Kind.BODY_TEMPERATURE: {"temperature": 34.0},
}


@pytest.mark.parametrize(
    ("kind", "flag"),
    [
        (Kind.ECG, Flag.LEAD_OFF),
        (Kind.ECG, Flag.MOTION_ARTIFACT),
        (Kind.SPO2, Flag.LOW_PERFUSION),
        (Kind.SPO2, Flag.MOTION_ARTIFACT),
        (Kind.SPO2, Flag.FINGER_OUT),
        (Kind.BLOOD_PRESSURE, Flag.CUFF_FIT_LOOSE),
        (Kind.BLOOD_PRESSURE, Flag.BODY_MOVEMENT),
        (Kind.BLOOD_PRESSURE, Flag.IMPLAUSIBLE),
        (Kind.BODY_TEMPERATURE, Flag.IMPLAUSIBLE),
    ],
)
def test_a_flagged_reading_only_asks_for_a_remeasure(kind: Kind, flag: Flag) -> None:
    findings = frozenset({Finding.ASYSTOLE}) if kind is Kind.ECG else frozenset()
    results = evaluate(observation(kind, flags=frozenset({flag}), findings=findings, **ALARMING[kind]), ADULT)
    assert len(results) == 1
    (result,) = results
    assert result.rule == "quality.remeasure"
    assert result.audience is Audience.TECHNICIAN
    assert result.action is Action.REMEASURE
    assert result.severity is Severity.INFO
    assert not result.needs_repeat and not result.alerts_at_once
    assert result.quality == (flag.value,)
    assert result.evidence == ()


def test_a_reading_the_gateway_found_unfit_only_asks_for_a_remeasure() -> None:
    results = evaluate(observation(Kind.BLOOD_PRESSURE, fit_for_alerting=False, **ALARMING[Kind.BLOOD_PRESSURE]), ADULT)
    assert [(r.rule, r.audience, r.quality) for r in results] == [
        ("quality.remeasure", Audience.TECHNICIAN, ("not_fit_for_alerting",))
    ]


def test_remeasure_message_carries_no_value() -> None:
    (result,) = evaluate(
        observation(
            Kind.ECG, flags=frozenset({Flag.LEAD_OFF}), findings=frozenset({Finding.ASYSTOLE}), heart_rate=30.0
        ),
        ADULT,
    )
    assert result.message == "读数质量不足（导联脱落），请重新测量"
    assert result.message_en == "Reading quality insufficient (lead off): please measure again"


def test_irregular_pulse_is_a_clinical_sign_not_a_quality_problem() -> None:
    results = evaluate(
        observation(Kind.BLOOD_PRESSURE, flags=frozenset({Flag.IRREGULAR_PULSE}), **ALARMING[Kind.BLOOD_PRESSURE]),
        ADULT,
    )
    assert results[0].rule == "bp.possible_crisis"
    assert all(r.audience is Audience.CLINICIAN for r in results)


def test_no_message_names_the_hut_or_the_subject() -> None:
    readings = [observation(kind, **values) for kind, values in ALARMING.items()]
    readings.append(observation(Kind.SPO2, flags=frozenset({Flag.MOTION_ARTIFACT}), spo2=80.0))
    results = [r for o in readings for r in evaluate(o, ADULT)]
    assert len(results) >= 5
    for result in results:
        for text in (result.message, result.message_en):
            assert HUT not in text
            assert PSEUDONYM[:8] not in text
