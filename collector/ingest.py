"""The ingest loop: subscribe as a member of a shared subscription, validate, write, then acknowledge.

Messages are taken a **window** at a time: everything the broker has pushed, up to ``window_messages``
messages or ``window_points`` points. Each is validated on its own; the points of all the valid ones go
to the database in one write; only then are the messages acknowledged (MQTT PUBACK, sent by hand and in
arrival order, as MQTT requires). A collector that dies mid-window loses nothing: the broker redelivers.

- A message that fails validation, or is oversized, or speaks for another hut, is stored as a dead
  letter with its reason and acknowledged, so it never blocks the stream.
- A write the database refuses (4xx) is split in halves until the refused point is found; that point is
  dead-lettered and the rest of the window is stored. A message whose points the database refuses in
  more than one place is dead-lettered whole (kept entire, for replay).
- A database that is down or slow (5xx, timeouts, 429) is retried with backoff, honouring Retry-After,
  and nothing is acknowledged meanwhile: the broker stops sending once ``receive_maximum`` messages are
  unacknowledged, which bounds memory and is the backpressure.
- A hut over its message rate is neither stored nor confirmed: its gateway keeps the message in its
  spool and sends it again later.
- Every stored message's number goes into the sequence ledger, which reports gaps and duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aiomqtt

from healthhut.collector.alerting.service import AlertService
from healthhut.collector.config import CollectorConfig
from healthhut.collector.deadletters import DeadLetterStore, Refusal
from healthhut.collector.mqtt import acknowledge, enable_manual_ack, make_client
from healthhut.collector.points import event_lines, observation_lines, sequence_line, status_lines, strip_lines
from healthhut.collector.sequence import Arrival, SequenceEvent, SequenceLedger
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
from healthhut.protocol.wire import MAX_SEQ, TOKEN_PATTERN

log = logging.getLogger(__name__)

CHANNELS = ("obs", "wave", "event", "status")
T = TypeVar("T")
Outcome = Literal["stored", "dead_letter", "throttled"]


@dataclass
class IngestStats:
    messages: int = 0
    observations: int = 0
    strips: int = 0
    points: int = 0
    dead_letters: int = 0
    rejected_points: int = 0
    storage_retries: int = 0
    throttled: int = 0
    duplicates: int = 0
    gaps: int = 0
    windows: int = 0
    alert_errors: int = 0
    # Retained copies (a hut's status) handed over on subscribing: old news, stored nowhere.
    retained: int = 0


def check_identity(topic_hut: str, message: Message) -> None:
    """The hut may speak only for itself: topic, envelope and every item must name the same hut."""
    if message.hut_id != topic_hut:
        raise ProtocolError(
            "hut_mismatch", f"payload hut_id {message.hut_id!r} differs from topic hut {topic_hut!r}", "hut_id"
        )
    items: list[Observation | WaveStrip] = []
    if isinstance(message, ObservationBatch):
        items, name = list(message.observations), "observations"
    elif isinstance(message, WaveBatch):
        items, name = list(message.strips), "strips"
    for index, item in enumerate(items):
        if item.hut_id != topic_hut:
            raise ProtocolError(
                "hut_mismatch",
                f"item hut_id {item.hut_id!r} differs from topic hut {topic_hut!r}",
                f"{name}[{index}].hut_id",
            )


def lines_for(message: Message, received_at: datetime) -> list[str]:
    if isinstance(message, ObservationBatch):
        return [line for obs in message.observations for line in observation_lines(obs)]
    if isinstance(message, WaveBatch):
        return [line for strip in message.strips for line in strip_lines(strip)]
    if isinstance(message, DeviceEvent):
        return event_lines(message)
    assert isinstance(message, Status)
    return status_lines(message, received_at)


def envelope_of(payload: bytes) -> tuple[str, int] | None:
    """(boot id, seq) of a message we refused, where they can still be read, so the hut can be told.

    Only what a StoreAck can carry: anything else would fail the confirmation, and with it the window.
    """
    try:
        raw = json.loads(payload)
        boot_id, seq = raw["boot_id"], raw["seq"]
    except (ValueError, RecursionError, TypeError, KeyError):
        return None
    if not isinstance(boot_id, str) or not re.fullmatch(TOKEN_PATTERN, boot_id):
        return None
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_SEQ:
        return boot_id, seq
    return None


@dataclass
class Delivery:
    """One MQTT message on its way through a window."""

    topic: str
    payload: bytes
    retained: bool = False
    hut_id: str | None = None
    message: Message | None = None
    lines: list[str] = field(default_factory=list)
    outcome: Outcome = "stored"
    refusals: list[Refusal] = field(default_factory=list)

    def refuse(self, reason: str, location: str | None, detail: str, *, whole: bool = False) -> None:
        self.outcome = "dead_letter"
        self.lines = []
        self.refusals.append(Refusal(self.topic, self.hut_id, reason, location, detail, self.payload, whole))

    def confirmation(self) -> tuple[str, str, int] | None:
        """(hut, boot, seq) to confirm to the hut, or None (throttled, or nothing to confirm)."""
        if self.hut_id is None or self.outcome == "throttled" or self.retained:
            return None  # (a retained copy was confirmed when it was first delivered, live)
        if self.message is not None:
            return self.hut_id, self.message.boot_id, self.message.seq
        # Without a confirmation the hut would resend a poison message forever; with one it learns we
        # have it (as a dead letter) and lets it go.
        envelope = envelope_of(self.payload)
        return None if envelope is None else (self.hut_id, *envelope)


class RateLimiter:
    """A token bucket per hut."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._warned: dict[str, float] = {}

    def allow(self, hut_id: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.get(hut_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.per_s)
        allowed = tokens >= 1.0
        self._buckets[hut_id] = (tokens - 1.0 if allowed else tokens, now)
        if not allowed and now - self._warned.get(hut_id, -1e9) > 60.0:
            self._warned[hut_id] = now
            log.warning("hut %s is over %.0f messages/s; its messages wait in its spool", hut_id, self.per_s)
        return allowed


class Ingest:
    def __init__(
        self,
        config: CollectorConfig,
        writer: Writer,
        dead_letters: DeadLetterStore,
        ledger: SequenceLedger | None = None,
        alerts: AlertService | None = None,
    ) -> None:
        self.config = config
        self.writer = writer
        self.dead_letters = dead_letters
        self.ledger = ledger or SequenceLedger(config.sequence_path, config.sequence.grace_s)
        self.alerts = alerts
        self.limiter = RateLimiter(config.ingest.hut_messages_per_s, config.ingest.hut_burst)
        self.stats = IngestStats()
        self.subscribed = asyncio.Event()

    def health(self) -> dict[str, Any]:
        """Whether this collector is subscribed, and its counts so far (GET /v1/health)."""
        return {"subscribed": self.subscribed.is_set(), **dataclasses.asdict(self.stats)}

    # -- one message -------------------------------------------------------------------------------
    def prepare(self, topic: str, payload: bytes, retained: bool = False) -> Delivery:
        """Validate one message and turn it into lines; never raises."""
        delivery = Delivery(topic, payload, retained)
        try:
            delivery.hut_id, channel = parse_hut_topic(topic)
            limit = self.config.ingest.max_message_bytes
            if len(payload) > limit:
                raise ProtocolError("too_large", f"{len(payload)} bytes, more than the limit of {limit}", None)
            if not retained and not self.limiter.allow(delivery.hut_id):
                delivery.outcome = "throttled"
                return delivery
            message = decode(channel, payload)
            check_identity(delivery.hut_id, message)
            delivery.message = message
            # A retained status is an old copy handed to a new subscriber, not news.
            delivery.lines = [] if retained else lines_for(message, datetime.now(UTC))
        except ProtocolError as exc:
            delivery.refuse(exc.reason, exc.location, exc.detail)
        except Exception as exc:
            # A message must never stop the stream, even one that finds a bug in our own code.
            log.exception("unexpected error handling a message from %s", topic)
            delivery.refuse("internal_error", None, repr(exc), whole=True)
        return delivery

    async def handle(self, topic: str, payload: bytes) -> StoreAck | None:
        """Validate and store one message on its own (a window of one). Returns the confirmation for the
        hut, or None where there is nothing to confirm."""
        acks = await self.process([self.prepare(topic, payload)])
        return acks[0] if acks else None

    # -- a window ----------------------------------------------------------------------------------
    async def process(self, window: Sequence[Delivery]) -> list[StoreAck]:
        """Store a window of prepared messages; returns when all may be acknowledged, with the store
        confirmations to send the huts (one per hut, boot and outcome)."""
        self.stats.windows += 1
        await self._store([d for d in window if d.outcome == "stored"])
        await self._alert(window)
        refusals = [refusal for d in window for refusal in d.refusals]
        if refusals:
            await asyncio.to_thread(self.dead_letters.add_many, refusals)
            for refusal in refusals:
                where = f" at {refusal.location}" if refusal.location else ""
                log.warning("dead letter from %s: %s%s", refusal.topic, refusal.reason, where)
        # Dead letters count as arrived too: their number is accounted for, only their content was bad.
        arrivals = [Arrival(*confirm) for d in window if not d.retained and (confirm := d.confirmation())]
        await self._note_sequence(await asyncio.to_thread(self.ledger.record, arrivals))
        return self._account(window)

    async def _alert(self, window: Sequence[Delivery]) -> None:
        """The stored observations through the alert rules, before the window is acknowledged: a collector
        that dies first has them redelivered, and the alert store's record of what it evaluated stops a
        second alert. Alerting must never stop storage, so its own failure is logged and counted."""
        if self.alerts is None:
            return
        observations = [
            obs
            for d in window
            if d.outcome == "stored" and isinstance(d.message, ObservationBatch)
            for obs in d.message.observations
        ]
        try:
            await self.alerts.observe(observations)
        except Exception:
            self.stats.alert_errors += 1
            log.exception("alerting failed on a window of %d observation(s); they are stored", len(observations))

    def _account(self, window: Sequence[Delivery]) -> list[StoreAck]:
        confirmations: dict[tuple[str, str, str], list[int]] = {}
        for d in window:
            self.stats.dead_letters += len(d.refusals)
            if d.outcome == "throttled":
                self.stats.throttled += 1
            elif d.outcome == "stored" and d.retained:
                self.stats.retained += 1
            elif d.outcome == "stored" and d.message is not None:
                self.stats.messages += 1
                self.stats.points += len(d.lines)
                if isinstance(d.message, ObservationBatch):
                    self.stats.observations += len(d.message.observations)
                elif isinstance(d.message, WaveBatch):
                    self.stats.strips += len(d.message.strips)
            confirm = d.confirmation()
            if confirm is not None:
                hut, boot, seq = confirm
                outcome = "stored" if d.outcome == "stored" else "dead_letter"
                confirmations.setdefault((hut, boot, outcome), []).append(seq)
        return [
            StoreAck(hut_id=hut, boot_id=boot, seqs=seqs[i : i + 1000], outcome=outcome)  # type: ignore[arg-type]
            for (hut, boot, outcome), seqs in confirmations.items()
            for i in range(0, len(seqs), 1000)
        ]

    async def _store(self, deliveries: Sequence[Delivery]) -> None:
        """Write the deliveries' lines; on a refusal, halve until the refused message is found."""
        lines = [line for d in deliveries for line in d.lines]
        if not lines:
            return
        try:
            await self._write_until_done(lines)
        except WriteRejected as exc:
            if len(deliveries) == 1:
                await self._store_lines(deliveries[0], deliveries[0].lines, exc)
                return
            half = len(deliveries) // 2
            await self._store(deliveries[:half])
            await self._store(deliveries[half:])

    async def _store_lines(self, delivery: Delivery, lines: list[str], rejected: WriteRejected) -> None:
        """``lines`` of one message were refused: find the refused point by halving, dead-letter it and
        keep the rest. Refused in more than one place, the message is dead-lettered whole."""
        if len(lines) == 1:
            self.stats.rejected_points += 1
            index = delivery.lines.index(lines[0])
            delivery.refusals.append(
                Refusal(
                    delivery.topic,
                    delivery.hut_id,
                    "storage_rejected",
                    f"point {index}",
                    str(rejected),
                    lines[0].encode(),
                    whole=True,
                )
            )
            return
        half = len(lines) // 2
        failures: list[tuple[list[str], WriteRejected]] = []
        for part in (lines[:half], lines[half:]):
            try:
                await self._write_until_done(part)
            except WriteRejected as exc:
                failures.append((part, exc))
        if len(failures) == 2:
            # Both halves refused: not one bad point. Keep the whole message for replay.
            delivery.refuse("storage_rejected", None, str(failures[0][1]), whole=True)
        elif failures:
            await self._store_lines(delivery, *failures[0])

    async def _write_until_done(self, lines: list[str]) -> None:
        delay = 0.2
        while True:
            try:
                await self.writer.write(lines)
                return
            except StorageUnavailable as exc:
                # Not acknowledging is the backpressure: the broker holds the rest for us.
                self.stats.storage_retries += 1
                wait = max(delay, exc.retry_after or 0.0) * random.uniform(0.8, 1.2)
                log.warning("storage unavailable (%s); retrying in %.1f s", exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)

    async def _note_sequence(self, events: list[SequenceEvent]) -> None:
        if not events:
            return
        for event in events:
            if event.event == "gap":
                self.stats.gaps += 1
                log.warning("hut %s: messages %d-%d never arrived", event.hut_id, event.first, event.last)
            elif event.event == "duplicate":
                self.stats.duplicates += event.count
            else:
                log.warning("hut %s: %s of message(s) %d-%d", event.hut_id, event.event, event.first, event.last)
        lines = [sequence_line(e.hut_id, e.event, e.first, e.last, e.count, e.at) for e in events]
        with contextlib.suppress(WriteRejected):  # the ledger keeps them in any case
            await self._write_until_done(lines)

    async def sweep_forever(self) -> None:
        """Report gaps older than the grace time, every ``sweep_interval_s``."""
        while True:
            await asyncio.sleep(self.config.sequence.sweep_interval_s)
            await self._note_sequence(await asyncio.to_thread(self.ledger.sweep))

    # -- the MQTT side -----------------------------------------------------------------------------
    def _announcement(self, state: str) -> bytes:
        status = CollectorStatus(client_id=self.config.mqtt.client_id, state=state, at=datetime.now(UTC))  # type: ignore[arg-type]
        return encode(status)

    def _client(self) -> aiomqtt.Client:
        mqtt = self.config.mqtt
        will = aiomqtt.Will(COLLECTORS_STATUS, self._announcement("offline"), qos=1, retain=True)
        client = make_client(mqtt, mqtt.client_id, will=will, receive_maximum=mqtt.receive_maximum)
        enable_manual_ack(client)
        # A window confirms to each of its huts at once; that is expected, not a stuck publisher.
        client.pending_calls_threshold = 4 * self.config.ingest.window_messages
        return client

    async def run(self) -> None:
        """Consume until cancelled; reconnect with backoff when the broker goes away."""
        mqtt = self.config.mqtt
        delay = 0.5
        sweeper = asyncio.create_task(self.sweep_forever(), name="sequence-sweep")
        try:
            while True:
                try:
                    async with self._client() as client:
                        for channel in CHANNELS:
                            await client.subscribe(shared(hut_filter(channel), mqtt.share_group), qos=1)  # type: ignore[arg-type]
                        await client.publish(COLLECTORS_STATUS, self._announcement("online"), qos=1, retain=True)
                        self.subscribed.set()
                        delay = 0.5
                        log.info("collector %s subscribed at %s:%d", mqtt.client_id, mqtt.host, mqtt.port)
                        await self._consume(client)
                except aiomqtt.MqttError as exc:
                    self.subscribed.clear()
                    log.warning("broker %s:%d unavailable (%s); retrying in %.1f s", mqtt.host, mqtt.port, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _consume(self, client: aiomqtt.Client) -> None:
        """One task reads messages into a bounded queue, validating each as it arrives; this one takes
        them a window at a time. Validation is most of the CPU a message costs, and doing it on arrival
        fills the time this task spends waiting on the database and the broker for the window before."""
        settings = self.config.ingest
        queue: asyncio.Queue[tuple[aiomqtt.Message, Delivery]] = asyncio.Queue(maxsize=settings.window_messages)

        async def read() -> None:
            async for message in client.messages:
                await queue.put((message, self._prepare_message(message)))
            raise aiomqtt.MqttError("message stream ended")

        reader = asyncio.create_task(read(), name="mqtt-read")
        try:
            while True:
                first = await self._take(queue, reader)
                taken, deliveries = [first[0]], [first[1]]
                points = len(first[1].lines)
                while not queue.empty() and len(taken) < settings.window_messages and points < settings.window_points:
                    message, delivery = queue.get_nowait()
                    taken.append(message)
                    deliveries.append(delivery)
                    points += len(delivery.lines)
                acks = await self.process(deliveries)
                # Tell the huts their items may leave their spools (the broker's PUBACK to a hut is not
                # enough: see protocol.wire.StoreAck), concurrently: one broker round trip, not one per hut.
                # Only then acknowledge the messages: a collector killed in between has its messages
                # redelivered, stores them again (idempotently) and confirms again, where the other order
                # would leave stored messages unconfirmed until each hut's own resend timeout.
                await asyncio.gather(*(client.publish(hut_topic(a.hut_id, "ack"), encode(a), qos=1) for a in acks))
                for message in taken:
                    acknowledge(client, message)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader

    @staticmethod
    async def _take(queue: asyncio.Queue[T], reader: asyncio.Task[None]) -> T:
        """The next message; if the reader has failed (broker gone), its error."""
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():  # the reader failed, or the collector is stopping: no task left waiting
                getter.cancel()
        if getter.done():
            return getter.result()
        reader.result()  # raises the reader's error
        raise aiomqtt.MqttError("message stream ended")

    def _prepare_message(self, message: aiomqtt.Message) -> Delivery:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        return self.prepare(str(message.topic), payload, bool(message.retain))
