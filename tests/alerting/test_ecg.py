"""ECG rules from the gateway's rhythm findings and derived rate."""

from __future__ import annotations

import pytest

from healthhut.collector.alerting import Evidence, Severity, SubjectProfile, evaluate
from healthhut.protocol import Finding, Kind
from tests.alerting.observations import observation

ADULT = SubjectProfile.from_years(75)


def ecg_rules(
    profile: SubjectProfile = ADULT, *, heart_rate: float, findings: frozenset[Finding] = frozenset()
) -> list[tuple[str, Severity]]:
    reading = observation(Kind.ECG, findings=findings, heart_rate=heart_rate)
    return [(r.rule, r.severity) for r in evaluate(reading, profile)]


def test_suspected_af_waits_for_a_repeat_strip() -> None:
    (result,) = evaluate(observation(Kind.ECG, findings=frozenset({Finding.POSSIBLE_AF}), heart_rate=96.0), ADULT)
    assert (result.rule, result.severity, result.needs_repeat) == ("ecg.possible_af", Severity.WARNING, True)
    assert result.evidence == (Evidence("heart_rate", 96.0, "/min"),)
    assert result.message == "心电图：疑似心房颤动（单导联，需确认）"


def test_pause_carries_the_longest_rr_interval() -> None:
    (result,) = evaluate(
        observation(
            Kind.ECG, findings=frozenset({Finding.PAUSE}), heart_rate=62.0, rr_intervals=(950.0, 3100.0, 940.0)
        ),
        ADULT,
    )
    assert (result.rule, result.severity) == ("ecg.pause", Severity.URGENT)
    assert result.evidence == (Evidence("longest_rr_interval", 3100.0, "ms"),)
    assert result.message == "心电图：心脏停顿（最长 RR 间期 3.1 秒）"
    assert result.message_en == "ECG: pause (longest RR interval 3.1 s)"


def test_asystole_alerts_at_once_and_replaces_the_pause() -> None:
    results = evaluate(observation(Kind.ECG, findings=frozenset({Finding.PAUSE, Finding.ASYSTOLE})), ADULT)
    assert [(r.rule, r.alerts_at_once) for r in results] == [("ecg.asystole", True)]


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        # The NEWS2 red pulse cells: <= 40 and >= 131.
        (40, [("ecg.extreme_rate", Severity.WARNING)]),
        (41, []),
        (130, []),
        (131, [("ecg.extreme_rate", Severity.WARNING)]),
        (175, [("ecg.extreme_rate", Severity.WARNING)]),
    ],
)
def test_adult_extreme_rate(rate: float, expected: list[tuple[str, Severity]]) -> None:
    assert ecg_rules(heart_rate=rate) == expected


def test_child_extreme_rate_uses_the_centiles() -> None:
    # 6-8 years: 1st centile 59, 99th 123. 130 /min is normal for an adult's ECG, extreme for a 7-year-old.
    seven = SubjectProfile.from_years(7)
    assert ecg_rules(seven, heart_rate=130.0) == [("ecg.extreme_rate", Severity.WARNING)]
    assert ecg_rules(seven, heart_rate=118.0) == []  # a watch on a pulse, not an extreme ECG rate
    assert ecg_rules(heart_rate=118.0) == []


def test_the_dsp_brady_and_tachy_findings_do_not_alert_by_themselves() -> None:
    # The DSP flags < 50 and > 100 /min to describe the strip; the alert thresholds are the rules' own.
    assert ecg_rules(findings=frozenset({Finding.TACHYCARDIA}), heart_rate=104.0) == []
