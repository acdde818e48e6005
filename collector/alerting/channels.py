"""The channels that carry an alert notification out: a signed webhook POST and an email over STARTTLS.

Each makes one attempt per ``send`` and turns every failure into :class:`DeliveryFailed`; retrying is the
dispatcher's work. Receivers check webhook signatures with :func:`verify_signature`.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from healthhut.collector.alerting.model import Severity, shown
from healthhut.collector.alerting.notification import Attachment, DeliveryFailed, Notification

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Healthhut-Timestamp"
SIGNATURE_HEADER = "X-Healthhut-Signature"
ALERT_ID_HEADER = "X-Healthhut-Alert-Id"
_SIGNATURE_SCHEME = "sha256="

# RFC 9110: a timeout, a request sent too early, too many requests. Another attempt may succeed.
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


def _signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return _SIGNATURE_SCHEME + digest


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300,
) -> bool:
    """Whether ``signature`` (the X-Healthhut-Signature header) signs ``timestamp`` and ``body`` with
    ``secret``, and the timestamp is within ``tolerance_s`` of ``now`` (default: the clock), either side.

    The timestamp is signed with the body, so a captured request cannot be replayed after the tolerance.
    """
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    expected = _signature(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape"))


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """An HTTP Retry-After header (delay in seconds, or an HTTP date) as seconds from now; None if absent
    or unreadable. A date in the past gives 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _require_alert_id(notification: Notification) -> None:
    if "alert_id" not in notification.document:
        raise DeliveryFailed("alert document has no alert_id", permanent=True)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> str:
    """``url`` if a webhook may be sent there: http(s) with a host, and plain http only to loopback (the
    body holds health values). ValueError otherwise; the config loader uses this too."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"webhook url must be an http(s) URL with a host, not {url!r}")
    if parsed.scheme == "http" and not _is_loopback(parsed.host):
        raise ValueError(f"webhook url {url!r} must use https: plain http is only for a loopback receiver")
    return url


class WebhookChannel:
    """POSTs the alert document as JSON, signed with HMAC-SHA256 over ``"<timestamp>." + body``.

    The attachments travel inside the JSON as ``attachments: [{filename, content_type, data_base64}]``.
    Plain http is accepted only for a loopback host: the body holds health values.
    """

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 10.0, name: str = "webhook") -> None:
        parsed = URL(check_webhook_url(url))
        if not secret:
            raise ValueError("webhook secret must not be empty")
        self.name = name
        self.url = url
        # For error details, which reach logs and the dead-letter store: a token in the query stays out.
        self._shown_url = str(parsed.with_user(None).with_query(None).with_fragment(None))
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def body(self, notification: Notification) -> bytes:
        """The exact bytes POSTed: compact UTF-8 JSON of the document plus its attachments."""
        payload = dict(notification.document)
        payload["attachments"] = [
            {
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "data_base64": base64.b64encode(attachment.data).decode("ascii"),
            }
            for attachment in notification.attachments
        ]
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

    async def send(self, notification: Notification) -> None:
        _require_alert_id(notification)
        try:
            body = self.body(notification)
        except (TypeError, ValueError) as error:
            raise DeliveryFailed(f"alert document is not JSON: {error}", permanent=True) from error
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: _signature(self._secret, timestamp, body),
            ALERT_ID_HEADER: _one_line(notification.alert_id),
        }
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            # A redirect would resend the body to a URL nobody configured, or drop it (303): refuse it.
            async with self._session.post(self.url, data=body, headers=headers, allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return
                status = response.status
                reason = response.reason or ""
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryFailed(f"webhook {self._shown_url}: {type(error).__name__}: {error}") from error
        permanent = 300 <= status < 500 and status not in _RETRYABLE_CLIENT_ERRORS
        detail = f"webhook {self._shown_url} answered {status} {reason}".rstrip()
        raise DeliveryFailed(detail, permanent=permanent, retry_after=retry_after)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how alert email is sent. Credentials are sent only after STARTTLS."""

    host: str
    port: int
    sender: str
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # The CA bundle that signs the server's certificate; None trusts the system's store.
    ca_file: Path | None = None
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.username is not None and not self.starttls:
            raise ValueError("SMTP credentials need starttls = true: they are never sent in clear text")


_SEVERITY_ZH: Mapping[str, str] = {
    Severity.INFO: "提示",
    Severity.WARNING: "警告",
    Severity.URGENT: "紧急",
    Severity.EMERGENCY: "危急",
}
# Statuses that replace the severity in the subject, and those that qualify it.
_STATUS_FINAL: Mapping[str, tuple[str, str]] = {
    "resolved": ("已恢复", "resolved"),
    "acknowledged": ("已确认", "acknowledged"),
}
_STATUS_QUALIFIER: Mapping[str, tuple[str, str]] = {
    "repeat": ("重复", "repeat"),
    "escalated": ("已升级", "escalated"),
}
# UCUM codes as a clinician reads them.
_UNIT_SHOWN: Mapping[str, str] = {"mm[Hg]": "mmHg", "Cel": "°C", "kg/m2": "kg/m²"}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _subject(document: Mapping[str, Any]) -> str:
    severity = str(document.get("severity", ""))
    status = str(document.get("status", ""))
    hut = _one_line(document.get("hut_id", "?"))
    if status in _STATUS_FINAL:
        tag_zh, tag_en = _STATUS_FINAL[status]
    else:
        tag_zh, tag_en = _SEVERITY_ZH.get(severity, severity), severity
        if status in _STATUS_QUALIFIER:
            qualifier_zh, qualifier_en = _STATUS_QUALIFIER[status]
            tag_zh, tag_en = f"{tag_zh}·{qualifier_zh}", f"{tag_en}, {qualifier_en}"
    message = _one_line(document.get("message", ""))
    message_en = _one_line(document.get("message_en", ""))
    return f"[{tag_zh}] 健康小屋 {hut}: {message} / [{tag_en}] {message_en}"


def _value_text(value: object, unit: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = shown(float(value))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        number = ", ".join(shown(float(v)) if isinstance(v, int | float) else str(v) for v in value)
    else:
        number = str(value)
    unit_text = _UNIT_SHOWN.get(str(unit), str(unit)) if unit else ""
    return f"{number} {unit_text}".rstrip()


def _evidence_lines(values: object) -> list[str]:
    """The document's ``values``: a list of {name, value, unit}, or a mapping from name to {value, unit}
    or to a bare number."""
    rows: list[tuple[str, object, object]] = []
    if isinstance(values, Mapping):
        for name, item in values.items():
            if isinstance(item, Mapping):
                rows.append((str(name), item.get("value"), item.get("unit")))
            else:
                rows.append((str(name), item, None))
    elif isinstance(values, Sequence) and not isinstance(values, str):
        rows.extend(
            (str(item.get("name", "?")), item.get("value"), item.get("unit"))
            for item in values
            if isinstance(item, Mapping)
        )
    return [f"  {name}: {_value_text(value, unit)}" for name, value, unit in rows]


def _body(document: Mapping[str, Any]) -> str:
    severity = str(document.get("severity", ""))
    lines = [str(document.get("message", "")), "", str(document.get("message_en", "")), ""]
    evidence = _evidence_lines(document.get("values"))
    if evidence:
        lines += ["测量值 / Values:", *evidence]
    lines += [
        f"测量时间 / Observed at: {document.get('observed_at', '?')}",
        f"级别 / Severity: {_SEVERITY_ZH.get(severity, severity)} {severity}",
        f"状态 / Status: {document.get('status', '?')}",
        f"健康小屋 / Hut: {document.get('hut_id', '?')}",
        f"规则 / Rule: {document.get('rule', '?')}",
        f"告警编号 / Alert id: {document.get('alert_id', '?')}",
    ]
    if document.get("ack_url"):
        lines += ["", f"确认收到此告警 / Acknowledge this alert: {document['ack_url']}"]
    return "\n".join(lines) + "\n"


def _attach(message: EmailMessage, attachment: Attachment) -> None:
    maintype, _, subtype = attachment.content_type.partition("/")
    if not maintype or not subtype:
        maintype, subtype = "application", "octet-stream"
    message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)


def compose_email(notification: Notification, sender: str) -> EmailMessage:
    """The email for a notification: a zh-CN-first subject, a plain-text body (Chinese, English, the
    evidence, how to acknowledge) and the attachments."""
    message = EmailMessage()
    message["Subject"] = _subject(notification.document)
    message["From"] = sender
    message["To"] = ", ".join(notification.recipients)
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    message[ALERT_ID_HEADER] = _one_line(notification.alert_id)
    message.set_content(_body(notification.document))
    for attachment in notification.attachments:
        _attach(message, attachment)
    return message


def _smtp_failure(action: str, error: smtplib.SMTPResponseException) -> DeliveryFailed:
    # RFC 5321: 5yz is a permanent negative reply, 4yz a transient one.
    text = error.smtp_error.decode("utf-8", "replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
    return DeliveryFailed(f"{action}: {error.smtp_code} {text}", permanent=error.smtp_code >= 500)


class EmailChannel:
    """Sends the alert as an email through an SMTP relay, over STARTTLS (one connection per send)."""

    def __init__(self, config: SmtpSettings, *, name: str = "email") -> None:
        self.name = name
        self.config = config
        self._tls = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)

    async def send(self, notification: Notification) -> None:
        _require_alert_id(notification)
        if not notification.recipients:
            raise DeliveryFailed(f"alert {notification.alert_id}: no email recipients", permanent=True)
        try:
            message = compose_email(notification, self.config.sender)
        except (TypeError, ValueError) as error:
            raise DeliveryFailed(
                f"alert {notification.alert_id}: cannot compose email: {error}", permanent=True
            ) from error
        refused = await asyncio.to_thread(self._deliver, message, notification.recipients)
        if refused:
            log.warning(
                "alert %s: the SMTP server refused %s; sent to the other %d recipient(s)",
                notification.alert_id,
                ", ".join(f"{address} ({code})" for address, (code, _) in sorted(refused.items())),
                len(notification.recipients) - len(refused),
            )
        log.debug(
            "alert %s emailed to %d recipient(s)", notification.alert_id, len(notification.recipients) - len(refused)
        )

    def _deliver(self, message: EmailMessage, recipients: tuple[str, ...]) -> dict[str, tuple[int, bytes]]:
        """One SMTP session, run in a worker thread; returns the refused recipients."""
        config = self.config
        server = f"SMTP {config.host}:{config.port}"
        try:
            with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
                smtp.ehlo_or_helo_if_needed()
                if config.starttls:
                    if not smtp.has_extn("starttls"):
                        raise DeliveryFailed(
                            f"{server} does not offer STARTTLS, and starttls is required: not sending", permanent=True
                        )
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if config.username is not None:
                    smtp.login(config.username, config.password or "")
                return smtp.send_message(message, from_addr=config.sender, to_addrs=list(recipients))
        except smtplib.SMTPRecipientsRefused as error:
            codes = {code for code, _ in error.recipients.values()}
            detail = ", ".join(f"{address} ({code})" for address, (code, _) in sorted(error.recipients.items()))
            raise DeliveryFailed(
                f"{server} refused every recipient: {detail}", permanent=all(code >= 500 for code in codes)
            ) from error
        except smtplib.SMTPNotSupportedError as error:
            raise DeliveryFailed(f"{server}: {error}", permanent=True) from error
        except smtplib.SMTPAuthenticationError as error:
            raise _smtp_failure(f"{server} refused the login of {config.username}", error) from error
        except smtplib.SMTPSenderRefused as error:
            raise _smtp_failure(f"{server} refused the sender {config.sender}", error) from error
        except smtplib.SMTPResponseException as error:
            raise _smtp_failure(server, error) from error
        except (smtplib.SMTPException, OSError) as error:
            # OSError covers refused connections, timeouts and TLS failures, an untrusted certificate too:
            # the server's side can fix those, so another attempt may succeed.
            raise DeliveryFailed(f"{server}: {type(error).__name__}: {error}") from error

    async def close(self) -> None:
        """Nothing is held between sends."""
