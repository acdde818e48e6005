"""ECG rules: suspected atrial fibrillation, a pause or asystole, and an extreme rate, from the gateway's analysis."""

from __future__ import annotations

from healthhut.collector.alerting import children, news2
from healthhut.collector.alerting.model import (
    Action,
    Audience,
    Evidence,
    RuleResult,
    Severity,
    SubjectProfile,
    shown,
)
from healthhut.protocol import Finding, Kind, Observation

# The gateway's DSP finds a pause at 2.5 s without a QRS (the product's threshold) and asystole at 4 s
# (PhysioNet/CinC 2015 alarm definitions); see gateway/dsp/rhythm.py. These rules trust its findings and
# only read the RR intervals for the evidence.


def _longest_rr(observation: Observation) -> Evidence | None:
    quantity = observation.values.get("rr_intervals")
    if quantity is None or not isinstance(quantity.value, list) or not quantity.value:
        return None
    return Evidence("longest_rr_interval", max(quantity.value), "ms")


def _result(rule: str, severity: Severity, evidence: tuple[Evidence, ...], zh: str, en: str) -> RuleResult:
    return RuleResult(
        rule=rule,
        kind=Kind.ECG,
        severity=severity,
        audience=Audience.CLINICIAN,
        action=Action.NOTIFY,
        evidence=evidence,
        message=f"心电图：{zh}",
        message_en=f"ECG: {en}",
    )


def rhythm(observation: Observation) -> list[RuleResult]:
    findings = set(observation.findings)
    longest = _longest_rr(observation)
    pause_evidence = (longest,) if longest is not None else ()
    pause_zh = f"（最长 RR 间期 {shown(longest.value / 1000)} 秒）" if longest is not None else ""
    pause_en = f" (longest RR interval {shown(longest.value / 1000)} s)" if longest is not None else ""
    results: list[RuleResult] = []
    if Finding.ASYSTOLE in findings:
        results.append(
            _result(
                "ecg.asystole",
                Severity.EMERGENCY,
                pause_evidence,
                f"疑似心脏停搏{pause_zh}",
                f"possible asystole{pause_en}",
            )
        )
    elif Finding.PAUSE in findings:
        results.append(_result("ecg.pause", Severity.URGENT, pause_evidence, f"心脏停顿{pause_zh}", f"pause{pause_en}"))
    if Finding.POSSIBLE_AF in findings:
        rate = observation.values.get("heart_rate")
        evidence = (Evidence("heart_rate", rate.value, "/min"),) if rate and not isinstance(rate.value, list) else ()
        results.append(
            _result(
                "ecg.possible_af",
                Severity.WARNING,
                evidence,
                "疑似心房颤动（单导联，需确认）",
                "suspected atrial fibrillation (single lead, to be confirmed)",
            )
        )
    return results


def extreme_rate(observation: Observation, profile: SubjectProfile) -> RuleResult | None:
    """Adults: a NEWS2 red pulse cell (<= 40 or >= 131 /min). Children: beyond the 1st/99th centile for age."""
    quantity = observation.values.get("heart_rate")
    if quantity is None or isinstance(quantity.value, list):
        return None
    rate = quantity.value
    if not profile.is_adult:
        child = children.heart_rate(rate, Kind.ECG, profile)
        if child is None or child.severity is Severity.INFO:
            return None
        return _result("ecg.extreme_rate", child.severity, child.evidence, child.message, child.message_en)
    if news2.pulse_score(rate) < 3:
        return None
    slow = rate < 90
    return _result(
        "ecg.extreme_rate",
        Severity.WARNING,
        (Evidence("heart_rate", rate, "/min"),),
        f"心率 {shown(rate)} 次/分，{'过缓（≤40）' if slow else '过速（≥131）'}",
        f"heart rate {shown(rate)} /min, {'very slow (<= 40)' if slow else 'very fast (>= 131)'}",
    )
