"""NEWS2 parameter scores for what a hut measures, and a partial NEWS2 total that says it is partial.

Royal College of Physicians, National Early Warning Score (NEWS) 2, 2017, Chart 1. A hut measures neither
respiratory rate nor consciousness, so the total here is a lower bound of the real NEWS2: the two missing
parameters can only add points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from healthhut.collector.alerting.model import (
    Action,
    Audience,
    Evidence,
    RuleResult,
    Severity,
    SubjectProfile,
    rounded,
    shown,
)
from healthhut.collector.alerting.quality import remeasure_reasons
from healthhut.protocol import Kind, Observation

# Each band is (highest value in the cell, score), read upwards; a value above the last cell scores ``top``.
# Values are first rounded to the chart's resolution (whole numbers; temperature 0.1 °C).
Bands = tuple[tuple[float, int], ...]
SPO2_SCALE_1: Bands = ((91, 3), (93, 2), (95, 1))
SPO2_SCALE_1_TOP = 0
# Scale 2 on air: 88-92 and >= 93 both score 0. On oxygen the high cells score too (93-94: 1, 95-96: 2, >= 97: 3).
SPO2_SCALE_2_AIR: Bands = ((83, 3), (85, 2), (87, 1))
SPO2_SCALE_2_AIR_TOP = 0
SPO2_SCALE_2_OXYGEN: Bands = ((83, 3), (85, 2), (87, 1), (92, 0), (94, 1), (96, 2))
SPO2_SCALE_2_OXYGEN_TOP = 3
SYSTOLIC: Bands = ((90, 3), (100, 2), (110, 1), (219, 0))
SYSTOLIC_TOP = 3
PULSE: Bands = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2))
PULSE_TOP = 3
TEMPERATURE: Bands = ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1))
TEMPERATURE_TOP = 2
OXYGEN_SCORE = 2

NOT_MEASURED = ("respiratory_rate", "consciousness")

# Where each NEWS2 parameter comes from: (kind, value name), in order of preference within one visit.
SOURCES: Mapping[str, tuple[tuple[Kind, str], ...]] = MappingProxyType(
    {
        "spo2": ((Kind.SPO2, "spo2"),),
        "systolic": ((Kind.BLOOD_PRESSURE, "systolic"),),
        "pulse": (
            (Kind.SPO2, "pulse_rate"),
            (Kind.HEART_RATE, "heart_rate"),
            (Kind.ECG, "heart_rate"),
            (Kind.BLOOD_PRESSURE, "pulse_rate"),
        ),
        "temperature": ((Kind.BODY_TEMPERATURE, "temperature"),),
    }
)

_NAMES = {
    "spo2": ("血氧饱和度", "SpO2", "%"),
    "systolic": ("收缩压", "Systolic", "mmHg"),
    "pulse": ("脉率", "Pulse", "/min"),
    "temperature": ("体温", "Temperature", "°C"),
}
_UNITS = {"spo2": "%", "systolic": "mm[Hg]", "pulse": "/min", "temperature": "Cel"}


def _band(value: float, bands: Bands, top: int) -> int:
    for highest, score in bands:
        if value <= highest:
            return score
    return top


def applies(profile: SubjectProfile) -> bool:
    """NEWS2 is for adults (here: 18 and over, the collector's one adult boundary), not in pregnancy."""
    return profile.is_adult and not profile.pregnant


def spo2_score(spo2: float, profile: SubjectProfile) -> int:
    value = rounded(spo2)
    if not profile.hypercapnic_respiratory_failure:
        return _band(value, SPO2_SCALE_1, SPO2_SCALE_1_TOP)
    if profile.on_supplemental_oxygen:
        return _band(value, SPO2_SCALE_2_OXYGEN, SPO2_SCALE_2_OXYGEN_TOP)
    return _band(value, SPO2_SCALE_2_AIR, SPO2_SCALE_2_AIR_TOP)


def systolic_score(systolic: float) -> int:
    return _band(rounded(systolic), SYSTOLIC, SYSTOLIC_TOP)


def pulse_score(pulse: float) -> int:
    return _band(rounded(pulse), PULSE, PULSE_TOP)


def temperature_score(temperature: float) -> int:
    return _band(rounded(temperature, 1), TEMPERATURE, TEMPERATURE_TOP)


def parameter_score(parameter: str, value: float, profile: SubjectProfile) -> int:
    if parameter == "spo2":
        return spo2_score(value, profile)
    if parameter == "systolic":
        return systolic_score(value)
    if parameter == "pulse":
        return pulse_score(value)
    if parameter == "temperature":
        return temperature_score(value)
    raise KeyError(f"NEWS2 has no hut-measured parameter {parameter!r}")


def parameter_result(parameter: str, value: float, kind: Kind, profile: SubjectProfile) -> RuleResult | None:
    """A red cell (score 3) of one parameter is a warning on its own; lower scores only count in the total."""
    score = parameter_score(parameter, value, profile)
    if score < 3:
        return None
    zh, en, unit = _NAMES[parameter]
    scale = _scale_note(profile) if parameter == "spo2" else ("", "")
    return RuleResult(
        rule=f"news2.{parameter}",
        kind=kind,
        severity=Severity.WARNING,
        audience=Audience.CLINICIAN,
        action=Action.NOTIFY,
        evidence=(Evidence(parameter, value, _UNITS[parameter]),),
        message=f"{zh} {shown(value)} {unit}：NEWS2 单项评分 {score}{scale[0]}",
        message_en=f"{en} {shown(value)} {unit}: NEWS2 parameter score {score}{scale[1]}",
    )


def _scale_note(profile: SubjectProfile) -> tuple[str, str]:
    if profile.hypercapnic_respiratory_failure:
        return ("（SpO2 量表 2）", " (SpO2 scale 2)")
    return ("（SpO2 量表 1）", " (SpO2 scale 1)")


@dataclass(frozen=True, slots=True)
class News2Partial:
    """A NEWS2 total over the parameters a hut has; ``missing`` always names respiratory rate and consciousness.

    ``total`` is a lower bound of the full NEWS2. ``scores`` holds each scored parameter, including
    ``air_or_oxygen`` taken from the profile rather than measured.
    """

    scores: Mapping[str, int]
    values: Mapping[str, float]
    missing: tuple[str, ...]
    spo2_scale: int
    partial: bool = True

    @property
    def total(self) -> int:
        return sum(self.scores.values())

    @property
    def has_red_cell(self) -> bool:
        return any(score == 3 for score in self.scores.values())

    @property
    def label(self) -> str:
        return "partial NEWS2 (no " + ", no ".join(p.replace("_", " ") for p in self.missing) + ")"

    def result(self) -> RuleResult | None:
        """The RCP response thresholds applied to the partial total: >= 7 high, 5-6 medium, a single 3
        low-medium, 1-4 low. Nothing for a total of 0."""
        total = self.total
        if total >= 7:
            severity = Severity.EMERGENCY
        elif total >= 5:
            severity = Severity.URGENT
        elif self.has_red_cell:
            severity = Severity.WARNING
        elif total >= 1:
            severity = Severity.INFO
        else:
            return None
        missing_zh = "、".join(
            {"respiratory_rate": "呼吸频率", "consciousness": "意识"}.get(p, p) for p in self.missing
        )
        return RuleResult(
            rule="news2.partial_total",
            kind=None,
            severity=severity,
            audience=Audience.CLINICIAN,
            action=Action.NOTIFY,
            evidence=tuple(Evidence(name, value, _UNITS[name]) for name, value in self.values.items()),
            message=f"部分 NEWS2 总分 {total}（未含{missing_zh}，实际总分只会更高或相等）",
            message_en=f"Partial NEWS2 total {total} ({self.label}; the full score can only be equal or higher)",
        )


def partial_from_values(
    profile: SubjectProfile,
    *,
    spo2: float | None = None,
    systolic: float | None = None,
    pulse: float | None = None,
    temperature: float | None = None,
) -> News2Partial | None:
    """The partial NEWS2 of one visit's values; None where NEWS2 does not apply (children, pregnancy)."""
    if not applies(profile):
        return None
    given = {"spo2": spo2, "systolic": systolic, "pulse": pulse, "temperature": temperature}
    values = {name: value for name, value in given.items() if value is not None}
    scores = {name: parameter_score(name, value, profile) for name, value in values.items()}
    scores["air_or_oxygen"] = OXYGEN_SCORE if profile.on_supplemental_oxygen else 0
    missing = NOT_MEASURED + tuple(name for name, value in given.items() if value is None)
    return News2Partial(
        scores=MappingProxyType(scores),
        values=MappingProxyType(values),
        missing=missing,
        spo2_scale=2 if profile.hypercapnic_respiratory_failure else 1,
    )


def partial_from_observations(observations: Iterable[Observation], profile: SubjectProfile) -> News2Partial | None:
    """The partial NEWS2 of one visit: each parameter from the latest reading fit for alerting.

    The caller chooses which observations make a visit. A reading unfit for alerting never counts.
    """
    usable = sorted(
        (o for o in observations if not remeasure_reasons(o)),
        key=lambda o: o.measured_at,
        reverse=True,
    )
    found: dict[str, float] = {}
    for parameter, sources in SOURCES.items():
        for observation in usable:
            value = _first_number(observation, sources)
            if value is not None:
                found[parameter] = value
                break
    return partial_from_values(profile, **found)


def _first_number(observation: Observation, sources: tuple[tuple[Kind, str], ...]) -> float | None:
    for kind, name in sources:
        if observation.kind is kind and name in observation.values:
            value = observation.values[name].value
            if not isinstance(value, list):
                return value
    return None
