"""The InfluxDB schema: one measurement per kind, tags hut/subject/driver/device, values as fields.

The timestamp is the measurement time in ns, so the same observation written twice lands on the same
series and time and overwrites itself: that is the idempotency.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from healthhut.protocol import DeviceEvent, Observation, Status, WaveStrip

ANONYMOUS = "anonymous"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(stamp: datetime) -> int:
    # Integer arithmetic: epoch nanoseconds do not survive a round trip through float.
    delta = stamp - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _tagged(measurement: str, hut_id: str, subject: str | None, driver: str, device: str) -> Point:
    point = Point(measurement)
    for key, value in (("hut", hut_id), ("subject", subject or ANONYMOUS), ("driver", driver), ("device", device)):
        point.tag(key, value)
    return point


def observation_points(obs: Observation) -> list[Point]:
    point = _tagged(
        obs.kind.value,
        obs.hut_id,
        obs.subject.pseudonym if obs.subject else None,
        obs.device.driver,
        obs.device.device_id,
    )
    for name, quantity in sorted(obs.values.items()):
        if isinstance(quantity.value, list):
            # Lists (RR intervals) have no field type in InfluxDB; keep them as JSON text.
            point.field(name, json.dumps(quantity.value))
        else:
            point.field(name, float(quantity.value))
    point.field("flags", ",".join(obs.flags))
    point.field("fit_for_alerting", obs.fit_for_alerting)
    if obs.findings:
        point.field("findings", ",".join(obs.findings))
    point.field("obs_id", obs.id)
    point.field("clock_gateway", obs.clock == "gateway")
    return [point.time(_ns(obs.measured_at), WritePrecision.NS)]


def strip_points(strip: WaveStrip) -> list[Point]:
    """One point per sample at its real time: start + i / fs."""
    start = _ns(strip.start)
    step = 1e9 / strip.fs
    points = []
    subject = strip.subject.pseudonym if strip.subject else None
    for index, raw in enumerate(strip.samples()):
        point = _tagged(strip.kind.value, strip.hut_id, subject, strip.device.driver, strip.device.device_id)
        point.field(strip.channel, raw * strip.gain + strip.offset)
        points.append(point.time(start + round(index * step), WritePrecision.NS))
    return points


def event_points(event: DeviceEvent) -> list[Point]:
    point = Point("hut_event").tag("hut", event.hut_id).tag("event", event.event)
    if event.device is not None:
        point.tag("driver", event.device.driver).tag("device", event.device.device_id)
    point.field("count", 1.0).field("detail", json.dumps(event.detail, sort_keys=True))
    point.field("seq", float(event.seq))
    return [point.time(_ns(event.sent_at), WritePrecision.NS)]


def status_points(status: Status, received_at: datetime) -> list[Point]:
    """Stamped when the collector received it: a Last Will is composed at boot, so its own time is old."""
    point = Point("hut_status").tag("hut", status.hut_id).tag("boot", status.boot_id)
    point.field("online", 1.0 if status.state == "online" else 0.0).field("seq", float(status.seq))
    return [point.time(_ns(received_at), WritePrecision.NS)]
