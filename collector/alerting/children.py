"""Children's rules: heart-rate centiles by age (Fleming et al., Lancet 2011) and NICE NG143 for under-fives."""

from __future__ import annotations

from dataclasses import dataclass

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
from healthhut.protocol import Kind


@dataclass(frozen=True, slots=True)
class HeartRateCentiles:
    """Heart-rate centiles (beats/min) of one age band; ``to_months`` is exclusive."""

    from_months: int
    to_months: int
    p1: int
    p10: int
    p90: int
    p99: int


# Fleming S, Thompson M, Stevens R, et al. Normal ranges of heart rate and respiratory rate in children from
# birth to 18 years of age: a systematic review of observational studies. Lancet 2011;377:1011-18,
# doi:10.1016/S0140-6736(10)62226-X, heart-rate centile table (web appendix, Web Table 5). Provenance of the
# numbers in collector/alerting/README.md.
FLEMING_HEART_RATE: tuple[HeartRateCentiles, ...] = (
    HeartRateCentiles(0, 3, 107, 123, 164, 181),
    HeartRateCentiles(3, 6, 104, 120, 159, 175),
    HeartRateCentiles(6, 9, 98, 114, 152, 168),
    HeartRateCentiles(9, 12, 93, 109, 145, 161),
    HeartRateCentiles(12, 18, 88, 103, 140, 156),
    HeartRateCentiles(18, 24, 82, 98, 135, 149),
    HeartRateCentiles(24, 36, 76, 92, 128, 142),
    HeartRateCentiles(36, 48, 70, 86, 123, 136),
    HeartRateCentiles(48, 72, 65, 81, 117, 131),
    HeartRateCentiles(72, 96, 59, 74, 111, 123),
    HeartRateCentiles(96, 144, 52, 67, 103, 115),
    HeartRateCentiles(144, 180, 47, 62, 96, 108),
    HeartRateCentiles(180, 216, 43, 58, 92, 104),
)

# NICE NG143 (fever in under 5s), traffic light table.
NICE_UNDER_MONTHS = 60
NICE_SPO2_AMBER_AT_OR_BELOW = 95  # % in air
NICE_RED_FEVER_UNDER_MONTHS = 3
NICE_RED_FEVER_FROM = 38.0  # °C
NICE_AMBER_FEVER_MONTHS = (3, 6)  # age 3-6 months
NICE_AMBER_FEVER_FROM = 39.0  # °C


def heart_rate_centiles(age_months: int) -> HeartRateCentiles | None:
    for band in FLEMING_HEART_RATE:
        if band.from_months <= age_months < band.to_months:
            return band
    return None


def _age_words(age_months: int) -> tuple[str, str]:
    if age_months < 24:
        return f"{age_months} 月龄", f"{age_months} months old"
    return f"{age_months // 12} 岁", f"{age_months // 12} years old"


def heart_rate(value: float, kind: Kind, profile: SubjectProfile) -> RuleResult | None:
    """Beyond the 1st or 99th centile for age is a warning; beyond the 10th or 90th (up to the 1st/99th) a watch."""
    band = heart_rate_centiles(profile.age_months)
    if band is None:
        return None
    rate = rounded(value)
    if rate > band.p99:
        rule, severity, zh, en = (
            "child.heart_rate",
            Severity.WARNING,
            f"高于第 99 百分位（{band.p99}）",
            f"above the 99th centile for age ({band.p99})",
        )
    elif rate < band.p1:
        rule, severity, zh, en = (
            "child.heart_rate",
            Severity.WARNING,
            f"低于第 1 百分位（{band.p1}）",
            f"below the 1st centile for age ({band.p1})",
        )
    elif rate > band.p90:
        rule, severity, zh, en = (
            "child.heart_rate_watch",
            Severity.INFO,
            f"介于第 90 与第 99 百分位之间（{band.p90}-{band.p99}）",
            f"between the 90th and 99th centiles for age ({band.p90}-{band.p99})",
        )
    elif rate < band.p10:
        rule, severity, zh, en = (
            "child.heart_rate_watch",
            Severity.INFO,
            f"介于第 1 与第 10 百分位之间（{band.p1}-{band.p10}）",
            f"between the 1st and 10th centiles for age ({band.p1}-{band.p10})",
        )
    else:
        return None
    age_zh, age_en = _age_words(profile.age_months)
    name = "heart_rate" if kind in (Kind.HEART_RATE, Kind.ECG) else "pulse_rate"
    return RuleResult(
        rule=rule,
        kind=kind,
        severity=severity,
        audience=Audience.CLINICIAN,
        action=Action.NOTIFY,
        evidence=(Evidence(name, value, "/min"),),
        message=f"{age_zh}儿童心率 {shown(value)} 次/分：{zh}",
        message_en=f"Child {age_en}, heart rate {shown(value)} /min: {en}",
    )


def spo2(value: float, profile: SubjectProfile) -> RuleResult | None:
    """NG143 amber: SpO2 <= 95 % in air, under 5 years. Not applied on supplemental oxygen ("in air")."""
    if profile.age_months >= NICE_UNDER_MONTHS or profile.on_supplemental_oxygen:
        return None
    if rounded(value) > NICE_SPO2_AMBER_AT_OR_BELOW:
        return None
    return RuleResult(
        rule="nice.spo2_amber",
        kind=Kind.SPO2,
        severity=Severity.WARNING,
        audience=Audience.CLINICIAN,
        action=Action.NOTIFY,
        evidence=(Evidence("spo2", value, "%"),),
        message=f"5 岁以下儿童血氧饱和度 {shown(value)} %（≤95 %）：NICE 琥珀色（中度风险）",
        message_en=f"Child under 5, SpO2 {shown(value)} % (<= 95 %): NICE amber (intermediate risk)",
    )


def temperature(value: float, profile: SubjectProfile) -> RuleResult | None:
    """NG143: red for >= 38 °C under 3 months; amber for >= 39 °C at 3-6 months."""
    temp = rounded(value, 1)
    age = profile.age_months
    if age < NICE_RED_FEVER_UNDER_MONTHS and temp >= NICE_RED_FEVER_FROM:
        rule, severity = "nice.fever_red", Severity.URGENT
        zh = "3 月龄以下婴儿发热（≥38 °C）：NICE 红色（高风险）"
        en = "infant under 3 months with fever (>= 38 °C): NICE red (high risk)"
    elif NICE_AMBER_FEVER_MONTHS[0] <= age < NICE_AMBER_FEVER_MONTHS[1] and temp >= NICE_AMBER_FEVER_FROM:
        rule, severity = "nice.fever_amber", Severity.WARNING
        zh = "3-6 月龄婴儿体温 ≥39 °C：NICE 琥珀色（中度风险）"
        en = "infant aged 3-6 months, temperature >= 39 °C: NICE amber (intermediate risk)"
    else:
        return None
    return RuleResult(
        rule=rule,
        kind=Kind.BODY_TEMPERATURE,
        severity=severity,
        audience=Audience.CLINICIAN,
        action=Action.NOTIFY,
        evidence=(Evidence("temperature", value, "Cel"),),
        message=f"体温 {shown(value)} °C，{zh}",
        message_en=f"Temperature {shown(value)} °C, {en}",
    )
