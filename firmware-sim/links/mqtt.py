"""MQTT as a whole hut: each simulated hut is one aiomqtt client that publishes its HutSimulation's messages
(QoS 1, retained birth record, Last Will), and counts the collector's store acknowledgements."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from healthhut.firmware_sim.errors import LinkError
from healthhut.firmware_sim.hut import HutSimulation, Outgoing
from healthhut.protocol import ProtocolError, decode_ack, hut_topic

RECONNECT_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class Broker:
    """Where to publish: host and port, and TLS (a CA to trust, and this client's certificate and key)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive: int = 30
    # A broker that neither accepts nor refuses within this time counts as unreachable. (A TLS 1.3 broker
    # that wants a client certificate says so only after the handshake, which paho does not notice.)
    connect_timeout: float = 10.0

    @staticmethod
    def split(text: str, tls: bool = False) -> tuple[str, int]:
        """``host``, ``host:port`` or ``[v6]:port`` as (host, port); the port defaults to 1883, or 8883 with TLS."""
        default = 8883 if tls else 1883
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest.removeprefix(":") or str(default)
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host, port = text, str(default)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not HOST or HOST:PORT")
        return host, int(port)

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS); LinkError naming a file that cannot be loaded."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None:
                context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise LinkError("mqtt", self.describe(), f"TLS files: {exc}") from exc
        return context

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.uses_tls else 'mqtt'}://{host}:{self.port}"


@dataclass
class MqttCounters:
    """What the huts of one run have done, for progress lines and the final summary."""

    huts: int = 0
    connected: int = 0
    messages: int = 0
    items: int = 0
    garbage: int = 0
    errors: int = 0
    acknowledged: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class HutRun:
    """How one hut plays: for how long, how often it sends a batch, and (for load) its reading rate.

    Without ``rate`` the devices keep their own pace; with it, the hut sends ``rate`` spot readings a
    second (and, with ``waves``, its devices' strips too). ``duration`` None runs until cancelled.
    """

    duration: float | None = None
    batch_interval: float = 1.0
    rate: float | None = None
    waves: bool = False


async def run_hut(
    sim: HutSimulation,
    broker: Broker,
    run: HutRun,
    counters: MqttCounters,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Publish one hut's messages until the run ends. LinkError if the broker cannot be reached at the start;
    a connection lost later is counted as an error and made again (what the hut makes meanwhile waits)."""
    await _HutPublisher(sim, broker, run, counters, clock).run()


class _HutPublisher:
    def __init__(
        self,
        sim: HutSimulation,
        broker: Broker,
        run: HutRun,
        counters: MqttCounters,
        clock: Callable[[], datetime],
    ) -> None:
        self.sim = sim
        self.broker = broker
        self.hut_run = run
        self.counters = counters
        self.clock = clock
        self.ticks = 0
        self.produced = 0
        self.started = 0.0

    async def run(self) -> None:
        sim, broker, counters = self.sim, self.broker, self.counters
        # One Last Will per boot, numbered once, as the gateway does: reconnecting burns no sequence number.
        will_message = sim.will(self.clock())
        will = aiomqtt.Will(will_message.topic, will_message.payload, qos=1, retain=True)
        tls = broker.ssl_context()
        counters.huts += 1
        self.started = asyncio.get_running_loop().time()
        first = True
        while True:
            try:
                async with aiomqtt.Client(
                    broker.host,
                    broker.port,
                    identifier=f"hut-sim-{sim.hut_id}-{sim.boot_id}",
                    username=broker.username,
                    password=broker.password,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    will=will,
                    keepalive=broker.keepalive,
                    tls_context=tls,
                    timeout=broker.connect_timeout,
                ) as client:
                    await self._session(client, first)
                    return
            except aiomqtt.MqttError as exc:
                counters.errors += 1
                counters.last_error = str(exc)
                if first:
                    raise LinkError("mqtt", broker.describe(), f"{exc}{self._hint(exc)}") from exc
                await asyncio.sleep(RECONNECT_DELAY_S)
            finally:
                first = False

    def _hint(self, exc: aiomqtt.MqttError) -> str:
        if self.broker.uses_tls and self.broker.cert_file is None and "timed out" in str(exc):
            return " (a TLS broker that wants a client certificate, --cert and --key, looks like this too)"
        return ""

    async def _session(self, client: aiomqtt.Client, first: bool) -> None:
        sim, counters = self.sim, self.counters
        counters.connected += 1
        acks = asyncio.create_task(_count_acks(client, sim.hut_id, sim.boot_id, counters))
        try:
            await _publish(client, sim.birth(self.clock()), counters)
            if first:
                for event in sim.connected_events(self.clock()):
                    await _publish(client, event, counters)
            while (message_batch := await self._next_tick()) is not None:
                for message in message_batch:
                    await _publish(client, message, counters)
        finally:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(5):
                    await _publish(client, sim.goodbye(self.clock()), counters)
            acks.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await acks
            counters.connected -= 1

    async def _next_tick(self) -> list[Outgoing] | None:
        """The messages of the next batch interval, when it comes; None when the run is over."""
        run = self.hut_run
        if run.duration is not None and self.ticks * run.batch_interval >= run.duration:
            return None
        self.ticks += 1
        at = self.ticks * run.batch_interval
        if run.duration is not None:
            at = min(at, run.duration)
        # Paced by the clock: a hut that falls behind catches up rather than drifting.
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self.started + at - loop.time()))
        now = self.clock()
        if run.rate is None:
            return self.sim.advance(at, now)
        due = round(run.rate * at) - self.produced
        self.produced += due
        return self.sim.spots(due, at, now) + (self.sim.strips(at, now) if run.waves else [])


async def _publish(client: aiomqtt.Client, message: Outgoing, counters: MqttCounters) -> None:
    await client.publish(message.topic, message.payload, qos=1, retain=message.retain)
    if not message.valid:
        counters.garbage += 1
    elif message.channel in ("obs", "wave"):
        counters.messages += 1
        counters.items += message.items


async def _count_acks(client: aiomqtt.Client, hut_id: str, boot_id: str, counters: MqttCounters) -> None:
    """The collector's store acknowledgements for this boot of the hut (none if no collector runs)."""
    await client.subscribe(hut_topic(hut_id, "ack"), qos=1)
    async for message in client.messages:
        try:
            ack = decode_ack(bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b"")
        except ProtocolError:
            continue
        if ack.hut_id == hut_id and ack.boot_id == boot_id:
            counters.acknowledged += len(ack.seqs)


async def report_progress(counters: MqttCounters, note: Callable[[str], None], every: float) -> None:
    """A progress line every ``every`` seconds: rates since the previous line, and totals."""
    loop = asyncio.get_running_loop()
    started = last_at = loop.time()
    last_messages = last_items = 0
    while True:
        await asyncio.sleep(every)
        now = loop.time()
        span = max(now - last_at, 1e-9)
        note(
            f"{now - started:6.0f} s  {counters.connected}/{counters.huts} huts connected  "
            f"{(counters.messages - last_messages) / span:8.1f} messages/s  "
            f"{(counters.items - last_items) / span:8.1f} readings/s  "
            f"{counters.messages} messages  {counters.items} readings  {counters.errors} errors  "
            f"{counters.acknowledged} acknowledged"
        )
        last_at, last_messages, last_items = now, counters.messages, counters.items
