"""Trend: a reading against the subject's own baseline, the median of their recent readings."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from statistics import median

from healthhut.collector.alerting.model import Action, Audience, Evidence, RuleResult, Severity, shown
from healthhut.protocol import Kind, value_spec

BASELINE_WINDOW = timedelta(days=30)
RISE_PERCENT = 20
# A median of two readings is not a baseline; five in a month is a hut visit most weeks.
MIN_BASELINE_READINGS = 5

_NAMES_ZH = {"systolic": "收缩压", "diastolic": "舒张压", "glucose": "血糖", "weight": "体重"}
_UNIT_SHOWN = {"mm[Hg]": "mmHg", "Cel": "°C"}


def baseline(
    history: Iterable[tuple[datetime, float]], now: datetime, window: timedelta = BASELINE_WINDOW
) -> list[float]:
    """The values measured in ``(now - window, now)``: strictly before now, so a reading is not its own baseline."""
    return [value for at, value in history if now - window < at < now]


def rise_over_baseline(
    current: float,
    history: Iterable[tuple[datetime, float]],
    now: datetime,
    *,
    kind: Kind = Kind.BLOOD_PRESSURE,
    name: str = "systolic",
    rise_percent: int = RISE_PERCENT,
    window: timedelta = BASELINE_WINDOW,
    min_readings: int = MIN_BASELINE_READINGS,
) -> RuleResult | None:
    """A warning when ``current`` is more than ``rise_percent`` % above the median of the window's readings.

    ``history`` holds (measured_at, value) of the same subject and value, readings fit for alerting only.
    None when the baseline has fewer than ``min_readings`` readings.
    """
    values = baseline(history, now, window)
    if len(values) < min_readings:
        return None
    middle = median(values)
    # Compared as current / median > 1 + p/100, multiplied out so that whole numbers compare exactly.
    if current * 100 <= middle * (100 + rise_percent):
        return None
    unit = value_spec(kind, name).unit
    shown_unit = _UNIT_SHOWN.get(unit, unit)
    zh, en = _NAMES_ZH.get(name, name), name.replace("_", " ").capitalize()
    rise = (current / middle - 1) * 100
    days = window.days
    return RuleResult(
        rule=f"trend.{name}_rise",
        kind=kind,
        severity=Severity.WARNING,
        audience=Audience.CLINICIAN,
        action=Action.NOTIFY,
        evidence=(Evidence(name, current, unit), Evidence(f"{name}_baseline_median", middle, unit)),
        message=(
            f"{zh} {shown(current)} {shown_unit}，较本人 {days} 天中位数 {shown(middle)} "
            f"升高 {rise:.0f}%（>{rise_percent}%）"
        ),
        message_en=(
            f"{en} {shown(current)} {shown_unit}: {rise:.0f} % above the subject's {days}-day median "
            f"of {shown(middle)} (> {rise_percent} %)"
        ),
    )
