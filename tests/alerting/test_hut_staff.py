"""Issue 9: a reading outside any resident's session alerts only the hut's own staff.

Through the real collector (ingest, lifecycle, dispatcher, channels) against real mosquitto and InfluxDB, a
real webhook receiver and a real SMTP server: an anonymous hypoglycaemia reaches the hut's staff topic and
the hut's staff contacts, never the clinician webhook nor a clinician's email, and never another hut's
staff; the same reading in a session reaches the clinicians. Then, with the shipped broker config and ACL
over mutual TLS, only the hut's own certificate can read its staff topic, and the clinics' alerts-app
cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from healthhut.collector.alerting.lifecycle import Route
from healthhut.collector.alerting.service import AlertService, make_router, staff_topic
from healthhut.collector.alerting.store import Episode
from healthhut.collector.config import AlertingConfig, CollectorConfig
from healthhut.devstack import LocalStack, free_port
from healthhut.protocol import Device, Kind, Observation, Quantity, Reading, Subject, observation_from_reading
from healthhut.protocol.pki import CertificateAuthority, ensure_private_key, make_request
from tests.alert_servers import Mailbox, Receiver, smtp_server
from tests.collector.test_alerting_service import (
    batch,
    channels,
    collector,
    config,
    listening,
    listening_on,
    posted,
    publish,
    write,
)
from tests.conftest import ROOT, eventually
from tests.gateway.test_tls import shipped_listener

METER = Device(driver="ble-glucose", device_id="meter-1")
RESIDENT = Subject(pseudonym="5e" * 32, age_band="70-79y")
DOCTOR_TOKEN = "doctor-token-5d0c41f2a9"
STAFF_A_TOKEN = "staff-a-token-77e1b0c3d2"
STAFF_B_TOKEN = "staff-b-token-0a93f6e418"
# The lifecycle's quiet spell after the last expected delivery, before asserting that nothing else came.
QUIET_S = 1.5


def glucose(hut: str, mmol_l: float, at: datetime, who: Subject | None, seq: int) -> Observation:
    reading = Reading(kind=Kind.BLOOD_GLUCOSE, values={"glucose": Quantity(mmol_l, "mmol/L")}, measured_at=at)
    return observation_from_reading(reading, hut_id=hut, device=METER, received_at=at, device_seq=seq, subject=who)


def contacts(tmp_path: Path, hut_a: str, hut_b: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "dr-wang",
            "email": "dr.wang@clinic.example.org",
            "token_file": str(write(tmp_path / "wang.token", DOCTOR_TOKEN)),
        },
        {
            "name": "staff-a",
            "audience": ["hut_staff"],
            "huts": [hut_a],
            "email": "staff@hut-a.example.org",
            "token_file": str(write(tmp_path / "staff-a.token", STAFF_A_TOKEN)),
        },
        {
            "name": "staff-b",
            "audience": ["hut_staff"],
            "huts": [hut_b],
            "email": "staff@hut-b.example.org",
            "token_file": str(write(tmp_path / "staff-b.token", STAFF_B_TOKEN)),
        },
    ]


@pytest.mark.timeout(90)
async def test_an_anonymous_hypoglycaemia_reaches_only_its_huts_staff_and_in_a_session_the_clinicians(
    stack: LocalStack, tmp_path: Path, unique: str, receiver: Receiver, certificate: Path
) -> None:
    hut_a, hut_b = f"hut-{unique}", f"hut-{unique}-b"
    mailbox = Mailbox()
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    async with smtp_server(mailbox, certificate) as smtp_port:
        alerting = {
            **channels(tmp_path, receiver, smtp_port, certificate),
            "http": {"host": "127.0.0.1", "port": 0},
            "contacts": contacts(tmp_path, hut_a, hut_b),
        }
        async with (
            collector(config(stack, tmp_path, unique, alerting)) as (_, service),
            listening(stack, "hh/v1/alerts/#") as on_mqtt,
        ):
            # Nobody signed in: level 2 hypoglycaemia, an emergency, so it goes out at once.
            await publish(stack, batch(hut_a, 1, [glucose(hut_a, 2.6, now, None, 1)]))
            await eventually(lambda: len(on_mqtt) == 1 and len(mailbox.deliveries) == 1)
            ((topic, staff_alert),) = on_mqtt
            assert topic == staff_topic(hut_a) == f"hh/v1/alerts/{hut_a}/staff"
            assert staff_alert["audience"] == "hut_staff" and staff_alert["rule"] == "glucose.hypo_level_2"
            assert staff_alert["subject"] is None and staff_alert["hut_id"] == hut_a
            assert staff_alert["values"] == {"glucose": {"value": 2.6, "unit": "mmol/L"}}
            (staff_mail,) = mailbox.deliveries
            assert staff_mail.rcpt_tos == ["staff@hut-a.example.org"]

            # The same reading with a resident signed in: the clinicians' alert.
            await publish(stack, batch(hut_a, 2, [glucose(hut_a, 2.6, now + timedelta(minutes=1), RESIDENT, 2)]))
            await eventually(lambda: len(receiver.requests) == 1 and len(mailbox.deliveries) == 2)
            await asyncio.sleep(QUIET_S)
            (clinician_alert,) = posted(receiver)  # the webhook never had the anonymous one
            assert clinician_alert["audience"] == "clinician" and clinician_alert["rule"] == "glucose.hypo_level_2"
            assert clinician_alert["subject"] == RESIDENT.pseudonym
            assert [d.rcpt_tos for d in mailbox.deliveries] == [
                ["staff@hut-a.example.org"],
                ["dr.wang@clinic.example.org"],
            ]
            assert [(t, a["alert_id"]) for t, a in on_mqtt] == [
                (f"hh/v1/alerts/{hut_a}/staff", staff_alert["alert_id"]),
                (f"hh/v1/alerts/{hut_a}", clinician_alert["alert_id"]),
            ]
            assert not any(hut_b in t for t, _ in on_mqtt), "another hut's staff topic gets nothing"

            # Each contact acknowledges its own audience's alerts, at its own huts, and lists only those.
            base = f"http://127.0.0.1:{service.http_port}/v1/alerts"

            async def ack(alert: dict[str, Any], token: str) -> int:
                url = f"{base}/{alert['alert_id']}/ack"
                async with http.post(url, headers={"Authorization": f"Bearer {token}"}) as answer:
                    return answer.status

            async def listed(token: str) -> list[str]:
                async with http.get(base, headers={"Authorization": f"Bearer {token}"}) as answer:
                    assert answer.status == 200
                    return [a["alert_id"] for a in await answer.json()]

            async with ClientSession() as http:
                assert await listed(STAFF_A_TOKEN) == [staff_alert["alert_id"]]
                assert await listed(STAFF_B_TOKEN) == []
                assert await listed(DOCTOR_TOKEN) == [clinician_alert["alert_id"]]
                assert await ack(staff_alert, DOCTOR_TOKEN) == 403
                assert await ack(staff_alert, STAFF_B_TOKEN) == 403
                assert await ack(clinician_alert, STAFF_A_TOKEN) == 403
                assert await ack(staff_alert, STAFF_A_TOKEN) == 200
            await eventually(lambda: len(on_mqtt) == 3)
            await asyncio.sleep(QUIET_S)
            topic, acknowledged = on_mqtt[2]
            assert topic == staff_topic(hut_a) and acknowledged["event"] == "acknowledged"
            assert acknowledged["acknowledged"]["by"] == "staff-a"
            assert len(receiver.requests) == 1 and len(mailbox.deliveries) == 2


def episode(audience: str, hut: str, level: int = 0) -> Episode:
    return Episode(
        alert_id="a" * 32,
        subject_key=f"hut:{hut}",
        rule="glucose.hypo_level_2",
        hut_id=hut,
        kind="blood_glucose",
        audience=audience,
        severity="emergency",
        state="firing",
        opened_at=0.0,
        opened_measured_at=0.0,
        last_seen_at=0.0,
        escalation_level=level,
    )


def test_the_example_configs_contacts_route_each_audience_to_its_own_people() -> None:
    """The shipped example's contacts, through the collector's router: a hut-staff alert goes to the hut's
    staff topic and staff, escalating to the hut's manager; a clinician's to the webhook, MQTT and doctors."""
    example = tomllib.loads((ROOT / "collector" / "collector.example.toml").read_text())
    route = make_router(AlertingConfig.model_validate(example["alerting"]), webhook=True, email=True, mqtt=True)
    assert route(episode("hut_staff", "hut-0042"), "fired") == [
        Route("staff"),
        Route("email", ("staff@hut-0042.example.org",)),
    ]
    assert route(episode("hut_staff", "hut-0043", level=1), "escalated") == [
        Route("staff"),
        Route("email", ("manager@hut-0042.example.org",)),
    ]
    assert route(episode("hut_staff", "hut-0042"), "acknowledged") == [Route("staff")]
    assert route(episode("hut_staff", "hut-0099"), "fired") == [Route("staff")]  # no staff listed for it
    assert route(episode("clinician", "hut-0042"), "fired") == [
        Route("webhook"),
        Route("mqtt"),
        Route("email", ("doctor@clinic.example.org",)),
    ]
    assert route(episode("clinician", "hut-0042", level=1), "escalated")[-1] == Route(
        "email", ("duty-lead@clinic.example.org",)
    )


def test_a_hut_staff_contact_must_name_its_huts_and_names_them_once() -> None:
    with pytest.raises(ValueError, match="must list its huts"):
        AlertingConfig.model_validate({"contacts": [{"name": "staff", "audience": ["hut_staff"]}]})
    with pytest.raises(ValueError, match="more than once"):
        AlertingConfig.model_validate(
            {"contacts": [{"name": "staff", "audience": ["hut_staff"], "huts": ["hut-1", "hut-1"]}]}
        )
    with pytest.raises(ValueError, match="should match pattern"):
        AlertingConfig.model_validate({"contacts": [{"name": "staff", "audience": ["hut_staff"], "huts": ["Hut 1"]}]})
    staff = AlertingConfig.model_validate(
        {"contacts": [{"name": "staff", "audience": ["hut_staff"], "huts": ["hut-1", "hut-2"]}]}
    ).contacts[0]
    assert staff.covers("hut_staff", "hut-2") and not staff.covers("hut_staff", "hut-3")
    assert not staff.covers("clinician", "hut-1")
    doctor = AlertingConfig.model_validate({"contacts": [{"name": "dr"}]}).contacts[0]
    assert doctor.covers("clinician", "any-hut") and not doctor.covers("hut_staff", "any-hut")


# -- the shipped broker ACL --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA with the broker's, the collector's, the alerts-app's and two huts' certificates, as an operator
    makes them (``hut-collector ca``)."""
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create(folder, "healthhut test CA", days=2)
    ca.issue_server("localhost", folder, ips=["127.0.0.1"], days=2, force=False)
    ca.issue_service("collector", folder, days=2)
    ca.issue_service("alerts-app", folder, days=2)
    for hut in ("hut-a", "hut-b"):
        ensure_private_key(folder / f"{hut}.key")
        make_request(folder / f"{hut}.key", folder / f"{hut}.csr", hut)
        ca.sign_hut(folder / f"{hut}.csr", folder / f"{hut}.pem", days=2)
    return folder


def tls_context(pki: Path, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
    return context


@contextlib.asynccontextmanager
async def reading_all_alerts(port: int, pki: Path, name: str) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """A client with ``name``'s certificate subscribed to every alert topic; what the broker lets it read."""
    context = tls_context(pki, name)
    async with listening_on(port, ["hh/v1/alerts/#"], identifier=f"{name}-reader", tls_context=context) as got:
        yield got


@pytest.mark.timeout(60)
async def test_the_shipped_acl_lets_only_the_huts_own_certificate_read_its_staff_topic(
    pki: Path, tmp_path: Path
) -> None:
    port = free_port()
    now = datetime.now(UTC).replace(microsecond=0)
    with LocalStack(tmp_path / "servers", influxd=False, victoria=False, mosquitto_config=shipped_listener(port, pki)):
        cfg = CollectorConfig.model_validate(
            {
                "mqtt": {
                    "port": port,
                    "client_id": "collector-acl",
                    "tls": {
                        "ca_file": str(pki / "ca.pem"),
                        "cert_file": str(pki / "collector.pem"),
                        "key_file": str(pki / "collector.key"),
                    },
                },
                "storage": {"type": "influxdb1", "url": "http://127.0.0.1:9"},
                "dead_letters": {"path": str(tmp_path / "dead.sqlite")},
                "alerting": {"path": str(tmp_path / "alerts.sqlite"), "tick_s": 0.2},
            }
        )
        service = AlertService(cfg)
        running = asyncio.create_task(service.run())
        try:
            await asyncio.wait_for(service.link.connected.wait(), 15)
            async with (
                reading_all_alerts(port, pki, "hut-a") as hut_a,
                reading_all_alerts(port, pki, "hut-b") as hut_b,
                reading_all_alerts(port, pki, "alerts-app") as clinic,
            ):
                later = now + timedelta(minutes=1)  # another reading: the same time would be the same observation
                await service.observe([glucose("hut-a", 2.6, now, None, 1), glucose("hut-a", 2.4, later, RESIDENT, 2)])
                await eventually(lambda: hut_a and clinic)
                await asyncio.sleep(QUIET_S)
            assert [(t, a["audience"]) for t, a in hut_a] == [("hh/v1/alerts/hut-a/staff", "hut_staff")]
            assert [(t, a["audience"]) for t, a in clinic] == [("hh/v1/alerts/hut-a", "clinician")]
            assert hut_b == []
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await service.close()
