"""The alert lifecycle: from rule results to episodes, and from episodes to notifications.

An **episode** is one alert of one subject under one rule, from its first reading to its resolution; the
database allows one open episode per subject and rule, which is the deduplication.

- A non-emergency result opens a *pending* episode and asks the hut to measure again. A confirming
  repeat (another reading of the subject, measured at least ``confirm_min_gap_s`` and at most
  ``confirm_window_s`` after the first, that the rule fires on again) makes it *firing* and notifies.
  Without one the episode ends *unconfirmed*, silently. An emergency fires at once.
- While it fires, further readings add evidence but no notification, unless the severity rises.
  Unacknowledged, it is repeated every ``repeat_interval_s`` (one notification per hut, listing the hut's
  other firing alerts) and escalated to the next contact level after ``escalate_after_s``.
- A normal reading of the same kind resolves it. An episode that fires again within ``flap_window_s``
  of its resolution is reopened (same alert id), and from then on it resolves only after
  ``flap_window_s`` without firing: a flapping value gives fire, resolve, fire, and one final resolve,
  not a stream of pairs.
- A reading in doubt (quality flags) asks the hut to measure again and never reaches a clinician;
  ``device_failures`` such readings from one device within ``device_failure_window_s`` alert a technician.
- An anonymous reading's episodes are the hut's (``hut:{hut_id}``) and their audience is the hut's staff;
  the router keeps them from clinicians, and repeats are grouped per hut *and* audience, so a repeat
  never lists one audience's alerts to another.
- Every observation is evaluated once: its key is recorded in the same transaction as its effects, so a
  redelivered observation changes nothing.

All of one window's observations go through in one transaction (:meth:`Lifecycle.observe`).
Notifications go to the store's outbox, and channels deliver them from there (``dispatch``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from healthhut.collector.alerting import news2
from healthhut.collector.alerting.model import Action, Audience, RuleResult, Severity, SubjectProfile
from healthhut.collector.alerting.quality import reasons_zh
from healthhut.collector.alerting.rules import evaluate, evaluate_anonymous
from healthhut.collector.alerting.store import AlertStore, AlertTransaction, Episode
from healthhut.collector.alerting.trend import BASELINE_WINDOW, RISE_PERCENT, rise_over_baseline
from healthhut.protocol import Kind, Observation

SCHEMA = 1
_RANK = {severity.value: rank for rank, severity in enumerate(Severity)}
# Values an alert document keeps of each reading: scalars only (an ECG's RR list goes to its picture).
MAX_OBSERVATION_IDS = 20
DEVICE_RULE = "quality.device_failing"
TREND_NAME = "systolic"


@dataclass(frozen=True, slots=True)
class Policy:
    confirm_window_s: float = 900.0
    confirm_min_gap_s: float = 10.0
    repeat_interval_s: float = 3600.0
    escalate_after_s: float = 900.0
    # Contact levels there are to escalate to (level 0 is the first contact).
    levels: int = 1
    flap_window_s: float = 1800.0
    device_failures: int = 3
    device_failure_window_s: float = 3600.0
    # One visit's readings, for the partial NEWS2 total.
    visit_window_s: float = 1800.0


@dataclass(frozen=True, slots=True)
class Route:
    channel: str
    recipients: tuple[str, ...] = ()


# (episode, event) -> where a notification goes. The router reads the episode's audience, hut and
# escalation level: a hut-staff episode goes only to that hut's staff.
Router = Callable[[Episode, str], Sequence[Route]]


@dataclass
class Outcome:
    evaluated: int = 0
    redelivered: int = 0
    notifications: int = 0
    commands: int = 0
    events: list[tuple[str, str]] = field(default_factory=list)  # (alert_id, event)


def _iso(at: datetime | float) -> str:
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def observation_key(observation: Observation) -> str:
    """Which reading this is, for telling a redelivery from a new one."""
    return f"{observation.hut_id}/{observation.id}"


def subject_key(observation: Observation) -> str:
    """Whose episodes these are: the pseudonym, or, for an anonymous reading, the hut."""
    if observation.subject is not None:
        return f"subject:{observation.subject.pseudonym}"
    return f"hut:{observation.hut_id}"


def device_key(observation: Observation) -> str:
    """A device's failures are counted per kind of reading: a board whose ECG leads are off still measures
    temperature well, and those good readings must not clear the ECG's count."""
    device = observation.device
    return f"device:{observation.hut_id}/{device.driver}/{device.device_id}/{observation.kind.value}"


def _values(observation: Observation) -> dict[str, dict[str, Any]]:
    return {
        name: {"value": q.value, "unit": q.unit}
        for name, q in sorted(observation.values.items())
        if not isinstance(q.value, list)
    }


def _detail(result: RuleResult, observation: Observation, attach: dict[str, Any] | None = None) -> dict[str, Any]:
    subject = observation.subject
    detail: dict[str, Any] = {
        "kind": result.kind.value if result.kind else observation.kind.value,
        "values": _values(observation),
        "evidence": [{"name": e.name, "value": e.value, "unit": e.unit} for e in result.evidence],
        "observed_at": _iso(observation.measured_at),
        "received_at": _iso(observation.received_at),
        "message": result.message,
        "message_en": result.message_en,
        "subject": subject.pseudonym if subject else None,
        "age_band": subject.age_band if subject else None,
        "device": {"driver": observation.device.driver, "device_id": observation.device.device_id},
        "observation_id": observation.id,
        "flags": [str(f) for f in observation.flags],
        "findings": [str(f) for f in observation.findings],
        "quality": list(result.quality),
    }
    if attach:
        detail["attach"] = attach
    return detail


def _ecg_attachment(observation: Observation) -> dict[str, Any] | None:
    if observation.kind is not Kind.ECG:
        return None
    rr = observation.values.get("rr_intervals")
    return {
        "ecg_strip": {
            "hut_id": observation.hut_id,
            "driver": observation.device.driver,
            "device_id": observation.device.device_id,
            "subject": observation.subject.pseudonym if observation.subject else None,
            "end": _iso(observation.measured_at),
            "rr_intervals": rr.value if rr is not None and isinstance(rr.value, list) else [],
        }
    }


class Lifecycle:
    def __init__(self, store: AlertStore, policy: Policy, router: Router, *, ack_base: str | None = None) -> None:
        self.store = store
        self.policy = policy
        self.router = router
        # Where clinicians acknowledge (the HTTP endpoint's public address), for the link in each alert.
        self.ack_base = ack_base.rstrip("/") if ack_base else None

    # -- readings ----------------------------------------------------------------------------------
    def observe(self, observations: Sequence[Observation], now: float) -> Outcome:
        """Evaluate a window's observations and apply their effects, in one transaction."""
        outcome = Outcome()
        if not observations:
            return outcome
        with self.store.transaction() as tx:
            tx.prefetch(
                [observation_key(observation) for observation in observations],
                [key for observation in observations for key in (subject_key(observation), device_key(observation))],
            )
            for observation in observations:
                if not tx.first_sight(observation_key(observation), now):
                    outcome.redelivered += 1
                    continue
                outcome.evaluated += 1
                self._observe_one(tx, observation, now, outcome)
        return outcome

    def _observe_one(self, tx: AlertTransaction, observation: Observation, now: float, outcome: Outcome) -> None:
        profile = SubjectProfile.from_subject(observation.subject)
        results = evaluate(observation, profile) if profile is not None else evaluate_anonymous(observation)
        if any(r.action is Action.REMEASURE for r in results):
            self._remeasure(tx, observation, results[0], now, outcome)
            return
        self._device_recovered(tx, observation, now, outcome)
        key = subject_key(observation)
        attach: dict[str, dict[str, Any]] = {}
        if profile is not None:
            total = self._news2_total(tx, observation, key, profile)
            if total is not None:
                results.append(total)
        trend = self._trend(tx, observation, key)
        if trend is not None:
            results.append(trend[0])
            attach[trend[0].rule] = trend[1]
        fired: set[str] = set()
        for result in results:
            if result.action is Action.NOTIFY:
                fired.add(result.rule)
                self._fire(tx, key, result, observation, now, outcome, attach.get(result.rule))
        for episode in tx.open_episodes(key):
            if episode.kind == observation.kind.value and episode.rule not in fired:
                self._normal(tx, episode, observation, now, outcome)

    def _news2_total(
        self, tx: AlertTransaction, observation: Observation, key: str, profile: SubjectProfile
    ) -> RuleResult | None:
        """The partial NEWS2 of the subject's visit: each parameter's latest reading within
        ``visit_window_s`` before this one. Only a total of 5 or more (the RCP's urgent and emergency
        responses) alerts: a lower total is a ward-based response, and a single red cell alerts as a
        parameter rule by itself."""
        if not news2.applies(profile):
            return None
        measured = observation.measured_at.timestamp()
        for parameter, sources in news2.SOURCES.items():
            for kind, name in sources:
                quantity = observation.values.get(name)
                if observation.kind is kind and quantity is not None and not isinstance(quantity.value, list):
                    tx.add_history(key, f"news2.{parameter}", measured, quantity.value)
                    break
        found: dict[str, float] = {}
        for parameter in news2.SOURCES:
            recent = [
                (at, value)
                for at, value in tx.history(key, f"news2.{parameter}", measured - self.policy.visit_window_s)
                if at <= measured
            ]
            if recent:
                found[parameter] = recent[-1][1]
        partial = news2.partial_from_values(profile, **found)
        result = partial.result() if partial is not None else None
        if result is None or _RANK[result.severity.value] < _RANK[Severity.URGENT.value]:
            return None
        return result

    def _trend(
        self, tx: AlertTransaction, observation: Observation, key: str
    ) -> tuple[RuleResult, dict[str, Any]] | None:
        """Systolic against the subject's own 30-day median; readings of identified subjects only."""
        if observation.subject is None or observation.kind is not Kind.BLOOD_PRESSURE:
            return None
        quantity = observation.values.get(TREND_NAME)
        if quantity is None or isinstance(quantity.value, list):
            return None
        measured = observation.measured_at
        since = (measured - BASELINE_WINDOW).timestamp()
        history = [(datetime.fromtimestamp(at, UTC), value) for at, value in tx.history(key, TREND_NAME, since)]
        tx.add_history(key, TREND_NAME, measured.timestamp(), quantity.value)
        result = rise_over_baseline(quantity.value, history, measured)
        if result is None:
            return None
        median = next(e.value for e in result.evidence if e.name.endswith("_baseline_median"))
        return result, {
            "trend": {
                "name": TREND_NAME,
                "unit": quantity.unit,
                "history": [(_iso(at), value) for at, value in history if measured - BASELINE_WINDOW < at < measured],
                "current": (_iso(measured), quantity.value),
                "baseline_median": median,
                "threshold": median * (100 + RISE_PERCENT) / 100,
            }
        }

    def _fire(
        self,
        tx: AlertTransaction,
        key: str,
        result: RuleResult,
        observation: Observation,
        now: float,
        outcome: Outcome,
        attach: dict[str, Any] | None = None,
    ) -> None:
        detail = _detail(result, observation, attach or _ecg_attachment(observation))
        measured = observation.measured_at.timestamp()
        episode = tx.open_episode(key, result.rule)
        if episode is None:
            episode = tx.recently_resolved(key, result.rule, now - self.policy.flap_window_s)
            if episode is not None:
                # Flapping: the same episode again, and from now on it resolves only after a quiet spell.
                episode.state, episode.resolved_at, episode.flaps = "firing", None, episode.flaps + 1
                episode.acked_at = episode.acked_by = None
                self._update(episode, result, observation, detail, now)
                self._notify(tx, episode, "fired", now, outcome)
                tx.save(episode)
                return
            episode = Episode(
                alert_id=uuid.uuid4().hex,
                subject_key=key,
                rule=result.rule,
                hut_id=observation.hut_id,
                kind=detail["kind"],
                audience=result.audience.value,
                severity=result.severity.value,
                state="pending",
                opened_at=now,
                opened_measured_at=measured,
                last_seen_at=now,
                observation_ids=[observation.id],
                detail=detail,
            )
            if result.alerts_at_once or result.audience is Audience.TECHNICIAN:
                self._start_firing(tx, episode, now, outcome)
            else:
                # Guidelines ask for a repeated reading before acting on one: ask the hut for it.
                self._command(tx, observation, "confirm", list(result.quality), now, outcome)
            tx.save(episode)
            return
        if observation.id in episode.observation_ids:
            return
        previous = episode.severity
        self._update(episode, result, observation, detail, now)
        if episode.state == "pending":
            gap = measured - episode.opened_measured_at
            confirmed = self.policy.confirm_min_gap_s <= abs(gap) <= self.policy.confirm_window_s
            if confirmed or result.alerts_at_once:
                self._start_firing(tx, episode, now, outcome)
            elif abs(gap) > self.policy.confirm_window_s:
                # Too far from the first reading to confirm it (an old stored record, or a repeat long
                # after): this reading becomes the one to confirm, and the hut is asked again.
                episode.opened_measured_at, episode.opened_at = measured, now
                self._command(tx, observation, "confirm", list(result.quality), now, outcome)
        elif episode.state == "resolving":
            episode.state, episode.resolve_at = "firing", None  # still one episode; nobody was told it ended
        elif _RANK[episode.severity] > _RANK[previous]:
            self._notify(tx, episode, "worsened", now, outcome)
        tx.save(episode)

    @staticmethod
    def _update(
        episode: Episode, result: RuleResult, observation: Observation, detail: dict[str, Any], now: float
    ) -> None:
        if _RANK[result.severity.value] >= _RANK[episode.severity]:
            episode.severity = result.severity.value
            episode.detail = detail
        episode.last_seen_at = now
        episode.observation_ids = [*episode.observation_ids, observation.id][-MAX_OBSERVATION_IDS:]

    def _start_firing(self, tx: AlertTransaction, episode: Episode, now: float, outcome: Outcome) -> None:
        episode.state, episode.fired_at, episode.escalated_at = "firing", now, now
        self._notify(tx, episode, "fired", now, outcome)

    def _normal(
        self, tx: AlertTransaction, episode: Episode, observation: Observation, now: float, outcome: Outcome
    ) -> None:
        """A reading of the episode's kind on which its rule did not fire."""
        episode.last_seen_at = now
        if episode.state == "pending":
            episode.state, episode.resolved_at = "unconfirmed", now
        elif episode.state == "firing":
            episode.detail = {
                **episode.detail,
                "resolved_by": {
                    "observation_id": observation.id,
                    "values": _values(observation),
                    "observed_at": _iso(observation.measured_at),
                },
            }
            if episode.flaps == 0:
                self._resolve(tx, episode, now, outcome)
            else:
                episode.state, episode.resolve_at = "resolving", now + self.policy.flap_window_s
        tx.save(episode)

    def _resolve(self, tx: AlertTransaction, episode: Episode, now: float, outcome: Outcome) -> None:
        episode.state, episode.resolved_at, episode.resolve_at = "resolved", now, None
        self._notify(tx, episode, "resolved", now, outcome)

    # -- quality -----------------------------------------------------------------------------------
    def _remeasure(
        self, tx: AlertTransaction, observation: Observation, result: RuleResult, now: float, outcome: Outcome
    ) -> None:
        self._command(tx, observation, "quality", list(result.quality), now, outcome)
        policy = self.policy
        failures = tx.count_failure(device_key(observation), now, now - policy.device_failure_window_s)
        if failures < policy.device_failures:
            return
        device = observation.device
        zh_reasons = reasons_zh(result.quality)
        technician = RuleResult(
            rule=DEVICE_RULE,
            kind=observation.kind,
            severity=Severity.WARNING,
            audience=Audience.TECHNICIAN,
            action=Action.NOTIFY,
            evidence=(),
            message=(
                f"设备 {device.driver} {device.device_id} 连续 {failures} 次读数质量不足（{zh_reasons}），请检查设备"
            ),
            message_en=(
                f"Device {device.driver} {device.device_id}: {failures} readings in a row failed the quality "
                f"checks ({', '.join(result.quality)}); please check the device"
            ),
            quality=result.quality,
        )
        self._fire(tx, device_key(observation), technician, observation, now, outcome)

    def _device_recovered(self, tx: AlertTransaction, observation: Observation, now: float, outcome: Outcome) -> None:
        key = device_key(observation)
        tx.clear_failures(key)
        episode = tx.open_episode(key, DEVICE_RULE)
        if episode is not None:
            self._normal(tx, episode, observation, now, outcome)

    def _command(
        self,
        tx: AlertTransaction,
        observation: Observation,
        reason: str,
        quality: list[str],
        now: float,
        outcome: Outcome,
    ) -> None:
        """A "please measure again" for the hut (hh/v1/huts/{hut}/cmd). No value, no identifier: the hut's
        kiosk shows it to whoever stands there."""
        command = {
            "schema": SCHEMA,
            "type": "remeasure",
            "reason": reason,
            "hut_id": observation.hut_id,
            "kind": observation.kind.value,
            "device": {"driver": observation.device.driver, "device_id": observation.device.device_id},
            "observation_id": observation.id,
            "quality": quality,
            "message": "请重新测量" if reason == "quality" else "请稍候再测量一次，以便确认读数",
            "message_en": "Please measure again" if reason == "quality" else "Please measure once more to confirm",
            "sent_at": _iso(now),
        }
        tx.enqueue(observation.id, "command", "remeasure", command, (observation.hut_id,), now)
        outcome.commands += 1

    # -- time --------------------------------------------------------------------------------------
    def tick(self, now: float) -> Outcome:
        """Expire unconfirmed episodes, finish quiet resolutions, escalate and repeat."""
        outcome = Outcome()
        policy = self.policy
        with self.store.transaction() as tx:
            # Per hut and audience: a clinician's reminder must not list the hut staff's alerts, nor the reverse.
            repeats: dict[tuple[str, str], list[Episode]] = {}
            candidates = tx.due(now)
            for episode in candidates:
                if episode.state == "pending":
                    if now >= episode.opened_at + policy.confirm_window_s:
                        episode.state, episode.resolved_at = "unconfirmed", now
                        tx.save(episode)
                elif episode.state == "resolving":
                    if episode.resolve_at is not None and now >= episode.resolve_at:
                        self._resolve(tx, episode, now, outcome)
                        tx.save(episode)
                elif episode.acked_at is None:
                    since = episode.escalated_at if episode.escalated_at is not None else now
                    if episode.escalation_level + 1 < policy.levels and now >= since + policy.escalate_after_s:
                        episode.escalation_level += 1
                        episode.escalated_at = now
                        self._notify(tx, episode, "escalated", now, outcome)
                        tx.save(episode)
                    elif now >= (episode.last_notified_at or now) + policy.repeat_interval_s:
                        repeats.setdefault((episode.hut_id, episode.audience), []).append(episode)
            for (hut_id, audience), group in repeats.items():
                group.sort(key=lambda e: (-_RANK[e.severity], e.opened_at))
                firing = [e for e in candidates if (e.hut_id, e.audience, e.state) == (hut_id, audience, "firing")]
                self._notify(tx, group[0], "repeat", now, outcome, group=firing)
                for episode in group[1:]:
                    episode.last_notified_at = now  # repeated inside the group's notification
                for episode in group:
                    tx.save(episode)
        return outcome

    def episode(self, alert_id: str) -> Episode | None:
        with self.store.transaction() as tx:
            return tx.episode(alert_id)

    def acknowledge(self, alert_id: str, by: str, now: float) -> Episode | None:
        """Stop repeats and escalation for an episode; None if there is no such alert. Idempotent."""
        outcome = Outcome()
        with self.store.transaction() as tx:
            episode = tx.episode(alert_id)
            if episode is None:
                return None
            if episode.acked_at is None and episode.state in ("firing", "resolving", "pending"):
                episode.acked_at, episode.acked_by = now, by
                self._notify(tx, episode, "acknowledged", now, outcome)
                tx.save(episode)
            return episode

    # -- notifications -----------------------------------------------------------------------------
    def _notify(
        self,
        tx: AlertTransaction,
        episode: Episode,
        event: str,
        now: float,
        outcome: Outcome,
        group: Sequence[Episode] = (),
    ) -> None:
        document = alert_document(episode, event, now, group)
        if self.ack_base is not None and event != "resolved":
            document["ack_url"] = f"{self.ack_base}/v1/alerts/{episode.alert_id}/ack"
        for route in self.router(episode, event):
            tx.enqueue(episode.alert_id, route.channel, event, document, route.recipients, now)
            outcome.notifications += 1
        episode.last_notified_at = now
        episode.notifications += 1
        outcome.events.append((episode.alert_id, event))


_EVENT_ZH = {"resolved": "【已恢复】", "repeat": "【重复提醒】", "escalated": "【升级】", "acknowledged": "【已确认】"}
_EVENT_EN = {
    "resolved": "[resolved] ",
    "repeat": "[reminder] ",
    "escalated": "[escalated] ",
    "acknowledged": "[acknowledged] ",
}


def alert_document(episode: Episode, event: str, now: float, group: Sequence[Episode] = ()) -> dict[str, Any]:
    """The JSON every channel carries (README.md, "Alert documents")."""
    detail = episode.detail
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "alert_id": episode.alert_id,
        "event": event,
        "status": "resolved" if episode.state == "resolved" else "firing",
        "rule": episode.rule,
        "severity": episode.severity,
        "audience": episode.audience,
        "hut_id": episode.hut_id,
        "subject": detail.get("subject"),
        "age_band": detail.get("age_band"),
        "kind": episode.kind,
        "values": detail.get("values", {}),
        "evidence": detail.get("evidence", []),
        "observed_at": detail.get("observed_at"),
        "received_at": detail.get("received_at"),
        "message": _EVENT_ZH.get(event, "") + str(detail.get("message", "")),
        "message_en": _EVENT_EN.get(event, "") + str(detail.get("message_en", "")),
        "device": detail.get("device"),
        "observation_id": detail.get("observation_id"),
        "observation_ids": list(episode.observation_ids),
        "flags": detail.get("flags", []),
        "findings": detail.get("findings", []),
        "opened_at": _iso(episode.opened_at),
        "fired_at": _iso(episode.fired_at) if episode.fired_at is not None else None,
        "notification": episode.notifications + 1,
        "escalation_level": episode.escalation_level,
        "acknowledged": (
            {"by": episode.acked_by, "at": _iso(episode.acked_at)} if episode.acked_at is not None else None
        ),
        "flapping": episode.flaps > 0,
        "sent_at": _iso(now),
    }
    if "resolved_by" in detail and episode.state == "resolved":
        document["resolved_by"] = detail["resolved_by"]
    if group:
        document["group"] = [
            {
                "alert_id": e.alert_id,
                "rule": e.rule,
                "severity": e.severity,
                "message": e.detail.get("message"),
                "message_en": e.detail.get("message_en"),
                "observed_at": e.detail.get("observed_at"),
            }
            for e in group
        ]
    if "attach" in detail and event in ("fired", "worsened", "escalated"):
        document["attach"] = detail["attach"]
    return document
