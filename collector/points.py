"""The InfluxDB schema: one measurement per kind, tags hut/subject/driver/device, values as fields.

The timestamp is the measurement time in ns, so the same observation written twice lands on the same
series and time and overwrites itself: that is the idempotency.

Points are written straight as line protocol text (escaped as the InfluxDB line protocol reference
says), not through influxdb-client's ``Point``: a waveform strip is one point per sample, and building
an object per sample cost more CPU than everything else the collector does. ``tests/collector`` checks
that these lines are byte for byte what ``Point.to_line_protocol`` would produce.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

from healthhut.protocol import DeviceEvent, Observation, Status, WaveStrip

ANONYMOUS = "anonymous"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Line protocol escaping: measurement names escape commas and spaces; tag keys, tag values and field
# keys also escape equals signs; string field values escape backslashes and double quotes. Control
# characters are written as escapes, as influxdb-client does, so a value can never end its line.
_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", **_CONTROL})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", **_CONTROL})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})

FieldValue = float | int | bool | str


def ns(stamp: datetime) -> int:
    # Integer arithmetic: epoch nanoseconds do not survive a round trip through float.
    delta = stamp - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def series(measurement: str, tags: dict[str, str]) -> str:
    """The measurement and tag set, tags sorted by key as InfluxDB stores them (empty tags dropped)."""
    parts = [measurement.translate(_MEASUREMENT)]
    parts.extend(f"{key.translate(_KEY)}={_tag_value(value)}" for key, value in sorted(tags.items()) if value)
    return ",".join(parts)


def _tag_value(value: str) -> str:
    # A value ending in a backslash would escape the comma or space after it and run into the next
    # element; influxdb-client ends such a value with an (escaped) space, and so do we.
    text = value.translate(_KEY)
    return text + " " if text.endswith("\\") else text


def _float(value: float) -> str:
    # A whole number needs no ".0": without an "i" suffix line protocol reads it as a float anyway.
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def field_text(value: FieldValue) -> str:
    kind = type(value)
    if kind is float:
        return _float(value)  # type: ignore[arg-type]
    if kind is bool:  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return _float(value)
    return '"' + value.translate(_STRING) + '"'


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> str:
    return name.translate(_KEY)


def line(series_key: str, fields: dict[str, FieldValue], stamp_ns: int) -> str:
    text = ",".join([f"{_key(key)}={field_text(value)}" for key, value in sorted(fields.items())])
    return f"{series_key} {text} {stamp_ns}"


@functools.lru_cache(maxsize=65536)
def _device_series(measurement: str, hut_id: str, subject: str | None, driver: str, device: str) -> str:
    """The series of a device's readings: a hut has few, and each is built once."""
    return series(measurement, {"hut": hut_id, "subject": subject or ANONYMOUS, "driver": driver, "device": device})


def observation_lines(obs: Observation) -> list[str]:
    subject = obs.subject.pseudonym if obs.subject else None
    key = _device_series(obs.kind.value, obs.hut_id, subject, obs.device.driver, obs.device.device_id)
    fields: dict[str, FieldValue] = {}
    for name, quantity in sorted(obs.values.items()):
        # Lists (RR intervals) have no field type in InfluxDB; keep them as JSON text.
        fields[name] = json.dumps(quantity.value) if isinstance(quantity.value, list) else float(quantity.value)
    fields["flags"] = ",".join(obs.flags)
    fields["fit_for_alerting"] = obs.fit_for_alerting
    if obs.findings:
        fields["findings"] = ",".join(obs.findings)
    fields["obs_id"] = obs.id
    fields["clock_gateway"] = obs.clock == "gateway"
    return [line(key, fields, ns(obs.measured_at))]


def strip_lines(strip: WaveStrip) -> list[str]:
    """One point per sample at its real time: start + i / fs."""
    subject = strip.subject.pseudonym if strip.subject else None
    key = _device_series(strip.kind.value, strip.hut_id, subject, strip.device.driver, strip.device.device_id)
    prefix = f"{key} {strip.channel.translate(_KEY)}="
    start, step, gain, offset = ns(strip.start), 1e9 / strip.fs, strip.gain, strip.offset
    return [
        f"{prefix}{_float(raw * gain + offset)} {start + round(index * step)}"
        for index, raw in enumerate(strip.samples())
    ]


def event_lines(event: DeviceEvent) -> list[str]:
    tags = {"hut": event.hut_id, "event": event.event}
    if event.device is not None:
        tags |= {"driver": event.device.driver, "device": event.device.device_id}
    fields: dict[str, FieldValue] = {
        "count": 1.0,
        "detail": json.dumps(event.detail, sort_keys=True),
        "seq": float(event.seq),
    }
    return [line(series("hut_event", tags), fields, ns(event.at or event.sent_at))]


def status_lines(status: Status, received_at: datetime) -> list[str]:
    """Stamped when the collector received it: a Last Will is composed at boot, so its own time is old."""
    fields: dict[str, FieldValue] = {"online": 1.0 if status.state == "online" else 0.0, "seq": float(status.seq)}
    at = ns(received_at)
    health = status.health
    if health is None:
        return [line(series("hut_status", {"hut": status.hut_id, "boot": status.boot_id}), fields, at)]
    spool, uplink = health.spool, health.uplink
    fields |= {
        "spool_depth": float(spool.depth),
        "spool_bytes": float(spool.bytes),
        "spool_evicted": float(spool.evicted),
        "broker_connected": uplink.connected,
        "confirmed": float(uplink.confirmed),
        "resent": float(uplink.resent),
        "refused": float(uplink.refused),
        "devices_connected": float(sum(device.connected for device in health.devices)),
    }
    if spool.oldest_unsent_s is not None:
        fields["oldest_unsent_s"] = spool.oldest_unsent_s
    lines = [line(series("hut_status", {"hut": status.hut_id, "boot": status.boot_id}), fields, at)]
    for device in health.devices:
        tags = {"hut": status.hut_id, "driver": device.driver, "device": device.name}
        device_fields: dict[str, FieldValue] = {
            "connected": device.connected,
            "readings": float(device.readings),
            "errors": float(device.errors),
        }
        if device.last_contact is not None:
            device_fields["last_contact_age_s"] = max(0.0, (received_at - device.last_contact).total_seconds())
        lines.append(line(series("hut_device", tags), device_fields, at))
    return lines


def sequence_line(hut_id: str, event: str, first: int, last: int, count: int, at: datetime) -> str:
    """A gap in, or a duplicate of, a hut's message numbers (see ``collector.sequence``)."""
    fields: dict[str, FieldValue] = {"first": first, "last": last, "count": count}
    return line(series("hut_sequence", {"hut": hut_id, "event": event}), fields, ns(at))
