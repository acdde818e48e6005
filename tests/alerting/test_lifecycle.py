"""The alert lifecycle against a real SQLite store: confirmation, dedup, resolution, flapping, escalation,
acknowledgement, quality gating, redelivery and restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from healthhut.collector.alerting.lifecycle import DEVICE_RULE, Lifecycle, Policy, Route
from healthhut.collector.alerting.store import Episode, SqliteAlertStore
from healthhut.protocol import Device, Finding, Flag, Kind, Observation, Subject
from tests.alerting.observations import observation

HUT = "hut-7"
OLD = Subject(pseudonym="ab" * 32, age_band="70-79y")
OTHER = Subject(pseudonym="cd" * 32, age_band="60-69y")
INFANT = Subject(pseudonym="ef" * 32, age_band="1m")
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def obs(
    kind: Kind,
    at: float = 0.0,
    subject: Subject | None = OLD,
    *,
    flags: frozenset[Flag] = frozenset(),
    findings: frozenset[Finding] = frozenset(),
    device: str = "dev-1",
    **values: float | tuple[float, ...],
) -> Observation:
    """A reading measured ``at`` seconds after T0."""
    return observation(
        kind,
        flags=flags,
        findings=findings,
        measured_at=T0 + timedelta(seconds=at),
        subject=subject,
        device=Device(driver="test", device_id=device),
        hut_id=HUT,
        **values,
    )


def bp(
    systolic: float, diastolic: float, at: float = 0.0, subject: Subject | None = OLD, device: str = "dev-1"
) -> Observation:
    return obs(Kind.BLOOD_PRESSURE, at, subject, device=device, systolic=systolic, diastolic=diastolic, pulse_rate=70)


class Harness:
    def __init__(self, path: Path, policy: Policy | None = None) -> None:
        self.path = path
        self.policy = policy or Policy(levels=2)
        self.store = SqliteAlertStore(path)
        self.lifecycle = Lifecycle(self.store, self.policy, self.route)
        self.now = T0.timestamp()

    @staticmethod
    def route(episode: Episode, event: str) -> list[Route]:
        routes = [Route("webhook")]
        if event != "acknowledged":
            routes.append(Route("email", (f"{episode.audience}-level{episode.escalation_level}@example.org",)))
        return routes

    def feed(self, *observations: Observation, after: float = 0.0) -> None:
        self.now += after
        self.lifecycle.observe(observations, self.now)

    def tick(self, after: float) -> None:
        self.now += after
        self.lifecycle.tick(self.now)

    def sent(self, channel: str = "webhook") -> list[dict]:  # type: ignore[type-arg]
        items = [i for i in self.store.outbox(limit=1000) if i.channel == channel]
        return [dict(i.document, _recipients=i.recipients) for i in sorted(items, key=lambda i: i.id)]

    def commands(self) -> list[dict]:  # type: ignore[type-arg]
        return [i.document for i in sorted(self.store.outbox(limit=1000), key=lambda i: i.id) if i.channel == "command"]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "alerts.sqlite")


def test_an_emergency_fires_at_once_with_the_contract_fields(h: Harness) -> None:
    h.feed(bp(200, 125))
    (alert,) = h.sent()
    assert alert["rule"] == "bp.possible_crisis"
    assert alert["severity"] == "emergency" and alert["audience"] == "clinician" and alert["status"] == "firing"
    assert alert["hut_id"] == HUT and alert["subject"] == OLD.pseudonym and alert["kind"] == "blood_pressure"
    assert alert["values"]["systolic"] == {"value": 200, "unit": "mm[Hg]"}
    assert alert["observed_at"] == "2026-11-22T09:00:00Z"
    assert "高血压危象" in alert["message"] and "crisis" in alert["message_en"]
    assert alert["event"] == "fired" and alert["alert_id"]
    (email,) = h.sent("email")
    assert email["_recipients"] == ("clinician-level0@example.org",)


def test_a_redelivered_observation_adds_nothing_even_after_a_restart(h: Harness) -> None:
    crisis = bp(200, 125)
    h.feed(crisis)
    h.feed(crisis, after=1)
    assert len(h.sent()) == 1
    reopened = Harness(h.path)
    reopened.now = h.now + 60
    reopened.feed(crisis)
    assert len(reopened.sent()) == 1
    assert len(reopened.store.episodes()) == 1


def test_a_non_emergency_waits_for_a_confirming_repeat_and_asks_the_hut_for_it(h: Harness) -> None:
    h.feed(bp(180, 100))  # grade 3: urgent, not an emergency
    assert h.sent() == []
    (command,) = h.commands()
    assert command["type"] == "remeasure" and command["reason"] == "confirm" and command["hut_id"] == HUT
    assert "180" not in str(command)  # a command carries no value
    h.feed(bp(180, 102, at=120), after=120)
    (alert,) = h.sent()
    assert alert["rule"] == "bp.grade_3" and alert["severity"] == "urgent"
    assert len(alert["observation_ids"]) == 2


def test_a_repeat_too_soon_does_not_confirm_and_one_too_late_opens_a_new_episode(h: Harness) -> None:
    h.feed(bp(180, 100))
    h.feed(bp(180, 100, at=2), after=2)  # 2 s later: the same measurement, not a repeat
    assert h.sent() == []
    h.tick(h.policy.confirm_window_s)  # the window passes: unconfirmed, silently
    assert h.sent() == []
    assert [e.state for e in h.store.episodes()] == ["unconfirmed"]
    h.feed(bp(180, 100, at=1000), after=100)
    assert h.sent() == [] and len(h.commands()) == 2


def test_a_repeat_too_far_from_an_old_first_reading_becomes_the_reading_to_confirm(h: Harness) -> None:
    h.feed(bp(180, 100, at=-3 * 86400))  # a record measured days ago, uploaded now
    h.feed(bp(180, 101, at=0), after=5)  # today's reading cannot confirm it ...
    assert h.sent() == [] and len(h.commands()) == 2
    h.feed(bp(180, 102, at=60), after=60)  # ... but today's repeat confirms today's reading
    (alert,) = h.sent()
    assert alert["rule"] == "bp.grade_3"


def test_a_firing_alert_is_not_repeated_per_reading_but_a_worse_one_is_told(h: Harness) -> None:
    h.feed(bp(180, 100))
    h.feed(bp(180, 100, at=60), after=60)
    h.feed(bp(180, 100, at=120), after=60)
    h.feed(bp(180, 100, at=180), after=60)
    assert [a["event"] for a in h.sent()] == ["fired"]
    h.feed(bp(178, 112, at=240), after=60)  # still grade 3 by diastolic
    assert [a["event"] for a in h.sent()] == ["fired"]


def test_a_normal_reading_resolves_it(h: Harness) -> None:
    h.feed(bp(200, 125))
    h.feed(bp(130, 80, at=300), after=300)
    fired, resolved = h.sent()
    assert resolved["event"] == "resolved" and resolved["status"] == "resolved"
    assert resolved["alert_id"] == fired["alert_id"]
    assert resolved["resolved_by"]["values"]["systolic"]["value"] == 130
    assert "已恢复" in resolved["message"]


def test_flapping_gives_one_episode_and_a_single_final_resolution(h: Harness) -> None:
    h.feed(bp(200, 125))
    h.feed(bp(130, 80, at=60), after=60)  # resolved, told
    h.feed(bp(201, 125, at=120), after=60)  # again within the flap window: the same alert, told
    h.feed(bp(131, 80, at=180), after=60)  # normal again: held, not told
    h.feed(bp(202, 125, at=240), after=60)  # and again: silently firing still
    h.feed(bp(132, 80, at=300), after=60)
    events = [(a["event"], a["alert_id"]) for a in h.sent()]
    assert [e for e, _ in events] == ["fired", "resolved", "fired"]
    assert len({alert_id for _, alert_id in events}) == 1
    assert h.sent()[-1]["flapping"] is True
    h.tick(h.policy.flap_window_s - 1)
    assert len(h.sent()) == 3
    h.tick(2)
    assert [a["event"] for a in h.sent()][-1] == "resolved"


def test_unacknowledged_it_escalates_then_repeats_and_an_ack_stops_both(h: Harness) -> None:
    h.feed(bp(200, 125))
    h.tick(h.policy.escalate_after_s + 1)
    escalated = h.sent()[-1]
    assert escalated["event"] == "escalated" and escalated["escalation_level"] == 1
    assert h.sent("email")[-1]["_recipients"] == ("clinician-level1@example.org",)
    h.tick(h.policy.repeat_interval_s + 1)
    assert h.sent()[-1]["event"] == "repeat"
    alert_id = escalated["alert_id"]
    episode = h.lifecycle.acknowledge(alert_id, "dr-wang", h.now)
    assert episode is not None and episode.acked_by == "dr-wang"
    assert h.sent()[-1]["event"] == "acknowledged" and h.sent()[-1]["acknowledged"]["by"] == "dr-wang"
    count = len(h.sent())
    h.lifecycle.acknowledge(alert_id, "dr-li", h.now)  # idempotent
    h.tick(h.policy.repeat_interval_s * 3)
    assert len(h.sent()) == count
    assert h.lifecycle.acknowledge("no-such-alert", "dr-wang", h.now) is None


def test_repeats_are_grouped_per_hut(h: Harness) -> None:
    h.feed(bp(200, 125), bp(205, 125, subject=OTHER, device="dev-2"))
    assert len(h.sent()) == 2
    policy = h.policy
    h.tick(policy.escalate_after_s + 1)  # both escalate
    h.tick(policy.repeat_interval_s + 1)
    repeats = [a for a in h.sent() if a["event"] == "repeat"]
    assert len(repeats) == 1
    assert {g["alert_id"] for g in repeats[0]["group"]} == {a["alert_id"] for a in h.sent()[:2]}


def test_a_repeat_never_lists_one_audiences_alerts_to_another(h: Harness) -> None:
    """A resident's crisis (clinicians) and an anonymous hypoglycaemia (the hut's staff) at one hut: each
    audience's reminder lists its own alert only, so neither reaches the other through a repeat."""
    h.feed(bp(200, 125), obs(Kind.BLOOD_GLUCOSE, 0, None, device="meter-1", glucose=2.6))
    clinician, staff = sorted(h.sent(), key=lambda a: a["audience"])
    assert (clinician["audience"], staff["audience"]) == ("clinician", "hut_staff")
    h.tick(h.policy.escalate_after_s + 1)
    h.tick(h.policy.repeat_interval_s + 1)
    repeats = {a["audience"]: a for a in h.sent() if a["event"] == "repeat"}
    assert set(repeats) == {"clinician", "hut_staff"}
    assert [g["alert_id"] for g in repeats["clinician"]["group"]] == [clinician["alert_id"]]
    assert [g["alert_id"] for g in repeats["hut_staff"]["group"]] == [staff["alert_id"]]


def test_a_lead_off_strip_asks_for_a_remeasure_and_a_device_that_keeps_failing_reaches_a_technician(
    h: Harness,
) -> None:
    def lead_off(at: float) -> Observation:
        return obs(Kind.ECG, at, flags=frozenset({Flag.LEAD_OFF}), heart_rate=0)

    h.feed(lead_off(0))
    h.feed(lead_off(30), after=30)
    assert h.sent() == []
    assert [c["reason"] for c in h.commands()] == ["quality", "quality"]
    h.feed(lead_off(60), after=30)
    (technician,) = h.sent()
    assert technician["audience"] == "technician" and technician["rule"] == DEVICE_RULE
    assert technician["severity"] == "warning"
    assert h.sent("email")[0]["_recipients"] == ("technician-level0@example.org",)
    h.feed(lead_off(90), after=30)
    assert len(h.sent()) == 1  # deduplicated
    # A good reading of another kind from the same device does not clear the ECG's failures ...
    h.feed(obs(Kind.BODY_TEMPERATURE, 100, temperature=36.6), after=10)
    assert [a["event"] for a in h.sent()] == ["fired"]
    # ... a good ECG strip does.
    h.feed(obs(Kind.ECG, 120, heart_rate=72, rr_intervals=(830.0, 835.0)), after=20)
    assert [a["event"] for a in h.sent()] == ["fired", "resolved"]
    assert all(a["audience"] == "technician" for a in h.sent())


def test_motion_artifact_never_reaches_a_clinician_however_alarming_the_value(h: Harness) -> None:
    for i in range(5):
        h.feed(obs(Kind.SPO2, i * 60, flags=frozenset({Flag.MOTION_ARTIFACT}), spo2=70, pulse_rate=150), after=60)
    assert h.sent()
    assert {a["audience"] for a in h.sent()} == {"technician"}


def test_an_infant_fever_fires_after_a_confirming_reading(h: Harness) -> None:
    h.feed(obs(Kind.BODY_TEMPERATURE, 0, INFANT, temperature=38.4))
    h.feed(obs(Kind.BODY_TEMPERATURE, 60, INFANT, temperature=38.5), after=60)
    (alert,) = h.sent()
    assert alert["rule"] == "nice.fever_red" and alert["age_band"] == "1m"
    # The same temperature in a 70-year-old is not a NICE red.
    h.feed(obs(Kind.BODY_TEMPERATURE, 0, OLD, temperature=38.4))
    assert [a["rule"] for a in h.sent()] == ["nice.fever_red"]


def test_the_trend_rule_uses_the_subjects_own_history(h: Harness) -> None:
    for day in range(6):
        h.feed(bp(120 + day % 2, 80, at=day * 86400.0), after=1)
    assert h.sent() == []
    h.feed(bp(150, 85, at=7 * 86400.0), after=1)
    h.feed(bp(152, 86, at=7 * 86400.0 + 120), after=120)
    trend = [a for a in h.sent() if a["rule"] == "trend.systolic_rise"]
    assert len(trend) == 1
    # The confirming reading's evidence: its baseline holds the first high reading too (120, 121 x3, 150).
    assert trend[0]["attach"]["trend"]["baseline_median"] == pytest.approx(121.0)
    assert len(trend[0]["attach"]["trend"]["history"]) >= 5


def test_an_anonymous_reading_uses_only_age_free_rules_and_is_for_the_hut_staff(h: Harness) -> None:
    h.feed(bp(200, 125, subject=None))
    assert h.sent() == []
    h.feed(obs(Kind.BLOOD_GLUCOSE, 0, None, glucose=2.6))
    (alert,) = h.sent()
    assert alert["rule"] == "glucose.hypo_level_2" and alert["subject"] is None
    # Issue 9: nobody signed in, so the hut's own staff are told, not a clinician (the router, given the
    # episode, keeps it from clinicians: tests/alerting/test_hut_staff.py).
    assert alert["audience"] == "hut_staff" and alert["hut_id"] == HUT


def test_atrial_fibrillation_alerts_carry_the_strip_to_draw(h: Harness) -> None:
    rr = (610.0, 820.0, 540.0, 760.0, 930.0, 580.0)
    h.feed(obs(Kind.ECG, 0, findings=frozenset({Finding.POSSIBLE_AF}), heart_rate=98, rr_intervals=rr))
    h.feed(
        obs(Kind.ECG, 30, findings=frozenset({Finding.POSSIBLE_AF}), heart_rate=101, rr_intervals=rr),
        after=30,
    )
    (alert,) = h.sent()
    assert alert["rule"].startswith("ecg.")
    strip = alert["attach"]["ecg_strip"]
    assert strip["rr_intervals"] == list(rr) and strip["hut_id"] == HUT
    assert "rr_intervals" not in alert["values"]


def test_a_visits_partial_news2_total_of_five_alerts_though_no_single_parameter_is_red(h: Harness) -> None:
    h.feed(obs(Kind.SPO2, 0, spo2=93, pulse_rate=95))  # 2 + 1
    h.feed(bp(105, 70, at=60), after=60)  # systolic 1 (pulse 70 from the cuff is now the latest: 0)
    h.feed(obs(Kind.HEART_RATE, 90, heart_rate=96), after=30)  # pulse 1 again
    assert h.sent() == []
    h.feed(obs(Kind.BODY_TEMPERATURE, 120, temperature=38.5), after=30)  # 1: total 5, urgent, to confirm
    assert h.sent() == [] and h.commands()[-1]["reason"] == "confirm"
    h.feed(obs(Kind.BODY_TEMPERATURE, 240, temperature=38.6), after=120)
    (alert,) = h.sent()
    assert alert["rule"] == "news2.partial_total" and alert["severity"] == "urgent"
    assert "部分 NEWS2 总分 5" in alert["message"] and "partial NEWS2" in alert["message_en"]
    assert {e["name"] for e in alert["evidence"]} == {"spo2", "systolic", "pulse", "temperature"}


def test_readings_outside_the_visit_window_do_not_add_up(h: Harness) -> None:
    h.feed(obs(Kind.SPO2, 0, spo2=93, pulse_rate=95))
    h.feed(bp(105, 70, at=3600), after=3600)
    h.feed(obs(Kind.BODY_TEMPERATURE, 3700, temperature=38.5), after=100)
    h.feed(obs(Kind.BODY_TEMPERATURE, 3820, temperature=38.5), after=120)
    assert h.sent() == []
