"""One observation through every rule that applies to its kind and to the subject's age."""

from __future__ import annotations

import dataclasses

from healthhut.collector.alerting import adult, children, ecg, news2
from healthhut.collector.alerting.model import Audience, RuleResult, Severity, SubjectProfile
from healthhut.collector.alerting.quality import remeasure, remeasure_reasons
from healthhut.protocol import Kind, Observation

_RANK = {severity: rank for rank, severity in enumerate(Severity)}


def _number(observation: Observation, name: str) -> float | None:
    quantity = observation.values.get(name)
    if quantity is None or isinstance(quantity.value, list):
        return None
    return quantity.value


def evaluate(observation: Observation, profile: SubjectProfile) -> list[RuleResult]:
    """Every rule result for one reading, most severe first.

    A reading in doubt (quality flags, or not fit for alerting) gives exactly one result: a technician's
    re-measure request, and no clinician alert. Aggregates (the partial NEWS2, the trend) take several
    readings and live in :mod:`news2` and :mod:`trend`.
    """
    reasons = remeasure_reasons(observation)
    if reasons:
        return [remeasure(observation, reasons)]
    results: list[RuleResult | None] = []
    kind = observation.kind
    use_news2 = news2.applies(profile)

    if kind is Kind.BLOOD_PRESSURE:
        systolic, diastolic = _number(observation, "systolic"), _number(observation, "diastolic")
        if profile.is_adult:
            results.extend(adult.blood_pressure(systolic, diastolic, profile))
        if use_news2 and systolic is not None:
            results.append(news2.parameter_result("systolic", systolic, kind, profile))
        results.append(_pulse(observation, "pulse_rate", profile))
    elif kind is Kind.SPO2:
        spo2 = _number(observation, "spo2")
        if spo2 is not None:
            if use_news2:
                results.append(news2.parameter_result("spo2", spo2, kind, profile))
            elif not profile.is_adult:
                results.append(children.spo2(spo2, profile))
        results.append(_pulse(observation, "pulse_rate", profile))
    elif kind is Kind.HEART_RATE:
        results.append(_pulse(observation, "heart_rate", profile))
    elif kind is Kind.BODY_TEMPERATURE:
        temperature = _number(observation, "temperature")
        if temperature is not None:
            if use_news2:
                results.append(news2.parameter_result("temperature", temperature, kind, profile))
            elif not profile.is_adult:
                results.append(children.temperature(temperature, profile))
    elif kind is Kind.BLOOD_GLUCOSE:
        glucose = _number(observation, "glucose")
        if glucose is not None:
            results.append(adult.glucose(glucose, diabetes=profile.diabetes))
    elif kind is Kind.ECG:
        results.extend(ecg.rhythm(observation))
        results.append(ecg.extreme_rate(observation, profile))
    return sorted((r for r in results if r is not None), key=lambda r: -_RANK[r.severity])


def evaluate_anonymous(observation: Observation) -> list[RuleResult]:
    """The rules that need no age, for a reading nobody is signed in for: quality gating, glucose (the
    hypoglycaemia levels are the same for children, ISPAD 2022; whether diabetes is known is not) and the
    ECG rhythm findings.

    Age-dependent rules (blood pressure grades, NEWS2, children's centiles) must not guess an age. What
    would go to a clinician goes to the hut's own staff instead (issue 9: an anonymous reading's alerts go
    only to the hut's staff channel); a re-measure request stays the technician's.
    """
    reasons = remeasure_reasons(observation)
    if reasons:
        return [remeasure(observation, reasons)]
    results: list[RuleResult | None] = []
    if observation.kind is Kind.BLOOD_GLUCOSE:
        glucose = _number(observation, "glucose")
        if glucose is not None:
            results.append(adult.glucose(glucose))
    elif observation.kind is Kind.ECG:
        results.extend(ecg.rhythm(observation))
    return sorted(
        (_for_hut_staff(r) for r in results if r is not None),
        key=lambda r: -_RANK[r.severity],
    )


def _for_hut_staff(result: RuleResult) -> RuleResult:
    if result.audience is Audience.CLINICIAN:
        return dataclasses.replace(result, audience=Audience.HUT_STAFF)
    return result


def _pulse(observation: Observation, name: str, profile: SubjectProfile) -> RuleResult | None:
    rate = _number(observation, name)
    if rate is None:
        return None
    if not profile.is_adult:
        return children.heart_rate(rate, observation.kind, profile)
    if news2.applies(profile):
        return news2.parameter_result("pulse", rate, observation.kind, profile)
    return None
