"""Alerts end to end in the collector: real mosquitto and InfluxDB, a real webhook receiver, a real SMTP
server with STARTTLS, acknowledgements over HTTP and MQTT, commands to the hut, redelivery, and two
collectors sharing one alert state."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp import ClientSession

from healthhut.collector.alerting.channels import verify_signature
from healthhut.collector.alerting.service import ACK_TOPIC, AlertService
from healthhut.collector.config import CollectorConfig
from healthhut.collector.deadletters import DeadLetterStore
from healthhut.collector.ingest import Ingest
from healthhut.collector.storage import Influx1Writer, make_writer
from healthhut.devstack import LocalStack
from healthhut.protocol import (
    Device,
    Flag,
    Kind,
    Observation,
    ObservationBatch,
    Quantity,
    Reading,
    Subject,
    encode,
    hut_topic,
    observation_from_reading,
)
from tests.alert_servers import RELAY_PASSWORD, RELAY_USER, Mailbox, Receiver, smtp_server
from tests.conftest import eventually

SECRET = b"4f1c0e0f6a0d4b1f9d0a2b3c4d5e6f70"
DOCTOR_TOKEN = "doctor-token-0123456789abcdef"
CUFF = Device(driver="ble-blood-pressure", device_id="cuff-1")
ECG = Device(driver="healthypi", device_id="board-1")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def subject(n: int, age_band: str = "70-79y") -> Subject:
    return Subject(pseudonym=f"{n:064x}", age_band=age_band)


def reading_obs(hut: str, device: Device, kind: Kind, at: float, who: Subject | None, **values: Any) -> Observation:
    units = {"systolic": "mm[Hg]", "diastolic": "mm[Hg]", "pulse_rate": "/min", "heart_rate": "/min"}
    flags = frozenset(values.pop("flags", ()))
    measured = T0 + timedelta(seconds=at)
    return observation_from_reading(
        Reading(
            kind=kind,
            values={k: Quantity(v, units[k]) for k, v in values.items()},
            flags=flags,
            measured_at=measured,
        ),
        hut_id=hut,
        device=device,
        received_at=measured,
        device_seq=int(at * 10) % 10**12,
        subject=who,
    )


def batch(hut: str, seq: int, observations: list[Observation]) -> tuple[str, bytes]:
    message = ObservationBatch(hut_id=hut, boot_id="boot-1", seq=seq, sent_at=T0, observations=observations)
    return hut_topic(hut, "obs"), encode(message)


def config(
    stack: LocalStack, tmp_path: Path, unique: str, alerting: dict[str, Any], client: str = "c1"
) -> CollectorConfig:
    return CollectorConfig.model_validate(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": stack.mosquitto.port,
                "client_id": f"{client}-{unique}",
                "share_group": f"g{unique}",
                "session_expiry_s": 10,
            },
            "storage": {"type": "influxdb1", "url": stack.influxd.url, "database": f"db_{unique}"},
            "dead_letters": {"path": str(tmp_path / f"dead-{client}.sqlite")},
            "alerting": {"path": str(tmp_path / "alerts.sqlite"), "tick_s": 0.2, **alerting},
        }
    )


@contextlib.asynccontextmanager
async def collector(cfg: CollectorConfig) -> AsyncIterator[tuple[Ingest, AlertService]]:
    writer = make_writer(cfg.storage)
    assert isinstance(writer, Influx1Writer)
    await writer.ensure_database()
    dead = DeadLetterStore(cfg.dead_letters.path)
    service = AlertService(cfg)
    ingest = Ingest(cfg, writer, dead, alerts=service)
    tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(service.run())]
    try:
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        await asyncio.wait_for(service.link.connected.wait(), 10)
        yield ingest, service
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await service.close()
        await writer.close()
        dead.close()
        ingest.ledger.close()


@contextlib.asynccontextmanager
async def listening(stack: LocalStack, *topics: str) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    async with listening_on(stack.mosquitto.port, topics) as got:
        yield got


@contextlib.asynccontextmanager
async def listening_on(
    port: int, topics: Iterable[str], **options: Any
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """(topic, JSON) of every message on ``topics`` that the broker lets this client (``options``: its
    identifier, TLS context...) read, while the block runs."""
    got: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, **options) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append((str(message.topic), json.loads(message.payload)))

        task = asyncio.create_task(read())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def publish(stack: LocalStack, *messages: tuple[str, bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def posted(receiver: Receiver) -> list[dict[str, Any]]:
    documents = []
    for request in receiver.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert verify_signature(
            SECRET, headers["x-healthhut-timestamp"], request.body, headers["x-healthhut-signature"]
        ), "every POST is signed"
        documents.append(json.loads(request.body))
    return documents


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def channels(tmp_path: Path, receiver: Receiver, smtp_port: int, certificate: Path) -> dict[str, Any]:
    """[alerting] webhook and email settings for the test receiver and the STARTTLS relay."""
    return {
        "webhook": {"url": receiver.url, "secret_file": str(write(tmp_path / "webhook.key", SECRET.decode()))},
        "email": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "sender": "alerts@healthhut.example.org",
            "username": RELAY_USER,
            "password_file": str(write(tmp_path / "smtp.pw", RELAY_PASSWORD)),
            "ca_file": str(certificate / "cert.pem"),
        },
    }


@pytest.mark.timeout(90)
async def test_an_emergency_reaches_webhook_email_and_mqtt_and_is_acknowledged_once(
    stack: LocalStack,
    tmp_path: Path,
    unique: str,
    receiver: Receiver,
    certificate: Path,
) -> None:
    hut = f"hut-{unique}"
    mailbox = Mailbox()
    async with smtp_server(mailbox, certificate) as smtp_port:
        alerting = {
            **channels(tmp_path, receiver, smtp_port, certificate),
            "http": {"host": "127.0.0.1", "port": 0, "public_url": "https://alerts.example.org"},
            "contacts": [
                {
                    "name": "dr-wang",
                    "email": "dr.wang@clinic.example.org",
                    "token_file": str(write(tmp_path / "wang.token", DOCTOR_TOKEN)),
                },
                {"name": "duty-lead", "level": 1, "email": "lead@clinic.example.org"},
            ],
        }
        crisis = batch(
            hut,
            1,
            [reading_obs(hut, CUFF, Kind.BLOOD_PRESSURE, 0, subject(1), systolic=205, diastolic=125, pulse_rate=96)],
        )
        async with (
            collector(config(stack, tmp_path, unique, alerting)) as (_, service),
            listening(stack, f"hh/v1/alerts/{hut}") as on_mqtt,
        ):
            started = time.monotonic()
            await publish(stack, crisis)
            await eventually(lambda: len(receiver.requests) == 1 and len(mailbox.deliveries) == 1 and on_mqtt)
            print(f"webhook after {time.monotonic() - started:.2f} s")
            (alert,) = posted(receiver)
            assert alert["rule"] == "bp.possible_crisis" and alert["severity"] == "emergency"
            assert alert["audience"] == "clinician" and alert["status"] == "firing" and alert["hut_id"] == hut
            assert alert["subject"] == subject(1).pseudonym and alert["values"]["systolic"]["value"] == 205
            assert alert["ack_url"] == f"https://alerts.example.org/v1/alerts/{alert['alert_id']}/ack"
            assert "高血压危象" in alert["message"] and "crisis" in alert["message_en"]
            (mail,) = mailbox.deliveries
            assert mail.tls and mail.rcpt_tos == ["dr.wang@clinic.example.org"]
            assert on_mqtt[0][1]["alert_id"] == alert["alert_id"]

            # Redelivered (the same message again): nothing new anywhere.
            await publish(stack, crisis)
            await asyncio.sleep(1.5)
            assert len(receiver.requests) == 1 and len(mailbox.deliveries) == 1

            url = f"http://127.0.0.1:{service.http_port}/v1/alerts/{alert['alert_id']}/ack"
            async with ClientSession() as http:
                async with http.post(url) as refused:
                    assert refused.status == 401
                async with http.post(url, headers={"Authorization": "Bearer wrong-token"}) as refused:
                    assert refused.status == 401
                async with http.post(url, headers={"Authorization": f"Bearer {DOCTOR_TOKEN}"}) as accepted:
                    assert accepted.status == 200
                    assert (await accepted.json())["acknowledged"]["by"] == "dr-wang"
                missing = url.replace(alert["alert_id"], "0" * 32)
                async with http.post(missing, headers={"Authorization": f"Bearer {DOCTOR_TOKEN}"}) as unknown:
                    assert unknown.status == 404
            await eventually(lambda: len(receiver.requests) == 2)
            acknowledged = posted(receiver)[1]
            assert acknowledged["event"] == "acknowledged" and acknowledged["acknowledged"]["by"] == "dr-wang"
            assert len(mailbox.deliveries) == 1  # an acknowledgement is not mailed

            # A second subject's crisis, acknowledged over MQTT instead.
            await publish(
                stack,
                batch(
                    hut,
                    2,
                    [
                        reading_obs(
                            hut, CUFF, Kind.BLOOD_PRESSURE, 60, subject(2), systolic=210, diastolic=128, pulse_rate=90
                        )
                    ],
                ),
            )
            await eventually(lambda: len(receiver.requests) == 3)
            second = posted(receiver)[2]
            await publish(stack, (ACK_TOPIC, json.dumps({"alert_id": second["alert_id"], "token": "nope"}).encode()))
            await asyncio.sleep(1.0)
            assert len(receiver.requests) == 3
            await publish(
                stack, (ACK_TOPIC, json.dumps({"alert_id": second["alert_id"], "token": DOCTOR_TOKEN}).encode())
            )
            await eventually(lambda: len(receiver.requests) == 4)
            assert posted(receiver)[3]["event"] == "acknowledged"


@pytest.mark.timeout(90)
async def test_lead_off_asks_the_hut_to_measure_again_and_then_alerts_only_a_technician(
    stack: LocalStack, tmp_path: Path, unique: str, receiver: Receiver
) -> None:
    hut = f"hut-{unique}"
    alerting = {"webhook": {"url": receiver.url, "secret_file": str(write(tmp_path / "webhook.key", SECRET.decode()))}}
    async with (
        collector(config(stack, tmp_path, unique, alerting)),
        listening(stack, hut_topic(hut, "cmd")) as commands,
    ):
        for i in range(3):
            lead_off = reading_obs(hut, ECG, Kind.ECG, i * 20, subject(3), heart_rate=0, flags=[Flag.LEAD_OFF])
            await publish(stack, batch(hut, i + 1, [lead_off]))
        await eventually(lambda: len(commands) == 3 and len(receiver.requests) == 1)
        assert all(c["type"] == "remeasure" and c["reason"] == "quality" for _, c in commands)
        assert all(c["quality"] == ["lead_off"] for _, c in commands)
        (alert,) = posted(receiver)
        assert alert["audience"] == "technician" and alert["rule"] == "quality.device_failing"
        assert alert["device"] == {"driver": "healthypi", "device_id": "board-1"}


@pytest.mark.timeout(120)
async def test_two_collectors_sharing_a_subscription_and_a_state_alert_once_per_subject(
    stack: LocalStack, tmp_path: Path, unique: str, receiver: Receiver
) -> None:
    hut = f"hut-{unique}"
    alerting = {"webhook": {"url": receiver.url, "secret_file": str(write(tmp_path / "webhook.key", SECRET.decode()))}}
    messages = []
    for n in range(20):
        readings = [
            reading_obs(
                hut,
                CUFF,
                Kind.BLOOD_PRESSURE,
                n * 100 + k,
                subject(100 + n),
                systolic=200 + k,
                diastolic=124,
                pulse_rate=90,
            )
            for k in range(3)
        ]
        # Each subject's readings split over three messages, which the two collectors share out.
        messages.extend(batch(hut, n * 3 + k + 1, [reading]) for k, reading in enumerate(readings))
    async with (
        collector(config(stack, tmp_path, unique, alerting, "a")) as (first, _),
        collector(config(stack, tmp_path, unique, alerting, "b")) as (second, _),
    ):
        await publish(stack, *messages, *messages)  # and every message redelivered
        await eventually(lambda: first.stats.observations + second.stats.observations >= 120, within=30)
        await eventually(lambda: len(receiver.requests) >= 20, within=30)
        await asyncio.sleep(1.5)
        assert first.stats.observations and second.stats.observations, "both collectors took a share"
    alerts = posted(receiver)
    assert len(alerts) == 20
    assert sorted(a["subject"] for a in alerts) == sorted(subject(100 + n).pseudonym for n in range(20))


def test_ack_tokens_name_the_contact_and_refuse_prefixes_and_empty_tokens(tmp_path: Path) -> None:
    from healthhut.collector.alerting.service import AckTokens
    from healthhut.collector.config import AlertingConfig

    tokens = AckTokens(
        AlertingConfig.model_validate(
            {
                "contacts": [
                    {"name": "dr-wang", "token_file": str(write(tmp_path / "a", DOCTOR_TOKEN + "\n"))},
                    {"name": "nurse-li", "token_file": str(write(tmp_path / "b", "nurse-token-987654321"))},
                    {"name": "no-token"},
                ]
            }
        )
    )
    assert tokens.who(DOCTOR_TOKEN) == "dr-wang"
    assert tokens.who("nurse-token-987654321") == "nurse-li"
    assert tokens.who(DOCTOR_TOKEN[:-1]) is None
    assert tokens.who("") is None and tokens.who(None) is None
    empty = write(tmp_path / "empty", "\n")
    with pytest.raises(ValueError, match="empty"):
        AckTokens(AlertingConfig.model_validate({"contacts": [{"name": "x", "token_file": str(empty)}]}))


@pytest.mark.timeout(90)
async def test_an_ecg_alert_carries_its_strip_from_the_database_on_ecg_paper(
    stack: LocalStack, tmp_path: Path, unique: str, receiver: Receiver
) -> None:
    import numpy as np
    import wfdb
    from matplotlib import image

    from healthhut.protocol import Finding, Strip, WaveBatch, strip_from_reading
    from tests.conftest import data_dir

    hut = f"hut-{unique}"
    record = wfdb.rdrecord(str(data_dir() / "mitdb" / "100"), sampto=360 * 40, channels=[0])
    microvolts = np.round(record.p_signal[:, 0] * 1000).astype(int)
    annotations = wfdb.rdann(str(data_dir() / "mitdb" / "100"), "atr", sampto=360 * 40)
    beats = [int(s) for s, symbol in zip(annotations.sample, annotations.symbol, strict=True) if symbol == "N"]
    who = subject(7)
    messages = []
    for k, start_s in enumerate((0.0, 15.0)):
        first = round(start_s * 360)
        raw = tuple(int(v) for v in microvolts[first : first + 3600])
        strip = strip_from_reading(
            Reading(kind=Kind.ECG, strip=Strip(fs=360.0, unit="uV", raw=raw, channel="II")),
            hut_id=hut,
            device=ECG,
            received_at=T0 + timedelta(seconds=start_s + 10),
            device_seq=100 + k,
            start=T0 + timedelta(seconds=start_s),
            subject=who,
        )
        inside = [b for b in beats if first <= b < first + 3600]
        rr = tuple(float((b - a) / 360 * 1000) for a, b in itertools.pairwise(inside))
        summary = observation_from_reading(
            Reading(
                kind=Kind.ECG,
                values={"heart_rate": Quantity(75.0, "/min"), "rr_intervals": Quantity(rr, "ms")},
                measured_at=T0 + timedelta(seconds=start_s + 10),
            ),
            hut_id=hut,
            device=ECG,
            received_at=T0 + timedelta(seconds=start_s + 10),
            device_seq=200 + k,
            subject=who,
            findings=frozenset({Finding.POSSIBLE_AF}),
        )
        wave = WaveBatch(hut_id=hut, boot_id="boot-1", seq=2 * k + 1, sent_at=T0, strips=[strip])
        messages.append((hut_topic(hut, "wave"), encode(wave)))
        messages.append(batch(hut, 2 * k + 2, [summary]))
    alerting = {"webhook": {"url": receiver.url, "secret_file": str(write(tmp_path / "webhook.key", SECRET.decode()))}}
    async with collector(config(stack, tmp_path, unique, alerting)):
        await publish(stack, *messages)
        await eventually(lambda: len(receiver.requests) == 1, within=30)
    (alert,) = posted(receiver)
    assert alert["rule"] == "ecg.possible_af" and alert["kind"] == "ecg"
    (picture,) = alert["attachments"]
    assert picture["filename"] == "ecg-strip.png" and picture["content_type"] == "image/png"
    pixels = image.imread(io.BytesIO(base64.b64decode(picture["data_base64"])), format="png")
    # 10 s at 25 mm/s at 100 dpi is 984 pixels of paper, plus the calibration box and margins.
    assert pixels.shape[1] >= 984


async def test_a_trend_alert_carries_its_plot(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    from matplotlib import image

    from healthhut.collector.alerting.lifecycle import Lifecycle, Policy, Route
    from healthhut.collector.alerting.store import SqliteAlertStore

    store = SqliteAlertStore(tmp_path / "trend.sqlite")
    lifecycle = Lifecycle(store, Policy(confirm_min_gap_s=0), lambda *_: [Route("webhook")])
    hut, who = f"hut-{unique}", subject(9)
    readings = [
        reading_obs(
            hut,
            CUFF,
            Kind.BLOOD_PRESSURE,
            day * 86400.0 - 20 * 86400,
            who,
            systolic=118 + day % 3,
            diastolic=78,
            pulse_rate=70,
        )
        for day in range(10)
    ]
    readings.append(reading_obs(hut, CUFF, Kind.BLOOD_PRESSURE, 0, who, systolic=150, diastolic=85, pulse_rate=72))
    readings.append(reading_obs(hut, CUFF, Kind.BLOOD_PRESSURE, 60, who, systolic=152, diastolic=86, pulse_rate=72))
    lifecycle.observe(readings, time.time())
    (trend,) = [i for i in store.outbox() if i.document.get("rule") == "trend.systolic_rise"]
    service = AlertService(config(stack, tmp_path, unique, {}))
    try:
        (picture,) = await service.render(trend.document["attach"])
    finally:
        await service.close()
    assert picture.filename == "trend.png" and picture.content_type == "image/png"
    assert image.imread(io.BytesIO(picture.data), format="png").shape[:2] == (450, 800)


def test_a_webhook_that_would_send_health_values_in_clear_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from healthhut.collector.cli import main
    from healthhut.protocol.cli import EXIT_CONFIG

    base = f'[storage]\ntype = "influxdb1"\n[dead_letters]\npath = "{tmp_path / "dead.sqlite"}"\n'
    clear = tmp_path / "clear.toml"
    clear.write_text(base + '[alerting.webhook]\nurl = "http://alerts.example.org/in"\nsecret_file = "k"\n')
    assert main(["check-config", str(clear)]) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert "clear.toml:6" in error and "alerting.webhook.url" in error and "https" in error
    # A secret file that cannot be read: a config error naming it, before anything starts.
    missing = tmp_path / "missing.toml"
    missing.write_text(
        base + f'[alerting.webhook]\nurl = "https://alerts.example.org/in"\nsecret_file = "{tmp_path / "nope"}"\n'
    )
    assert main(["run", "--config", str(missing)]) == EXIT_CONFIG
    assert "cannot read the webhook secret" in capsys.readouterr().err


async def test_health_needs_a_token_and_says_what_the_collector_has_done(
    stack: LocalStack, tmp_path: Path, unique: str
) -> None:
    monitor = "monitoring-token-5b1f0e"
    cfg = config(
        stack,
        tmp_path,
        unique,
        {
            "http": {"port": 0, "health_token_file": str(write(tmp_path / "health.token", monitor + "\n"))},
            "contacts": [{"name": "dr-wang", "token_file": str(write(tmp_path / "wang.token", DOCTOR_TOKEN))}],
        },
    )
    async with collector(cfg) as (ingest, service):
        service.health = ingest.health
        hut = f"hut-{unique}"
        normal = reading_obs(hut, CUFF, Kind.BLOOD_PRESSURE, 0, subject(7), systolic=118, diastolic=76, pulse_rate=70)
        await publish(stack, batch(hut, 1, [normal]))
        await eventually(lambda: ingest.stats.observations == 1)
        await eventually(lambda: service.http_port is not None)
        url = f"http://127.0.0.1:{service.http_port}/v1/health"
        async with ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {monitor[:-1]}"}):
                async with http.get(url, headers=headers) as refused:
                    assert refused.status == 401
            for token in (monitor, DOCTOR_TOKEN):
                async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as answered:
                    assert answered.status == 200
                    body = await answered.json()
            assert body["status"] == "ok" and body["ingest"]["subscribed"] is True
            assert body["ingest"]["observations"] == 1 and body["ingest"]["dead_letters"] == 0
            assert body["alerts"] == {"open": 0, "undelivered": 0, "mqtt": True}
            # Not subscribed (the broker lost the collector's session): monitoring sees 503 at once.
            ingest.subscribed.clear()
            async with http.get(url, headers={"Authorization": f"Bearer {monitor}"}) as degraded:
                assert degraded.status == 503 and (await degraded.json())["status"] == "degraded"
