"""Benchmark: how fast a one-hour backlog of a busy hut drains into the collector once the network is back.

A busy hut: three devices giving a spot observation every second and two giving a 10-second waveform
strip at 60 Hz, for an hour, all waiting in the gateway's spool. The real uplink then delivers it over
real mosquitto to the real collector writing to real influxd, until the collector has confirmed every
item. In the same run, the same kind of backlog (ten minutes of it, for time) is drained the way a
typical gateway forwards readings: one reading per message, one message at a time. Summary line:
``drain: hour_backlog_s=... readings_per_s=... naive_readings_per_s=... ratio=...``
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from healthhut.collector.config import CollectorConfig
from healthhut.collector.deadletters import DeadLetterStore
from healthhut.collector.ingest import Ingest
from healthhut.collector.storage import Influx1Writer
from healthhut.devstack import LocalStack
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.outbox import gap_item
from healthhut.gateway.spool import Priority, SpoolItem, open_spool
from healthhut.gateway.state import GatewayState
from healthhut.gateway.uplink import Uplink
from healthhut.protocol import Device, Kind, Quantity, Reading, Strip, observation_from_reading, strip_from_reading

SPOT_DEVICES = 3
STRIP_DEVICES = 2


def backlog(hut: str, seconds: int) -> list[SpoolItem]:
    start = datetime.now(UTC) - timedelta(hours=2)
    items: list[SpoolItem] = []
    for n in range(SPOT_DEVICES):
        device = Device(driver="contec-cms50", device_id=f"ox-{n}")
        for t in range(seconds):
            reading = Reading(
                kind=Kind.SPO2, values={"spo2": Quantity(96.0, "%"), "pulse_rate": Quantity(70.0, "/min")}
            )
            obs = observation_from_reading(
                reading, hut_id=hut, device=device, received_at=start + timedelta(seconds=t), device_seq=t
            )
            items.append(SpoolItem("obs", Priority.VITAL, obs.id, obs.model_dump_json(exclude_none=True).encode()))
    raw = tuple(40 + (i * 7) % 80 for i in range(600))
    for n in range(STRIP_DEVICES):
        device = Device(driver="contec-cms50", device_id=f"strip-{n}")
        for t in range(0, seconds, 10):
            reading = Reading(kind=Kind.PPG, strip=Strip(fs=60.0, unit="1", raw=raw))
            strip = strip_from_reading(
                reading, hut_id=hut, device=device, received_at=start + timedelta(seconds=t + 10), device_seq=t
            )
            items.append(
                SpoolItem("wave", Priority.WAVEFORM, strip.id, strip.model_dump_json(exclude_none=True).encode())
            )
    return items


async def drain(
    stack: LocalStack, root: Path, hut: str, seconds: int, batch_max: int, in_flight: int
) -> tuple[float, int]:
    """Seconds from the uplink's start until the collector has confirmed every item; and the item count."""
    items = backlog(hut, seconds)
    spool, _ = open_spool(root / f"{hut}.sqlite", 10**10, gap_item)
    for start in range(0, len(items), 2000):
        await spool.put(items[start : start + 2000])
    collector_config = CollectorConfig.model_validate(
        {
            "mqtt": {"port": stack.mosquitto.port, "client_id": f"c-{hut}", "share_group": f"g{hut}"},
            "storage": {"type": "influxdb1", "url": stack.influxd.url, "database": hut.replace("-", "_")},
            "dead_letters": {"path": str(root / f"{hut}-dead.sqlite")},
        }
    )
    writer = Influx1Writer(collector_config.storage)  # type: ignore[arg-type]
    await writer.ensure_database()
    ingest = Ingest(collector_config, writer, DeadLetterStore(collector_config.dead_letters.path))
    collector = asyncio.create_task(ingest.run())
    await ingest.subscribed.wait()
    gateway_config = GatewayConfig.model_validate(
        {
            "hut_id": hut,
            "state_dir": str(root / hut),
            "mqtt": {"port": stack.mosquitto.port},
            "uplink": {"batch_max": batch_max, "in_flight": in_flight, "batch_interval_s": 0.01},
        }
    )
    uplink = Uplink(gateway_config, GatewayState(gateway_config.state_dir), spool)
    started = time.perf_counter()
    sender = asyncio.create_task(uplink.run())
    while spool.depth:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    for task in (sender, collector):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await writer.close()
    await spool.close()
    return elapsed, len(items)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="healthhut-drain-") as tmp:
        root = Path(tmp)
        with LocalStack(root / "servers", victoria=False) as stack:
            hour_s, hour_items = await drain(stack, root, "hut-hour", 3600, batch_max=100, in_flight=8)
            naive_s, naive_items = await drain(stack, root, "hut-naive", 600, batch_max=1, in_flight=1)
    ours, naive = hour_items / hour_s, naive_items / naive_s
    devices = f"{SPOT_DEVICES} spot devices at 1/s, {STRIP_DEVICES} strip devices"
    print(f"one hour of a busy hut: {hour_items} items ({devices})")
    print(f"  healthhut uplink (batches of 100, 8 in flight): drained in {hour_s:.1f} s, {ours:.0f} items/s")
    print(
        f"  one reading per message, one at a time:        {naive:.0f} items/s "
        f"(an hour would take {hour_items / naive:.0f} s)"
    )
    print(
        f"drain: hour_backlog_s={hour_s:.1f} readings_per_s={ours:.0f} naive_readings_per_s={naive:.0f} "
        f"ratio={ours / naive:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
