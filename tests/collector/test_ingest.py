"""The collector against real mosquitto and real InfluxDB 1.x / VictoriaMetrics.

Valid readings land with the right values and timestamps; a resent batch creates no duplicate; bad
input is dead-lettered with its reason while the valid messages after it are still stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from aiohttp import ClientSession, web

from healthhut.collector.config import CollectorConfig, IngestConfig
from healthhut.collector.deadletters import DeadLetterStore
from healthhut.collector.ingest import Ingest
from healthhut.collector.storage import Influx1Writer, make_writer
from healthhut.devstack import LocalStack, free_port
from healthhut.protocol import (
    Device,
    Kind,
    Observation,
    ObservationBatch,
    Quantity,
    Reading,
    decode_ack,
    encode,
    hut_topic,
    observation_from_reading,
)
from tests import tasks
from tests.conftest import eventually

T0 = datetime(2026, 11, 22, 9, 0, 0, 250000, tzinfo=UTC)
OXIMETER = Device(driver="contec-cms50", device_id="ox-1")


def obs_batch(hut_id: str, seq: int, readings: list[tuple[float, float]], start: datetime = T0) -> ObservationBatch:
    observations = [
        observation_from_reading(
            Reading(kind=Kind.SPO2, values={"spo2": Quantity(spo2, "%"), "pulse_rate": Quantity(pr, "/min")}),
            hut_id=hut_id,
            device=OXIMETER,
            received_at=start + timedelta(seconds=i),
            device_seq=seq * 1000 + i,
        )
        for i, (spo2, pr) in enumerate(readings)
    ]
    return ObservationBatch(hut_id=hut_id, boot_id="boot1", seq=seq, sent_at=start, observations=observations)


def ns(stamp: datetime) -> int:
    return int(stamp.replace(microsecond=0).timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def collector_config(stack: LocalStack, tmp_path: Path, unique: str, storage: dict[str, object]) -> CollectorConfig:
    return CollectorConfig.model_validate(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": stack.mosquitto.port,
                "client_id": f"col-{unique}",
                "share_group": f"g{unique}",
                # The broker is shared by the whole session: a finished test's group must not keep
                # collecting other tests' messages.
                "session_expiry_s": 10,
            },
            "storage": storage,
            "dead_letters": {"path": str(tmp_path / "dead.sqlite")},
        }
    )


@contextlib.asynccontextmanager
async def running(config: CollectorConfig) -> AsyncIterator[Ingest]:
    # The broker is shared by the whole session: other tests' retained status messages may arrive too,
    # so tests count observations, not messages.
    writer = make_writer(config.storage)
    if isinstance(writer, Influx1Writer):
        await writer.ensure_database()
    store = DeadLetterStore(config.dead_letters.path)
    ingest = Ingest(config, writer, store)
    try:
        async with tasks.running(ingest.run()):
            await asyncio.wait_for(ingest.subscribed.wait(), 10)
            yield ingest
    finally:
        await writer.close()
        store.close()
        ingest.ledger.close()


async def publish(stack: LocalStack, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def test_readings_reach_influxdb1_exactly_once(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    hut = f"hut-{unique}"
    db = f"db_{unique}"
    config = collector_config(stack, tmp_path, unique, {"type": "influxdb1", "url": stack.influxd.url, "database": db})
    first = obs_batch(hut, 1, [(97, 72), (96, 75), (98, 70)])
    async with running(config) as ingest:
        # The same batch twice (a redelivery), then a new one.
        await publish(stack, [(hut_topic(hut, "obs"), encode(first))] * 2)
        await publish(
            stack, [(hut_topic(hut, "obs"), encode(obs_batch(hut, 2, [(95, 80)], T0 + timedelta(minutes=1))))]
        )
        await eventually(lambda: ingest.stats.observations == 7)
    result = stack.influxd.query(
        'SELECT spo2, pulse_rate, hut, device, driver, subject, obs_id FROM "spo2"', db=db, epoch="ns"
    )
    series = result["results"][0]["series"][0]
    rows = [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
    expected_times = [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), T0 + timedelta(minutes=1)]
    assert [row["time"] for row in rows] == [ns(t) for t in expected_times]
    assert [(row["spo2"], row["pulse_rate"]) for row in rows] == [(97, 72), (96, 75), (98, 70), (95, 80)]
    assert {(row["hut"], row["device"], row["driver"], row["subject"]) for row in rows} == {
        (hut, "ox-1", "contec-cms50", "anonymous")
    }
    assert [row["obs_id"] for row in rows[:3]] == [obs.id for obs in first.observations]


async def test_bad_input_is_dead_lettered_and_the_stream_goes_on(
    stack: LocalStack, tmp_path: Path, unique: str
) -> None:
    hut = f"hut-{unique}"
    db = f"db_{unique}"
    config = collector_config(stack, tmp_path, unique, {"type": "influxdb1", "url": stack.influxd.url, "database": db})
    good = encode(obs_batch(hut, 5, [(97, 72)]))
    unknown_schema = json.loads(good)
    unknown_schema["schema"] = 99
    impostor = encode(obs_batch("someone-else", 6, [(80, 140)]))
    oversized = b'{"schema": 1, "pad": "' + b"x" * 300_000 + b'"}'
    bad = [
        (hut_topic(hut, "obs"), b'{"schema": 1, "hut_id": '),
        (hut_topic(hut, "obs"), json.dumps(unknown_schema).encode()),
        (hut_topic(hut, "obs"), impostor),
        (hut_topic(hut, "obs"), oversized),
    ]
    async with running(config) as ingest:
        await publish(stack, [*bad, (hut_topic(hut, "obs"), good)])
        await eventually(lambda: ingest.stats.observations == 1 and ingest.stats.dead_letters == 4)
    letters = DeadLetterStore(config.dead_letters.path).list()
    assert sorted(letter.reason for letter in letters) == sorted(
        ["malformed_json", "unsupported_schema", "hut_mismatch", "too_large"]
    )
    assert all(letter.hut_id == hut and letter.topic == hut_topic(hut, "obs") for letter in letters)
    mismatch = next(letter for letter in letters if letter.reason == "hut_mismatch")
    assert mismatch.payload == impostor and mismatch.location == "hut_id"
    too_large = next(letter for letter in letters if letter.reason == "too_large")
    assert too_large.size == len(oversized) and len(too_large.payload) == config.dead_letters.max_payload_bytes
    # The valid message after the poison ones was stored, and nothing of the impostor was.
    result = stack.influxd.query('SELECT spo2, hut FROM "spo2"', db=db, epoch="ns")
    assert result["results"][0]["series"][0]["values"] == [[ns(T0), 97, hut]]


async def test_v2_write_api_path_against_victoria_metrics(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    hut = f"hut-{unique}"
    config = collector_config(
        stack, tmp_path, unique, {"type": "influxdb2", "url": stack.victoria.url, "org": "o", "bucket": "b"}
    )
    batch = obs_batch(hut, 1, [(94, 66), (93, 67)])
    async with running(config) as ingest:
        await publish(stack, [(hut_topic(hut, "obs"), encode(batch))] * 2)
        await eventually(lambda: ingest.stats.observations == 4)
    stack.victoria.force_flush()
    exported = stack.victoria.export(f'{{__name__="spo2_spo2",hut="{hut}"}}')
    assert len(exported) == 1
    epoch_ms = int(T0.timestamp() * 1000)
    assert exported[0]["values"] == [94, 93]
    assert exported[0]["timestamps"] == [epoch_ms, epoch_ms + 1000]
    assert exported[0]["metric"]["device"] == "ox-1"


@pytest.mark.parametrize(
    "text", ["[storage]\ntype = 'influxdb1'\nurl = 'x'\n[dead_letters]\npath = '/tmp/x'\n[mqtt]\nprot = 1\n"]
)
def test_config_error_names_file_line_and_key(tmp_path: Path, text: str) -> None:
    from healthhut.collector.config import load_config
    from healthhut.protocol.configfile import ConfigError

    path = tmp_path / "collector.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.path, caught.value.line, caught.value.key) == (str(path), 7, "mqtt.prot")
    assert "unknown key" in str(caught.value)


async def test_message_is_acknowledged_only_after_it_is_stored(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    """Storage down: the collector must not acknowledge, so a restarted collector gets the message again."""
    hut, db = f"hut-{unique}", f"db_{unique}"
    batch = obs_batch(hut, 1, [(91, 101)])
    # Nothing listens on this port: every write fails as "unavailable" and is retried, never acknowledged.
    dead_url = f"http://127.0.0.1:{free_port()}"
    down = collector_config(stack, tmp_path, unique, {"type": "influxdb1", "url": dead_url, "database": db})
    writer = make_writer(down.storage)
    store = DeadLetterStore(down.dead_letters.path)
    ingest = Ingest(down, writer, store)
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        await publish(stack, [(hut_topic(hut, "obs"), encode(batch))])
        await eventually(lambda: ingest.stats.storage_retries >= 2)
    finally:
        task.cancel()  # the collector dies with the message unacknowledged
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()
        store.close()
    assert ingest.stats.observations == 0
    up = collector_config(stack, tmp_path, unique, {"type": "influxdb1", "url": stack.influxd.url, "database": db})
    async with running(up) as again:  # same client id: the broker redelivers what was never acknowledged
        await eventually(lambda: again.stats.observations == 1)
    result = stack.influxd.query('SELECT spo2, pulse_rate FROM "spo2"', db=db, epoch="ns")
    assert result["results"][0]["series"][0]["values"] == [[ns(T0), 91, 101]]


def temperature_obs(hut_id: str, seq: int, celsius: float) -> Observation:
    return observation_from_reading(
        Reading(kind=Kind.BODY_TEMPERATURE, values={"temperature": Quantity(celsius, "Cel")}),
        hut_id=hut_id,
        device=Device(driver="ble-thermometer", device_id="th-1"),
        received_at=T0 + timedelta(seconds=10),
        device_seq=seq,
    )


async def test_a_point_the_database_refuses_is_dead_lettered_alone(
    stack: LocalStack, tmp_path: Path, unique: str
) -> None:
    hut, db = f"hut-{unique}", f"db_{unique}"
    config = collector_config(stack, tmp_path, unique, {"type": "influxdb1", "url": stack.influxd.url, "database": db})
    # Someone wrote "temperature" as text into this shard: InfluxDB refuses our float for that field (400).
    stack.influxd.query(f'CREATE DATABASE "{db}"')
    stack.influxd.write(f'body_temperature,hut=other temperature="warm" {ns(T0)}', db)
    batch = obs_batch(hut, 1, [(97, 72), (96, 75)])
    mixed = batch.model_copy(update={"observations": [*batch.observations, temperature_obs(hut, 9, 36.6)]})
    after = obs_batch(hut, 2, [(95, 80)], T0 + timedelta(minutes=1))
    async with running(config) as ingest:
        await publish(stack, [(hut_topic(hut, "obs"), encode(mixed)), (hut_topic(hut, "obs"), encode(after))])
        # (Counted by observations: other tests' retained status messages also arrive here.)
        await eventually(lambda: ingest.stats.observations == 4)
        assert ingest.stats.rejected_points == 1
    letters = DeadLetterStore(config.dead_letters.path).list()
    assert [(letter.reason, letter.location) for letter in letters] == [("storage_rejected", "point 2")]
    assert letters[0].payload.startswith(f"body_temperature,device=th-1,driver=ble-thermometer,hut={hut}".encode())
    assert "field type conflict" in letters[0].detail
    rows = stack.influxd.query('SELECT spo2 FROM "spo2"', db=db)["results"][0]["series"][0]["values"]
    assert [row[1] for row in rows] == [97, 96, 95]


async def test_a_hut_over_its_rate_is_neither_stored_nor_confirmed(
    stack: LocalStack, tmp_path: Path, unique: str
) -> None:
    hut, db = f"hut-{unique}", f"db_{unique}"
    base = collector_config(stack, tmp_path, unique, {"type": "influxdb1", "url": stack.influxd.url, "database": db})
    config = base.model_copy(update={"ingest": IngestConfig(hut_messages_per_s=0.01, hut_burst=3)})
    confirmed: list[int] = []
    async with (
        running(config) as ingest,
        aiomqtt.Client("127.0.0.1", stack.mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as listener,
    ):
        await listener.subscribe(hut_topic(hut, "ack"), qos=1)

        async def listen() -> None:
            async for message in listener.messages:
                assert isinstance(message.payload, bytes)
                confirmed.extend(decode_ack(message.payload).seqs)

        reader = asyncio.create_task(listen())
        minutes = [obs_batch(hut, seq, [(90 + seq, 70)], T0 + timedelta(minutes=seq)) for seq in range(1, 7)]
        await publish(stack, [(hut_topic(hut, "obs"), encode(batch)) for batch in minutes])
        await eventually(lambda: ingest.stats.messages + ingest.stats.throttled == 6 and len(confirmed) == 3)
        await asyncio.sleep(0.5)
        reader.cancel()
    assert (ingest.stats.messages, ingest.stats.throttled, ingest.stats.dead_letters) == (3, 3, 0)
    assert sorted(confirmed) == [1, 2, 3]
    rows = stack.influxd.query('SELECT spo2 FROM "spo2"', db=db)["results"][0]["series"][0]["values"]
    assert [row[1] for row in rows] == [91, 92, 93]


async def test_retry_after_from_the_database_is_honoured(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    """A proxy in front of the real influxd answers the first write 503 with Retry-After: 2."""
    hut, db = f"hut-{unique}", f"db_{unique}"
    writes: list[float] = []

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/write":
            writes.append(time.monotonic())
            if len(writes) == 1:
                return web.Response(status=503, headers={"Retry-After": "2"}, text="busy")
        async with ClientSession() as session:
            headers = {"Content-Type": request.headers.get("Content-Type", "text/plain")}
            url = stack.influxd.url + request.path
            async with session.post(url, params=request.query, data=body, headers=headers) as upstream:
                return web.Response(status=upstream.status, body=await upstream.read())

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        config = collector_config(
            stack, tmp_path, unique, {"type": "influxdb1", "url": f"http://127.0.0.1:{port}", "database": db}
        )
        async with running(config) as ingest:
            await publish(stack, [(hut_topic(hut, "obs"), encode(obs_batch(hut, 1, [(97, 72)])))])
            await eventually(lambda: ingest.stats.observations == 1)
    finally:
        await runner.cleanup()
    assert ingest.stats.storage_retries == 1
    # Our own backoff would have waited 0.2 s; the server asked for 2 s (less at most 20 % jitter).
    assert writes[1] - writes[0] >= 1.6


async def test_taking_a_message_leaves_no_waiting_task_behind() -> None:
    """Stopping the collector (cancelling run) while it waits for a message, or the reader failing, must
    not leave a task waiting on the queue forever ("Task was destroyed but it is pending!")."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    reader = asyncio.create_task(asyncio.sleep(3600))
    before = asyncio.all_tasks()
    taking = asyncio.create_task(Ingest._take(queue, reader))
    await asyncio.sleep(0.01)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()

    async def fail() -> None:
        raise aiomqtt.MqttError("broker gone")

    broken = asyncio.create_task(fail())
    with pytest.raises(aiomqtt.MqttError, match="broker gone"):
        await Ingest._take(queue, broken)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
    queue.put_nowait("message")
    assert await Ingest._take(queue, reader) == "message"
    reader.cancel()
