"""The ingest loop: subscribe as a member of a shared subscription, validate, write, then acknowledge.

A message is acknowledged (MQTT PUBACK, sent by hand) only after its points are written, so a collector
that dies mid-write loses nothing: the broker redelivers. A message that fails validation is stored as
a dead letter and acknowledged, so it never blocks the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt
from influxdb_client.client.write.point import Point
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from healthhut.collector.config import CollectorConfig
from healthhut.collector.deadletters import DeadLetterStore
from healthhut.collector.mqtt import acknowledge, enable_manual_ack
from healthhut.collector.points import event_points, observation_points, status_points, strip_points
from healthhut.collector.storage import StorageUnavailable, Writer, WriteRejected
from healthhut.protocol import (
    CollectorStatus,
    DeviceEvent,
    Message,
    Observation,
    ObservationBatch,
    ProtocolError,
    Status,
    StoreAck,
    WaveBatch,
    WaveStrip,
    decode,
    encode,
    hut_filter,
    hut_topic,
    parse_hut_topic,
    shared,
)
from healthhut.protocol.topics import COLLECTORS_STATUS

log = logging.getLogger(__name__)

CHANNELS = ("obs", "wave", "event", "status")


@dataclass
class IngestStats:
    messages: int = 0
    observations: int = 0
    strips: int = 0
    points: int = 0
    dead_letters: int = 0
    storage_retries: int = 0


def check_identity(topic_hut: str, message: Message) -> None:
    """The hut may speak only for itself: topic, envelope and every item must name the same hut."""
    if message.hut_id != topic_hut:
        raise ProtocolError(
            "hut_mismatch", f"payload hut_id {message.hut_id!r} differs from topic hut {topic_hut!r}", "hut_id"
        )
    items: list[Observation | WaveStrip] = []
    if isinstance(message, ObservationBatch):
        items, field = list(message.observations), "observations"
    elif isinstance(message, WaveBatch):
        items, field = list(message.strips), "strips"
    for index, item in enumerate(items):
        if item.hut_id != topic_hut:
            raise ProtocolError(
                "hut_mismatch",
                f"item hut_id {item.hut_id!r} differs from topic hut {topic_hut!r}",
                f"{field}[{index}].hut_id",
            )


def confirmation(hut_id: str | None, payload: bytes, outcome: str) -> StoreAck | None:
    """A StoreAck for a message we refused, where its hut, boot and number can still be read.

    Without one the hut would resend a poison message forever; with one, the hut learns that we have it
    (as a dead letter) and lets it go.
    """
    if hut_id is None:
        return None
    try:
        raw = json.loads(payload)
        return StoreAck(hut_id=hut_id, boot_id=raw["boot_id"], seqs=[raw["seq"]], outcome=outcome)  # type: ignore[arg-type]
    except (ValueError, RecursionError, TypeError, KeyError, ValidationError):
        return None


def points_for(message: Message, received_at: datetime) -> list[Point]:
    if isinstance(message, ObservationBatch):
        return [p for obs in message.observations for p in observation_points(obs)]
    if isinstance(message, WaveBatch):
        return [p for strip in message.strips for p in strip_points(strip)]
    if isinstance(message, DeviceEvent):
        return event_points(message)
    assert isinstance(message, Status)
    return status_points(message, received_at)


class Ingest:
    def __init__(self, config: CollectorConfig, writer: Writer, dead_letters: DeadLetterStore) -> None:
        self.config = config
        self.writer = writer
        self.dead_letters = dead_letters
        self.stats = IngestStats()
        self.subscribed = asyncio.Event()

    async def handle(self, topic: str, payload: bytes) -> StoreAck | None:
        """Validate and store one message. Returns when it may be acknowledged, with the confirmation to
        send the hut (None where there is no hut or message number to confirm)."""
        hut_id: str | None = None
        try:
            hut_id, channel = parse_hut_topic(topic)
            message = decode(channel, payload)
            check_identity(hut_id, message)
            points = points_for(message, datetime.now(UTC))
        except ProtocolError as exc:
            await self._dead_letter(topic, hut_id, exc.reason, exc.location, exc.detail, payload)
            return confirmation(hut_id, payload, "dead_letter")
        except Exception as exc:
            # A message must never stop the stream, even one that finds a bug in our own code.
            log.exception("unexpected error handling a message from %s", topic)
            await self._dead_letter(topic, hut_id, "internal_error", None, repr(exc), payload, whole=True)
            return confirmation(hut_id, payload, "dead_letter")
        try:
            await self._write_until_done(points)
        except WriteRejected as exc:
            await self._dead_letter(topic, hut_id, "storage_rejected", None, str(exc), payload, whole=True)
            return confirmation(hut_id, payload, "dead_letter")
        self.stats.messages += 1
        self.stats.points += len(points)
        if isinstance(message, ObservationBatch):
            self.stats.observations += len(message.observations)
        elif isinstance(message, WaveBatch):
            self.stats.strips += len(message.strips)
        return StoreAck(hut_id=message.hut_id, boot_id=message.boot_id, seqs=[message.seq], outcome="stored")

    async def _write_until_done(self, points: list[Point]) -> None:
        delay = 0.2
        while True:
            try:
                await self.writer.write(points)
                return
            except StorageUnavailable as exc:
                # Not acknowledging is the backpressure: the broker holds the rest for us.
                self.stats.storage_retries += 1
                log.warning("storage unavailable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _dead_letter(
        self,
        topic: str,
        hut_id: str | None,
        reason: str,
        location: str | None,
        detail: str,
        payload: bytes,
        *,
        whole: bool = False,
    ) -> None:
        """Keep the refused message. ``whole``: a valid message we failed to store is kept entire, so that
        it can be replayed; a malformed one only up to the size cap."""
        self.stats.dead_letters += 1
        log.warning("dead letter from %s: %s%s", topic, reason, f" at {location}" if location else "")
        await asyncio.to_thread(
            self.dead_letters.add,
            topic=topic,
            hut_id=hut_id,
            reason=reason,
            location=location,
            detail=detail,
            payload=payload,
            whole=whole,
        )

    def _announcement(self, state: str) -> bytes:
        status = CollectorStatus(client_id=self.config.mqtt.client_id, state=state, at=datetime.now(UTC))  # type: ignore[arg-type]
        return encode(status)

    async def run(self) -> None:
        """Consume until cancelled; reconnect with backoff when the broker goes away."""
        mqtt = self.config.mqtt
        delay = 0.5
        while True:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            properties.ReceiveMaximum = mqtt.receive_maximum
            client = aiomqtt.Client(
                mqtt.host,
                mqtt.port,
                identifier=mqtt.client_id,
                will=aiomqtt.Will(COLLECTORS_STATUS, self._announcement("offline"), qos=1, retain=True),
                username=mqtt.username,
                password=mqtt.password,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=properties,
                keepalive=mqtt.keepalive,
                tls_context=mqtt.tls.ssl_context() if mqtt.tls else None,
                timeout=10,
            )
            enable_manual_ack(client)
            try:
                async with client:
                    for channel in CHANNELS:
                        await client.subscribe(shared(hut_filter(channel), mqtt.share_group), qos=1)  # type: ignore[arg-type]
                    await client.publish(COLLECTORS_STATUS, self._announcement("online"), qos=1, retain=True)
                    self.subscribed.set()
                    delay = 0.5
                    log.info("collector %s subscribed at %s:%d", mqtt.client_id, mqtt.host, mqtt.port)
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        confirmed = await self.handle(str(message.topic), payload)
                        acknowledge(client, message)
                        if confirmed is not None:
                            # Tells the hut its items may leave its spool (the broker's PUBACK to the hut
                            # is not enough: see protocol.wire.StoreAck).
                            await client.publish(hut_topic(confirmed.hut_id, "ack"), encode(confirmed), qos=1)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                log.warning("broker %s:%d unavailable (%s); retrying in %.1f s", mqtt.host, mqtt.port, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
