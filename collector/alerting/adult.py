"""Adult blood pressure (Chinese hypertension guideline 2018, 2024 revision) and glucose (ADA) thresholds,
and what the profile's ``diabetes`` and ``hypertension_treated`` flags change in them."""

from __future__ import annotations

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

# 中国高血压防治指南 2018 (2024 revision unchanged here): grade 3 is SBP >= 180 and/or DBP >= 110 mmHg.
GRADE_3_SYSTOLIC = 180
GRADE_3_DIASTOLIC = 110
# Hypertensive emergency "generally above 180/120 mmHg" with acute organ damage, which a hut cannot see:
# above either number is a *possible* crisis.
CRISIS_SYSTOLIC = 180
CRISIS_DIASTOLIC = 120
HYPOTENSION_SYSTOLIC = 90
# Treated hypertension (flag ``hypertension_treated``). 中国高血压防治指南 2018 (and its primary-care
# versions, 国家基层高血压防治管理指南 2017 / 2020): the target is < 140/90 mmHg; from 65 years the first
# target is < 150/90 (then < 140/90 if tolerated). 2018 ESC/ESH: the first objective is < 140/90 in every
# treated patient. A treated reading at or above the target is hypertension that is not controlled; a
# treated resident is hypertensive whatever the reading (高血压基层诊疗指南 2019), so it is never a new diagnosis.
TREATED_TARGET_SYSTOLIC = 140
TREATED_TARGET_DIASTOLIC = 90
TREATED_TARGET_SYSTOLIC_FROM_65 = 150
TREATED_OLDER_FROM_MONTHS = 65 * 12

# ADA Standards of Care, glycaemic targets: level 1 hypoglycaemia < 70 mg/dL (3.9 mmol/L), level 2 < 54 mg/dL
# (3.0 mmol/L); > 250 mg/dL (13.9 mmol/L) is the time-in-range consensus's "very high".
GLUCOSE_LEVEL_1_BELOW = 3.9
GLUCOSE_LEVEL_2_BELOW = 3.0
GLUCOSE_HIGH_ABOVE = 13.9
# ADA Standards of Care, Diagnosis and Classification (and 中国2型糖尿病防治指南 2020): a random plasma
# glucose >= 200 mg/dL (11.1 mmol/L) with symptoms is diagnostic of diabetes; without unequivocal
# hyperglycaemia it must be confirmed, in a laboratory (point-of-care meters are not for diagnosis). For a
# resident with no known diabetes (no ``diabetes`` flag) a hut reading at or above it is a possible new
# diagnosis to confirm; for one with known diabetes it is above target but, below 13.9, no alert.
GLUCOSE_DIAGNOSTIC_AT = 11.1


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


def treated_target(age_months: int) -> tuple[int, int]:
    """The (systolic, diastolic) a treated resident should be below: the Chinese guideline's first target."""
    if age_months >= TREATED_OLDER_FROM_MONTHS:
        return TREATED_TARGET_SYSTOLIC_FROM_65, TREATED_TARGET_DIASTOLIC
    return TREATED_TARGET_SYSTOLIC, TREATED_TARGET_DIASTOLIC


def blood_pressure(
    systolic: float | None, diastolic: float | None, profile: SubjectProfile | None = None
) -> list[RuleResult]:
    """Possible crisis (emergency), else grade 3 (urgent), else, for a resident on treatment, above the
    treatment target (info); and hypotension (urgent). Whole mmHg."""
    sbp = None if systolic is None else rounded(systolic)
    dbp = None if diastolic is None else rounded(diastolic)
    zh, en = _bp_words(systolic, diastolic)
    evidence = _bp_evidence(systolic, diastolic)
    treated = profile is not None and profile.hypertension_treated
    # On treatment a high reading is treatment that is not working, not a hypertension to diagnose.
    on_treatment_zh, on_treatment_en = ("", "")
    if treated:
        on_treatment_zh, on_treatment_en = "（正在降压治疗，血压未控制）", " (on treatment: not controlled)"
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

    def above(limit_s: int, limit_d: int, *, inclusive: bool) -> bool:
        if inclusive:
            return (sbp is not None and sbp >= limit_s) or (dbp is not None and dbp >= limit_d)
        return (sbp is not None and sbp > limit_s) or (dbp is not None and dbp > limit_d)

    if above(CRISIS_SYSTOLIC, CRISIS_DIASTOLIC, inclusive=False):
        results.append(
            result(
                "bp.possible_crisis",
                Severity.EMERGENCY,
                "疑似高血压危象" + on_treatment_zh,
                "possible hypertensive crisis" + on_treatment_en,
            )
        )
    elif above(GRADE_3_SYSTOLIC, GRADE_3_DIASTOLIC, inclusive=True):
        results.append(
            result(
                "bp.grade_3",
                Severity.URGENT,
                "3 级高血压水平" + on_treatment_zh,
                "grade 3 hypertension range" + on_treatment_en,
            )
        )
    elif treated and profile is not None:
        target_s, target_d = treated_target(profile.age_months)
        if above(target_s, target_d, inclusive=True):
            results.append(
                result(
                    "bp.treated_above_target",
                    Severity.INFO,
                    f"正在降压治疗，血压未达标（目标 <{target_s}/{target_d} mmHg），高血压控制不佳",
                    f"on treatment and not at target (< {target_s}/{target_d} mmHg): uncontrolled hypertension",
                )
            )
    if sbp is not None and sbp <= HYPOTENSION_SYSTOLIC:
        results.append(result("bp.hypotension", Severity.URGENT, "低血压", "hypotension"))
    return results


def glucose(value: float, *, diabetes: bool | None = None) -> RuleResult | None:
    """Level 2 hypoglycaemia alerts at once; level 1, very high and (``diabetes`` False: no known diabetes) a
    value at the diagnostic threshold wait for a repeat. ``diabetes`` None: not known (an anonymous reading),
    so no diagnostic-threshold rule. 0.1 mmol/L resolution."""
    level = rounded(value, 1)
    severity = Severity.WARNING
    if level < GLUCOSE_LEVEL_2_BELOW:
        rule, severity = "glucose.hypo_level_2", Severity.EMERGENCY
        zh, en = "2 级低血糖（<3.0 mmol/L）", "level 2 hypoglycaemia (< 3.0 mmol/L)"
    elif level < GLUCOSE_LEVEL_1_BELOW:
        rule = "glucose.hypo_level_1"
        zh, en = "1 级低血糖（<3.9 mmol/L）", "level 1 hypoglycaemia (< 3.9 mmol/L)"
    elif level > GLUCOSE_HIGH_ABOVE:
        rule = "glucose.high"
        zh, en = "血糖过高（>13.9 mmol/L）", "very high glucose (> 13.9 mmol/L)"
        if diabetes is False:
            zh += "；无糖尿病记录，已达糖尿病诊断切点，需化验静脉血浆血糖确认"
            en += "; no diabetes on record: at the diagnostic threshold, confirm with a laboratory plasma glucose"
    elif level >= GLUCOSE_DIAGNOSTIC_AT and diabetes is False:
        rule, severity = "glucose.diagnostic_threshold", Severity.INFO
        zh = "无糖尿病记录，随机血糖 ≥11.1 mmol/L 达糖尿病诊断切点，需化验静脉血浆血糖确认"
        en = (
            "no diabetes on record: a random glucose >= 11.1 mmol/L is at the diagnostic threshold of diabetes; "
            "confirm with a laboratory plasma glucose"
        )
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
