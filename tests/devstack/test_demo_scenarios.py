"""``scripts/demo --scenario``: every clinical scenario played for real (mosquitto, influxd, hut-collector with
alerting, hut-gateway, hut-sim devices over ptys and a fake BlueZ) and judged by what arrived: the signed
webhook's documents, the same alerts on MQTT, the hut's "measure again" commands, and nothing new when the
hut's observation messages are sent again.

All eight scenarios take about six minutes and are marked slow; the hypertensive crisis (an emergency, which
fires at once) runs by default, through the function and through the command line with ``--alert-webhook``.
Each is judged by what the hut does on this machine: where its clock is not NTP-synchronised, a glucose
meter's records stay anonymous and their alerts go to the hut's staff (``scenarios.expectation``, tested for
both clock states without servers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from healthhut.collector.alerting.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from healthhut.devstack import LocalStack
from healthhut.devstack.demo import Judge, ReceivedAlert, ScenarioResult, Watch, main, run_scenario
from healthhut.devstack.scenarios import SCENARIOS, Expectation, expectation, scenario
from healthhut.gateway.clock import kernel_clock_synchronised
from tests.alert_servers import Receiver

QUALITY_SCENARIOS = {"lead-off": "lead_off", "motion-artifact": "motion_artifact"}


def clinician(alerts: list[ReceivedAlert]) -> list[ReceivedAlert]:
    return [a for a in alerts if a.document["audience"] == "clinician"]


def check_result(result: ScenarioResult, lines: list[str]) -> None:
    """The facts every scenario must show, stated on the received documents, not on the demo's verdict."""
    spec = SCENARIOS[result.name]
    assert result.passed, "\n".join(lines + [f"--- {n}\n{t[-3000:]}" for n, t in result.logs.items()])
    # Judged by what the hut does on this machine, whose kernel the gateway asks too; said when it differs.
    expect = expectation(spec, kernel_clock_synchronised())
    assert result.expect == expect
    assert [line for line in lines if "expected here:" in line] == (
        [f"  expected here: {expect.note}"] if expect.note else []
    )
    rules = [str(a.document["rule"]) for a in clinician(result.alerts)]
    if expect.clinician:
        fired = {a.document["rule"] for a in clinician(result.alerts) if a.document["event"] == "fired"}
        assert fired == set(expect.clinician), rules
    else:
        assert rules == []
    staff = [(a.document["event"], a.document["rule"]) for a in result.staff_alerts]
    if expect.hut_staff:
        fired = {a.document["rule"] for a in result.staff_alerts if a.document["event"] == "fired"}
        assert fired == set(expect.hut_staff), staff
        # Anonymous: nobody's pseudonym or age band, only on the hut staff's topic, and no clinician alert.
        for alert in result.staff_alerts:
            assert alert.document["audience"] == "hut_staff" and alert.channel == "staff", alert.document
            assert alert.document["subject"] is None and alert.document["age_band"] is None, alert.document
        assert clinician(result.alerts) == [] and clinician(result.mqtt_alerts) == []
        assert all(a.document["audience"] != "hut_staff" for a in [*result.alerts, *result.mqtt_alerts])
    else:
        assert staff == []
    if result.name == "normal":
        assert result.alerts == [] and result.commands == []
    if result.name in QUALITY_SCENARIOS:
        flag = QUALITY_SCENARIOS[result.name]
        quality = [c for c in result.commands if c["type"] == "remeasure" and c["reason"] == "quality"]
        assert any(flag in c["quality"] for c in quality), result.commands
        # A command carries no value and no subject: the kiosk shows it to whoever stands there.
        assert all("values" not in c and "subject" not in c for c in quality)
        assert {a.document["audience"] for a in result.alerts} <= {"technician"}
    for alert in [*result.alerts, *result.staff_alerts]:
        document = alert.document
        assert document["hut_id"] == result.hut_id and document["message"] and document["message_en"]
        latency = alert.latency_s
        assert latency is not None and 0 <= latency < 30, document
    # Privacy: the programs' logs (INFO) name neither the resident nor their pseudonym.
    pseudonyms = {str(a.document["subject"]) for a in result.alerts if a.document.get("subject")}
    for program, log in result.logs.items():
        assert spec.resident.code not in log.upper(), program
        assert not any(p in log for p in pseudonyms), program
    # The webhook's alerts went out on MQTT too: the same alert ids and events.
    assert {a.key for a in result.alerts} == {a.key for a in result.mqtt_alerts}
    # Redelivery: every observation message sent again, each confirmed as stored again, nothing new.
    assert result.resent > 0 and result.confirmed_again == result.resent
    assert result.new_after_resend == 0
    assert result.redelivery.startswith(f"resent {result.resent} observation messages: 0 new alerts, 0 new commands")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_each_scenario_raises_what_it_should_and_nothing_else(
    name: str, stack: LocalStack, tmp_path: Path
) -> None:
    lines: list[str] = []
    result = await run_scenario(scenario(name), stack, tmp_path / name, say=lines.append)
    check_result(result, lines)
    if name == "atrial-fibrillation":
        (fired,) = [a for a in result.alerts if a.document["event"] == "fired"]
        # The picture of the strip travels with the webhook alert (a PNG), never on MQTT.
        (picture,) = fired.document["attachments"]
        assert picture["filename"] == "ecg-strip.png" and picture["content_type"] == "image/png"
        assert all("attachments" not in a.document for a in result.mqtt_alerts)


async def test_a_hypertensive_crisis_reaches_the_clinician_at_once(stack: LocalStack, tmp_path: Path) -> None:
    lines: list[str] = []
    result = await run_scenario(scenario("hypertensive-crisis"), stack, tmp_path, say=lines.append)
    check_result(result, lines)
    (alert,) = result.alerts
    document = alert.document
    assert (document["event"], document["rule"], document["severity"]) == ("fired", "bp.possible_crisis", "emergency")
    assert document["age_band"] == "70-79y" and len(document["subject"]) == 64
    assert {name: v["value"] for name, v in document["values"].items()} == {
        "systolic": 185.0,
        "diastolic": 125.0,
        "mean_arterial": 145.0,
        "pulse_rate": 96.0,
    }
    # No health value at INFO: the cuff's numbers appear in no program's log (the time stamps dropped).
    for program, log in result.logs.items():
        for line in log.splitlines():
            text = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", "", line)
            assert not re.search(r"(?<![\d.:-])(185|125|145)(?![\d])", text), (program, line)
    # An emergency needs no repeat: the first reading of the cuff fires it.
    assert result.expected_after_s is not None and result.expected_after_s < 20
    assert result.commands == []
    assert result.secret_file is not None and result.secret_file.stat().st_mode & 0o077 == 0


async def test_the_command_line_with_alert_webhook_posts_signed_alerts_to_it(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The demo as a user runs it: its own servers, the user's receiver; it judges by MQTT and says where
    the signing key is."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "healthhut.devstack.demo",
        "--scenario",
        "hypertensive-crisis",
        "--alert-webhook",
        receiver.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    key: bytes | None = None
    async with asyncio.timeout(110):
        while line := (await process.stdout.readline()).decode():
            lines.append(line)
            if "signed with the key in " in line:
                # Read while the scenario runs: the key goes with the demo's folder when it ends.
                key = Path(line.split("signed with the key in ")[1].strip()).read_text().strip().encode()
        await process.wait()
    text = "".join(lines)
    assert process.returncode == 0, text
    assert "scenario hypertensive-crisis: PASS (clinician alert bp.possible_crisis emergency after" in text
    assert "observation messages: 0 new alerts, 0 new commands" in text
    assert "by mqtt" in text and text.rstrip().endswith("demo OK")
    assert key is not None
    (request,) = receiver.requests
    document = json.loads(request.body)
    assert (document["rule"], document["event"], document["attachments"]) == ("bp.possible_crisis", "fired", [])
    timestamp, signature = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    assert verify_signature(key, timestamp, request.body, signature)
    assert not verify_signature(key, timestamp, request.body + b" ", signature)


def test_the_command_line_refuses_what_it_cannot_do(capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in (
        (["--scenario", "flu"], "invalid choice: 'flu'"),
        (["--alert-webhook", "https://example.org/hook"], "--alert-webhook goes with --scenario"),
        (["--scenario", "normal", "--alert-webhook", "http://example.org/hook"], "must be https, or http to a loop"),
    ):
        with pytest.raises(SystemExit) as refused:
            main(args)
        assert refused.value.code == 2 and message in capsys.readouterr().err


def test_the_expectation_follows_the_host_clock() -> None:
    """Where the kernel's clock is not NTP-synchronised (or nobody can tell), the meter's records are anonymous:
    the same rule, for the hut's staff, and no clinician alert; the demo says why. Elsewhere nothing changes."""
    hypoglycaemia = SCENARIOS["hypoglycaemia"]
    assert hypoglycaemia.expect == Expectation(clinician=("glucose.hypo_level_1",))
    assert expectation(hypoglycaemia, True) == hypoglycaemia.expect
    for clock, says in (
        (False, "this machine's kernel clock is not NTP-synchronised, "),
        (None, "whether this machine's kernel clock is NTP-synchronised is not known (the gateway treats it as not), "),
    ):
        expect = expectation(hypoglycaemia, clock)
        assert dataclasses.replace(expect, note="") == Expectation(hut_staff=("glucose.hypo_level_1",)), clock
        assert expect.note == (
            f"{says}so the stored records of glucose-1 stay anonymous and glucose.hypo_level_1 goes to the hut's "
            'staff (hh/v1/alerts/{hut}/staff), not to a clinician; see README, "Residents: sessions and pseudonyms"'
        )
    # Devices that measure live attribute by session whatever the clock; the normal scenario's meter raises
    # nothing either way.
    for name, spec in SCENARIOS.items():
        if name != "hypoglycaemia":
            assert expectation(spec, True) == expectation(spec, False) == expectation(spec, None) == spec.expect, name
    # A clinician rule that may come from the meter or from a live device cannot be moved by guessing.
    mixed = dataclasses.replace(SCENARIOS["normal"], expect=Expectation(clinician=("bp.possible_crisis",)))
    assert expectation(mixed, True) == mixed.expect
    with pytest.raises(ValueError, match="only some keep records"):
        expectation(mixed, False)


def _fired(audience: str, rule: str, subject: str | None) -> ReceivedAlert:
    document: dict[str, Any] = {
        "alert_id": f"{audience}-{rule}",
        "event": "fired",
        "rule": rule,
        "severity": "warning",
        "audience": audience,
        "subject": subject,
    }
    return ReceivedAlert(document, time.time(), "staff" if audience == "hut_staff" else "webhook")


def test_the_verdict_judges_by_the_expectation_for_the_host_clock() -> None:
    spec = SCENARIOS["hypoglycaemia"]
    pseudonym = "ab" * 32
    watch = Watch("demo-hut")
    unsynchronised = Judge(spec, watch, "webhook", expectation(spec, False))
    synchronised = Judge(spec, watch, "webhook", expectation(spec, True))
    assert unsynchronised.missing() == "no hut_staff glucose.hypo_level_1 alert"
    assert synchronised.missing() == "no clinician glucose.hypo_level_1 alert"
    watch.staff.append(_fired("hut_staff", "glucose.hypo_level_1", None))
    assert unsynchronised.done(0.0) and unsynchronised.problem() is None
    assert not synchronised.done(0.0)
    assert synchronised.problem() == "unexpected hut-staff alert glucose.hypo_level_1 warning"
    # A clinician alert on an unverified clock would be somebody's record given to a resident.
    watch.webhook.append(_fired("clinician", "glucose.hypo_level_1", pseudonym))
    assert unsynchronised.problem() == "unexpected clinician alert glucose.hypo_level_1 warning"
    # The hut's staff get anonymous readings only, and only on their own topic.
    named = Watch("demo-hut")
    named.staff.append(_fired("hut_staff", "glucose.hypo_level_1", pseudonym))
    assert Judge(spec, named, "webhook", expectation(spec, False)).problem() == (
        "hut-staff alert glucose.hypo_level_1 names a subject: the hut's staff must get anonymous readings only"
    )
    leaked = Watch("demo-hut")
    leaked.webhook.append(dataclasses.replace(_fired("hut_staff", "glucose.hypo_level_1", None), channel="webhook"))
    assert Judge(spec, leaked, "webhook", expectation(spec, False)).problem() == (
        "hut-staff alert glucose.hypo_level_1 by webhook, a clinicians' channel"
    )
