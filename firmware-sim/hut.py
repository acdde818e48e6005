"""A whole hut as the collector sees it, sans-I/O: simulated devices decoded by their real drivers, and their
readings numbered and batched into the wire protocol's messages, as a gateway would send them."""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

from healthhut.drivers.gatt import GattProfileDecoder
from healthhut.drivers.gatt.config import profile_characteristics
from healthhut.firmware_sim.faults import Fault, SerialFaultClock
from healthhut.firmware_sim.gatt_devices import GattDevice, GlucoseMeter, Send, StoredRecord
from healthhut.firmware_sim.players import CommandSink, Player
from healthhut.firmware_sim.scenarios import Scenario
from healthhut.protocol import (
    Device,
    DeviceEvent,
    Kind,
    Reading,
    Status,
    encode,
    hut_topic,
    observation_from_reading,
    strip_from_reading,
)
from healthhut.protocol.wire import MAX_BATCH, MAX_MESSAGE_BYTES, assemble

Channel = Literal["obs", "wave", "event", "status"]
# The gateway's defaults: one spot observation per kind a second, strips of 10 s.
REPORT_INTERVAL_S = 1.0
STRIP_SECONDS = 10.0
MAX_STRIPS_PER_BATCH = 64
# Room in a message for the envelope around the items.
ENVELOPE_ALLOWANCE = 1024
# With the garbage fault, every tenth data message is followed by one that is not JSON at all.
GARBAGE_EVERY = 10


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message: its topic and bytes, how many items (observations, strips) it carries, and whether it
    is retained. ``valid`` is False for the garbage a fault sends on purpose."""

    channel: Channel
    topic: str
    payload: bytes
    items: int = 0
    retain: bool = False
    valid: bool = True
    seq: int | None = None


class DeviceFeed(Protocol):
    """One simulated device with the gateway's decoder behind it."""

    device: Device

    def advance(self, elapsed: float) -> list[Reading]:
        """The readings of everything the device sent up to ``elapsed`` seconds after its start."""
        ...

    def spot(self, elapsed: float) -> list[Reading]:
        """Readings of one measurement taken now, outside the device's own schedule."""
        ...


class SerialFeed:
    """A serial device's frames through its driver's stream decoder, with the gateway's side of the line (start
    command, keep-alive) played too. Spot readings are kept to one per kind per REPORT_INTERVAL_S."""

    def __init__(
        self,
        name: str,
        player: Player,
        scenario: Scenario,
        *,
        seed: int | None = None,
        faults: Collection[Fault] = (),
    ) -> None:
        self.device = Device(driver=player.driver, device_id=name)
        self.player = player
        self.scenario = scenario
        self.rng = random.Random(seed)
        self._source = player.new_source(scenario, seed)
        self._decoder = player.new_decoder(round(STRIP_SECONDS * player.frames_per_second))
        self._spot_decoder = player.new_decoder(round(STRIP_SECONDS * player.frames_per_second))
        self._faults = SerialFaultClock(faults)
        self._frames = 0
        self._last_report: dict[Kind, float] = {}
        self._next_keepalive = 0.0
        self._host = self._source if isinstance(self._source, CommandSink) else None
        if self._host is not None:
            self._host.receive(player.serial_link.start_command)

    def advance(self, elapsed: float) -> list[Reading]:
        link = self.player.serial_link
        if self._host is not None and link.keepalive and elapsed >= self._next_keepalive:
            self._host.receive(link.keepalive)
            self._next_keepalive = elapsed + link.keepalive_interval_s
        fault = self._faults.due(elapsed)
        if fault is not None:
            self._source.override(round(self.player.frames_per_second), self.player.fault_fields[fault])
        due = int(elapsed * self.player.frames_per_second)
        data = self._source.frames(max(due - self._frames, 0))
        self._frames = max(due, self._frames)
        out: list[Reading] = []
        for reading in self._decoder.feed(data):
            if reading.strip is not None:
                out.append(reading)
                continue
            last = self._last_report.get(reading.kind)
            if last is None or elapsed - last >= REPORT_INTERVAL_S:
                self._last_report[reading.kind] = elapsed
                out.append(reading)
        return out

    def spot(self, elapsed: float) -> list[Reading]:
        readings = self._spot_decoder.feed(self.player.spot_frame(self.scenario, self.rng))
        return [reading for reading in readings if reading.strip is None]


class GattFeed:
    """A BLE device's values through the driver's GATT decoder, as the gateway receives them: features read
    first, and a glucose meter's new records fetched as the gateway does (RACP, from the last sequence
    number it saw) each time the meter wakes."""

    def __init__(self, name: str, device: GattDevice) -> None:
        self.device = Device(driver=device.driver, device_id=name)
        self.gatt = device
        self._decoder = GattProfileDecoder(tz=device.tz, characteristics=profile_characteristics(device.profile))
        for characteristic, value in device.read_values().items():
            self._decoder.on_value(characteristic, value)
        self._last_sequence: int | None = None
        self._last_report: dict[Kind, float] = {}

    @property
    def frame_errors(self) -> int:
        return self._decoder.frame_errors

    def advance(self, elapsed: float) -> list[Reading]:
        return self._decode(self.gatt.advance(elapsed), elapsed)

    def spot(self, elapsed: float) -> list[Reading]:
        # Load tests ask for readings faster than the stream interval allows; none is held back.
        self._last_report.clear()
        return self._decode([self.gatt.measure(elapsed)], elapsed)

    def _decode(self, events: Iterable[Send | StoredRecord], elapsed: float) -> list[Reading]:
        out: list[Reading] = []
        records = False
        for event in events:
            if isinstance(event, StoredRecord):
                records = True
                continue
            for reading in self._decoder.on_value(event.characteristic, event.value):
                # Time-stamped results all go; a stream (no time stamp) is kept to one a kind per interval.
                last = self._last_report.get(reading.kind)
                if reading.measured_at is None and last is not None and elapsed - last < REPORT_INTERVAL_S:
                    continue
                if reading.measured_at is None:
                    self._last_report[reading.kind] = elapsed
                out.append(reading)
        if records and isinstance(self.gatt, GlucoseMeter):
            out.extend(self._fetch_records(self.gatt))
        return out

    def _fetch_records(self, meter: GlucoseMeter) -> list[Reading]:
        last = self._last_sequence
        wanted = [r for r in meter.racp_records() if last is None or r.sequence_number > last]
        out: list[Reading] = []
        for record in wanted:
            for characteristic, value in record.values:
                out.extend(self._decoder.on_value(characteristic, value))
        out.extend(self._decoder.flush())
        if self._decoder.last_sequence_number is not None:
            self._last_sequence = max(self._decoder.last_sequence_number, last or 0)
        meter.link_closed()
        return out


@dataclass
class HutCounters:
    messages: int = 0
    items: int = 0
    garbage: int = 0


@dataclass
class _StripTimeline:
    next_start: dict[tuple[str, str], datetime] = field(default_factory=dict)


class HutSimulation:
    """One hut's messages: numbered with a per-hut sequence and the boot id, in the wire format.

    It stands in for the gateway's wire format only: it runs none of the gateway's checks (clock skew,
    limits, signal quality), so readings keep the flags their decoder gave them.

    :meth:`will` is numbered first, as the gateway numbers its Last Will once per boot; then :meth:`birth`,
    the data, and :meth:`goodbye`. With ``device_clock=False`` readings lose their device time stamps, so
    that observation ids key on the per-device sequence (load tests make many readings a second, which
    one-second device time stamps would merge).
    """

    def __init__(
        self,
        hut_id: str,
        feeds: Sequence[DeviceFeed],
        *,
        boot_id: str | None = None,
        faults: Collection[Fault] = (),
        device_clock: bool = True,
        seed: int | None = None,
    ) -> None:
        hut_topic(hut_id, "obs")  # ValueError now for a bad hut id
        self.hut_id = hut_id
        self.feeds = list(feeds)
        self.boot_id = boot_id or uuid.uuid4().hex[:16]
        self.faults = frozenset(faults)
        self.device_clock = device_clock
        self.counters = HutCounters()
        self._seq = 0
        self._device_seq: dict[str, int] = {}
        self._strips = _StripTimeline()
        self._rng = random.Random(seed)
        self._data_messages = 0
        self._spot_turn = 0

    def _next_seq(self) -> int:
        seq, self._seq = self._seq, self._seq + 1
        return seq

    def _status(self, state: Literal["online", "offline"], now: datetime) -> Outgoing:
        seq = self._next_seq()
        status = Status(hut_id=self.hut_id, boot_id=self.boot_id, seq=seq, sent_at=now, state=state)
        return Outgoing("status", hut_topic(self.hut_id, "status"), encode(status), retain=True, seq=seq)

    def will(self, now: datetime) -> Outgoing:
        """The Last Will: "offline", retained, for the broker to publish if the hut vanishes."""
        return self._status("offline", now)

    def birth(self, now: datetime) -> Outgoing:
        return self._status("online", now)

    def goodbye(self, now: datetime) -> Outgoing:
        return self._status("offline", now)

    def connected_events(self, now: datetime) -> list[Outgoing]:
        """A "connected" event per device, as the gateway sends when it first hears each one."""
        out = []
        for feed in self.feeds:
            seq = self._next_seq()
            event = DeviceEvent(
                hut_id=self.hut_id, boot_id=self.boot_id, seq=seq, sent_at=now, event="connected", device=feed.device
            )
            out.append(Outgoing("event", hut_topic(self.hut_id, "event"), encode(event), seq=seq))
        return out

    def advance(self, elapsed: float, now: datetime) -> list[Outgoing]:
        """Messages for everything every device sent up to ``elapsed`` seconds after the start."""
        return self._messages([(feed, reading) for feed in self.feeds for reading in feed.advance(elapsed)], now)

    def spots(self, count: int, elapsed: float, now: datetime) -> list[Outgoing]:
        """Messages for ``count`` spot readings, taken from the devices in turn."""
        readings: list[tuple[DeviceFeed, Reading]] = []
        # A measurement can give no reading (a value the garbage fault cut short); never spin on those.
        attempts = 0
        while len(readings) < count and self.feeds and attempts < 2 * count + len(self.feeds):
            feed = self.feeds[self._spot_turn % len(self.feeds)]
            self._spot_turn += 1
            attempts += 1
            readings.extend((feed, reading) for reading in feed.spot(elapsed)[: count - len(readings)])
        return self._messages(readings, now)

    def strips(self, elapsed: float, now: datetime) -> list[Outgoing]:
        """Messages for the waveform strips the devices recorded up to ``elapsed``, at their own pace."""
        strips = [(feed, r) for feed in self.feeds for r in feed.advance(elapsed) if r.strip is not None]
        return self._messages(strips, now)

    def _device_seq_of(self, device: Device) -> int:
        seq = self._device_seq.get(device.device_id, 0)
        self._device_seq[device.device_id] = seq + 1
        return seq

    def _messages(self, readings: list[tuple[DeviceFeed, Reading]], now: datetime) -> list[Outgoing]:
        observations: list[bytes] = []
        strips: list[bytes] = []
        for feed, as_decoded in readings:
            reading = as_decoded
            if not self.device_clock and reading.measured_at is not None:
                reading = replace(reading, measured_at=None)
            if reading.strip is not None:
                strips.append(self._strip(feed.device, reading, now))
            else:
                item = observation_from_reading(
                    reading,
                    hut_id=self.hut_id,
                    device=feed.device,
                    received_at=now,
                    device_seq=self._device_seq_of(feed.device),
                    seq_epoch=self.boot_id,
                )
                observations.append(item.model_dump_json(exclude_none=True).encode())
        out = self._batches("obs", observations, MAX_BATCH, now)
        out += self._batches("wave", strips, MAX_STRIPS_PER_BATCH, now)
        return out

    def _strip(self, device: Device, reading: Reading, now: datetime) -> bytes:
        assert reading.strip is not None
        seconds = len(reading.strip.raw) / reading.strip.fs
        key = (device.device_id, reading.strip.channel)
        # Strips of one device follow each other exactly, as the gateway lays them on its timeline.
        start = self._strips.next_start.get(key)
        by_arrival = now - timedelta(seconds=seconds)
        if start is None or abs(start - by_arrival) > timedelta(seconds=1):
            start = by_arrival
        self._strips.next_start[key] = start + timedelta(seconds=seconds)
        strip = strip_from_reading(
            reading,
            hut_id=self.hut_id,
            device=device,
            received_at=now,
            device_seq=self._device_seq_of(device),
            seq_epoch=self.boot_id,
            start=start,
        )
        return strip.model_dump_json(exclude_none=True).encode()

    def _batches(
        self, channel: Literal["obs", "wave"], items: list[bytes], limit: int, now: datetime
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        budget = MAX_MESSAGE_BYTES - ENVELOPE_ALLOWANCE
        batch: list[bytes] = []
        size = 0
        for item in items:
            if batch and (len(batch) == limit or size + len(item) + 1 > budget):
                out.extend(self._batch(channel, batch, now))
                batch, size = [], 0
            batch.append(item)
            size += len(item) + 1
        if batch:
            out.extend(self._batch(channel, batch, now))
        return out

    def _batch(self, channel: Literal["obs", "wave"], items: list[bytes], now: datetime) -> list[Outgoing]:
        seq = self._next_seq()
        payload = assemble(channel, items, hut_id=self.hut_id, boot_id=self.boot_id, seq=seq, sent_at=now)
        topic = hut_topic(self.hut_id, channel)
        out = [Outgoing(channel, topic, payload, items=len(items), seq=seq)]
        self.counters.messages += 1
        self.counters.items += len(items)
        self._data_messages += 1
        if Fault.GARBAGE in self.faults and self._data_messages % GARBAGE_EVERY == 0:
            # Not JSON: the first byte is never "{" or whitespace.
            noise = b"\xff" + self._rng.randbytes(self._rng.randint(8, 200))
            out.append(Outgoing(channel, topic, noise, valid=False))
            self.counters.garbage += 1
        return out
