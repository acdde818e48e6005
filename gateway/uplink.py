"""Forwarding to the broker: what the spool holds goes out in batches over MQTT QoS 1.

A batch is leased from the spool, numbered (the per-hut sequence number is on disk first), published,
and acknowledged to the spool only after the broker's PUBACK accepts it. Until then the very same bytes
are resent after a reconnect, so the collector can tell a resend from new data. A message the broker
refuses is kept and retried. The birth record is retained and the Last Will says offline, both with
the boot id. Reconnects back off exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from healthhut.gateway.backoff import Backoff
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.mqtt import PubackWatch, PublishRefusedError
from healthhut.gateway.spool import Lease, Spool
from healthhut.gateway.spool.base import SpoolChannel
from healthhut.gateway.state import GatewayState
from healthhut.protocol import Status, encode, hut_topic
from healthhut.protocol.wire import MAX_MESSAGE_BYTES, SCHEMA_VERSION, assemble

log = logging.getLogger(__name__)

# Room left in a message for the envelope, so that a batch never exceeds what the collector accepts.
ENVELOPE_ALLOWANCE = 1024
# Vitals first, then what happened to the devices, then waveforms.
CHANNEL_ORDER: tuple[SpoolChannel, ...] = ("obs", "event", "wave")


@dataclass
class UplinkStats:
    published_messages: int = 0
    published_items: int = 0
    refused: int = 0
    connects: int = 0
    last_error: str | None = None
    connected: bool = False
    last_publish: datetime | None = None


@dataclass
class _Outgoing:
    """A numbered message and the spool lease it delivers; resent as is until accepted."""

    topic: str
    payload: bytes
    lease: Lease


class Uplink:
    def __init__(self, config: GatewayConfig, state: GatewayState, spool: Spool) -> None:
        self.config = config
        self.state = state
        self.spool = spool
        self.hut_id = config.hut_id
        self.stats = UplinkStats()
        self._outgoing: list[_Outgoing] = []
        self._stopping = False
        self._stop = asyncio.Event()

    async def _seq(self) -> int:
        # The number is on disk before it is used (an fsync, so off the event loop).
        return await asyncio.to_thread(self.state.next_hut_seq)

    async def _status(self, state: str) -> bytes:
        status = Status(
            hut_id=self.hut_id,
            boot_id=self.state.boot_id,
            seq=await self._seq(),
            sent_at=datetime.now(UTC),
            state=state,  # type: ignore[arg-type]
        )
        return encode(status)

    async def run(self) -> None:
        """Connect, publish the birth record, pump the spool; on any MQTT error back off and reconnect."""
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
                        await puback.publish(status_topic, await self._status("online"), retain=True)
                    except PublishRefusedError as exc:
                        self.stats.refused += 1
                        log.error("%s; readings stay in the spool until the broker accepts them", exc)
                    await self._pump(puback)
                    await puback.publish(status_topic, await self._status("offline"), retain=True)
                    return
            except (aiomqtt.MqttError, PublishRefusedError) as exc:
                self.stats.connected = False
                self.stats.last_error = str(exc)
                delay = backoff.next_delay()
                log.warning("broker %s:%d unavailable (%s); retrying in %.1f s", mqtt.host, mqtt.port, exc, delay)
                await asyncio.sleep(delay)

    async def _pump(self, puback: PubackWatch) -> None:
        refusals = Backoff(self.config.uplink.reconnect_min_s, self.config.uplink.reconnect_max_s)
        while True:
            if not self._outgoing:
                if self._stopping and self.spool.depth == 0:
                    return
                await self._next_batch()
                if self._stopping and not self._outgoing:
                    return
                continue
            # Up to a window of messages in flight at once; each leaves only with an accepting PUBACK.
            window = self._outgoing[: self.config.uplink.in_flight]
            results = await asyncio.gather(
                *(puback.publish(out.topic, out.payload) for out in window), return_exceptions=True
            )
            for out, result in zip(window, results, strict=True):
                if isinstance(result, PublishRefusedError):
                    self.stats.refused += 1
                    self.stats.last_error = str(result)
                    # Usually the broker's ACL and this hut's certificate disagree: keep it, say so loudly.
                    log.error("%s; keeping it and retrying", result)
                    continue
                if isinstance(result, BaseException):
                    raise result
                await self.spool.ack(out.lease)
                self._outgoing.remove(out)
                self.stats.published_messages += 1
                self.stats.published_items += len(out.lease.items)
                self.stats.last_publish = datetime.now(UTC)
            if any(isinstance(result, PublishRefusedError) for result in results):
                await refusals.wait()
            else:
                refusals.reset()

    async def _next_batch(self) -> None:
        """Wait for something to send (a short linger lets a batch fill), lease it, number it."""
        if self.spool.depth == 0 and not self._stopping:
            waiting = asyncio.create_task(self.spool.wait_for_items())
            stopping = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                stopping.cancel()
            if self._stopping:
                return
            await asyncio.sleep(self.config.uplink.batch_interval_s)
        for channel in CHANNEL_ORDER:
            while len(self._outgoing) < self.config.uplink.in_flight:
                lease = await self._lease(channel)
                if not lease.items:
                    break
                self._outgoing.append(await self._number(channel, lease))
        if not self._outgoing and not self._stopping:
            # Everything unleased is in flight elsewhere (cannot happen with one uplink); do not spin.
            await asyncio.sleep(self.config.uplink.batch_interval_s)

    async def _lease(self, channel: SpoolChannel) -> Lease:
        if channel == "event":  # an event is a message of its own
            return await self.spool.lease(channel, 1, MAX_MESSAGE_BYTES)
        budget = MAX_MESSAGE_BYTES - ENVELOPE_ALLOWANCE
        return await self.spool.lease(channel, self.config.uplink.batch_max, budget)

    async def _number(self, channel: SpoolChannel, lease: Lease) -> _Outgoing:
        seq = await self._seq()
        sent_at = datetime.now(UTC)
        if channel == "event":
            body = json.loads(lease.items[0].item.body)
            envelope = {
                "schema": SCHEMA_VERSION,
                "hut_id": self.hut_id,
                "boot_id": self.state.boot_id,
                "seq": seq,
                "sent_at": sent_at.isoformat(),
                "type": "event",
            }
            payload = json.dumps({**envelope, **body}, separators=(",", ":")).encode()
        else:
            payload = assemble(
                channel,
                [stored.item.body for stored in lease.items],
                hut_id=self.hut_id,
                boot_id=self.state.boot_id,
                seq=seq,
                sent_at=sent_at,
            )
        return _Outgoing(hut_topic(self.hut_id, channel), payload, lease)

    def stop(self) -> None:
        """Ask ``run`` to send what the spool holds, say offline, and return. If the broker cannot be
        reached in the time the caller allows, whatever is left simply stays spooled for the next start."""
        self._stopping = True
        self._stop.set()
