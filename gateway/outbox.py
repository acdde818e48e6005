"""Where device sessions hand over what they produce: observations, strips and events go into the
spool as encoded items, durably, before anything else happens to them.

When the spool refuses (a full disk with nothing left to evict), the loss is counted and reported as a
``gap`` event at the first chance; nothing disappears without a record.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

from healthhut.gateway.spool import Gap, Priority, Spool, SpoolFullError, SpoolItem
from healthhut.protocol import Device, Observation, WaveStrip

log = logging.getLogger(__name__)

EventDetail = dict[str, str | int | float | bool]


def event_item(event: str, device: Device | None, detail: EventDetail, priority: Priority) -> SpoolItem:
    # "at": when it happened, for the collector and for the status's age of the oldest unsent item.
    body: dict[str, object] = {"event": event, "at": datetime.now(UTC).isoformat(), "detail": detail}
    if device is not None:
        body["device"] = device.model_dump(exclude_none=True)
    return SpoolItem("event", priority, f"event-{uuid.uuid4().hex}", json.dumps(body, separators=(",", ":")).encode())


def gap_item(gap: Gap) -> SpoolItem:
    """The spool's record of an eviction, as the ``gap`` event that goes upstream."""
    detail: EventDetail = {
        "cause": "spool_full",
        "channel": gap.channel,
        "priority": gap.priority.name.lower(),
        "count": gap.count,
        "bytes": gap.bytes,
    }
    return event_item("gap", None, detail, Priority.GAP)


class Outbox:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.accepted = 0
        self.refused = 0
        self._unreported = 0

    async def observation(self, obs: Observation) -> bool:
        body = obs.model_dump_json(exclude_none=True).encode()
        return await self._put(SpoolItem("obs", Priority.VITAL, obs.id, body))

    async def strip(self, strip: WaveStrip) -> bool:
        body = strip.model_dump_json(exclude_none=True).encode()
        return await self._put(SpoolItem("wave", Priority.WAVEFORM, strip.id, body))

    async def event(self, event: str, device: Device | None = None, **detail: str | int | float | bool) -> bool:
        return await self._put(event_item(event, device, detail, Priority.DIAGNOSTIC))

    async def _put(self, item: SpoolItem) -> bool:
        """True once the item is durable; False if the spool could not take it (and that is counted)."""
        items = [item]
        if self._unreported:
            items.insert(
                0, event_item("gap", None, {"cause": "spool_refused", "count": self._unreported}, Priority.GAP)
            )
        try:
            await self.spool.put(items)
        except SpoolFullError as exc:
            self.refused += 1
            self._unreported += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.error("spool refused %d item(s) so far: %s", self.refused, exc)
            return False
        self._unreported = 0
        self.accepted += 1
        return True
