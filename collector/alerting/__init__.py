"""Alert rules: pure functions from observations and a subject profile to rule results (no I/O).

Lifecycle (dedup, repeat confirmation, escalation) and channels live elsewhere; README.md holds the rule
table and its sources.
"""

from healthhut.collector.alerting.model import (
    Action,
    Audience,
    Evidence,
    RuleResult,
    Severity,
    SubjectProfile,
)
from healthhut.collector.alerting.news2 import News2Partial, partial_from_observations, partial_from_values
from healthhut.collector.alerting.quality import REMEASURE_FLAGS, remeasure_reasons
from healthhut.collector.alerting.rules import evaluate
from healthhut.collector.alerting.trend import rise_over_baseline

__all__ = [
    "REMEASURE_FLAGS",
    "Action",
    "Audience",
    "Evidence",
    "News2Partial",
    "RuleResult",
    "Severity",
    "SubjectProfile",
    "evaluate",
    "partial_from_observations",
    "partial_from_values",
    "remeasure_reasons",
    "rise_over_baseline",
]
