"""The uplink against a real mosquitto: birth and will, batches, and a broker that dies and returns."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.state import GatewayState
from healthhut.gateway.uplink import Uplink, fitting
from healthhut.protocol import (
    Device,
    Kind,
    ObservationBatch,
    Quantity,
    Reading,
    Status,
    decode,
    encode,
    observation_from_reading,
)
from healthhut.protocol.wire import MAX_MESSAGE_BYTES
from tests.conftest import eventually

DEVICE = Device(driver="contec-cms50", device_id="ox-1")


def observation(hut: str, n: int) -> object:
    reading = Reading(kind=Kind.SPO2, values={"spo2": Quantity(90 + n % 10, "%")})
    return observation_from_reading(reading, hut_id=hut, device=DEVICE, received_at=datetime.now(UTC), device_seq=n)


async def collect(port: int, hut: str, into: list[tuple[str, object]], connected: asyncio.Event) -> None:
    """Subscribe, and subscribe again whenever the broker comes back."""
    while True:
        try:
            async with aiomqtt.Client("127.0.0.1", port) as client:
                await client.subscribe(f"hh/v1/huts/{hut}/#", qos=1)
                connected.set()
                async for message in client.messages:
                    channel = str(message.topic).rsplit("/", 1)[1]
                    into.append((channel, decode(channel, bytes(message.payload))))  # type: ignore[arg-type]
        except aiomqtt.MqttError:
            connected.clear()
            await asyncio.sleep(0.05)


async def test_uplink_survives_broker_restart(tmp_path: Path, unique: str) -> None:
    hut = f"hut-{unique}"
    # A broker of its own: this test kills it.
    with LocalStack(tmp_path / "servers", influxd=False, victoria=False) as stack:
        port = stack.mosquitto.port
        config = GatewayConfig.model_validate(
            {
                "hut_id": hut,
                "state_dir": str(tmp_path / "state"),
                "mqtt": {"port": port},
                "uplink": {"batch_interval_s": 0.1, "reconnect_min_s": 1.0, "reconnect_max_s": 2.0},
            }
        )
        uplink = Uplink(config, GatewayState(config.state_dir))
        received: list[tuple[str, object]] = []
        subscribed = asyncio.Event()
        watcher = asyncio.create_task(collect(port, hut, received, subscribed))
        await subscribed.wait()
        runner = asyncio.create_task(uplink.run())
        try:
            await eventually(lambda: uplink.stats.connected)
            for n in range(5):
                uplink.submit(observation(hut, n))  # type: ignore[arg-type]
            await eventually(lambda: sum(len(m.observations) for c, m in received if c == "obs") == 5)  # type: ignore[attr-defined]

            stack.mosquitto.kill()
            for n in range(5, 25):  # readings keep coming while the broker is gone
                uplink.submit(observation(hut, n))  # type: ignore[arg-type]
                await asyncio.sleep(0.02)
            stack.mosquitto.start()
            await eventually(subscribed.is_set)
            await eventually(lambda: uplink.stats.connects == 2)

            def delivered() -> list[int]:
                return [o.device_seq for c, m in received if c == "obs" for o in m.observations]  # type: ignore[attr-defined]

            await eventually(lambda: set(range(5, 25)) <= set(delivered()))
            uplink.stop()
            await asyncio.wait_for(runner, 10)
        finally:
            for task in (watcher, runner):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    statuses = [m.state for c, m in received if isinstance(m, Status)]
    assert statuses[0] == "online" and statuses[-1] == "offline" and statuses.count("online") >= 2
    batches = [m for c, m in received if isinstance(m, ObservationBatch)]
    by_seq: dict[int, object] = {}
    for _, message in received:
        # A resend after a lost PUBACK may arrive twice; it must then be the very same message.
        assert by_seq.setdefault(message.seq, message) == message  # type: ignore[attr-defined]
    assert all(b.boot_id == batches[0].boot_id for b in batches)


def test_batches_are_split_to_fit_the_collectors_size_limit() -> None:
    big = [
        observation_from_reading(
            Reading(kind=Kind.HEART_RATE, values={"rr_intervals": Quantity(tuple(float(i) for i in range(900)), "ms")}),
            hut_id="hut-1",
            device=DEVICE,
            received_at=datetime.now(UTC),
            device_seq=n,
        )
        for n in range(80)
    ]
    runs = list(fitting(big))
    assert [o for run in runs for o in run] == big and len(runs) > 1
    for run in runs:
        message = ObservationBatch(hut_id="hut-1", boot_id="b", seq=1, sent_at=datetime.now(UTC), observations=run)
        assert len(encode(message)) <= MAX_MESSAGE_BYTES


async def test_refused_messages_are_kept_and_sent_once_the_broker_allows(tmp_path: Path, unique: str) -> None:
    """A broker ACL that refuses the hut (PUBACK "not authorised") loses nothing: the uplink retries."""
    hut = f"hut-{unique}"
    acl = tmp_path / "acl"
    acl.write_text("topic read hh/#\n")  # anonymous clients may read but not write
    with LocalStack(tmp_path / "servers", influxd=False, victoria=False, mosquitto_config=[f"acl_file {acl}"]) as stack:
        config = GatewayConfig.model_validate(
            {
                "hut_id": hut,
                "state_dir": str(tmp_path / "state"),
                "mqtt": {"port": stack.mosquitto.port},
                "uplink": {"batch_interval_s": 0.1, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
            }
        )
        uplink = Uplink(config, GatewayState(config.state_dir))
        received: list[tuple[str, object]] = []
        subscribed = asyncio.Event()
        watcher = asyncio.create_task(collect(stack.mosquitto.port, hut, received, subscribed))
        await subscribed.wait()
        runner = asyncio.create_task(uplink.run())
        try:
            uplink.submit(observation(hut, 1))  # type: ignore[arg-type]
            await eventually(lambda: uplink.stats.refused >= 2)
            assert uplink.stats.published_observations == 0 and uplink.backlog >= 1
            acl.write_text("topic readwrite hh/#\n")
            os.kill(stack.mosquitto.pid or 0, signal.SIGHUP)  # mosquitto rereads its ACL on SIGHUP
            await eventually(lambda: any(c == "obs" for c, _ in received))
            assert uplink.stats.published_observations == 1
        finally:
            for task in (watcher, runner):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
