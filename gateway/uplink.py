"""Forwarding to the broker: what the spool holds goes out in batches over MQTT QoS 1.

A batch is leased from the spool, numbered (the per-hut sequence number is on disk first) and published;
its items leave the spool only when the collector confirms it stored them (a StoreAck on
``hh/v1/huts/{hut_id}/ack``), which is stronger than the broker's PUBACK: mosquitto keeps its state in
periodic snapshots and forgets shared subscriptions on a restart. Until confirmed, the very same bytes
are resent (after a reconnect, when a collector announces it has resubscribed, or when no confirmation
comes in time), so the collector can tell a resend from new data. A message the broker refuses is kept
and retried. The birth record is retained and the Last Will says offline, both with the boot id.
Reconnects back off exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from healthhut.gateway.backoff import Backoff
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.mqtt import PubackWatch, PublishRefusedError
from healthhut.gateway.spool import Lease, Spool
from healthhut.gateway.spool.base import SpoolChannel
from healthhut.gateway.state import GatewayState
from healthhut.protocol import ProtocolError, Status, decode_ack, decode_collector_status, encode, hut_topic
from healthhut.protocol.topics import COLLECTORS_STATUS
from healthhut.protocol.wire import MAX_BATCH, MAX_MESSAGE_BYTES, MAX_STRIPS, SCHEMA_VERSION, HutHealth, assemble

log = logging.getLogger(__name__)

# Room left in a message for the envelope, so that a batch never exceeds what the collector accepts.
ENVELOPE_ALLOWANCE = 1024
# Vitals first, then what happened to the devices, then waveforms.
CHANNEL_ORDER: tuple[SpoolChannel, ...] = ("obs", "event", "wave")


class TlsFilesError(Exception):
    """The [mqtt.tls] files cannot be loaded (missing, unreadable, or a key that is not the certificate's)."""


@dataclass
class UplinkStats:
    published_messages: int = 0
    stored_messages: int = 0
    stored_items: int = 0
    resent: int = 0
    refused: int = 0
    connects: int = 0
    last_error: str | None = None
    connected: bool = False
    last_stored: datetime | None = None


@dataclass
class _Outgoing:
    """A numbered message and the spool lease it delivers. It is resent, as is, until the collector
    says it is stored; ``sent`` is when the broker last accepted it (None: to be published)."""

    seq: int
    topic: str
    payload: bytes
    lease: Lease
    sent: float | None = None


class Uplink:
    def __init__(self, config: GatewayConfig, state: GatewayState, spool: Spool) -> None:
        self.config = config
        self.state = state
        self.spool = spool
        self.hut_id = config.hut_id
        self.stats = UplinkStats()
        # The collector's latest "please measure again" commands, newest last, for the kiosk to show.
        self.prompts: deque[tuple[datetime, dict[str, Any]]] = deque(maxlen=20)
        # Takes each copy of the hut's roster (retained, from the collector); None: not subscribed.
        self.on_roster: Callable[[bytes], object] | None = None
        # The hut's health for the retained status (see status.py); None: the status says online only.
        self.health: Callable[[], Awaitable[HutHealth]] | None = None
        self._outgoing: dict[int, _Outgoing] = {}
        self._stored: list[int] = []
        self._wake = asyncio.Event()
        self._stopping = False

    async def _seq(self) -> int:
        # The number is on disk before it is used (an fsync, so off the event loop).
        return await asyncio.to_thread(self.state.next_hut_seq)

    async def _status(self, state: str) -> bytes:
        health = await self.health() if self.health is not None and state == "online" else None
        status = Status(
            hut_id=self.hut_id,
            boot_id=self.state.boot_id,
            seq=await self._seq(),
            sent_at=datetime.now(UTC),
            state=state,  # type: ignore[arg-type]
            health=health,
        )
        return encode(status)

    async def _keep_status(self, puback: PubackWatch) -> None:
        """Republish the retained status with fresh health every ``status_interval_s``."""
        topic = hut_topic(self.hut_id, "status")
        while True:
            await asyncio.sleep(self.config.uplink.status_interval_s)
            try:
                await puback.publish(topic, await self._status("online"), retain=True)
            except PublishRefusedError as exc:
                self.stats.refused += 1
                log.error("%s", exc)

    @property
    def in_flight(self) -> int:
        """Messages sent or to be sent that the collector has not yet confirmed."""
        return len(self._outgoing)

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
                tls = self._tls_context()
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
                    tls_context=tls,
                    timeout=5,
                ) as client:
                    self.stats.connects += 1
                    self.stats.connected = True
                    backoff.reset()
                    log.info("connected to broker %s:%d", mqtt.host, mqtt.port)
                    await client.subscribe(hut_topic(self.hut_id, "ack"), qos=1)
                    await client.subscribe(hut_topic(self.hut_id, "cmd"), qos=1)
                    if self.on_roster is not None:
                        await client.subscribe(hut_topic(self.hut_id, "roster"), qos=1)
                    await client.subscribe(COLLECTORS_STATUS, qos=1)
                    puback = PubackWatch(client)
                    try:
                        await puback.publish(status_topic, await self._status("online"), retain=True)
                    except PublishRefusedError as exc:
                        self.stats.refused += 1
                        log.error("%s; readings stay in the spool until the broker accepts them", exc)
                    acks = asyncio.create_task(self._receive_acks(client), name="uplink-acks")
                    status = asyncio.create_task(self._keep_status(puback), name="uplink-status")
                    try:
                        await self._pump(puback, acks)
                    finally:
                        for task in (acks, status):
                            task.cancel()
                            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                                await task
                    await puback.publish(status_topic, await self._status("offline"), retain=True)
                    return
            except (aiomqtt.MqttError, PublishRefusedError, TlsFilesError) as exc:
                self.stats.connected = False
                self.stats.last_error = str(exc)
                # Whatever was sent on the lost connection is sent again, as the very same bytes.
                for out in self._outgoing.values():
                    out.sent = None
                delay = backoff.next_delay()
                log.warning("broker %s:%d unavailable (%s); retrying in %.1f s", mqtt.host, mqtt.port, exc, delay)
                await asyncio.sleep(delay)

    def _tls_context(self) -> ssl.SSLContext | None:
        """The hut's TLS context, made again at each attempt: a hut started before it was provisioned keeps
        its readings in the spool and connects once the files are in place, without a restart."""
        tls = self.config.mqtt.tls
        if tls is None:
            return None
        try:
            return tls.ssl_context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise TlsFilesError(
                f"cannot load the TLS files ({exc}); is the hut provisioned? (hut-gateway provision, then doctor)"
            ) from exc

    async def _receive_acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.topic.matches(COLLECTORS_STATUS):
                self._collector_status(bytes(message.payload))
                continue
            if message.topic.matches(hut_topic(self.hut_id, "cmd")):
                self._command(bytes(message.payload))
                continue
            if message.topic.matches(hut_topic(self.hut_id, "roster")):
                if self.on_roster is not None:  # written to disk with an fsync, so off the loop
                    await asyncio.to_thread(self.on_roster, bytes(message.payload))
                continue
            try:
                ack = decode_ack(bytes(message.payload))
            except ProtocolError as exc:
                log.warning("ignoring a malformed store acknowledgement: %s", exc)
                continue
            if ack.hut_id != self.hut_id or ack.boot_id != self.state.boot_id:
                continue  # for an earlier boot: those items are being resent under new numbers
            self._stored.extend(ack.seqs)
            self._wake.set()

    def _command(self, payload: bytes) -> None:
        """A command from the collector: so far "please measure again", kept for the kiosk to show."""
        try:
            command = json.loads(payload)
            kind, reason = str(command["kind"]), str(command["reason"])
            if command.get("type") != "remeasure":
                raise ValueError(f"unknown command type {command.get('type')!r}")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed command from the collector: %s", exc)
            return
        # The command carries no value and no identifier; kind and reason are safe to log.
        log.info("the collector asks for a new %s measurement (%s)", kind, reason)
        self.prompts.append((datetime.now(UTC), command))

    def _collector_status(self, payload: bytes) -> None:
        try:
            status = decode_collector_status(payload)
        except ProtocolError as exc:
            log.warning("ignoring a malformed collector status: %s", exc)
            return
        if status.state == "online":
            # A collector has just (re)subscribed: what it may have missed goes again now, not at the timeout.
            for out in self._outgoing.values():
                out.sent = None
            self._wake.set()

    async def _pump(self, puback: PubackWatch, acks: asyncio.Task[None]) -> None:
        settings = self.config.uplink
        refusals = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        loop = asyncio.get_running_loop()
        while True:
            if acks.done():
                acks.result()  # the connection is gone: raise its error and reconnect
            await self._release_stored()
            if self._stopping and not self._outgoing and self.spool.depth == 0:
                return
            await self._fill_window()
            unsent = [out for out in self._outgoing.values() if out.sent is None]
            if unsent:
                results = await asyncio.gather(
                    *(puback.publish(out.topic, out.payload) for out in unsent), return_exceptions=True
                )
                refused = False
                for out, result in zip(unsent, results, strict=True):
                    if isinstance(result, PublishRefusedError):
                        refused = True
                        self.stats.refused += 1
                        self.stats.last_error = str(result)
                        # Usually the broker's ACL and this hut's certificate disagree: keep it, say so loudly.
                        log.error("%s; keeping it and retrying", result)
                    elif isinstance(result, BaseException):
                        raise result
                    else:
                        out.sent = loop.time()
                        self.stats.published_messages += 1
                if refused:
                    await refusals.wait()
                    continue
                refusals.reset()
            await self._wait_for_work(acks)

    async def _release_stored(self) -> None:
        """Items the collector confirmed leave the spool for good."""
        stored, self._stored = self._stored, []
        for seq in stored:
            out = self._outgoing.pop(seq, None)
            if out is None:
                continue  # a confirmation of a resend that was already confirmed
            await self.spool.ack(out.lease)
            self.stats.stored_messages += 1
            self.stats.stored_items += len(out.lease.items)
            self.stats.last_stored = datetime.now(UTC)

    async def _fill_window(self) -> None:
        for channel in CHANNEL_ORDER:
            while len(self._outgoing) < self.config.uplink.in_flight:
                lease = await self._lease(channel)
                if not lease.items:
                    break
                out = await self._number(channel, lease)
                self._outgoing[out.seq] = out

    async def _wait_for_work(self, acks: asyncio.Task[None]) -> None:
        """Until a confirmation arrives, the window has room for spooled items, or a resend is due."""
        loop = asyncio.get_running_loop()
        timeout = self.config.uplink.store_ack_timeout_s
        sent = [out.sent for out in self._outgoing.values() if out.sent is not None]
        due = min(sent) + timeout - loop.time() if sent else None
        waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self._wake.wait()), acks}  # type: ignore[arg-type]
        if len(self._outgoing) < self.config.uplink.in_flight and not self._stopping:
            waits.add(asyncio.ensure_future(self._linger_then_items()))
        try:
            await asyncio.wait(
                waits, timeout=due if due is None else max(due, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waits:
                if waiter is not acks:
                    waiter.cancel()
        self._wake.clear()
        now = loop.time()
        for out in self._outgoing.values():
            if out.sent is not None and now - out.sent >= timeout:
                # No word from the collector: send it again (storing it twice is harmless).
                log.warning("no store confirmation for message %d after %.0f s; sending it again", out.seq, timeout)
                out.sent = None
                self.stats.resent += 1

    async def _linger_then_items(self) -> None:
        await self.spool.wait_for_items()
        # A short linger lets a batch fill instead of sending each reading alone.
        await asyncio.sleep(self.config.uplink.batch_interval_s)

    async def _lease(self, channel: SpoolChannel) -> Lease:
        if channel == "event":  # an event is a message of its own
            return await self.spool.lease(channel, 1, MAX_MESSAGE_BYTES)
        budget = MAX_MESSAGE_BYTES - ENVELOPE_ALLOWANCE
        most = min(self.config.uplink.batch_max, MAX_STRIPS if channel == "wave" else MAX_BATCH)
        return await self.spool.lease(channel, most, budget)

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
        return _Outgoing(seq, hut_topic(self.hut_id, channel), payload, lease)

    def stop(self) -> None:
        """Ask ``run`` to send what the spool holds, say offline, and return. If that cannot finish in the
        time the caller allows, whatever is left simply stays spooled for the next start."""
        self._stopping = True
        self._wake.set()
