"""NEWS2 parameter bands cell by cell against RCP NEWS2 Chart 1 (2017), and the partial total."""

from __future__ import annotations

import pytest

from healthhut.collector.alerting import (
    Action,
    Audience,
    Evidence,
    Severity,
    SubjectProfile,
    evaluate,
    partial_from_observations,
    partial_from_values,
)
from healthhut.collector.alerting.news2 import parameter_score
from healthhut.protocol import Flag, Kind
from tests.alerting.observations import observation

ADULT = SubjectProfile.from_years(72)
HYPERCAPNIC_AIR = SubjectProfile.from_years(72, hypercapnic_respiratory_failure=True)
HYPERCAPNIC_O2 = SubjectProfile.from_years(72, hypercapnic_respiratory_failure=True, on_supplemental_oxygen=True)

# RCP NEWS2 Chart 1, one row per parameter: (lowest, highest, score) per cell as printed. None = open end.
CHART = {
    "spo2": [(None, 91, 3), (92, 93, 2), (94, 95, 1), (96, None, 0)],
    "systolic": [(None, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, None, 3)],
    "pulse": [(None, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, None, 3)],
    "temperature": [(None, 35.0, 3), (35.1, 36.0, 1), (36.1, 38.0, 0), (38.1, 39.0, 1), (39.1, None, 2)],
}
SCALE_2_AIR = [(None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0), (93, None, 0)]
SCALE_2_OXYGEN = [(None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0), (93, 94, 1), (95, 96, 2), (97, None, 3)]
# A value well past an open end, to show the cell stays open.
FAR = {"spo2": (70, 100), "systolic": (60, 260), "pulse": (25, 190), "temperature": (33.0, 41.5)}


def _cell_ends(rows: list[tuple[float | None, float | None, int]], far: tuple[float, float]) -> list[tuple[float, int]]:
    """Both ends of every cell: each boundary is tested from both sides, by the two cells that meet there."""
    cases: list[tuple[float, int]] = []
    for low, high, score in rows:
        cases.append((far[0] if low is None else low, score))
        cases.append((far[1] if high is None else high, score))
    return cases


@pytest.mark.parametrize(
    ("parameter", "value", "score"),
    [(p, v, s) for p, rows in CHART.items() for v, s in _cell_ends(rows, FAR[p])],
)
def test_chart_cell_ends(parameter: str, value: float, score: int) -> None:
    assert parameter_score(parameter, value, ADULT) == score


@pytest.mark.parametrize(("value", "score"), _cell_ends(SCALE_2_AIR, (70, 100)))
def test_spo2_scale_2_on_air(value: float, score: int) -> None:
    assert parameter_score("spo2", value, HYPERCAPNIC_AIR) == score


@pytest.mark.parametrize(("value", "score"), _cell_ends(SCALE_2_OXYGEN, (70, 100)))
def test_spo2_scale_2_on_oxygen(value: float, score: int) -> None:
    assert parameter_score("spo2", value, HYPERCAPNIC_O2) == score


@pytest.mark.parametrize(
    ("parameter", "value", "score"),
    [
        # Readings between the chart's printed cells are rounded to its resolution first, half away from zero.
        ("temperature", 38.04, 0),
        ("temperature", 38.05, 1),
        ("temperature", 35.05, 1),
        ("temperature", 35.04, 3),
        ("pulse", 130.4, 2),
        ("pulse", 130.5, 3),
        ("systolic", 90.4, 3),
        ("systolic", 90.5, 2),
        ("spo2", 95.5, 0),
    ],
)
def test_values_between_cells_round_to_the_chart(parameter: str, value: float, score: int) -> None:
    assert parameter_score(parameter, value, ADULT) == score


def test_scale_2_scores_89_as_0_where_scale_1_scores_3() -> None:
    assert (parameter_score("spo2", 89, ADULT), parameter_score("spo2", 89, HYPERCAPNIC_AIR)) == (3, 0)


def test_a_red_cell_alone_is_a_clinician_warning_that_waits_for_a_repeat() -> None:
    (result,) = evaluate(observation(Kind.SPO2, spo2=90.0, pulse_rate=80.0), ADULT)
    assert result.rule == "news2.spo2"
    assert result.severity is Severity.WARNING
    assert result.audience is Audience.CLINICIAN
    assert result.needs_repeat
    assert result.evidence == (Evidence("spo2", 90.0, "%"),)
    assert result.message == "血氧饱和度 90 %：NEWS2 单项评分 3（SpO2 量表 1）"
    assert result.message_en == "SpO2 90 %: NEWS2 parameter score 3 (SpO2 scale 1)"


def test_scores_below_3_give_no_per_reading_result() -> None:
    assert evaluate(observation(Kind.SPO2, spo2=92.0, pulse_rate=115.0), ADULT) == []


def test_partial_total_adds_the_measured_parameters_and_says_what_is_missing() -> None:
    # 93 % -> 2, 105 mmHg -> 1, 115 /min -> 2, 38.5 °C -> 1, on air -> 0.
    partial = partial_from_values(ADULT, spo2=93, systolic=105, pulse=115, temperature=38.5)
    assert partial is not None
    assert partial.partial
    assert partial.total == 6
    assert dict(partial.scores) == {"spo2": 2, "systolic": 1, "pulse": 2, "temperature": 1, "air_or_oxygen": 0}
    assert partial.missing == ("respiratory_rate", "consciousness")
    assert partial.label == "partial NEWS2 (no respiratory rate, no consciousness)"
    result = partial.result()
    assert result is not None
    assert (result.rule, result.severity, result.needs_repeat) == ("news2.partial_total", Severity.URGENT, True)
    assert result.message == "部分 NEWS2 总分 6（未含呼吸频率、意识，实际总分只会更高或相等）"
    assert "Partial NEWS2 total 6" in result.message_en


def test_supplemental_oxygen_adds_2_and_a_total_of_7_is_an_emergency() -> None:
    on_oxygen = SubjectProfile.from_years(72, on_supplemental_oxygen=True)
    partial = partial_from_values(on_oxygen, spo2=93, systolic=105, pulse=115, temperature=38.5)
    assert partial is not None
    assert partial.total == 8
    result = partial.result()
    assert result is not None
    assert result.severity is Severity.EMERGENCY
    assert result.alerts_at_once and not result.needs_repeat


@pytest.mark.parametrize(
    ("values", "severity"),
    [
        ({"spo2": 96, "systolic": 120, "pulse": 70, "temperature": 36.8}, None),  # 0
        ({"spo2": 94, "systolic": 120, "pulse": 70, "temperature": 36.8}, Severity.INFO),  # 1
        ({"spo2": 92, "systolic": 105, "pulse": 95, "temperature": 36.8}, Severity.INFO),  # 4, no red cell
        ({"spo2": 91, "systolic": 120, "pulse": 70, "temperature": 36.8}, Severity.WARNING),  # 3, a red cell
        ({"spo2": 93, "systolic": 105, "pulse": 100, "temperature": 39.5}, Severity.URGENT),  # 2+1+1+2 = 6
        ({"spo2": 93, "systolic": 100, "pulse": 120, "temperature": 38.5}, Severity.EMERGENCY),  # 2+2+2+1 = 7
    ],
)
def test_partial_total_follows_the_rcp_response_thresholds(values: dict[str, float], severity: Severity | None) -> None:
    partial = partial_from_values(ADULT, **values)
    assert partial is not None
    result = partial.result()
    assert (None if result is None else result.severity) == severity


def test_a_missing_reading_is_named_missing() -> None:
    partial = partial_from_values(ADULT, spo2=97, pulse=72)
    assert partial is not None
    assert partial.missing == ("respiratory_rate", "consciousness", "systolic", "temperature")
    assert partial.label == "partial NEWS2 (no respiratory rate, no consciousness, no systolic, no temperature)"


@pytest.mark.parametrize(
    "profile",
    [SubjectProfile.from_years(17), SubjectProfile(age_months=30), SubjectProfile.from_years(30, pregnant=True)],
)
def test_news2_does_not_apply_to_children_or_in_pregnancy(profile: SubjectProfile) -> None:
    assert partial_from_values(profile, spo2=85, systolic=85, pulse=140, temperature=39.5) is None


def test_partial_from_observations_uses_only_readings_fit_for_alerting() -> None:
    visit = [
        observation(Kind.SPO2, spo2=93.0, pulse_rate=115.0),
        observation(Kind.BLOOD_PRESSURE, systolic=85.0, diastolic=50.0, flags=frozenset({Flag.CUFF_FIT_LOOSE})),
        observation(Kind.BODY_TEMPERATURE, temperature=38.5),
    ]
    partial = partial_from_observations(visit, ADULT)
    assert partial is not None
    assert dict(partial.values) == {"spo2": 93.0, "pulse": 115.0, "temperature": 38.5}
    assert partial.total == 5
    assert "systolic" in partial.missing
    result = partial.result()
    assert result is not None
    assert (result.action, result.severity) == (Action.NOTIFY, Severity.URGENT)
