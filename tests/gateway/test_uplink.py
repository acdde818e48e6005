"""The uplink against a real mosquitto: spooled items go out in numbered batches, survive a broker
that dies and returns, and a broker that refuses them."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from healthhut.devstack import LocalStack
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool, open_spool
from healthhut.gateway.state import GatewayState
from healthhut.gateway.uplink import Uplink
from healthhut.protocol import (
    Device,
    Kind,
    Message,
    Observation,
    ObservationBatch,
    Quantity,
    Reading,
    Status,
    StoreAck,
    Strip,
    WaveBatch,
    decode,
    encode,
    hut_topic,
    observation_from_reading,
    strip_from_reading,
)
from healthhut.protocol.wire import MAX_MESSAGE_BYTES
from tests.conftest import eventually
from tests.tasks import running

DEVICE = Device(driver="contec-cms50", device_id="ox-1")


def observation(hut: str, n: int, rr: int = 0) -> Observation:
    values = {"heart_rate": Quantity(60 + n % 40, "/min")}
    if rr:
        values["rr_intervals"] = Quantity(tuple(float(800 + i % 50) for i in range(rr)), "ms")
    reading = Reading(kind=Kind.HEART_RATE, values=values)
    return observation_from_reading(reading, hut_id=hut, device=DEVICE, received_at=datetime.now(UTC), device_seq=n)


async def collect(port: int, hut: str, into: list[Message], connected: asyncio.Event) -> None:
    """Stands in for the collector: records what arrives and confirms it as stored. Subscribes again
    whenever the broker comes back. (The end-to-end and fault tests use the real collector.)"""
    while True:
        try:
            async with aiomqtt.Client("127.0.0.1", port) as client, asyncio.TaskGroup() as confirmations:
                for channel in ("obs", "wave", "event", "status"):
                    await client.subscribe(f"hh/v1/huts/{hut}/{channel}", qos=1)
                connected.set()
                async for message in client.messages:
                    channel = str(message.topic).rsplit("/", 1)[1]
                    decoded = decode(channel, bytes(message.payload))  # type: ignore[arg-type]
                    into.append(decoded)
                    if not isinstance(decoded, Status):
                        ack = StoreAck(hut_id=hut, boot_id=decoded.boot_id, seqs=[decoded.seq], outcome="stored")
                        # Beside the iteration, not in it, so that the iteration ends as soon as the broker
                        # dies and takes the client's disconnection error. Awaited here, a confirmation in
                        # flight then waited out aiomqtt's 10 s timeout, and the client, left by that
                        # timeout, never had its error retrieved ("Future exception was never retrieved").
                        confirmations.create_task(client.publish(hut_topic(hut, "ack"), encode(ack), qos=1))
        except* aiomqtt.MqttError:
            connected.clear()
            await asyncio.sleep(0.05)


def delivered(received: list[Message]) -> list[int]:
    return [o.device_seq or 0 for m in received if isinstance(m, ObservationBatch) for o in m.observations]


def gateway_config(tmp_path: Path, hut: str, port: int, **uplink: float) -> GatewayConfig:
    settings = {"batch_interval_s": 0.05, "reconnect_min_s": 0.5, "reconnect_max_s": 1.0, **uplink}
    return GatewayConfig.model_validate(
        {"hut_id": hut, "state_dir": str(tmp_path / "state"), "mqtt": {"port": port}, "uplink": settings}
    )


async def test_spooled_readings_survive_a_broker_restart(tmp_path: Path, unique: str) -> None:
    hut = f"hut-{unique}"
    with LocalStack(tmp_path / "servers", influxd=False, victoria=False) as stack:  # a broker this test kills
        # What the killed broker had accepted but not delivered is lost with it; the gateway sends it
        # again when no store confirmation comes.
        config = gateway_config(tmp_path, hut, stack.mosquitto.port, store_ack_timeout_s=2)
        spool, _ = open_spool(tmp_path / "spool.sqlite", 10**8, gap_item)
        outbox = Outbox(spool)
        uplink = Uplink(config, GatewayState(config.state_dir), spool)
        received: list[Message] = []
        subscribed = asyncio.Event()
        async with running(collect(stack.mosquitto.port, hut, received, subscribed)):
            await subscribed.wait()
            async with running(uplink.run()):
                for n in range(5):
                    await outbox.observation(observation(hut, n))
                await eventually(lambda: sorted(delivered(received)) == list(range(5)))

                stack.mosquitto.kill()
                for n in range(5, 25):  # readings keep coming while the broker is gone
                    await outbox.observation(observation(hut, n))
                    await asyncio.sleep(0.02)
                assert spool.depth >= 15, "what the broker could not take waits in the spool"
                stack.mosquitto.start()
                await eventually(lambda: set(range(25)) <= set(delivered(received)))
                await eventually(lambda: spool.depth == 0)
        await spool.close()
    statuses = [m.state for m in received if isinstance(m, Status)]
    assert statuses[0] == "online" and statuses.count("online") >= 2
    by_seq: dict[int, Message] = {}
    for message in received:
        # A resend after a lost PUBACK may arrive twice; it must then be the very same message.
        assert by_seq.setdefault(message.seq, message) == message
    assert len({m.boot_id for m in received}) == 1


async def test_batches_fit_the_collectors_size_limit(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    hut = f"hut-{unique}"
    config = gateway_config(tmp_path, hut, stack.mosquitto.port, batch_max=500)
    spool = MemorySpool(10**9, gap_item)
    outbox = Outbox(spool)
    for n in range(120):  # about 6 KB each: 120 of them cannot travel in one message
        await outbox.observation(observation(hut, n, rr=900))
    raw = tuple(range(60))
    for n in range(100):  # more strips than one wave message may carry
        reading = Reading(kind=Kind.PPG, strip=Strip(fs=60.0, unit="1", raw=raw))
        await outbox.strip(
            strip_from_reading(reading, hut_id=hut, device=DEVICE, received_at=datetime.now(UTC), device_seq=n)
        )
    received: list[Message] = []
    subscribed = asyncio.Event()
    async with running(collect(stack.mosquitto.port, hut, received, subscribed)):
        await subscribed.wait()
        async with running(Uplink(config, GatewayState(config.state_dir), spool).run()):
            await eventually(lambda: sorted(delivered(received)) == list(range(120)))
            await eventually(lambda: sum(len(m.strips) for m in received if isinstance(m, WaveBatch)) == 100)
    batches = [m for m in received if isinstance(m, ObservationBatch)]
    assert len(batches) > 1
    assert all(len(m.model_dump_json(by_alias=True, exclude_none=True)) <= MAX_MESSAGE_BYTES for m in batches)


async def test_refused_messages_stay_until_the_broker_allows(tmp_path: Path, unique: str) -> None:
    """A broker ACL that refuses the hut (PUBACK "not authorised") loses nothing: the uplink retries."""
    hut = f"hut-{unique}"
    acl = tmp_path / "acl"
    acl.write_text("topic read hh/#\n")  # anonymous clients may read but not write
    with LocalStack(tmp_path / "servers", influxd=False, victoria=False, mosquitto_config=[f"acl_file {acl}"]) as stack:
        config = gateway_config(tmp_path, hut, stack.mosquitto.port, reconnect_min_s=0.2, reconnect_max_s=0.5)
        spool = MemorySpool(10**8, gap_item)
        uplink = Uplink(config, GatewayState(config.state_dir), spool)
        received: list[Message] = []
        subscribed = asyncio.Event()
        async with running(collect(stack.mosquitto.port, hut, received, subscribed), uplink.run()):
            await subscribed.wait()
            await Outbox(spool).observation(observation(hut, 1))
            await eventually(lambda: uplink.stats.refused >= 2)
            assert spool.depth == 1 and uplink.stats.published_messages == 0
            acl.write_text("topic readwrite hh/#\n")
            os.kill(stack.mosquitto.pid or 0, signal.SIGHUP)  # mosquitto rereads its ACL on SIGHUP
            await eventually(lambda: delivered(received) == [1])
            await eventually(lambda: spool.depth == 0)


@pytest.mark.parametrize("channel", ["obs", "wave"])
def test_assembled_batches_decode_like_encoded_ones(channel: str) -> None:
    from healthhut.protocol import Strip, WaveBatch, encode, strip_from_reading
    from healthhut.protocol.wire import assemble

    now = datetime.now(UTC)
    if channel == "obs":
        items: list[Observation] | list[object] = [observation("hut-1", n, rr=3) for n in range(3)]
        model: Message = ObservationBatch(hut_id="hut-1", boot_id="b", seq=9, sent_at=now, observations=items)  # type: ignore[arg-type]
    else:
        reading = Reading(kind=Kind.PPG, strip=Strip(fs=60.0, unit="1", raw=(1, 2, 3)))
        items = [strip_from_reading(reading, hut_id="hut-1", device=DEVICE, received_at=now, device_seq=1)]
        model = WaveBatch(hut_id="hut-1", boot_id="b", seq=9, sent_at=now, strips=items)  # type: ignore[arg-type]
    bodies = [i.model_dump_json(exclude_none=True).encode() for i in items]  # type: ignore[attr-defined]
    spliced = assemble(channel, bodies, hut_id="hut-1", boot_id="b", seq=9, sent_at=now)  # type: ignore[arg-type]
    assert decode(channel, spliced) == model == decode(channel, encode(model))


async def test_items_stay_until_the_collector_confirms(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    """A PUBACK alone does not free the spool: without a StoreAck the message is sent again."""
    hut = f"hut-{unique}"
    config = gateway_config(tmp_path, hut, stack.mosquitto.port, store_ack_timeout_s=0.5)
    spool = MemorySpool(10**8, gap_item)
    uplink = Uplink(config, GatewayState(config.state_dir), spool)
    seen: list[bytes] = []

    async def silent_collector(ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as client:
            await client.subscribe(f"hh/v1/huts/{hut}/obs", qos=1)
            ready.set()
            async for message in client.messages:
                seen.append(bytes(message.payload))  # type: ignore[arg-type]

    ready = asyncio.Event()
    async with running(silent_collector(ready)):
        await ready.wait()
        async with running(uplink.run()):
            await Outbox(spool).observation(observation(hut, 1))
            await eventually(lambda: len(seen) >= 3)
            assert spool.depth == 1 and uplink.stats.resent >= 2
            # The resends are the very same message: same number, same bytes.
            assert len(set(seen)) == 1
            first = decode("obs", seen[0])
            async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as collector:
                ack = StoreAck(hut_id=hut, boot_id=first.boot_id, seqs=[first.seq], outcome="stored")
                await collector.publish(hut_topic(hut, "ack"), encode(ack), qos=1)
            await eventually(lambda: spool.depth == 0)
            assert uplink.stats.stored_items == 1
