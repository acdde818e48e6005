"""Adult blood pressure (Chinese hypertension guideline 2018, 2024 revision) and glucose (ADA) thresholds."""

from __future__ import annotations

from healthhut.collector.alerting.model import Action, Audience, Evidence, RuleResult, Severity, rounded, shown
from healthhut.protocol import Kind

# 中国高血压防治指南 2018 (2024 revision unchanged here): grade 3 is SBP >= 180 and/or DBP >= 110 mmHg.
GRADE_3_SYSTOLIC = 180
GRADE_3_DIASTOLIC = 110
# Hypertensive emergency "generally above 180/120 mmHg" with acute organ damage, which a hut cannot see:
# above either number is a *possible* crisis.
CRISIS_SYSTOLIC = 180
CRISIS_DIASTOLIC = 120
HYPOTENSION_SYSTOLIC = 90

# ADA Standards of Care, glycaemic targets: level 1 hypoglycaemia < 70 mg/dL (3.9 mmol/L), level 2 < 54 mg/dL
# (3.0 mmol/L); > 250 mg/dL (13.9 mmol/L) is the time-in-range consensus's "very high".
GLUCOSE_LEVEL_1_BELOW = 3.9
GLUCOSE_LEVEL_2_BELOW = 3.0
GLUCOSE_HIGH_ABOVE = 13.9


def _bp_evidence(systolic: float | None, diastolic: float | None) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(name, value, "mm[Hg]")
        for name, value in (("systolic", systolic), ("diastolic", diastolic))
        if value is not None
    )


def _bp_words(systolic: float | None, diastolic: float | None) -> tuple[str, str]:
    zh: list[str] = []
    en: list[str] = []
    if systolic is not None:
        zh.append(f"收缩压 {shown(systolic)} mmHg")
        en.append(f"systolic {shown(systolic)} mmHg")
    if diastolic is not None:
        zh.append(f"舒张压 {shown(diastolic)} mmHg")
        en.append(f"diastolic {shown(diastolic)} mmHg")
    text_en = ", ".join(en)
    return "，".join(zh), text_en[:1].upper() + text_en[1:]


def blood_pressure(systolic: float | None, diastolic: float | None) -> list[RuleResult]:
    """Possible crisis (emergency), else grade 3 (urgent); and hypotension (urgent). Whole mmHg."""
    sbp = None if systolic is None else rounded(systolic)
    dbp = None if diastolic is None else rounded(diastolic)
    zh, en = _bp_words(systolic, diastolic)
    evidence = _bp_evidence(systolic, diastolic)
    results: list[RuleResult] = []

    def result(rule: str, severity: Severity, what_zh: str, what_en: str) -> RuleResult:
        return RuleResult(
            rule=rule,
            kind=Kind.BLOOD_PRESSURE,
            severity=severity,
            audience=Audience.CLINICIAN,
            action=Action.NOTIFY,
            evidence=evidence,
            message=f"{zh}：{what_zh}",
            message_en=f"{en}: {what_en}",
        )

    if (sbp is not None and sbp > CRISIS_SYSTOLIC) or (dbp is not None and dbp > CRISIS_DIASTOLIC):
        results.append(
            result("bp.possible_crisis", Severity.EMERGENCY, "疑似高血压危象", "possible hypertensive crisis")
        )
    elif (sbp is not None and sbp >= GRADE_3_SYSTOLIC) or (dbp is not None and dbp >= GRADE_3_DIASTOLIC):
        results.append(result("bp.grade_3", Severity.URGENT, "3 级高血压水平", "grade 3 hypertension range"))
    if sbp is not None and sbp <= HYPOTENSION_SYSTOLIC:
        results.append(result("bp.hypotension", Severity.URGENT, "低血压", "hypotension"))
    return results


def glucose(value: float) -> RuleResult | None:
    """Level 2 hypoglycaemia alerts at once; level 1 and very high wait for a repeat. 0.1 mmol/L resolution."""
    level = rounded(value, 1)
    if level < GLUCOSE_LEVEL_2_BELOW:
        rule, severity = "glucose.hypo_level_2", Severity.EMERGENCY
        zh, en = "2 级低血糖（<3.0 mmol/L）", "level 2 hypoglycaemia (< 3.0 mmol/L)"
    elif level < GLUCOSE_LEVEL_1_BELOW:
        rule, severity = "glucose.hypo_level_1", Severity.WARNING
        zh, en = "1 级低血糖（<3.9 mmol/L）", "level 1 hypoglycaemia (< 3.9 mmol/L)"
    elif level > GLUCOSE_HIGH_ABOVE:
        rule, severity = "glucose.high", Severity.WARNING
        zh, en = "血糖过高（>13.9 mmol/L）", "very high glucose (> 13.9 mmol/L)"
    else:
        return None
    return RuleResult(
        rule=rule,
        kind=Kind.BLOOD_GLUCOSE,
        severity=severity,
        audience=Audience.CLINICIAN,
        action=Action.NOTIFY,
        evidence=(Evidence("glucose", value, "mmol/L"),),
        message=f"血糖 {shown(value)} mmol/L：{zh}",
        message_en=f"Glucose {shown(value)} mmol/L: {en}",
    )
