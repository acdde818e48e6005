"""MQTT topic names of the wire contract: ``hh/v1/huts/{hut_id}/{channel}`` and the alert tree."""

from __future__ import annotations

import re
from typing import Literal, get_args

from healthhut.protocol.errors import ProtocolError

ROOT = "hh/v1"
# obs, wave, event, status: hut to collector. ack (stored), cmd, roster (retained): collector to hut.
Channel = Literal["obs", "wave", "event", "status", "ack", "cmd", "roster"]
CHANNELS: tuple[str, ...] = get_args(Channel)
HUT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_HUT_ID = re.compile(HUT_ID_PATTERN)
ALERTS = f"{ROOT}/alerts"
# Retained: a collector says here that it is (again) subscribed, so that huts resend what is unconfirmed.
COLLECTORS_STATUS = f"{ROOT}/collectors/status"


def check_hut_id(hut_id: str) -> str:
    """Return ``hut_id`` if it is a valid id (lower-case letters, digits, ``-`` and ``_``, 1-64 long)."""
    # fullmatch: "$" alone would also let through a hut id ending in a newline.
    if not _HUT_ID.fullmatch(hut_id):
        raise ValueError(f"hut id {hut_id!r} must match {HUT_ID_PATTERN}")
    return hut_id


def hut_topic(hut_id: str, channel: Channel) -> str:
    return f"{ROOT}/huts/{check_hut_id(hut_id)}/{channel}"


def hut_filter(channel: Channel) -> str:
    """Subscription filter for one channel of every hut."""
    return f"{ROOT}/huts/+/{channel}"


def shared(topic_filter: str, group: str = "collectors") -> str:
    """An MQTT 5 shared subscription, so that several collectors split the stream."""
    return f"$share/{group}/{topic_filter}"


def parse_hut_topic(topic: str) -> tuple[str, Channel]:
    """Split ``hh/v1/huts/{hut_id}/{channel}``; ProtocolError for anything else."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT or parts[2] != "huts":
        raise ProtocolError("bad_topic", f"topic {topic!r} is not under {ROOT}/huts/<hut_id>/<channel>")
    hut_id, channel = parts[3], parts[4]
    if not _HUT_ID.fullmatch(hut_id):
        raise ProtocolError("bad_topic", f"hut id {hut_id!r} in topic does not match {HUT_ID_PATTERN}")
    if channel not in CHANNELS:
        raise ProtocolError("bad_topic", f"unknown channel {channel!r}; expected one of {CHANNELS}")
    return hut_id, channel  # type: ignore[return-value]
