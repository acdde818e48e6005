"""Forwarding to the broker: batches of observations and strips, device events, birth and Last Will.

MQTT QoS 1 through aiomqtt. A batch is numbered once and kept until the broker's PUBACK, so after a
reconnect the very same bytes are sent again and the collector can tell a resend from new data.
The queue is in memory until the durable spool lands (issue 5): a full queue drops the oldest item and
counts it, and the count is reported upstream as a ``gap`` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from healthhut.gateway.backoff import Backoff
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.mqtt import PubackWatch, PublishRefusedError
from healthhut.gateway.state import GatewayState
from healthhut.protocol import (
    Device,
    Observation,
    WaveStrip,
    encode,
    hut_topic,
)
from healthhut.protocol.topics import Channel
from healthhut.protocol.wire import MAX_MESSAGE_BYTES, MESSAGE_TYPES

log = logging.getLogger(__name__)

EventDetail = dict[str, str | int | float | bool]
# Room left in a message for the envelope, so that a batch never exceeds what the collector accepts.
ENVELOPE_ALLOWANCE = 1024
T = TypeVar("T", Observation, WaveStrip)


def fitting(items: list[T], limit: int = MAX_MESSAGE_BYTES - ENVELOPE_ALLOWANCE) -> Iterator[list[T]]:
    """Split items into runs whose encoded size stays under ``limit`` (an item is never split)."""
    run: list[T] = []
    size = 0
    for item in items:
        item_size = len(item.model_dump_json(exclude_none=True)) + 1
        if run and size + item_size > limit:
            yield run
            run, size = [], 0
        run.append(item)
        size += item_size
    if run:
        yield run


@dataclass(frozen=True, slots=True)
class _Event:
    event: str
    device: Device | None
    detail: EventDetail


Item = Observation | WaveStrip | _Event


@dataclass
class UplinkStats:
    published_messages: int = 0
    published_observations: int = 0
    published_strips: int = 0
    dropped: int = 0
    refused: int = 0
    connects: int = 0
    last_error: str | None = None
    connected: bool = False
    dropped_unreported: int = field(default=0, repr=False)


class Uplink:
    """Collects items from device sessions and publishes them; ``run()`` is the reconnect loop."""

    def __init__(self, config: GatewayConfig, state: GatewayState) -> None:
        self.config = config
        self.state = state
        self.hut_id = config.hut_id
        self.stats = UplinkStats()
        self._items: deque[Item] = deque()
        self._ready = asyncio.Event()
        # (topic, payload, observations, strips) of numbered messages awaiting their PUBACK.
        self._pending: list[tuple[str, bytes, int, int]] = []
        self._stopping = False

    # -- producers ------------------------------------------------------------------------------
    def submit(self, item: Observation | WaveStrip) -> None:
        self._push(item)

    def event(self, event: str, device: Device | None = None, **detail: str | int | float | bool) -> None:
        self._push(_Event(event, device, detail))

    def _push(self, item: Item) -> None:
        if len(self._items) >= self.config.uplink.queue_max:
            self._items.popleft()
            self.stats.dropped += 1
            self.stats.dropped_unreported += 1
            if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
                log.warning("uplink queue full: %d items dropped so far", self.stats.dropped)
        self._items.append(item)
        self._ready.set()

    @property
    def backlog(self) -> int:
        return len(self._items) + len(self._pending)

    # -- the loop --------------------------------------------------------------------------------
    async def _numbered(self, channel: Channel, body: dict[str, object]) -> bytes:
        """Encode ``body`` in an envelope with this hut, this boot and the next per-hut number.

        The number is on disk before it is used (an fsync, so off the event loop).
        """
        seq = await asyncio.to_thread(self.state.next_hut_seq)
        envelope = {"hut_id": self.hut_id, "boot_id": self.state.boot_id, "seq": seq, "sent_at": datetime.now(UTC)}
        return encode(MESSAGE_TYPES[channel].model_validate({**envelope, **body}))

    async def _status(self, state: str) -> bytes:
        return await self._numbered("status", {"state": state})

    async def run(self) -> None:
        """Connect, publish the birth record, pump batches; on any MQTT error back off and reconnect."""
        mqtt = self.config.mqtt
        backoff = Backoff(self.config.uplink.reconnect_min_s, self.config.uplink.reconnect_max_s)
        status_topic = hut_topic(self.hut_id, "status")
        # One Last Will per boot, numbered once: a reconnect attempt must not burn a sequence number,
        # or the collector would see gaps that lost nothing.
        will = aiomqtt.Will(status_topic, await self._status("offline"), qos=1, retain=True)
        while True:
            connect_properties = Properties(PacketTypes.CONNECT)
            # A persistent session keeps unacknowledged QoS 1 state across short drops.
            connect_properties.SessionExpiryInterval = 3600
            try:
                async with aiomqtt.Client(
                    mqtt.host,
                    mqtt.port,
                    identifier=f"hut-{self.hut_id}",
                    username=mqtt.username,
                    password=mqtt.password,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    will=will,
                    keepalive=mqtt.keepalive,
                    clean_start=False,
                    properties=connect_properties,
                    tls_context=mqtt.tls.ssl_context() if mqtt.tls else None,
                    timeout=10,
                ) as client:
                    self.stats.connects += 1
                    self.stats.connected = True
                    backoff.reset()
                    log.info("connected to broker %s:%d", mqtt.host, mqtt.port)
                    puback = PubackWatch(client)
                    try:
                        await puback.publish(client, status_topic, await self._status("online"), retain=True)
                    except PublishRefusedError as exc:
                        self.stats.refused += 1
                        log.error("%s; readings will be kept until the broker accepts them", exc)
                    await self._pump(client, puback)
                    await puback.publish(client, status_topic, await self._status("offline"), retain=True)
                    return
            except (aiomqtt.MqttError, PublishRefusedError) as exc:
                self.stats.connected = False
                self.stats.last_error = str(exc)
                delay = backoff.next_delay()
                log.warning("broker %s:%d unavailable (%s); retrying in %.1f s", mqtt.host, mqtt.port, exc, delay)
                await asyncio.sleep(delay)

    async def _pump(self, client: aiomqtt.Client, puback: PubackWatch) -> None:
        refusals = Backoff(self.config.uplink.reconnect_min_s, self.config.uplink.reconnect_max_s)
        while True:
            if not self._pending:
                if self._stopping and not self._items:
                    return
                await self._collect()
            # Oldest first; a message leaves _pending only after a PUBACK that accepts it.
            while self._pending:
                topic, payload, observations, strips = self._pending[0]
                try:
                    await puback.publish(client, topic, payload)
                except PublishRefusedError as exc:
                    # Usually the broker's ACL and this hut's certificate disagree: nothing we send will
                    # be taken, so keep it all and say so loudly rather than lose it.
                    self.stats.refused += 1
                    self.stats.last_error = str(exc)
                    log.error("%s; keeping it and retrying", exc)
                    await refusals.wait()
                    continue
                refusals.reset()
                self._pending.pop(0)
                self.stats.published_messages += 1
                self.stats.published_observations += observations
                self.stats.published_strips += strips

    async def _collect(self) -> None:
        """Wait for items, then take up to a batch (waiting at most the batch interval for more)."""
        batch = self.config.uplink
        if not self._items:
            self._ready.clear()
            await self._ready.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + batch.batch_interval_s
        while len(self._items) < batch.batch_max and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                break
        observations: list[Observation] = []
        strips: list[WaveStrip] = []
        events: list[_Event] = []
        while self._items and len(observations) + len(strips) + len(events) < batch.batch_max:
            item = self._items.popleft()
            if isinstance(item, Observation):
                observations.append(item)
            elif isinstance(item, WaveStrip):
                strips.append(item)
            else:
                events.append(item)
        if self.stats.dropped_unreported:
            events.append(_Event("gap", None, {"dropped": self.stats.dropped_unreported, "cause": "queue_full"}))
            self.stats.dropped_unreported = 0
        for obs_run in fitting(observations):
            await self._queue_message("obs", {"observations": obs_run}, observations=len(obs_run))
        for strip_run in fitting(strips):
            await self._queue_message("wave", {"strips": strip_run}, strips=len(strip_run))
        for event in events:
            await self._queue_message("event", {"event": event.event, "device": event.device, "detail": event.detail})

    async def _queue_message(
        self, channel: Channel, body: dict[str, object], observations: int = 0, strips: int = 0
    ) -> None:
        """Number a message and hold it until its PUBACK."""
        payload = await self._numbered(channel, body)
        self._pending.append((hut_topic(self.hut_id, channel), payload, observations, strips))

    def stop(self) -> None:
        """Ask ``run`` to publish what is queued, say offline, and return."""
        self._stopping = True
        self._ready.set()
