"""The webhook and email channels against real servers on loopback: an aiohttp receiver and aiosmtpd."""

from __future__ import annotations

import asyncio
import base64
import copy
import email
import email.policy
import email.utils
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from healthhut.collector.alerting.channels import (
    EmailChannel,
    SmtpSettings,
    WebhookChannel,
    compose_email,
    retry_after_seconds,
    verify_signature,
)
from healthhut.collector.alerting.notification import Attachment, DeliveryFailed, Notification
from healthhut.devstack import free_port
from tests.alert_servers import RELAY_PASSWORD, RELAY_USER, Mailbox, Receiver, smtp_server

# A 1 x 1 RGB PNG (one green pixel), built by hand: signature, IHDR, zlib IDAT, IEND. Its signature holds
# \r\n, \x1a and \n, which a text-mode transfer would mangle.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c49444154789c63f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)
STRIP = Attachment("ecg-strip.png", "image/png", PNG)
SECRET = b"webhook secret for tests"

DOCUMENT: Mapping[str, Any] = {
    "alert_id": "al-7f3c2e",
    "rule": "bp.possible_crisis",
    "severity": "emergency",
    "audience": "clinician",
    "hut_id": "hut-01",
    "subject": "s-5d1e7a90",
    "kind": "blood_pressure",
    "values": [
        {"name": "systolic", "value": 186, "unit": "mm[Hg]"},
        {"name": "diastolic", "value": 112, "unit": "mm[Hg]"},
    ],
    "observed_at": "2025-03-14T08:30:05+08:00",
    "status": "fired",
    "message": "收缩压 186 mmHg，舒张压 112 mmHg：疑似高血压危象",
    "message_en": "Systolic 186 mmHg, diastolic 112 mmHg: possible hypertensive crisis",
    "ack_url": "https://alerts.example.org/ack/al-7f3c2e",
}


def signed(secret: bytes, timestamp: str, body: bytes) -> str:
    """The documented signature, computed here independently of the channel."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


# --- webhook -------------------------------------------------------------------------------------------


@pytest.fixture
async def webhook(receiver: Receiver) -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(receiver.url, SECRET, timeout_s=2.0)
    yield channel
    await channel.close()


async def test_webhook_posts_the_signed_document_with_its_attachments(
    receiver: Receiver, webhook: WebhookChannel
) -> None:
    document = copy.deepcopy(dict(DOCUMENT))
    before = time.time()

    await webhook.send(Notification(document, (STRIP,)))

    assert document == DOCUMENT
    [request] = receiver.requests
    timestamp = request.headers["X-Healthhut-Timestamp"]
    assert before - 1 <= int(timestamp) <= time.time()
    assert request.headers["X-Healthhut-Signature"] == signed(SECRET, timestamp, request.body)
    assert verify_signature(SECRET, timestamp, request.body, request.headers["X-Healthhut-Signature"])
    assert request.headers["X-Healthhut-Alert-Id"] == "al-7f3c2e"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    # Compact UTF-8, the Chinese unescaped.
    assert "收缩压 186 mmHg".encode() in request.body
    assert b'"alert_id":"al-7f3c2e","rule"' in request.body
    payload = json.loads(request.body)
    assert payload == {
        **DOCUMENT,
        "attachments": [
            {"filename": "ecg-strip.png", "content_type": "image/png", "data_base64": base64.b64encode(PNG).decode()}
        ],
    }
    assert base64.b64decode(payload["attachments"][0]["data_base64"]) == PNG


async def test_webhook_reuses_one_connection(receiver: Receiver, webhook: WebhookChannel) -> None:
    await webhook.send(Notification(DOCUMENT))
    await webhook.send(Notification({**DOCUMENT, "status": "resolved"}))

    first, second = receiver.requests
    assert first.peer == second.peer
    assert json.loads(second.body)["status"] == "resolved"
    assert json.loads(first.body)["attachments"] == []


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(500, False), (502, False), (503, False), (408, False), (425, False), (429, False), (400, True), (401, True)],
)
async def test_webhook_error_status_says_whether_to_retry(
    receiver: Receiver, webhook: WebhookChannel, status: int, permanent: bool
) -> None:
    receiver.status = status

    with pytest.raises(DeliveryFailed) as failed:
        await webhook.send(Notification(DOCUMENT))

    assert (failed.value.permanent, failed.value.retry_after) == (permanent, None)
    assert str(status) in str(failed.value)


async def test_webhook_429_passes_on_retry_after_seconds(receiver: Receiver, webhook: WebhookChannel) -> None:
    receiver.status = 429
    receiver.headers = {"Retry-After": "7"}

    with pytest.raises(DeliveryFailed) as failed:
        await webhook.send(Notification(DOCUMENT))

    assert (failed.value.permanent, failed.value.retry_after) == (False, 7.0)


async def test_webhook_503_passes_on_retry_after_as_a_date(receiver: Receiver, webhook: WebhookChannel) -> None:
    receiver.status = 503
    receiver.headers = {"Retry-After": email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), True)}

    with pytest.raises(DeliveryFailed) as failed:
        await webhook.send(Notification(DOCUMENT))

    assert failed.value.permanent is False
    assert failed.value.retry_after is not None
    assert 115 <= failed.value.retry_after <= 121


def test_retry_after_forms() -> None:
    now = datetime(2025, 3, 14, 0, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now=now) == 120.0
    assert retry_after_seconds("Fri, 14 Mar 2025 00:01:30 GMT", now=now) == 90.0
    assert retry_after_seconds("Thu, 13 Mar 2025 00:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds("-5", now=now) is None
    assert retry_after_seconds(None, now=now) is None


async def test_webhook_does_not_follow_a_redirect(receiver: Receiver, webhook: WebhookChannel) -> None:
    receiver.status = 307
    receiver.headers = {"Location": receiver.url}

    with pytest.raises(DeliveryFailed) as failed:
        await webhook.send(Notification(DOCUMENT))

    assert failed.value.permanent is True
    assert len(receiver.requests) == 1


async def test_webhook_connection_refused_may_be_retried() -> None:
    port = free_port()
    channel = WebhookChannel(f"http://127.0.0.1:{port}/alerts?token=s3cr3t", SECRET, timeout_s=2.0)
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await channel.send(Notification(DOCUMENT))
    finally:
        await channel.close()

    assert (failed.value.permanent, failed.value.retry_after) == (False, None)
    # The detail names the receiver but keeps a token in the query out of logs and dead letters.
    assert f"http://127.0.0.1:{port}/alerts" in str(failed.value)
    assert "s3cr3t" not in str(failed.value)


async def test_webhook_timeout_may_be_retried(receiver: Receiver) -> None:
    receiver.hold = asyncio.Event()
    channel = WebhookChannel(receiver.url, SECRET, timeout_s=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await channel.send(Notification(DOCUMENT))
    finally:
        await channel.close()

    assert failed.value.permanent is False
    assert time.monotonic() - started < 2
    assert len(receiver.requests) == 1


async def test_webhook_document_that_is_not_json_fails_permanently(webhook: WebhookChannel) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await webhook.send(Notification({**DOCUMENT, "values": [float("nan")]}))

    assert failed.value.permanent is True


def test_webhook_refuses_plain_http_beyond_loopback_and_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="https"):
        WebhookChannel("http://alerts.example.org/hook", SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel("https://alerts.example.org/hook", b"")
    WebhookChannel("http://[::1]:8080/hook", SECRET)
    WebhookChannel("http://localhost:8080/hook", SECRET)


def test_verify_signature_accepts_only_the_signed_body_secret_and_a_fresh_timestamp() -> None:
    body = json.dumps(DOCUMENT, ensure_ascii=False).encode()
    now = 1_741_912_205.0
    timestamp = str(int(now) - 10)
    signature = signed(SECRET, timestamp, body)

    assert verify_signature(SECRET, timestamp, body, signature, now=now)
    assert not verify_signature(SECRET, timestamp, body.replace(b"186", b"136"), signature, now=now)
    assert not verify_signature(b"another secret", timestamp, body, signature, now=now)
    assert not verify_signature(SECRET, str(int(now) - 11), body, signature, now=now)
    # Stale by more than the tolerance, either way; the edge itself still passes.
    assert not verify_signature(SECRET, timestamp, body, signature, now=now + 291)
    assert verify_signature(SECRET, timestamp, body, signature, now=now + 290)
    assert not verify_signature(SECRET, timestamp, body, signature, now=now - 311)
    assert not verify_signature(SECRET, timestamp, body, signature, now=now + 60, tolerance_s=30)
    # Malformed headers are refused, never raised on.
    assert not verify_signature(SECRET, timestamp, body, signature.removeprefix("sha256="), now=now)
    assert not verify_signature(SECRET, timestamp, body, signature.upper(), now=now)
    assert not verify_signature(SECRET, timestamp, body, "sha256=é", now=now)
    assert not verify_signature(SECRET, f"{timestamp}.5", body, signature, now=now)
    assert not verify_signature(SECRET, "", body, signature, now=now)


# --- email ---------------------------------------------------------------------------------------------

SENDER = "alerts@healthhut.example.org"
DOCTOR = "dr.wang@clinic.example.org"
NURSE = "nurse.li@clinic.example.org"


def settings(port: int, certificate: Path | None, **changes: Any) -> SmtpSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": SENDER,
        "username": RELAY_USER,
        "password": RELAY_PASSWORD,
        "ca_file": None if certificate is None else certificate / "cert.pem",
        "timeout_s": 5.0,
    }
    return SmtpSettings(**{**base, **changes})


def parsed(content: bytes) -> EmailMessage:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


EXPECTED_BODY = """\
收缩压 186 mmHg，舒张压 112 mmHg：疑似高血压危象

Systolic 186 mmHg, diastolic 112 mmHg: possible hypertensive crisis

测量值 / Values:
  systolic: 186 mmHg
  diastolic: 112 mmHg
测量时间 / Observed at: 2025-03-14T08:30:05+08:00
级别 / Severity: 危急 emergency
状态 / Status: fired
健康小屋 / Hut: hut-01
规则 / Rule: bp.possible_crisis
告警编号 / Alert id: al-7f3c2e

确认收到此告警 / Acknowledge this alert: https://alerts.example.org/ack/al-7f3c2e
"""


async def test_email_arrives_over_starttls_after_login_with_subject_body_and_png(certificate: Path) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, certificate) as port:
        channel = EmailChannel(settings(port, certificate))
        await channel.send(Notification(DOCUMENT, (STRIP,), (DOCTOR, NURSE)))
        await channel.close()

    [delivery] = mailbox.deliveries
    assert (delivery.mail_from, delivery.rcpt_tos, delivery.tls, delivery.authenticated) == (
        SENDER,
        [DOCTOR, NURSE],
        True,
        True,
    )
    message = parsed(delivery.content)
    # The raw header is RFC 2047 encoded; decoded, it reads Chinese first.
    assert b"Subject: =?utf-8?" in delivery.content
    assert message["Subject"] == (
        "[危急] 健康小屋 hut-01: 收缩压 186 mmHg，舒张压 112 mmHg：疑似高血压危象"
        " / [emergency] Systolic 186 mmHg, diastolic 112 mmHg: possible hypertensive crisis"
    )
    assert (message["From"], message["To"], message["X-Healthhut-Alert-Id"]) == (
        SENDER,
        f"{DOCTOR}, {NURSE}",
        "al-7f3c2e",
    )
    text, strip = message.iter_parts()
    assert (text.get_content_type(), text.get_content()) == ("text/plain", EXPECTED_BODY)
    assert isinstance(strip, EmailMessage)
    assert (strip.get_content_type(), strip.get_filename(), strip.get_content()) == (
        "image/png",
        "ecg-strip.png",
        PNG,
    )


async def test_email_without_starttls_on_offer_fails_permanently_and_sends_nothing() -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, None) as port:
        channel = EmailChannel(settings(port, None))
        with pytest.raises(DeliveryFailed, match="does not offer STARTTLS") as failed:
            await channel.send(Notification(DOCUMENT, (STRIP,), (DOCTOR,)))

    assert failed.value.permanent is True
    assert mailbox.deliveries == []


async def test_email_wrong_password_fails_permanently(certificate: Path) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, certificate) as port:
        channel = EmailChannel(settings(port, certificate, password="not it"))
        with pytest.raises(DeliveryFailed, match="refused the login") as failed:
            await channel.send(Notification(DOCUMENT, (), (DOCTOR,)))

    assert failed.value.permanent is True
    assert mailbox.deliveries == []


async def test_email_untrusted_certificate_fails_and_may_be_retried(certificate: Path) -> None:
    """Without ca_file the system store is used, which does not hold the test's self-signed certificate."""
    mailbox = Mailbox()
    async with smtp_server(mailbox, certificate) as port:
        channel = EmailChannel(settings(port, None))
        with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED") as failed:
            await channel.send(Notification(DOCUMENT, (), (DOCTOR,)))

    assert failed.value.permanent is False
    assert mailbox.deliveries == []


async def test_email_partly_refused_is_sent_to_the_rest_and_logged(
    certificate: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mailbox = Mailbox(refuse={NURSE: "550 5.1.1 No such user"})
    caplog.set_level(logging.DEBUG, logger="healthhut.collector.alerting.channels")
    async with smtp_server(mailbox, certificate) as port:
        await EmailChannel(settings(port, certificate)).send(Notification(DOCUMENT, (), (DOCTOR, NURSE)))

    [delivery] = mailbox.deliveries
    assert delivery.rcpt_tos == [DOCTOR]
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.name == "healthhut.collector.alerting.channels" and record.levelno == logging.WARNING
    ]
    assert warnings == [f"alert al-7f3c2e: the SMTP server refused {NURSE} (550); sent to the other 1 recipient(s)"]
    # No health value reaches the log at INFO or above.
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "186" in r.getMessage()]


@pytest.mark.parametrize(("reply", "permanent"), [("550 5.1.1 No such user", True), ("450 4.2.1 Try later", False)])
async def test_email_every_recipient_refused_fails(certificate: Path, reply: str, permanent: bool) -> None:
    mailbox = Mailbox(refuse={DOCTOR: reply, NURSE: reply})
    async with smtp_server(mailbox, certificate) as port:
        channel = EmailChannel(settings(port, certificate))
        with pytest.raises(DeliveryFailed, match="refused every recipient") as failed:
            await channel.send(Notification(DOCUMENT, (), (DOCTOR, NURSE)))

    assert failed.value.permanent is permanent
    assert mailbox.deliveries == []


async def test_email_without_recipients_fails_permanently_before_connecting() -> None:
    channel = EmailChannel(settings(free_port(), None))

    with pytest.raises(DeliveryFailed, match="no email recipients") as failed:
        await channel.send(Notification(DOCUMENT, (STRIP,), ()))

    assert failed.value.permanent is True


async def test_email_connection_refused_may_be_retried() -> None:
    channel = EmailChannel(settings(free_port(), None))

    with pytest.raises(DeliveryFailed) as failed:
        await channel.send(Notification(DOCUMENT, (), (DOCTOR,)))

    assert (failed.value.permanent, failed.value.retry_after) == (False, None)


def test_smtp_settings_never_allow_credentials_without_tls_nor_show_the_password() -> None:
    with pytest.raises(ValueError, match="starttls"):
        SmtpSettings("127.0.0.1", 25, SENDER, starttls=False, username=RELAY_USER, password=RELAY_PASSWORD)
    assert RELAY_PASSWORD not in repr(settings(25, None))


@pytest.mark.parametrize(
    ("status", "tag_zh", "tag_en"),
    [
        ("resolved", "已恢复", "resolved"),
        ("acknowledged", "已确认", "acknowledged"),
        ("escalated", "危急·已升级", "emergency, escalated"),
        ("repeat", "危急·重复", "emergency, repeat"),
    ],
)
def test_email_subject_names_the_status(status: str, tag_zh: str, tag_en: str) -> None:
    message = compose_email(Notification({**DOCUMENT, "status": status}, (), (DOCTOR,)), SENDER)

    assert message["Subject"] == (
        f"[{tag_zh}] 健康小屋 hut-01: 收缩压 186 mmHg，舒张压 112 mmHg：疑似高血压危象"
        f" / [{tag_en}] Systolic 186 mmHg, diastolic 112 mmHg: possible hypertensive crisis"
    )


@pytest.mark.parametrize(
    ("severity", "tag"), [("info", "提示"), ("warning", "警告"), ("urgent", "紧急"), ("emergency", "危急")]
)
def test_email_subject_severity_in_chinese(severity: str, tag: str) -> None:
    message = compose_email(Notification({**DOCUMENT, "severity": severity}, (), (DOCTOR,)), SENDER)

    assert message["Subject"].startswith(f"[{tag}] 健康小屋 hut-01: ")
    assert f"/ [{severity}] Systolic" in message["Subject"]


def test_email_body_reads_values_given_as_a_mapping_and_omits_a_missing_ack_url() -> None:
    document = {key: value for key, value in DOCUMENT.items() if key != "ack_url"}
    document["values"] = {"temperature": {"value": 38.4, "unit": "Cel"}, "rr_intervals": [812, 790]}
    body = compose_email(Notification(document, (), (DOCTOR,)), SENDER).get_body()
    assert body is not None
    text = body.get_content()

    assert "测量值 / Values:\n  temperature: 38.4 °C\n  rr_intervals: 812, 790\n测量时间" in text
    assert "Acknowledge" not in text
    assert text.endswith("告警编号 / Alert id: al-7f3c2e\n")
