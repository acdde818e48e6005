"""What a rule says: the result type, its severity and audience, and the subject profile rules read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from healthhut.protocol import Kind, Subject

ADULT_FROM_MONTHS = 18 * 12
# Oldest age a profile may state; a typo of 1200 years must not silently make a subject "adult".
MAX_AGE_MONTHS = 130 * 12


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Audience(StrEnum):
    """Who a result is for. ``hut_staff``: the staff of the hut where an anonymous reading was taken (issue 9:
    a reading outside any resident's session alerts only the hut's own staff, never a clinician)."""

    CLINICIAN = "clinician"
    TECHNICIAN = "technician"
    HUT_STAFF = "hut_staff"


class Action(StrEnum):
    """What the result asks for: tell the audience, or ask the hut to measure again."""

    NOTIFY = "notify"
    REMEASURE = "remeasure"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One value a rule looked at, in the protocol's UCUM unit."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's verdict on a reading (or on a set of readings, for the partial NEWS2 and the trend).

    ``message`` (zh-CN) and ``message_en`` hold measured values but never a name or an identifier.
    """

    rule: str
    kind: Kind | None
    severity: Severity
    audience: Audience
    action: Action
    evidence: tuple[Evidence, ...]
    message: str
    message_en: str
    # Quality flags behind a re-measure request; empty for clinical results.
    quality: tuple[str, ...] = ()

    @property
    def needs_repeat(self) -> bool:
        """A clinician alert below emergency waits for a confirming repeat measurement; an emergency does not.

        Blood pressure guidelines ask for repeated readings before acting on one; an emergency cannot wait.
        """
        return self.action is Action.NOTIFY and self.severity is not Severity.EMERGENCY

    @property
    def alerts_at_once(self) -> bool:
        return self.action is Action.NOTIFY and self.severity is Severity.EMERGENCY


@dataclass(frozen=True, slots=True)
class SubjectProfile:
    """What the rules need to know about the person measured, beyond the wire's coarse ``age_band``.

    ``age_months`` is completed months of age. The flags come from the resident's record: NEWS2 SpO2
    scale 2 is only for a documented hypercapnic respiratory failure with a prescribed 88-92 % target;
    pregnancy turns NEWS2 off; ``diabetes`` (known diabetes) decides whether a high glucose is a possible
    new diagnosis; ``hypertension_treated`` (on blood-pressure-lowering drugs) makes a reading above the
    treatment target "not controlled" rather than nothing.
    """

    age_months: int
    hypercapnic_respiratory_failure: bool = False
    on_supplemental_oxygen: bool = False
    pregnant: bool = False
    diabetes: bool = False
    hypertension_treated: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.age_months, bool) or not 0 <= self.age_months <= MAX_AGE_MONTHS:
            raise ValueError(f"age_months must be 0..{MAX_AGE_MONTHS}, not {self.age_months!r}")

    @classmethod
    def from_years(
        cls,
        years: int,
        *,
        hypercapnic_respiratory_failure: bool = False,
        on_supplemental_oxygen: bool = False,
        pregnant: bool = False,
        diabetes: bool = False,
        hypertension_treated: bool = False,
    ) -> SubjectProfile:
        return cls(
            years * 12,
            hypercapnic_respiratory_failure=hypercapnic_respiratory_failure,
            on_supplemental_oxygen=on_supplemental_oxygen,
            pregnant=pregnant,
            diabetes=diabetes,
            hypertension_treated=hypertension_treated,
        )

    @classmethod
    def from_subject(cls, subject: Subject | None) -> SubjectProfile | None:
        """The profile a reading's wire subject gives: its age band's lower bound ("7m", "4y", "70-79y",
        "80+y", as the gateway's sessions write them) and its clinical flags. None when the reading is
        anonymous or its age is unknown: age-dependent rules must not guess an age."""
        if subject is None or subject.age_band is None:
            return None
        band = re.fullmatch(r"(\d{1,2})(m|y)|(\d{2})(?:-\d{2}|\+)y", subject.age_band)
        if band is None:
            return None
        if band.group(1) is not None:
            months = int(band.group(1)) * (1 if band.group(2) == "m" else 12)
        else:
            months = int(band.group(3)) * 12
        return cls(
            min(months, MAX_AGE_MONTHS),
            hypercapnic_respiratory_failure="hypercapnic_respiratory_failure" in subject.clinical,
            pregnant="pregnancy" in subject.clinical,
            diabetes="diabetes" in subject.clinical,
            hypertension_treated="hypertension_treated" in subject.clinical,
        )

    @property
    def is_adult(self) -> bool:
        return self.age_months >= ADULT_FROM_MONTHS


def rounded(value: float, places: int = 0) -> float:
    """``value`` at a table's resolution, half away from zero (NEWS2 bands are whole numbers, 0.1 °C).

    Decimal through ``repr`` so that 38.05 rounds to 38.1 as written, not to the binary float's 38.0.
    """
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def shown(value: float) -> str:
    """A value as a message shows it: whole numbers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
