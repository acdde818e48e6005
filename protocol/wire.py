"""The wire contract between gateway and collector: versioned envelopes of observations and strips.

Every message names its schema version, the hut, the gateway's boot id and a per-hut sequence number.
:func:`decode` turns bytes into a validated message or raises :class:`ProtocolError` saying what is
wrong and where.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import reprlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AllowInfNan,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from healthhut.protocol.errors import ProtocolError, field_path, path_text
from healthhut.protocol.reading import Reading
from healthhut.protocol.topics import HUT_ID_PATTERN, Channel
from healthhut.protocol.vocabulary import KINDS, Finding, Flag, Kind, value_problem
from healthhut.protocol.waveform import MAX_SAMPLES, pack_samples, unpack_samples

SCHEMA_VERSION = 1
# mosquitto's default message_size_limit is far larger; this bound keeps one hut from costing the
# collector more than a quarter MiB of parsing per message.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_BATCH = 500
MAX_STRIPS = 64
# Message numbers end up as SQLite INTEGERs (the collector's sequence ledger, the gateway's spool).
MAX_SEQ = 2**63 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

HutId = Annotated[str, StringConstraints(pattern=HUT_ID_PATTERN)]
TOKEN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
Reason = Annotated[str, StringConstraints(max_length=200)]
ObservationId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


# InfluxDB stores int64 nanoseconds (1677..2262); a device clock gone wild must not poison a batch. The
# bounds are pydantic's own (compiled) checks: a Python validator per time cost a fifth of decoding a batch.
StorableTime = Annotated[AwareDatetime, Field(ge=EARLIEST, le=LATEST)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Device(_Model):
    """Which device made a reading: the driver, and the device's own stable identity."""

    driver: Token
    device_id: Token
    model: str | None = Field(default=None, max_length=128)


ClinicalFlag = Literal["hypercapnic_respiratory_failure", "pregnancy", "diabetes", "hypertension_treated"]


class Subject(_Model):
    """Who was measured, as a pseudonym only (HMAC of the resident id), never a name or an id number.

    ``age_band`` at the time of the reading: completed months under one year ("7m"), completed years
    under eighteen ("4y"), then decades ("70-79y", "80+y"). ``clinical`` holds the profile flags that
    change the alert rules (SpO2 scale 2 for hypercapnic respiratory failure, and so on).
    """

    pseudonym: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    age_band: str | None = Field(default=None, max_length=16)
    sex: Literal["female", "male", "unknown"] = "unknown"
    clinical: list[ClinicalFlag] = Field(default_factory=list, max_length=4)


# JSON has numbers, booleans and strings, and a hut's software writes each as what it is: "97" for a number,
# 1 for true or 5.0 for a count is a malformed message, refused, not one to repair (pydantic's lax mode would).
# A whole number is still a number: 97 is 97.0.
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
WireInt = Annotated[int, Strict()]
WireBool = Annotated[bool, Strict()]
Count = Annotated[int, Strict(), Field(ge=0)]


class QuantityWire(_Model):
    # Python's json accepts NaN and Infinity; neither is a measurement.
    value: FiniteFloat | Annotated[list[FiniteFloat], Field(max_length=1000)]
    unit: str = Field(max_length=16)


class Observation(_Model):
    """A Reading after the gateway has checked it, with identity, provenance and both times."""

    id: ObservationId
    hut_id: HutId
    device: Device
    kind: Kind
    values: dict[str, QuantityWire]
    flags: list[Flag] = Field(default_factory=list, max_length=len(Flag))
    measured_at: StorableTime
    received_at: StorableTime
    device_time: StorableTime | None = None
    clock: Literal["device", "gateway"]
    device_seq: WireInt | None = Field(default=None, ge=0)
    subject: Subject | None = None
    # False when the gateway's checks (limits, plausibility, the device's own status, signal quality)
    # say this reading must not alert a clinician; it is still stored, with its raw values.
    fit_for_alerting: WireBool = True
    # Why it is unfit, in words that carry no measured value.
    quality_reasons: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=32
    )
    findings: list[Finding] = Field(default_factory=list, max_length=len(Finding))

    @model_validator(mode="after")
    def _values_match_vocabulary(self) -> Observation:
        for name, quantity in self.values.items():
            problem = value_problem(self.kind, name, quantity.unit, isinstance(quantity.value, list))
            if problem:
                raise ValueError(f"values.{name}: {problem}")
        return self


class WaveStrip(_Model):
    """A waveform strip: int16 samples with gain and offset, compressed (see ``waveform``)."""

    id: ObservationId
    hut_id: HutId
    device: Device
    kind: Kind
    channel: Token
    start: StorableTime
    fs: FiniteFloat = Field(gt=0, le=10_000)
    unit: str = Field(max_length=16)
    gain: FiniteFloat
    offset: FiniteFloat
    n: WireInt = Field(ge=1, le=MAX_SAMPLES)
    encoding: Literal["int16le+zlib+base64"] = "int16le+zlib+base64"
    data: str
    flags: list[Flag] = Field(default_factory=list, max_length=len(Flag))
    clock: Literal["device", "gateway"]
    subject: Subject | None = None

    @field_validator("kind")
    @classmethod
    def _waveform_kind(cls, kind: Kind) -> Kind:
        if not KINDS[kind].waveform:
            raise ValueError(f"{kind.value} is not a waveform kind")
        return kind

    @model_validator(mode="after")
    def _samples_are_storable(self) -> WaveStrip:
        # Sample i is stored at start + i / fs with the value raw * gain + offset: both must stay storable.
        if self.n / self.fs > (LATEST - self.start).total_seconds():
            start = self.start.isoformat()
            raise ValueError(f"fs: {self.n} samples at {self.fs} Hz from {start} would end after {LATEST.year}")
        if not math.isfinite(32768 * abs(self.gain) + abs(self.offset)):
            raise ValueError("gain: int16 samples times this gain, plus the offset, are not finite numbers")
        return self

    @model_validator(mode="after")
    def _data_holds_n_samples(self) -> WaveStrip:
        try:
            unpack_samples(self.data, self.n)
        except ProtocolError as exc:
            raise ValueError(f"data: {exc.detail}") from None
        return self

    def samples(self) -> tuple[int, ...]:
        """The raw int16 samples; physical value = raw * gain + offset."""
        return unpack_samples(self.data, self.n)


class Envelope(_Model):
    """Fields every message carries."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    hut_id: HutId
    boot_id: Token
    seq: WireInt = Field(ge=0, le=MAX_SEQ)
    sent_at: StorableTime


class ObservationBatch(Envelope):
    type: Literal["obs"] = "obs"
    observations: list[Observation] = Field(min_length=1, max_length=MAX_BATCH)


class WaveBatch(Envelope):
    type: Literal["wave"] = "wave"
    strips: list[WaveStrip] = Field(min_length=1, max_length=MAX_STRIPS)


class DeviceEvent(Envelope):
    """Device connect/disconnect, frame errors, gaps. ``detail`` holds no health value."""

    type: Literal["event"] = "event"
    event: Literal["connected", "disconnected", "device_error", "gap", "started", "stopping", "spool_reset"]
    # When it happened at the hut: an event may wait in the spool for hours before ``sent_at``. Absent
    # from the messages of gateways older than this field.
    at: StorableTime | None = None
    device: Device | None = None
    detail: dict[str, str | WireInt | FiniteFloat | WireBool] = Field(default_factory=dict, max_length=32)


class DeviceHealth(_Model):
    name: Token
    driver: Token
    connected: WireBool
    readings: Count
    errors: Count = 0
    last_error: Reason | None = None
    last_contact: StorableTime | None = None


class SpoolHealth(_Model):
    depth: Count
    bytes: Count
    evicted: Count
    oldest_unsent_s: Annotated[FiniteFloat, Field(ge=0)] | None = None


class UplinkHealth(_Model):
    connected: WireBool
    published: Count
    confirmed: Count
    resent: Count
    refused: Count
    last_confirmed: StorableTime | None = None
    last_error: Reason | None = None


class HutHealth(_Model):
    """What ``hut-gateway status`` shows, for the operator's dashboards: counts and times, no health
    value and no resident."""

    devices: list[DeviceHealth] = Field(max_length=64)
    spool: SpoolHealth
    uplink: UplinkHealth


class Status(Envelope):
    """Birth record (retained) and Last Will: online or offline, Sparkplug-style. While online, the hut
    republishes it every ``status_interval_s`` with its ``health``."""

    type: Literal["status"] = "status"
    state: Literal["online", "offline"]
    health: HutHealth | None = None


class StoreAck(_Model):
    """Collector to hut: these messages of yours are handled (stored, or kept as dead letters), so the
    gateway may let their items go. Sent on ``hh/v1/huts/{hut_id}/ack`` after the database write.

    The broker's PUBACK is not enough: mosquitto snapshots its state only periodically and does not
    restore shared subscriptions after a restart, so a message it acknowledged can still be lost.
    """

    schema_version: Literal[1] = Field(default=1, alias="schema")
    type: Literal["ack"] = "ack"
    hut_id: HutId
    boot_id: Token
    seqs: list[Annotated[WireInt, Field(ge=0, le=MAX_SEQ)]] = Field(min_length=1, max_length=1000)
    outcome: Literal["stored", "dead_letter"]


class CollectorStatus(_Model):
    """Retained on ``hh/v1/collectors/status``: a collector is subscribed (again), or has gone.

    After a broker restart the collectors' shared subscriptions are gone until they resubscribe, and
    whatever huts sent in between reached nobody; this tells them to send it again now.
    """

    schema_version: Literal[1] = Field(default=1, alias="schema")
    type: Literal["collector"] = "collector"
    client_id: Token
    state: Literal["online", "offline"]
    at: AwareDatetime


Message = ObservationBatch | WaveBatch | DeviceEvent | Status
# Which message type each hut channel carries.
MESSAGE_TYPES: dict[str, type[Message]] = {
    "obs": ObservationBatch,
    "wave": WaveBatch,
    "event": DeviceEvent,
    "status": Status,
}


def observation_id(hut_id: str, device: Device, kind: Kind, key: datetime | int, seq_epoch: str = "") -> str:
    """A deterministic id: the same reading always gets the same id, so redelivery never duplicates.

    ``key`` is the device timestamp, or the per-device sequence number where the device has no clock;
    ``seq_epoch`` names the numbering those sequence numbers belong to (it changes if the gateway's
    counters are ever lost, so that restarted numbers cannot collide with old ids).
    """
    if isinstance(key, datetime):
        if key.tzinfo is None:
            raise ValueError("observation id timestamps must be timezone-aware")
        stamp = key.astimezone(UTC)
        key_text = f"t:{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond:06d}"
    else:
        key_text = f"s:{seq_epoch}:{key}"
    material = "\x1f".join((hut_id, device.driver, device.device_id, kind.value, key_text))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def observation_from_reading(
    reading: Reading,
    *,
    hut_id: str,
    device: Device,
    received_at: datetime,
    device_seq: int,
    seq_epoch: str = "",
    extra_flags: frozenset[Flag] = frozenset(),
    subject: Subject | None = None,
    fit_for_alerting: bool = True,
    quality_reasons: tuple[str, ...] = (),
    findings: frozenset[Finding] = frozenset(),
) -> Observation:
    """Build the Observation for a Reading. The id keys on the device clock when there is one."""
    key: datetime | int = device_seq if reading.measured_at is None else reading.measured_at
    values = {
        name: QuantityWire(value=list(q.value) if isinstance(q.value, tuple) else q.value, unit=q.unit)
        for name, q in reading.values.items()
    }
    return Observation(
        id=observation_id(hut_id, device, reading.kind, key, seq_epoch),
        hut_id=hut_id,
        device=device,
        kind=reading.kind,
        values=values,
        flags=sorted(reading.flags | extra_flags),
        measured_at=reading.measured_at or received_at,
        received_at=received_at,
        device_time=reading.measured_at,
        clock="device" if reading.measured_at is not None else "gateway",
        device_seq=device_seq,
        subject=subject,
        fit_for_alerting=fit_for_alerting,
        quality_reasons=list(quality_reasons),
        findings=sorted(findings),
    )


def strip_from_reading(
    reading: Reading,
    *,
    hut_id: str,
    device: Device,
    received_at: datetime,
    device_seq: int,
    seq_epoch: str = "",
    start: datetime | None = None,
    extra_flags: frozenset[Flag] = frozenset(),
    subject: Subject | None = None,
) -> WaveStrip:
    """Build the WaveStrip for a waveform Reading.

    Without a device clock the strip starts at ``start`` if given (a session continuing the previous
    strip), else it is taken to end when it arrived, so it starts ``n / fs`` earlier.
    """
    strip = reading.strip
    if strip is None:
        raise ValueError(f"{reading.kind.value} reading has no strip")
    key: datetime | int
    if reading.measured_at is not None:
        start, key, clock = reading.measured_at, reading.measured_at, "device"
    else:
        if start is None:
            start = received_at - timedelta(seconds=len(strip.raw) / strip.fs)
        key, clock = device_seq, "gateway"
    return WaveStrip(
        id=observation_id(hut_id, device, reading.kind, key, seq_epoch),
        hut_id=hut_id,
        device=device,
        kind=reading.kind,
        channel=strip.channel,
        start=start,
        fs=strip.fs,
        unit=strip.unit,
        gain=strip.gain,
        offset=strip.offset,
        n=len(strip.raw),
        data=pack_samples(strip.raw),
        flags=sorted(reading.flags | extra_flags),
        clock=clock,  # type: ignore[arg-type]
        subject=subject,
    )


def assemble(
    channel: Literal["obs", "wave"], items: Sequence[bytes], *, hut_id: str, boot_id: str, seq: int, sent_at: datetime
) -> bytes:
    """A batch message from already-encoded items (each the JSON of an Observation or a WaveStrip).

    The gateway spools items as JSON and numbers a batch only when it sends it; splicing the stored
    bytes avoids decoding and re-encoding every item. ``decode`` accepts exactly what ``encode`` of the
    same batch would give.
    """
    head = json.dumps(
        {
            "schema": SCHEMA_VERSION,
            "hut_id": hut_id,
            "boot_id": boot_id,
            "seq": seq,
            "sent_at": sent_at.isoformat(),
            "type": channel,
        },
        separators=(",", ":"),
    ).encode()
    field = b"observations" if channel == "obs" else b"strips"
    return head[:-1] + b',"' + field + b'":[' + b",".join(items) + b"]}"


def encode(message: Message | StoreAck | CollectorStatus) -> bytes:
    """Serialise a message to compact JSON bytes."""
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()


def decode(channel: Channel | str, payload: bytes) -> Message:
    """Parse and validate one message from ``channel``. Raises ProtocolError saying what and where."""
    model = MESSAGE_TYPES.get(channel)
    if model is None:
        raise ProtocolError("bad_topic", f"no messages are accepted on channel {channel!r}")
    return _validate(model, payload)


def decode_ack(payload: bytes) -> StoreAck:
    """Parse a collector's StoreAck; ProtocolError as for :func:`decode`."""
    return _validate(StoreAck, payload)


def decode_collector_status(payload: bytes) -> CollectorStatus:
    return _validate(CollectorStatus, payload)


M = TypeVar("M", bound=BaseModel)

# JSON may escape half of a UTF-16 surrogate pair ("\ud800"), which Python decodes to a string no UTF-8
# encoder takes: not text. Only a payload with such an escape is searched for one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DETAIL = 300


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL else text[:_DETAIL] + "…"


def _lone_surrogate(raw: Any) -> tuple[int | str, ...] | None:
    """The path of a key or string holding a lone surrogate, or None."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), raw)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return path
        elif isinstance(node, dict):
            for key, value in node.items():
                if _SURROGATE.search(key):
                    return (*path, key)
                stack.append(((*path, key), value))
        elif isinstance(node, list):
            stack.extend(((*path, index), value) for index, value in enumerate(node))
    return None


def _validate(model: type[M], payload: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> M:
    if len(payload) > max_bytes:
        raise ProtocolError("too_large", f"{len(payload)} bytes exceeds the {max_bytes}-byte limit")
    try:
        # UTF-8 only (RFC 8259): json.loads would also take UTF-16 and UTF-32 bytes.
        text = payload.decode("utf-8")
        raw: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers too long to convert; RecursionError, nesting.
        raise ProtocolError("malformed_json", str(exc)[:200] or type(exc).__name__) from None
    if _SURROGATE_ESCAPE.search(text) and (lone := _lone_surrogate(raw)) is not None:
        detail = "holds half of a UTF-16 surrogate pair (\\ud800-\\udfff), which is not text"
        raise ProtocolError("invalid_field", detail, path_text(lone) or None)
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_field", f"a message is a JSON object, not {type(raw).__name__}")
    version = raw.get("schema")
    if version != SCHEMA_VERSION or isinstance(version, bool):  # True == 1 in Python
        detail = "missing" if version is None else f"{_clip(reprlib.repr(version))} is not supported"
        raise ProtocolError("unsupported_schema", f"schema version {detail}; expected {SCHEMA_VERSION}", "schema")
    try:
        message = model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        where = path_text(field_path(first, raw)) or None
        raise ProtocolError("invalid_field", _clip(first["msg"]) + more, where) from None
    return message
