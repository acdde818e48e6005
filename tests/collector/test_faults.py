"""The collector as deployed (``hut-collector run`` processes) against faults, on real mosquitto and influxd:

- two collectors share a subscription and one is killed with SIGKILL mid-stream (and restarted, as
  systemd does): nothing is lost, nothing is duplicated in the database;
- InfluxDB is stopped for a minute mid-stream: the collector backs off, its memory stays bounded, and it
  catches up with no loss;
- 10,000 malformed, oversized and forged messages mixed into valid traffic: every one is dead-lettered
  with its reason, and every valid observation is stored.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from healthhut.collector.deadletters import DeadLetterStore
from healthhut.collector.sequence import SequenceLedger
from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.protocol import (
    Device,
    Kind,
    ObservationBatch,
    Quantity,
    Reading,
    decode_ack,
    encode,
    hut_topic,
    observation_from_reading,
)
from tests.conftest import eventually

# Minute-long outages and thousands of messages on a shared 2-core machine: beyond the 120 s default.
pytestmark = pytest.mark.timeout(400)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
OBS_PER_MESSAGE = 2


def valid_messages(tag: str, huts: int, per_hut: int) -> list[tuple[str, bytes]]:
    """Interleaved across huts; every observation at its own time, so the database holds one row each."""
    out = []
    for m in range(per_hut):
        for h in range(huts):
            hut = f"hut-{tag}-{h:02d}"
            observations = [
                observation_from_reading(
                    Reading(
                        kind=Kind.SPO2,
                        values={"spo2": Quantity(90.0 + (m % 10), "%"), "pulse_rate": Quantity(60.0 + k, "/min")},
                    ),
                    hut_id=hut,
                    device=Device(driver="contec-cms50", device_id="ox-1"),
                    received_at=T0 + timedelta(seconds=m * OBS_PER_MESSAGE + k),
                    device_seq=m * OBS_PER_MESSAGE + k,
                )
                for k in range(OBS_PER_MESSAGE)
            ]
            batch = ObservationBatch(hut_id=hut, boot_id="b1", seq=m + 1, sent_at=T0, observations=observations)
            out.append((hut_topic(hut, "obs"), encode(batch)))
    return out


def collector_toml(folder: Path, name: str, mosquitto_port: int, influx_url: str, db: str, **ingest: object) -> Path:
    extra = "".join(f"{key} = {value}\n" for key, value in ingest.items())
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[mqtt]
port = {mosquitto_port}
client_id = "{name}"
share_group = "g{db}"
keepalive = 5
session_expiry_s = 30
[storage]
type = "influxdb1"
url = "{influx_url}"
database = "{db}"
timeout_s = 2.0
[dead_letters]
path = "{folder / "dead-letters.sqlite"}"
[ingest]
{extra}"""
    )
    return path


class Publisher:
    """Publishes at a steady rate from its own task, and counts the StoreAcks the collectors send back."""

    def __init__(self, port: int, messages: list[tuple[str, bytes]], per_s: float) -> None:
        self.port = port
        self.messages = messages
        self.per_s = per_s
        self.sent = 0
        self.confirmed: set[tuple[str, int]] = set()
        self.refused: set[tuple[str, int]] = set()

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            start = time.monotonic()
            for topic, payload in self.messages:
                await client.publish(topic, payload, qos=1)
                self.sent += 1
                delay = start + self.sent / self.per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def listen(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe("hh/v1/huts/+/ack", qos=1)
            ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                ack = decode_ack(message.payload)
                target = self.confirmed if ack.outcome == "stored" else self.refused
                target.update((ack.hut_id, seq) for seq in ack.seqs)


def stored_rows(stack: LocalStack, db: str) -> list[list[object]]:
    result = stack.influxd.query('SELECT spo2, pulse_rate, obs_id, hut FROM "spo2"', db=db)["results"][0]
    return list(result["series"][0]["values"]) if "series" in result else []


def assert_exactly_once(stack: LocalStack, db: str, messages: list[tuple[str, bytes]]) -> None:
    expected = {obs["id"] for _, payload in messages for obs in json.loads(payload)["observations"]}
    rows = stored_rows(stack, db)
    ids = Counter(str(row[3]) for row in rows)
    assert len(rows) == len(expected), f"{len(rows)} rows for {len(expected)} observations"
    assert set(ids) == expected and max(ids.values()) == 1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Programs]:
    started = Programs(tmp_path / "logs")
    try:
        yield started
    finally:
        started.stop_all()


async def test_two_collectors_one_killed_mid_stream_lose_and_duplicate_nothing(
    stack: LocalStack, tmp_path: Path, unique: str, programs: Programs
) -> None:
    db = f"kill_{unique}"
    messages = valid_messages(unique, huts=10, per_hut=120)
    configs = [
        collector_toml(tmp_path, f"col-{name}-{unique}", stack.mosquitto.port, stack.influxd.url, db)
        for name in ("a", "b")
    ]
    for name, config in zip(("a", "b"), configs, strict=True):
        programs.start(name, "hut-collector", "run", "--config", str(config))
        programs.wait_for_log(name, "subscribed")
    publisher = Publisher(stack.mosquitto.port, messages, per_s=300)
    ready = asyncio.Event()
    listener = asyncio.create_task(publisher.listen(ready))
    await asyncio.wait_for(ready.wait(), 10)
    sending = asyncio.create_task(publisher.run())
    await eventually(lambda: publisher.sent >= len(messages) // 3, within=30)
    programs.processes["a"].send_signal(signal.SIGKILL)
    programs.processes["a"].wait()
    await asyncio.sleep(1.0)
    # Restarted, as systemd would: the broker hands its session back, with what it never acknowledged.
    programs.start("a", "hut-collector", "run", "--config", str(configs[0]))
    await sending
    try:
        await eventually(lambda: len(publisher.confirmed) == len(messages), within=60)
    except AssertionError:
        missing = sorted({(t.split("/")[3], json.loads(p)["seq"]) for t, p in messages} - publisher.confirmed)
        raise AssertionError(
            f"{len(missing)} unconfirmed, e.g. {missing[:10]}; rows {len(stored_rows(stack, db))}\n"
            f"{programs.log('a', 3000)}\n{programs.log('b', 3000)}"
        ) from None
    listener.cancel()
    programs.check_running("a", "b")
    assert not publisher.refused
    assert_exactly_once(stack, db, messages)
    # Both collectors took part, and they share one sequence ledger: no hut shows a gap.
    for name in ("a", "b"):
        assert "subscribed" in programs.log(name, tail=100_000)
    ledger = SequenceLedger(tmp_path / "sequence.sqlite")
    assert [event for event in ledger.events(limit=1000) if event.event in ("gap", "restart")] == []
    assert not ledger.sweep(now=time.time() + 10_000)
    ledger.close()


async def test_influxdb_down_for_a_minute_backs_off_stays_bounded_and_catches_up(
    tmp_path: Path, unique: str, programs: Programs
) -> None:
    outage = 60.0
    with LocalStack(tmp_path / "servers", victoria=False) as stack:
        db = "outage"
        messages = valid_messages(unique, huts=5, per_hut=int(outage * 2 + 60))
        config = collector_toml(tmp_path, f"col-{unique}", stack.mosquitto.port, stack.influxd.url, db)
        collector = programs.start("c", "hut-collector", "run", "--config", str(config))
        programs.wait_for_log("c", "subscribed")
        publisher = Publisher(stack.mosquitto.port, messages, per_s=10)
        ready = asyncio.Event()
        listener = asyncio.create_task(publisher.listen(ready))
        await asyncio.wait_for(ready.wait(), 10)
        sending = asyncio.create_task(publisher.run())
        await eventually(lambda: len(publisher.confirmed) >= 50, within=30)
        baseline = rss_kib(collector.pid)
        stack.influxd.stop()
        peak = baseline
        deadline = time.monotonic() + outage
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(collector.pid))
            await asyncio.sleep(1.0)
        confirmed_during = len(publisher.confirmed)
        stack.influxd.start()
        await sending
        await eventually(lambda: len(publisher.confirmed) == len(messages), within=120)
        listener.cancel()
        programs.check_running("c")
        log = programs.log("c", tail=1_000_000)
        assert "storage unavailable" in log
        # The broker held the backlog, not the collector: its memory barely moved while ~600 messages
        # waited, and it confirmed nothing it had not stored.
        assert peak - baseline < 20 * 1024, (baseline, peak)
        assert confirmed_during < len(messages) - outage * 10 * 0.8
        assert_exactly_once(stack, db, messages)


def poison(hut: str, n: int, valid: bytes) -> tuple[str, bytes, str]:
    """A bad message of one of several sorts, with the reason the collector should give."""
    topic = hut_topic(hut, "obs")
    sort = n % 6
    if sort == 0:
        return topic, valid[: len(valid) // 2], "malformed_json"
    if sort == 1:
        raw = json.loads(valid)
        raw["schema"] = 7
        return topic, json.dumps(raw).encode(), "unsupported_schema"
    if sort == 2:
        raw = json.loads(valid)
        raw["observations"][0]["values"]["spo2"]["value"] = "high"
        return topic, json.dumps(raw).encode(), "invalid_field"
    if sort == 3:  # forged: published under this hut's topic, speaking for another
        raw = json.loads(valid)
        raw["hut_id"] = "hut-victim"
        return topic, json.dumps(raw).encode(), "hut_mismatch"
    if sort == 4:
        raw = json.loads(valid)
        raw["observations"][0]["hut_id"] = "hut-victim"
        return topic, json.dumps(raw).encode(), "hut_mismatch"
    if n % 60 == 5:  # one in sixty: oversized (the rest of this sort are binary garbage)
        return topic, b'{"schema":1,"pad":"' + b"x" * 300_000 + b'"}', "too_large"
    return topic, random.Random(n).randbytes(64), "malformed_json"


async def test_ten_thousand_bad_messages_are_dead_lettered_and_every_valid_one_stored(
    stack: LocalStack, tmp_path: Path, unique: str, programs: Programs
) -> None:
    db = f"poison_{unique}"
    valid = valid_messages(unique, huts=10, per_hut=50)
    bad = [poison(f"hut-{unique}-{n % 10:02d}", n, valid[n % len(valid)][1]) for n in range(10_000)]
    mixed: list[tuple[str, bytes]] = [(topic, payload) for topic, payload, _ in bad]
    for index, message in enumerate(valid):  # valid messages spread through the poison
        mixed.insert(index * 21, message)
    config = collector_toml(
        tmp_path, f"col-{unique}", stack.mosquitto.port, stack.influxd.url, db, hut_messages_per_s=100000.0
    )
    programs.start("c", "hut-collector", "run", "--config", str(config))
    programs.wait_for_log("c", "subscribed")
    publisher = Publisher(stack.mosquitto.port, mixed, per_s=5000)
    ready = asyncio.Event()
    listener = asyncio.create_task(publisher.listen(ready))
    await asyncio.wait_for(ready.wait(), 10)
    await publisher.run()
    store = DeadLetterStore(tmp_path / "dead-letters.sqlite")
    await eventually(lambda: len(publisher.confirmed) == len(valid) and store.count() == len(bad), within=120)
    listener.cancel()
    programs.check_running("c")
    letters = store.list(limit=20_000)
    assert Counter(letter.reason for letter in letters) == Counter(reason for _, _, reason in bad)
    assert all(letter.detail for letter in letters)
    assert_exactly_once(stack, db, valid)
    store.close()
