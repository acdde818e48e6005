"""What leaves the collector about an alert: one notification, and the channels that carry it.

A notification is the alert's JSON document (the fields the webhook contract names, see README.md) plus
its attachments (an ECG strip, a trend plot) and the addresses it is for. Channels turn it into a
webhook POST, an email or an MQTT message. Retrying and dead-lettering are the dispatcher's work
(:mod:`healthhut.collector.alerting.dispatch`): a channel makes one attempt and says whether another may
succeed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert event (fired, repeat, escalated, acknowledged, resolved) for one channel.

    ``document`` is JSON-ready and holds at least: alert_id, rule, severity, audience, hut_id, subject,
    kind, values, observed_at, status, message (zh-CN), message_en. ``recipients`` are email addresses
    (empty for the webhook and MQTT).
    """

    document: Mapping[str, Any]
    attachments: tuple[Attachment, ...] = ()
    recipients: tuple[str, ...] = field(default=())

    @property
    def alert_id(self) -> str:
        return str(self.document["alert_id"])


class DeliveryFailed(Exception):
    """One attempt failed. ``permanent``: another attempt cannot succeed (a 4xx, a refused address), so
    the dispatcher dead-letters at once instead of retrying. ``retry_after``: the receiver's own wish."""

    def __init__(self, detail: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.permanent = permanent
        self.retry_after = retry_after


class Channel(Protocol):
    """Sends a notification once; raises :class:`DeliveryFailed`."""

    name: str

    async def send(self, notification: Notification) -> None: ...

    async def close(self) -> None: ...
