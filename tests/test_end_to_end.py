"""Readings end to end: hut-sim on a pty → hut-gateway → real mosquitto → hut-collector → real influxd.

All three programs run as separate processes, as installed. A test subscriber records what the
gateway published, so the values, units and times in InfluxDB are checked against the wire.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.protocol import ObservationBatch, decode, encode, hut_topic

SPO2, PULSE = 95, 64


def ns(stamp: datetime) -> int:
    return int(stamp.replace(microsecond=0).timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def write_configs(tmp: Path, stack: LocalStack, hut: str, db: str) -> tuple[Path, Path]:
    collector = tmp / "collector.toml"
    collector.write_text(
        f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "c-{hut}"\nshare_group = "g{hut}"\n'
        f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\ndatabase = "{db}"\n'
        f'[dead_letters]\npath = "{tmp / "dead.sqlite"}"\n'
    )
    gateway = tmp / "gateway.toml"
    gateway.write_text(
        f'hut_id = "{hut}"\nstate_dir = "{tmp / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        f"[uplink]\nbatch_interval_s = 0.5\n"
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-e2e"\npath = "{tmp / "ox"}"\nstrip_seconds = 2\n'
    )
    return collector, gateway


def spo2_rows(stack: LocalStack, db: str) -> list[tuple[int, float, float, str]]:
    result = stack.influxd.query('SELECT spo2, pulse_rate, obs_id FROM "spo2"', db=db, epoch="ns")
    series = result["results"][0].get("series", [])
    return [tuple(values) for values in series[0]["values"]] if series else []  # type: ignore[misc]


async def test_simulated_readings_reach_influxdb(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    hut, db = f"hut-{unique}", f"e2e_{unique}"
    collector_config, gateway_config = write_configs(tmp_path, stack, hut, db)
    published: list[tuple[bytes, ObservationBatch]] = []
    strips = 0
    began = datetime.now(UTC)
    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as observer:
        await observer.subscribe(f"hh/v1/huts/{hut}/#", qos=1)
        with Programs(tmp_path / "logs") as programs:
            programs.start("collector", "hut-collector", "run", "--config", str(collector_config))
            programs.start(
                "sim",
                "hut-sim",
                "play",
                "contec-cms50",
                "--link",
                str(tmp_path / "ox"),
                "--spo2",
                str(SPO2),
                "--pulse-rate",
                str(PULSE),
                "--seed",
                "5",
                "--duration",
                "60",
                "--quiet",
            )
            programs.start("gateway", "hut-gateway", "run", "--config", str(gateway_config))

            async def watch() -> None:
                nonlocal strips
                async for message in observer.messages:
                    payload = bytes(message.payload)  # type: ignore[arg-type]
                    if message.topic.matches(hut_topic(hut, "obs")):
                        published.append((payload, decode("obs", payload)))  # type: ignore[arg-type]
                    elif message.topic.matches(hut_topic(hut, "wave")):
                        strips += 1
                    if sum(len(b.observations) for _, b in published) >= 6 and strips >= 2:
                        return

            try:
                await asyncio.wait_for(watch(), 30)
            finally:
                programs.check_running("gateway", "collector")
            assert programs.stop("gateway") == 0
            ended = datetime.now(UTC)
            observations = [obs for _, batch in published for obs in batch.observations]

            # Every published observation is in InfluxDB once, with the same value and time.
            deadline = time.monotonic() + 15
            while len(rows := spo2_rows(stack, db)) < len(observations) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            expected = sorted(
                (ns(o.measured_at), o.values["spo2"].value, o.values["pulse_rate"].value, o.id) for o in observations
            )
            assert sorted(rows)[: len(expected)] == expected

            for obs in observations:
                assert {name: q.unit for name, q in obs.values.items()} == {"spo2": "%", "pulse_rate": "/min"}
                assert began <= obs.measured_at <= ended and obs.clock == "gateway"
                # hut-sim wanders ±1 % and ±2 /min around what it was told, like the real device.
                assert abs(obs.values["spo2"].value - SPO2) <= 1  # type: ignore[operator]
                assert abs(obs.values["pulse_rate"].value - PULSE) <= 2  # type: ignore[operator]
            assert [b.seq for _, b in published] == sorted({b.seq for _, b in published})

            # A redelivered batch (the very same bytes, twice) adds no point. The collector handles
            # messages in order, so once a marker sent after them is stored, they were handled too.
            before = spo2_rows(stack, db)
            first = published[0][1]
            marker_obs = first.observations[0].model_copy(update={"id": "f" * 32, "measured_at": ended})
            marker = first.model_copy(update={"seq": 10**9, "observations": [marker_obs]})
            async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as resender:
                for payload in (published[0][0], published[0][0], encode(marker)):
                    await resender.publish(hut_topic(hut, "obs"), payload, qos=1)
            deadline = time.monotonic() + 15
            while len(after := spo2_rows(stack, db)) == len(before) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert after == sorted([*before, (ns(ended), *before[0][1:3], "f" * 32)])
            assert programs.stop("collector") == 0
            assert "Traceback" not in programs.log("gateway") + programs.log("collector")
