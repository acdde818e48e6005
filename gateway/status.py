"""The gateway's status for technicians: written by the running daemon, read by ``hut-gateway status``.

Every ``INTERVAL_S`` the daemon replaces ``status.json`` in its state folder (written aside and renamed,
so a reader never sees half a file) with: per device, whether it is connected, how many readings it
gave and when it last said anything; the spool's depth, size and the age of its oldest unsent item;
the uplink's connection, confirmations, refusals and last error. Counts and times only: no health
value and no resident.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.spool.base import Spool, SpoolItem
from healthhut.gateway.uplink import UplinkStats
from healthhut.protocol.wire import HutHealth

INTERVAL_S = 10.0
# A status older than this means the daemon is not running (or is stuck).
STALE_AFTER_S = 3 * INTERVAL_S
FILE_NAME = "status.json"


def _item_time(item: SpoolItem) -> datetime | None:
    """When an item was made: its received_at (observations), start (strips) or sent_at/at (events)."""
    try:
        body = json.loads(item.body)
    except ValueError:
        return None
    for key in ("received_at", "start", "sent_at", "at"):
        value = body.get(key) if isinstance(body, dict) else None
        if isinstance(value, str):
            try:
                stamp = datetime.fromisoformat(value)
            except ValueError:
                continue
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return None


async def snapshot(
    hut_id: str, boot_id: str, devices: Sequence[DeviceSession], spool: Spool, uplink: UplinkStats
) -> dict[str, Any]:
    now = datetime.now(UTC)
    oldest = await spool.oldest()
    made = _item_time(oldest) if oldest is not None else None
    return {
        "hut_id": hut_id,
        "boot_id": boot_id,
        "at": now.isoformat(),
        "devices": [
            {
                "name": d.config.name,
                "driver": d.spec.name,
                "connected": d.connected,
                "readings": d.readings,
                "errors": d.errors,
                "last_error": d.last_error,
                "last_contact": d.last_contact.isoformat() if d.last_contact else None,
            }
            for d in devices
        ],
        "spool": {
            "depth": spool.depth,
            "bytes": spool.size_bytes,
            "evicted": spool.evicted,
            "oldest_unsent_s": round((now - made).total_seconds(), 1) if made is not None else None,
        },
        "uplink": {
            "connected": uplink.connected,
            "published": uplink.published_messages,
            "confirmed": uplink.stored_messages,
            "resent": uplink.resent,
            "refused": uplink.refused,
            "last_confirmed": uplink.last_stored.isoformat() if uplink.last_stored else None,
            "last_error": uplink.last_error[:200] if uplink.last_error else None,
        },
    }


def health(status: dict[str, Any]) -> HutHealth:
    """The part of a snapshot that goes into the hut's retained status message."""
    return HutHealth.model_validate({key: status[key] for key in ("devices", "spool", "uplink")})


def write(folder: Path, status: dict[str, Any]) -> None:
    path = folder / FILE_NAME
    aside = path.with_suffix(".tmp")
    aside.write_text(json.dumps(status, indent=1))
    os.replace(aside, path)


async def keep_writing(
    folder: Path, hut_id: str, boot_id: str, devices: Sequence[DeviceSession], spool: Spool, uplink: UplinkStats
) -> None:
    while True:
        write(folder, await snapshot(hut_id, boot_id, devices, spool, uplink))
        await asyncio.sleep(INTERVAL_S)


def _ago(stamp: str | None, now: datetime) -> str:
    if stamp is None:
        return "never"
    seconds = (now - datetime.fromisoformat(stamp)).total_seconds()
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def render(status: dict[str, Any], now: datetime | None = None) -> tuple[str, bool]:
    """The report, and whether the gateway is up: its status is fresh and it has the broker. (A device out
    of contact is reported but is no failure: BLE cuffs and meters connect only while measuring.)"""
    now = now or datetime.now(UTC)
    age = (now - datetime.fromisoformat(status["at"])).total_seconds()
    lines = [f"hut {status['hut_id']} (boot {status['boot_id']}), status from {age:.0f} s ago"]
    healthy = age <= STALE_AFTER_S
    if not healthy:
        lines.append(
            "  the gateway has not written its status for a while: is it running? (systemctl status hut-gateway)"
        )
    uplink, spool = status["uplink"], status["spool"]
    broker = "connected" if uplink["connected"] else f"NOT connected ({uplink['last_error'] or 'no error yet'})"
    healthy &= bool(uplink["connected"])
    lines.append(
        f"  broker: {broker}; {uplink['confirmed']} message(s) confirmed by the collector, last "
        f"{_ago(uplink['last_confirmed'], now)}; {uplink['resent']} resent, {uplink['refused']} refused"
    )
    oldest = spool["oldest_unsent_s"]
    waiting = f", oldest unsent {oldest:.0f} s old" if oldest is not None else ""
    lines.append(
        f"  spool: {spool['depth']} item(s), {spool['bytes'] / 2**20:.1f} MiB{waiting}; {spool['evicted']} evicted"
    )
    for device in status["devices"]:
        state = "connected" if device["connected"] else "NOT connected"
        errors = device.get("errors", 0)
        trouble = f"; {errors} error(s), last: {device.get('last_error')}" if errors else ""
        lines.append(
            f"  device {device['name']} ({device['driver']}): {state}, {device['readings']} reading(s), "
            f"last contact {_ago(device['last_contact'], now)}{trouble}"
        )
    return "\n".join(lines), healthy
