"""hypothesis against the collector's parsing of what huts send: decode() raises nothing but ProtocolError,
each refusal says why and where, a valid message round-trips, and Ingest.prepare never meets a bug.

A failure prints the falsifying example (and a blob for ``@reproduce_failure``) to replay it.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from healthhut.collector.config import CollectorConfig
from healthhut.collector.deadletters import DeadLetterStore
from healthhut.collector.ingest import Ingest, check_identity
from healthhut.protocol import (
    MAX_MESSAGE_BYTES,
    Device,
    DeviceEvent,
    Kind,
    Message,
    ObservationBatch,
    ProtocolError,
    Quantity,
    Reading,
    Status,
    Strip,
    WaveBatch,
    decode,
    encode,
    hut_topic,
    observation_from_reading,
    strip_from_reading,
    wire,
)
from healthhut.protocol.errors import path_text
from tests.fuzz import fuzz
from tests.fuzz.wire_strategies import (
    HUT_IDS,
    NASTY,
    JsonPath,
    dumps,
    line_problem,
    messages,
    paths,
)

REASONS = {"bad_topic", "too_large", "malformed_json", "invalid_field", "unsupported_schema", "hut_mismatch"}


class MemoryWriter:
    """Takes every write: the fuzzing is about what reaches the writer, checked line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def ingest() -> Iterator[Ingest]:
    """One Ingest for the module's examples (hypothesis wants no function-scoped fixture), with real
    SQLite dead letters and sequence ledger, and no rate limit to get in the way."""
    shm = Path("/dev/shm")  # the dead-letter store fsyncs every window: on tmpfs that costs nothing
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as folder:
        config = CollectorConfig.model_validate(
            {
                "storage": {"type": "influxdb1"},
                "dead_letters": {"path": str(Path(folder) / "dead.sqlite")},
                "ingest": {"hut_messages_per_s": 1e9, "hut_burst": 10**9},
            }
        )
        store = DeadLetterStore(config.dead_letters.path)
        service = Ingest(config, MemoryWriter(), store)
        yield service
        store.close()
        service.ledger.close()


def assert_clear_refusal(error: ProtocolError) -> None:
    assert error.reason in REASONS, error
    assert error.detail.strip(), error
    assert error.location is None or error.location.strip(), error
    assert str(error).startswith(error.reason)


def run_window(ingest: Ingest, topic: str, payload: bytes) -> None:
    """Prepare one message, then the rest of a window (store, dead letters, ledger, confirmations), which
    must neither raise nor meet a bug of ours, and write only lines InfluxDB takes."""
    writer = ingest.writer
    assert isinstance(writer, MemoryWriter)
    writer.lines.clear()
    delivery = ingest.prepare(topic, payload)
    assert [r.reason for r in delivery.refusals if r.reason == "internal_error"] == [], delivery.refusals
    for refusal in delivery.refusals:
        assert refusal.reason in REASONS and refusal.detail.strip(), refusal
    asyncio.run(ingest.process([delivery]))
    assert [(line, line_problem(line)) for line in writer.lines if line_problem(line)] == []


# -- valid messages --------------------------------------------------------------------------------------


@fuzz(300)
@given(messages())
def test_valid_messages_round_trip(item: tuple[str, Message]) -> None:
    channel, message = item
    assert decode(channel, encode(message)) == message


@fuzz(300)
@given(item=messages())
def test_valid_messages_are_stored(ingest: Ingest, item: tuple[str, Message]) -> None:
    channel, message = item
    delivery = ingest.prepare(hut_topic(message.hut_id, channel), encode(message))  # type: ignore[arg-type]
    assert (delivery.outcome, delivery.refusals, delivery.message) == ("stored", [], message)
    assert delivery.lines
    assert [(line, line_problem(line)) for line in delivery.lines if line_problem(line)] == []


# -- hostile input ---------------------------------------------------------------------------------------

CHANNELS = st.sampled_from(["obs", "wave", "event", "status", "ack", "cmd", "nope"])


@fuzz(1000)
@given(channel=CHANNELS, payload=st.binary(max_size=400))
def test_arbitrary_bytes(channel: str, payload: bytes) -> None:
    try:
        decode(channel, payload)
    except ProtocolError as error:
        assert_clear_refusal(error)


@fuzz(1000)
@given(channel=CHANNELS, document=st.dictionaries(st.text(max_size=12), NASTY, max_size=8) | NASTY)
def test_json_of_any_shape(channel: str, document: Any) -> None:
    try:
        decode(channel, dumps(document))
    except ProtocolError as error:
        assert_clear_refusal(error)


@dataclass(frozen=True)
class Mutation:
    """One change to a valid message: ``delete`` the key at ``where``, ``replace`` its value with
    ``value``, or ``add`` the key ``key`` with ``value`` to the table at ``where``."""

    channel: str
    message: Message
    action: str
    where: JsonPath
    value: Any = None
    key: str = ""

    def apply(self) -> tuple[dict[str, Any], JsonPath]:
        """The message's JSON with the change made, and the path of what changed."""
        raw = json.loads(encode(self.message))
        parent: Any = raw
        for part in self.where[:-1]:
            parent = parent[part]
        last = self.where[-1]
        if self.action == "delete":
            del parent[last]
        elif self.action == "add":
            parent[last][self.key] = self.value
            return raw, (*self.where, self.key)
        else:
            parent[last] = self.value
        return raw, self.where

    @property
    def topic(self) -> str:
        return hut_topic(self.message.hut_id, self.channel)  # type: ignore[arg-type]


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    channel, message = draw(messages())
    where = draw(st.sampled_from(paths(json.loads(encode(message)))))
    action = draw(st.sampled_from(["delete", "replace", "add"]))
    if action == "add":
        target: Any = json.loads(encode(message))
        for part in where:
            target = target[part]
        key = draw(st.text(min_size=1, max_size=20) | st.sampled_from(["\ud800", "x" * 5000, "a.b[0]"]))
        if not isinstance(target, dict) or key in target:
            action = "replace"
        return Mutation(channel, message, action, where, draw(NASTY), key)
    return Mutation(channel, message, action, where, draw(NASTY) if action == "replace" else None)


# Small valid messages of each kind, for the regressions below.
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DEVICE = Device(driver="contec-cms50", device_id="ox-1")
OBS = ObservationBatch(
    hut_id="hut-1",
    boot_id="b1",
    seq=1,
    sent_at=T0,
    observations=[
        observation_from_reading(
            Reading(Kind.SPO2, {"spo2": Quantity(97.0, "%")}),
            hut_id="hut-1",
            device=DEVICE,
            received_at=T0,
            device_seq=1,
        )
    ],
)
WAVE = WaveBatch(
    hut_id="hut-1",
    boot_id="b1",
    seq=2,
    sent_at=T0,
    strips=[
        strip_from_reading(
            Reading(Kind.ECG, strip=Strip(fs=250.0, unit="uV", raw=(1, -32768, 32767), channel="ecg")),
            hut_id="hut-1",
            device=DEVICE,
            received_at=T0,
            device_seq=2,
        )
    ],
)
EVENT = DeviceEvent(hut_id="hut-1", boot_id="b1", seq=3, sent_at=T0, event="gap")
STATUS = Status(hut_id="hut-1", boot_id="b1", seq=4, sent_at=T0, state="online")


def document_path(location: str, raw: Any, changed: JsonPath) -> JsonPath | None:
    """The path in ``raw`` (or the changed one, which may have been deleted) that ``location`` names; or,
    for a required field that is missing, the path of that field in an object of ``raw`` that lacks it
    (replacing ``strips[1].device`` by ``{}`` is refused at ``strips[1].device.driver``)."""
    present = [(), *paths(raw)]
    found = next((p for p in [changed, *present[1:]] if path_text(p) == location), None)
    if found is not None:
        return found
    for parent in present:
        node = value_at(raw, parent)
        if isinstance(node, dict):
            for name in MISSING_CANDIDATES:
                if name not in node and path_text((*parent, name)) == location:
                    return (*parent, name)
    return None


def value_at(raw: Any, path: JsonPath) -> Any:
    for part in path:
        raw = raw[part]
    return raw


# The fields a wire model requires: the only names a "Field required" location can add to the document.
MISSING_CANDIDATES = sorted(
    {
        name
        for model in vars(wire).values()
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items()
        if field.is_required()
    }
)


@fuzz(400)
@given(mutations())
# A lone surrogate was accepted in a detail value and then could not be encoded again.
@example(Mutation("event", EVENT, "add", ("detail",), "\ud800", "a"))
# ... and as a detail key, it was re-encoded as U+FFFD: a different message.
@example(Mutation("event", EVENT, "add", ("detail",), 1, "\ud800"))
# NaN was accepted in a detail, and encoded again as null, which decode refuses.
@example(Mutation("event", EVENT, "add", ("detail",), math.nan, "a"))
# The location named pydantic's union member, "observations[0].values.spo2.value.float".
@example(Mutation("obs", OBS, "replace", ("observations", 0, "values", "spo2", "value"), "abc"))
# A 5,000-character key went whole into the location.
@example(Mutation("obs", OBS, "add", ("observations", 0), 1, "x" * 5000))
# A schema version of nested tables: reprlib kept each part short but not the whole (found by a --slow run).
@example(Mutation("event", EVENT, "replace", ("schema",), [{f"k{j}" * 9: "v" * 50 for j in range(4)}] * 6))
# An empty object in place of a strip's device is refused at the field it lacks (found by a CI run).
@example(Mutation("wave", WAVE, "replace", ("strips", 0, "device"), {}))
def test_mutated_messages(mutation: Mutation) -> None:
    raw, changed = mutation.apply()
    payload = dumps(raw)
    try:
        decoded = decode(mutation.channel, payload)
    except ProtocolError as error:
        assert_clear_refusal(error)
        if error.reason == "too_large":
            assert len(payload) > MAX_MESSAGE_BYTES
        elif error.reason in ("invalid_field", "unsupported_schema"):
            # The location is a field of the message as sent (or the one deleted), and it is the changed
            # field, one inside it, or one that holds it.
            assert error.location is not None, error
            # (A deep-nesting marker in ``raw`` is a list in the payload; decode has parsed it, so can we.)
            named = document_path(error.location, json.loads(payload), changed)
            assert named is not None, (error, changed)
            shorter = min(len(named), len(changed))
            assert named[:shorter] == changed[:shorter], (error, changed)
            assert len(error.location) < 500 and len(error.detail) < 500, error
        return
    # Whatever is accepted must survive its own encoding: the collector re-encodes for alerts and replay.
    assert decode(mutation.channel, encode(decoded)) == decoded


@fuzz(200)
@given(mutations())
# A message number past SQLite's INTEGER stopped the window in the sequence ledger (OverflowError).
@example(Mutation("status", STATUS, "replace", ("seq",), 2**63))
# ... and one past a float's range failed in the points as an internal error.
@example(Mutation("event", EVENT, "replace", ("seq",), 10**400))
# A refused message's boot id went into its StoreAck confirmation, which refused it: the window stopped.
@example(Mutation("status", STATUS, "replace", ("boot_id",), ""))
# A sent_at InfluxDB cannot store was accepted, and refused by the database.
@example(Mutation("event", EVENT, "replace", ("sent_at",), "9999-12-31T23:59:59Z"))
# A strip whose fs is so small that 1e9 / fs is infinite failed in the points (NaN) ...
@example(Mutation("wave", WAVE, "replace", ("strips", 0, "fs"), 5e-324))
# ... or whose samples fall after int64 nanoseconds ...
@example(Mutation("wave", WAVE, "replace", ("strips", 0, "fs"), 1e-12))
# ... or whose gain makes the stored values infinite.
@example(Mutation("wave", WAVE, "replace", ("strips", 0, "gain"), 1e308))
def test_mutated_messages_through_a_window(ingest: Ingest, mutation: Mutation) -> None:
    raw, _ = mutation.apply()
    run_window(ingest, mutation.topic, dumps(raw))


TOPICS = st.one_of(
    st.text(max_size=60),
    st.builds("hh/v1/huts/{}/{}".format, HUT_IDS | st.text(max_size=12), CHANNELS),
    st.sampled_from(["hh/v1/huts//obs", "hh/v1/huts/hut-1/obs/extra", "$share/x/y"]),
)


@fuzz(200)
@given(topic=TOPICS, item=messages())
# A hut id ending in a newline passed the topic check ("$" matches before it) and then failed the
# StoreAck confirming its message: the window stopped.
@example(topic="hh/v1/huts/hut-1\n/status", item=("status", STATUS))
def test_any_topic_with_any_message(ingest: Ingest, topic: str, item: tuple[str, Message]) -> None:
    run_window(ingest, topic, encode(item[1]))


@fuzz(200)
@given(item=messages(), other=HUT_IDS, data=st.data())
def test_a_hut_speaks_only_for_itself(item: tuple[str, Message], other: str, data: st.DataObject) -> None:
    channel, message = item
    raw = json.loads(encode(message))
    items = raw.get("observations") or raw.get("strips")
    target = raw if items is None else data.draw(st.sampled_from([raw, *items]))
    target["hut_id"] = other
    decoded = decode(channel, dumps(raw))
    if other == message.hut_id:
        check_identity(message.hut_id, decoded)
        return
    with pytest.raises(ProtocolError) as caught:
        check_identity(message.hut_id, decoded)
    assert caught.value.reason == "hut_mismatch"
    assert caught.value.location is not None and caught.value.location.endswith("hut_id")
    assert other in caught.value.detail and message.hut_id in caught.value.detail
