"""Quality gating: a reading whose quality is in doubt never reaches a clinician; the hut is asked to measure again."""

from __future__ import annotations

from healthhut.collector.alerting.model import Action, Audience, RuleResult, Severity
from healthhut.protocol import Flag, Observation

# Flags that say the number itself may be wrong. Not here: irregular_pulse (a clinical sign), out_of_range
# (a glucose meter's "HI" is real), value_unavailable (the value is absent, not wrong), clock_unverified.
REMEASURE_FLAGS: frozenset[Flag] = frozenset(
    {
        Flag.IMPLAUSIBLE,
        Flag.LEAD_OFF,
        Flag.LOW_PERFUSION,
        Flag.MOTION_ARTIFACT,
        Flag.BODY_MOVEMENT,
        Flag.CUFF_FIT_LOOSE,
        Flag.IMPROPER_POSITION,
        Flag.FINGER_OUT,
        Flag.PROBE_ERROR,
        Flag.LOW_SIGNAL_QUALITY,
    }
)

_FLAG_ZH: dict[str, str] = {
    Flag.IMPLAUSIBLE: "数值不合理",
    Flag.LEAD_OFF: "导联脱落",
    Flag.LOW_PERFUSION: "灌注不足",
    Flag.MOTION_ARTIFACT: "运动干扰",
    Flag.BODY_MOVEMENT: "测量时身体移动",
    Flag.CUFF_FIT_LOOSE: "袖带过松",
    Flag.IMPROPER_POSITION: "测量姿势不正确",
    Flag.FINGER_OUT: "手指未放好",
    Flag.PROBE_ERROR: "探头故障",
    Flag.LOW_SIGNAL_QUALITY: "信号质量差",
}
NOT_FIT = "not_fit_for_alerting"


def remeasure_reasons(observation: Observation) -> tuple[str, ...]:
    """Why this reading must not alert a clinician, in flag names; empty when it may."""
    reasons = sorted(flag.value for flag in REMEASURE_FLAGS.intersection(observation.flags))
    if not observation.fit_for_alerting:
        reasons.append(NOT_FIT)
    return tuple(reasons)


def reasons_zh(reasons: tuple[str, ...]) -> str:
    """The quality reasons in Chinese, as a list for a message."""
    return "、".join(_FLAG_ZH.get(r, "质量检查未通过") for r in reasons)


def remeasure(observation: Observation, reasons: tuple[str, ...]) -> RuleResult:
    """The technician-facing "please measure again". It carries no measured value: the hut needs none."""
    zh = reasons_zh(reasons)
    en = ", ".join("failed the gateway's quality checks" if r == NOT_FIT else r.replace("_", " ") for r in reasons)
    return RuleResult(
        rule="quality.remeasure",
        kind=observation.kind,
        severity=Severity.INFO,
        audience=Audience.TECHNICIAN,
        action=Action.REMEASURE,
        evidence=(),
        message=f"读数质量不足（{zh}），请重新测量",
        message_en=f"Reading quality insufficient ({en}): please measure again",
        quality=reasons,
    )
